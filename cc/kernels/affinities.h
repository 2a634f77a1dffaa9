// Perplexity-calibrated affinities (the input side of t-SNE).
//
// For each row i of a square self-distance matrix d [batch, n, n], find the
// precision beta_i such that the conditional distribution
//   P(j|i) = exp(-beta_i d_ij) / sum_{k != i} exp(-beta_i d_ik),  j != i,
// has entropy log(perplexity) (natural log, nats) to within `tolerance`,
// searching at most `max_iter` steps. The diagonal is ignored on input and
// written as exactly zero; each row sums to 1. Rows are shifted by their
// smallest off-diagonal distance before exponentiating, so no row underflows.
#ifndef TSNE_OPS_CC_KERNELS_AFFINITIES_H_
#define TSNE_OPS_CC_KERNELS_AFFINITIES_H_

#include <cstdint>

#include "cc/kernels/common.h"

#ifdef TSNE_OPS_WITH_CUDA
#include <cuda_runtime_api.h>
#endif

namespace tsne_ops {
namespace kernels {

// Defaults shared by every front end.
constexpr double kAffinityTolerance = 1e-5;  // nats
constexpr int kAffinityMaxIter = 200;

#define TSNE_OPS_AFFINITY_CPU_DECLS                                           \
  /* Returns the number of rows that hit max_iter before reaching the        \
     tolerance (their best beta is still written). */                         \
  template <typename T>                                                       \
  int64_t PerplexityAffinitiesCpu(const T* sq_dist, int64_t batch, int64_t n, \
                                  double perplexity, double tolerance,        \
                                  int max_iter, T* p_conditional, T* beta,    \
                                  const ParallelFor& parallel_for);           \
  /* Joint probabilities from conditional ones:                               \
       p[b,i,j] = max((pc[b,i,j] + pc[b,j,i]) / sum_b(pc + pc^T), eps),       \
     eps = 2.2e-16 (float64 machine epsilon, as scikit-learn), for i != j;    \
     p[b,i,i] = 0. Output is exactly symmetric. */                            \
  template <typename T>                                                       \
  void SymmetrizeAffinitiesCpu(const T* p_conditional, int64_t batch,         \
                               int64_t n, T* p,                               \
                               const ParallelFor& parallel_for);

TSNE_OPS_AFFINITY_CPU_DECLS
namespace baseline { TSNE_OPS_AFFINITY_CPU_DECLS }
namespace avx2 { TSNE_OPS_AFFINITY_CPU_DECLS }

#ifdef TSNE_OPS_WITH_CUDA
template <typename T>
size_t PerplexityAffinitiesWorkspaceBytes(int64_t batch, int64_t n);
// Same contract; the count of unconverged rows is written to the device int64
// *unconverged (may be nullptr).
template <typename T>
cudaError_t LaunchPerplexityAffinities(cudaStream_t stream, const T* sq_dist,
                                       int64_t batch, int64_t n,
                                       double perplexity, double tolerance,
                                       int max_iter, T* p_conditional, T* beta,
                                       int64_t* unconverged, void* workspace);
template <typename T>
size_t SymmetrizeAffinitiesWorkspaceBytes(int64_t batch, int64_t n);
template <typename T>
cudaError_t LaunchSymmetrizeAffinities(cudaStream_t stream,
                                       const T* p_conditional, int64_t batch,
                                       int64_t n, T* p, void* workspace);
#endif

}  // namespace kernels
}  // namespace tsne_ops

#endif  // TSNE_OPS_CC_KERNELS_AFFINITIES_H_
