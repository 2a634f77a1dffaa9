// Batched pairwise squared Euclidean distances and their gradient.
//
//   out[b, i, j] = sum_k (x[b, i, k] - y[b, j, k])^2
//
// x is [batch, n, dim], y is [batch, m, dim], out is [batch, n, m], all
// row-major and contiguous. y == nullptr means self-distances (m == n): the
// result is then exactly symmetric, its diagonal is exactly zero, and no entry
// is negative (the norm expansion |x|^2 + |y|^2 - 2 x.y is clamped at zero).
#ifndef TSNE_OPS_CC_COMPUTE_DISTANCES_H_
#define TSNE_OPS_CC_COMPUTE_DISTANCES_H_

#include <cstdint>

#include "cc/compute/common.h"

#ifdef TSNE_OPS_WITH_CUDA
#include <cuda_runtime_api.h>
#endif

namespace tsne_ops {
namespace kernels {

#define TSNE_OPS_DISTANCE_CPU_DECLS                                          \
  template <typename T>                                                      \
  void PairwiseSquaredDistanceCpu(const T* x, const T* y, int64_t batch,     \
                                  int64_t n, int64_t m, int64_t dim, T* out, \
                                  const ParallelFor& parallel_for);          \
  /* Backward pass. grad is dL/d(out), [batch, n, m].                        \
     Cross (y != nullptr):                                                   \
       grad_x[i] = 2 sum_j g_ij (x_i - y_j),                                 \
       grad_y[j] = 2 sum_i g_ij (y_j - x_i).                                 \
     Self (y == nullptr, m == n; grad_y is ignored and may be nullptr):      \
       grad_x[i] = 2 sum_j (g_ij + g_ji) (x_i - x_j). */                     \
  template <typename T>                                                      \
  void PairwiseSquaredDistanceGradCpu(                                       \
      const T* grad, const T* x, const T* y, int64_t batch, int64_t n,       \
      int64_t m, int64_t dim, T* grad_x, T* grad_y,                          \
      const ParallelFor& parallel_for);

// Public entry points: dispatch to the best CPU build at run time.
TSNE_OPS_DISTANCE_CPU_DECLS
namespace baseline { TSNE_OPS_DISTANCE_CPU_DECLS }
namespace avx2 { TSNE_OPS_DISTANCE_CPU_DECLS }

#ifdef TSNE_OPS_WITH_CUDA
// Same contracts on device pointers, enqueued on `stream`; no synchronisation.
template <typename T>
cudaError_t LaunchPairwiseSquaredDistance(cudaStream_t stream, const T* x,
                                          const T* y, int64_t batch, int64_t n,
                                          int64_t m, int64_t dim, T* out);
// Device scratch bytes LaunchPairwiseSquaredDistanceGrad needs (may be 0).
template <typename T>
size_t PairwiseSquaredDistanceGradWorkspaceBytes(int64_t batch, int64_t n,
                                                 int64_t m, int64_t dim);
template <typename T>
cudaError_t LaunchPairwiseSquaredDistanceGrad(
    cudaStream_t stream, const T* grad, const T* x, const T* y, int64_t batch,
    int64_t n, int64_t m, int64_t dim, T* grad_x, T* grad_y, void* workspace);
#endif

}  // namespace kernels
}  // namespace tsne_ops

#endif  // TSNE_OPS_CC_COMPUTE_DISTANCES_H_
