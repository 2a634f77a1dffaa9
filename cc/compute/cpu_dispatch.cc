// Public CPU entry points: each forwards to the AVX2+FMA build of the kernel
// when the processor has it, else to the baseline build.
#include "cc/compute/affinities.h"
#include "cc/compute/barnes_hut.h"
#include "cc/compute/common.h"
#include "cc/compute/distances.h"
#include "cc/compute/sparse_tsne_gradient.h"
#include "cc/compute/tsne_gradient.h"

namespace tsne_ops {
namespace kernels {

#define TSNE_OPS_DISPATCH(fn, ...) \
  (CpuHasAvx2Fma() ? avx2::fn<T>(__VA_ARGS__) : baseline::fn<T>(__VA_ARGS__))

template <typename T>
void PairwiseSquaredDistanceCpu(const T* x, const T* y, int64_t batch, int64_t n,
                                int64_t m, int64_t dim, T* out,
                                const ParallelFor& parallel_for) {
  TSNE_OPS_DISPATCH(PairwiseSquaredDistanceCpu, x, y, batch, n, m, dim, out, parallel_for);
}

template <typename T>
void PairwiseSquaredDistanceGradCpu(const T* grad, const T* x, const T* y, int64_t batch,
                                    int64_t n, int64_t m, int64_t dim, T* grad_x, T* grad_y,
                                    const ParallelFor& parallel_for) {
  TSNE_OPS_DISPATCH(PairwiseSquaredDistanceGradCpu, grad, x, y, batch, n, m, dim, grad_x,
                    grad_y, parallel_for);
}

template <typename T>
int64_t PerplexityAffinitiesCpu(const T* sq_dist, int64_t batch, int64_t n, double perplexity,
                                double tolerance, int max_iter, T* p_conditional, T* beta,
                                const ParallelFor& parallel_for) {
  return TSNE_OPS_DISPATCH(PerplexityAffinitiesCpu, sq_dist, batch, n, perplexity, tolerance,
                           max_iter, p_conditional, beta, parallel_for);
}

template <typename T>
void SymmetrizeAffinitiesCpu(const T* p_conditional, int64_t batch, int64_t n, T* p,
                             const ParallelFor& parallel_for) {
  TSNE_OPS_DISPATCH(SymmetrizeAffinitiesCpu, p_conditional, batch, n, p, parallel_for);
}

template <typename T>
void TsneGradientCpu(const T* p, const T* y, int64_t batch, int64_t n, int64_t d,
                     const TsneGradientOptions& options, T* grad, T* kl,
                     const ParallelFor& parallel_for) {
  TSNE_OPS_DISPATCH(TsneGradientCpu, p, y, batch, n, d, options, grad, kl, parallel_for);
}

template <typename T>
void SparseTsneGradientCpu(const int64_t* row_ptr, const int64_t* cols, const T* p_values,
                           const T* y, int64_t batch, int64_t n, int64_t d,
                           const TsneGradientOptions& options, T* grad, T* kl,
                           const ParallelFor& parallel_for) {
  TSNE_OPS_DISPATCH(SparseTsneGradientCpu, row_ptr, cols, p_values, y, batch, n, d, options,
                    grad, kl, parallel_for);
}

template <typename T>
void SparseTsneGradientFromRepulsionCpu(const int64_t* row_ptr, const int64_t* cols,
                                        const T* p_values, const T* y, int64_t batch,
                                        int64_t n, int64_t d, const TsneGradientOptions& options,
                                        const T* repulsion, const T* z, T* grad, T* kl,
                                        const ParallelFor& parallel_for,
                                        int64_t* first_bad_entry) {
  TSNE_OPS_DISPATCH(SparseTsneGradientFromRepulsionCpu, row_ptr, cols, p_values, y, batch, n,
                    d, options, repulsion, z, grad, kl, parallel_for, first_bad_entry);
}

template <typename T>
void BarnesHutRepulsionCpu(const T* y, int64_t batch, int64_t n, int64_t d, double dof,
                           double angle, T* repulsion, T* z, const ParallelFor& parallel_for) {
  TSNE_OPS_DISPATCH(BarnesHutRepulsionCpu, y, batch, n, d, dof, angle, repulsion, z,
                    parallel_for);
}

#undef TSNE_OPS_DISPATCH

#define TSNE_OPS_INSTANTIATE(T)                                                              \
  template void PairwiseSquaredDistanceCpu<T>(const T*, const T*, int64_t, int64_t, int64_t, \
                                              int64_t, T*, const ParallelFor&);              \
  template void PairwiseSquaredDistanceGradCpu<T>(const T*, const T*, const T*, int64_t,     \
                                                  int64_t, int64_t, int64_t, T*, T*,         \
                                                  const ParallelFor&);                       \
  template int64_t PerplexityAffinitiesCpu<T>(const T*, int64_t, int64_t, double, double,    \
                                              int, T*, T*, const ParallelFor&);              \
  template void SymmetrizeAffinitiesCpu<T>(const T*, int64_t, int64_t, T*,                   \
                                           const ParallelFor&);                              \
  template void TsneGradientCpu<T>(const T*, const T*, int64_t, int64_t, int64_t,            \
                                   const TsneGradientOptions&, T*, T*, const ParallelFor&); \
  template void SparseTsneGradientCpu<T>(const int64_t*, const int64_t*, const T*, const T*,  \
                                         int64_t, int64_t, int64_t, const TsneGradientOptions&, \
                                         T*, T*, const ParallelFor&);                   \
  template void SparseTsneGradientFromRepulsionCpu<T>(                                      \
      const int64_t*, const int64_t*, const T*, const T*, int64_t, int64_t, int64_t,        \
      const TsneGradientOptions&, const T*, const T*, T*, T*, const ParallelFor&, int64_t*); \
  template void BarnesHutRepulsionCpu<T>(const T*, int64_t, int64_t, int64_t, double, double, \
                                         T*, T*, const ParallelFor&);
TSNE_OPS_INSTANTIATE(float)
TSNE_OPS_INSTANTIATE(double)
#undef TSNE_OPS_INSTANTIATE

}  // namespace kernels
}  // namespace tsne_ops
