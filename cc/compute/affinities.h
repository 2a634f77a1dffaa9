// Perplexity-calibrated affinities (the input side of t-SNE).
//
// For each row i of a square self-distance matrix d [batch, n, n], find the
// precision beta_i such that the conditional distribution
//   P(j|i) = exp(-beta_i d_ij) / sum_{k != i} exp(-beta_i d_ik),  j != i,
// has entropy log(perplexity) (natural log, nats) to within `tolerance`,
// searching at most `max_iter` steps. The diagonal is ignored on input and
// written as exactly zero; each row sums to 1. Rows are shifted by their
// smallest off-diagonal distance before exponentiating, so no row underflows.
//
// A row can only reach perplexity k if fewer than k of its points tie at its
// smallest distance (duplicates, binary or integer data): as beta grows the
// row's mass goes uniformly onto the m tied points and the entropy falls to
// log(m), never below. Such a row is searched up to the beta at which the
// limit is reached in the working precision (BetaLimit below), keeps that
// beta, is written as the limit (uniform on the tied points, zero elsewhere,
// what float64 and scikit-learn converge towards) and is counted as
// unconverged. No beta tried is NaN or overflows T.
#ifndef TSNE_OPS_CC_COMPUTE_AFFINITIES_H_
#define TSNE_OPS_CC_COMPUTE_AFFINITIES_H_

#include <cstdint>

#include "cc/compute/common.h"

#ifdef TSNE_OPS_WITH_CUDA
#include <cuda_runtime_api.h>
#endif

namespace tsne_ops {
namespace kernels {

// Defaults shared by every front end.
constexpr double kAffinityTolerance = 1e-5;  // nats
constexpr int kAffinityMaxIter = 200;

#if defined(__CUDACC__)
#define TSNE_OPS_HOST_DEVICE __host__ __device__
#else
#define TSNE_OPS_HOST_DEVICE
#endif

// exp(-kExponent) is exactly zero in T (below half the smallest subnormal:
// 2^-150 = e^-103.97 in float, 2^-1075 = e^-745.13 in double), whether exp
// is taken in T (CPU) or in double and rounded to T (CUDA); kMax is the
// largest finite T, so beta always fits in the beta output.
template <typename T>
struct BetaLimitTraits;
template <>
struct BetaLimitTraits<float> {
  static constexpr double kExponent = 110;
  static constexpr double kMax = 3.4028234663852886e38;
};
template <>
struct BetaLimitTraits<double> {
  static constexpr double kExponent = 750;
  static constexpr double kMax = 1.7976931348623157e308;
};

// The largest beta the search tries for a row whose shifted off-diagonal
// distances have smallest positive value `gap` (gap <= 0: every off-diagonal
// distance ties, P is uniform at any beta and `start`, the first beta, is
// kept). At beta = kExponent / gap every untied point has exp(-beta d) = 0
// in T: the row is exactly its beta -> infinity limit, so searching further
// changes nothing. Capped at kMax (a gap below kExponent / kMax), which also
// keeps -beta * d away from -inf * 0 = NaN.
template <typename T>
TSNE_OPS_HOST_DEVICE inline double BetaLimit(double gap, double start) {
  if (!(gap > 0)) return start;
  const double b = BetaLimitTraits<T>::kExponent / gap;  // +inf for a subnormal gap
  return b < BetaLimitTraits<T>::kMax ? b : BetaLimitTraits<T>::kMax;
}

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

#endif  // TSNE_OPS_CC_COMPUTE_AFFINITIES_H_
