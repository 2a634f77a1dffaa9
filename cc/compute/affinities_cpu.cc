// CPU perplexity calibration and symmetrisation.
//
// Each row's precision beta is found by a safeguarded Newton iteration on the
// entropy H(beta) (dH/dbeta = -beta Var_P(d)), falling back to bisection (or
// doubling while no upper bound is known) whenever the Newton step leaves the
// current bracket. This reaches the 1e-5 nat tolerance in a handful of passes
// over the row where plain bisection takes dozens.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "cc/compute/affinities.h"
#include "cc/compute/cpu_isa.h"
#include "cc/compute/simd.h"

namespace tsne_ops {
namespace kernels {
namespace TSNE_CPU_ISA {
namespace {

constexpr double kMachineEpsilon = 2.220446049250313e-16;  // float64, as scikit-learn

struct RowStats {
  double entropy;
  double variance;  // of the shifted distances under P
  double sum;
};

// The row's statistics from s0 = sum_j e_j, s1 = sum_j e_j d_j and
// s2 = sum_j e_j d_j^2, e_j = exp(-beta d_j).
RowStats FromSums(double s0, double s1, double s2, double beta) {
  const double mean = s1 / s0;
  RowStats r;
  r.sum = s0;
  r.entropy = std::log(s0) + beta * mean;
  r.variance = std::max(0.0, s2 / s0 - mean * mean);
  return r;
}

// Fills e[j] = exp(-beta * d[j]) (d already shifted to min 0, diagonal excluded
// by the caller) and returns the entropy and variance of the normalised row.
// Vectorised in double (simd.h Exp, ~1 ulp); the lanes' partial sums are
// combined in a fixed order, so the result depends on the data only.
RowStats Evaluate(const double* __restrict d, int64_t len, double beta, double* __restrict e) {
  using V = simd::Vec<double>;
  constexpr int L = simd::Traits<double>::L;
  V v0 = {}, v1 = {}, v2 = {};
  const V nb = simd::Set1(-beta);
  int64_t j = 0;
  for (; j + L <= len; j += L) {
    const V dj = simd::Load(d + j);
    const V ej = simd::Exp(nb * dj);
    simd::Store(e + j, ej);
    const V ed = ej * dj;
    v0 += ej;
    v1 += ed;
    v2 += ed * dj;
  }
  double s0 = simd::HSum(v0), s1 = simd::HSum(v1), s2 = simd::HSum(v2);
  for (; j < len; ++j) {
    const double dj = d[j];
    const double ej = std::exp(-beta * dj);
    e[j] = ej;
    s0 += ej;
    s1 += ej * dj;
    s2 += ej * dj * dj;
  }
  return FromSums(s0, s1, s2, beta);
}

// Float rows: exp in float, 8 lanes (AVX2). The lane sums are kept in float
// over blocks of 16 vectors and added to double sums block by block, so the
// entropy stays accurate to far below the 1e-5 nat tolerance.
RowStats Evaluate(const float* __restrict d, int64_t len, double beta, float* __restrict e) {
  using V = simd::Vec<float>;
  constexpr int L = simd::Traits<float>::L;
  constexpr int64_t kBlock = 16 * L;
  const V nb = simd::Set1(static_cast<float>(-beta));
  double s0 = 0, s1 = 0, s2 = 0;
  int64_t j = 0;
  while (j + L <= len) {
    const int64_t stop = std::min(len - (len - j) % L, j + kBlock);
    V v0 = {}, v1 = {}, v2 = {};
    for (; j < stop; j += L) {
      const V dj = simd::Load(d + j);
      const V ej = simd::Exp(nb * dj);
      simd::Store(e + j, ej);
      const V ed = ej * dj;
      v0 += ej;
      v1 += ed;
      v2 += ed * dj;
    }
    s0 += simd::HSum(v0);
    s1 += simd::HSum(v1);
    s2 += simd::HSum(v2);
  }
  for (; j < len; ++j) {
    const double dj = d[j];
    const float ej = std::exp(static_cast<float>(-beta) * d[j]);
    e[j] = ej;
    s0 += ej;
    s1 += ej * dj;
    s2 += ej * dj * dj;
  }
  return FromSums(s0, s1, s2, beta);
}

}  // namespace

template <typename T>
int64_t PerplexityAffinitiesCpu(const T* sq_dist, int64_t batch, int64_t n, double perplexity,
                                double tolerance, int max_iter, T* p_conditional, T* beta_out,
                                const ParallelFor& parallel_for) {
  const double target = std::log(perplexity);
  std::vector<int64_t> unconverged(batch * n, 0);
  parallel_for(batch * n, n * 40, [&](int64_t begin, int64_t end) {
    // Rows in T: float rows use the 8-lane float exp, double rows the double one.
    std::vector<T> d(n - 1), e(n - 1);
    for (int64_t u = begin; u < end; ++u) {
      const int64_t i = u % n;
      const T* row = sq_dist + u * n;
      // Off-diagonal entries, shifted by their minimum (exp-normalise trick:
      // the nearest neighbour gets weight 1, so the row sum is >= 1).
      std::copy(row, row + i, d.begin());
      std::copy(row + i + 1, row + n, d.begin() + i);
      const double dmin = *std::min_element(d.begin(), d.end());
      const double inf = std::numeric_limits<double>::infinity();
      double dsum = 0, gap = inf;  // gap: the smallest positive shifted distance
      for (auto& v : d) {
        v -= dmin;
        dsum += v;
        if (v > 0 && v < gap) gap = v;
      }
      const double dmean = dsum / (n - 1);
      const double start = dmean > 0 ? 1.0 / dmean : 1.0;
      // Every beta tried stays <= beta_max (affinities.h): finite in T, and
      // at beta_max a row that cannot reach the perplexity is its limit.
      const double beta_max = BetaLimit<T>(std::isinf(gap) ? 0.0 : gap, start);
      double beta = std::min(start, beta_max);
      double lo = 0, hi = inf;
      // |entropy - target|, +inf for a NaN entropy: a NaN never counts as
      // converged, nor as the best beta.
      auto miss = [&](const RowStats& r) {
        const double a = std::abs(r.entropy - target);
        return a == a ? a : inf;
      };
      RowStats st = Evaluate(d.data(), n - 1, beta, e.data());
      double best_beta = beta, best_err = miss(st);
      bool at_limit = false;  // stopped at beta_max with the entropy above target
      for (int it = 0; it < max_iter && !(miss(st) <= tolerance); ++it) {
        const double err = st.entropy - target;
        if (std::isnan(err)) break;
        if (err > 0) lo = beta; else hi = beta;  // entropy falls as beta grows
        double next = beta * st.variance > 0 ? beta + err / (beta * st.variance) : -1;
        if (!(next > lo && next < hi)) next = std::isinf(hi) ? beta * 2 : 0.5 * (lo + hi);
        next = std::min(next, beta_max);
        // No move left: at beta_max with the entropy still above target (the
        // row is its limit), or the bracket is down to adjacent doubles.
        if (next == beta) {
          at_limit = (beta == beta_max && err > 0);
          break;
        }
        beta = next;
        st = Evaluate(d.data(), n - 1, beta, e.data());
        if (miss(st) < best_err) {
          best_err = miss(st);
          best_beta = beta;
        }
      }
      if (!(miss(st) <= tolerance)) {
        unconverged[u] = 1;
        // A row at its limit keeps beta_max: the entropy only falls towards
        // log(#ties) as beta grows, so it is the best beta, and unlike the
        // first beta whose entropy rounds to the same value it does not
        // depend on how exp rounds (float here, double on the GPU).
        if (!at_limit && beta != best_beta) {
          beta = best_beta;
          st = Evaluate(d.data(), n - 1, beta, e.data());
        }
      }
      T* out = p_conditional + u * n;
      const double inv = 1.0 / st.sum;
      for (int64_t j = 0; j < i; ++j) out[j] = static_cast<T>(e[j] * inv);
      out[i] = 0;
      for (int64_t j = i + 1; j < n; ++j) out[j] = static_cast<T>(e[j - 1] * inv);
      beta_out[u] = static_cast<T>(beta);
    }
  });
  int64_t count = 0;
  for (int64_t v : unconverged) count += v;
  return count;
}

template <typename T>
void SymmetrizeAffinitiesCpu(const T* p_conditional, int64_t batch, int64_t n, T* p,
                             const ParallelFor& parallel_for) {
  // Per-row sums in double, then a serial fixed-order total: deterministic.
  std::vector<double> row_sum(batch * n);
  parallel_for(batch * n, n, [&](int64_t begin, int64_t end) {
    for (int64_t u = begin; u < end; ++u) {
      const T* r = p_conditional + u * n;
      double s = 0;
      for (int64_t j = 0; j < n; ++j) s += r[j];
      row_sum[u] = s;
    }
  });
  constexpr int64_t kBlock = 64;
  const int64_t blocks = (n + kBlock - 1) / kBlock;
  for (int64_t b = 0; b < batch; ++b) {
    double total = 0;
    for (int64_t i = 0; i < n; ++i) {
      const int64_t u = b * n + i;
      total += row_sum[u] - static_cast<double>(p_conditional[u * n + i]);  // diagonal ignored
    }
    total *= 2;  // sum of P + P^T
    const double scale = total > 0 ? 1.0 / total : 0.0;
    const T* pc = p_conditional + b * n * n;
    T* pb = p + b * n * n;
    // Tile pairs (bi, bj), bj >= bi: S = (P[I,J] + P[J,I]^T) * scale computed
    // once, written to (I, J) and, transposed, to (J, I): the output is
    // exactly symmetric. The transposes go through an L1 buffer, so both
    // tiles are read and written row by row.
    parallel_for(blocks, n * kBlock * 4, [&](int64_t begin, int64_t end) {
      std::vector<T> buf(kBlock * kBlock);
      for (int64_t bi = begin; bi < end; ++bi) {
        const int64_t i0 = bi * kBlock, i1 = std::min(n, i0 + kBlock);
        for (int64_t bj = bi; bj < blocks; ++bj) {
          const int64_t j0 = bj * kBlock, j1 = std::min(n, j0 + kBlock);
          // buf[(i - i0) * kBlock + (j - j0)] = pc[j, i]
          simd::Transpose(pc + j0 * n + i0, n, j1 - j0, i1 - i0, buf.data(), kBlock);
          for (int64_t i = i0; i < i1; ++i) {
            const T* a = pc + i * n;
            T* s = buf.data() + (i - i0) * kBlock - j0;
#pragma omp simd
            for (int64_t j = j0; j < j1; ++j) {
              const double v = (static_cast<double>(a[j]) + static_cast<double>(s[j])) * scale;
              s[j] = static_cast<T>(v < kMachineEpsilon ? kMachineEpsilon : v);  // std::max semantics
            }
            if (bi == bj) s[i] = 0;
            std::memcpy(pb + i * n + j0, s + j0, (j1 - j0) * sizeof(T));
          }
          if (bi != bj) simd::Transpose(buf.data(), kBlock, i1 - i0, j1 - j0, pb + j0 * n + i0, n);
        }
      }
    });
  }
}

template int64_t PerplexityAffinitiesCpu<float>(const float*, int64_t, int64_t, double, double,
                                                int, float*, float*, const ParallelFor&);
template int64_t PerplexityAffinitiesCpu<double>(const double*, int64_t, int64_t, double, double,
                                                 int, double*, double*, const ParallelFor&);
template void SymmetrizeAffinitiesCpu<float>(const float*, int64_t, int64_t, float*,
                                             const ParallelFor&);
template void SymmetrizeAffinitiesCpu<double>(const double*, int64_t, int64_t, double*,
                                              const ParallelFor&);

}  // namespace TSNE_CPU_ISA
}  // namespace kernels
}  // namespace tsne_ops
