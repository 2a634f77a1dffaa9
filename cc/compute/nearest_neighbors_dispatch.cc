// Public CPU entry point of nearest_neighbors.h: forwards to the AVX2+FMA
// build when the processor has it, else to the baseline build (as
// cpu_dispatch.cc does for the other kernel families).
#include "cc/compute/common.h"
#include "cc/compute/nearest_neighbors.h"

namespace tsne_ops {
namespace kernels {

template <typename T>
void NearestNeighborsCpu(const T* x, const T* y, int64_t batch, int64_t n, int64_t m,
                         int64_t dim, int64_t k, int64_t* indices, T* sq_distances,
                         const ParallelFor& parallel_for) {
  if (CpuHasAvx2Fma()) {
    avx2::NearestNeighborsCpu<T>(x, y, batch, n, m, dim, k, indices, sq_distances, parallel_for);
  } else {
    baseline::NearestNeighborsCpu<T>(x, y, batch, n, m, dim, k, indices, sq_distances,
                                     parallel_for);
  }
}

template void NearestNeighborsCpu<float>(const float*, const float*, int64_t, int64_t, int64_t,
                                         int64_t, int64_t, int64_t*, float*, const ParallelFor&);
template void NearestNeighborsCpu<double>(const double*, const double*, int64_t, int64_t, int64_t,
                                          int64_t, int64_t, int64_t*, double*, const ParallelFor&);

}  // namespace kernels
}  // namespace tsne_ops
