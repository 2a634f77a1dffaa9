// Exact k nearest neighbours, batch by batch.
//
//   indices[b, i, :]      the k rows j of y[b] closest to x[b, i], by
//                         increasing |x[b, i] - y[b, j]|^2, ties broken by
//                         the smaller j;
//   sq_distances[b, i, :] those squared distances.
//
// x is [batch, n, dim], y is [batch, m, dim], indices ([batch, n, k], int64)
// and sq_distances ([batch, n, k]) are row-major and contiguous. y == nullptr
// means the neighbours of each row of x among the other rows of x (m == n,
// the row itself excluded by index, so an exact duplicate of it is still a
// neighbour at distance 0). Requires 1 <= k <= m (k <= n - 1 for self).
//
// Returned distances are the direct sum of squared differences accumulated
// in double and rounded to T once, so float32 and float64 agree to float32
// rounding and a constant offset on the data changes nothing (as long as the
// offset data is representable). No [n, m] matrix is ever allocated.
#ifndef TSNE_OPS_CC_COMPUTE_NEAREST_NEIGHBORS_H_
#define TSNE_OPS_CC_COMPUTE_NEAREST_NEIGHBORS_H_

#include <cstdint>
#include <string>

#include "cc/compute/common.h"

#ifdef TSNE_OPS_WITH_CUDA
#include <cuda_runtime_api.h>
#endif

namespace tsne_ops {
namespace kernels {

#define TSNE_OPS_NEAREST_NEIGHBORS_CPU_DECLS                                        \
  template <typename T>                                                             \
  void NearestNeighborsCpu(const T* x, const T* y, int64_t batch, int64_t n,        \
                           int64_t m, int64_t dim, int64_t k, int64_t* indices,     \
                           T* sq_distances, const ParallelFor& parallel_for);

// Public entry point: dispatches to the best CPU build at run time.
TSNE_OPS_NEAREST_NEIGHBORS_CPU_DECLS
namespace baseline { TSNE_OPS_NEAREST_NEIGHBORS_CPU_DECLS }
namespace avx2 { TSNE_OPS_NEAREST_NEIGHBORS_CPU_DECLS }

#ifdef TSNE_OPS_WITH_CUDA
// Same contract on device pointers, enqueued on `stream`; no synchronisation,
// no scratch (each row's running list lives in its rows of the outputs).
// Results equal the CPU kernel's bit for bit: the same double accumulation
// in the same order, the same (distance, index) order.
template <typename T>
cudaError_t LaunchNearestNeighbors(cudaStream_t stream, const T* x, const T* y,
                                   int64_t batch, int64_t n, int64_t m, int64_t dim,
                                   int64_t k, int64_t* indices, T* sq_distances);
#endif

}  // namespace kernels
}  // namespace tsne_ops

#endif  // TSNE_OPS_CC_COMPUTE_NEAREST_NEIGHBORS_H_
