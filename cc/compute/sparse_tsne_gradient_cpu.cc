// CPU t-SNE gradient on a sparse P (contract in sparse_tsne_gradient.h).
//
// The work is split as in the dense kernel (tsne_gradient_cpu.cc): for every
// row i the attractive sum A_i, the unnormalised repulsive sum R_i, and the
// row's shares of Z, sum p, sum p log p and sum p log u, then
// grad_i = c (ex A_i - s R_i / Z) once Z is known.
//
// Attraction walks row i's stored entries (CSR, built from the canonical COO
// by the caller): O(nnz d), each row written by one thread, no atomics.
// Repulsion is exact: every ordered pair (i, j), j != i. A work unit is a
// block of kRows rows; it sweeps the columns in tiles of kCols points (y
// stored transposed, kCols * d values stay in L1 while the block's rows run
// over them), sums a tile in T with vector lanes and adds the tile's sum to a
// double accumulator per row, so float keeps its accuracy at large n. Unlike
// the dense kernel, the pair symmetry is not used: it would need a private
// O(n d) accumulator per unit, and the sparse path exists for n where that
// memory matters; one-sided rows need none (extra memory O(n d) in all).
//
// Determinism: a row's sums depend only on the tiling (fixed by n), never on
// which thread runs the row; Z and the KL terms are reduced from per-row
// values serially, in row order. So the result is bit-identical whatever the
// thread count.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <vector>

#include "cc/compute/cpu_isa.h"
#include "cc/compute/simd.h"
#include "cc/compute/sparse_tsne_gradient.h"

namespace tsne_ops {
namespace kernels {
namespace TSNE_CPU_ISA {
namespace {

using simd::HSum;
using simd::Load;
using simd::Set1;

constexpr int64_t kRows = 32;    // rows per work unit
constexpr int64_t kCols = 1024;  // columns per tile

struct RowSums {
  double z = 0, p_sum = 0, p_log_p = 0, p_log_u = 0;
};

template <typename T, int D, bool kUnitDof>
struct Repulsion {
  using V = simd::Vec<T>;
  static constexpr int L = simd::Traits<T>::L;

  // r[k] += sum_{j in [ja, jb)} w_ij u_ij (y_ik - y_jk), z += sum w_ij; the
  // caller excludes j = i. dd is the runtime d when D == 0.
  static void Range(const T* yt, int64_t n, int64_t dd, const T* yi, int64_t ja, int64_t jb,
                    T inv_alpha, T half_exp, double* r, double& z) {
    if constexpr (D > 0) {
      V vr[3] = {}, vz = {};
      T sr[3] = {}, sz = 0;
      int64_t j = ja;
      for (; j + L <= jb; j += L) {
        V dk[3];
        V dist = {};
        for (int k = 0; k < D; ++k) {
          dk[k] = Set1(yi[k]) - Load(yt + k * n + j);
          dist += dk[k] * dk[k];
        }
        const V a = kUnitDof ? dist + T(1) : dist * inv_alpha + T(1);
        const V u = T(1) / a;
        const V w = kUnitDof ? u : simd::Exp(-simd::Log(a) * half_exp);
        const V wu = w * u;
        for (int k = 0; k < D; ++k) vr[k] += wu * dk[k];
        vz += w;
      }
      for (; j < jb; ++j) {
        T dk[3], dist = 0;
        for (int k = 0; k < D; ++k) {
          dk[k] = yi[k] - yt[k * n + j];
          dist += dk[k] * dk[k];
        }
        const T a = kUnitDof ? dist + T(1) : dist * inv_alpha + T(1);
        const T u = T(1) / a;
        const T w = kUnitDof ? u : std::exp(-std::log(a) * half_exp);
        for (int k = 0; k < D; ++k) sr[k] += w * u * dk[k];
        sz += w;
      }
      for (int k = 0; k < D; ++k) r[k] += static_cast<double>(HSum(vr[k]) + sr[k]);
      z += static_cast<double>(HSum(vz) + sz);
    } else {
      std::vector<T> acc(dd, T(0));
      T sz = 0;
      for (int64_t j = ja; j < jb; ++j) {
        T dist = 0;
        for (int64_t k = 0; k < dd; ++k) {
          const T t = yi[k] - yt[k * n + j];
          dist += t * t;
        }
        const T a = kUnitDof ? dist + T(1) : dist * inv_alpha + T(1);
        const T u = T(1) / a;
        const T w = kUnitDof ? u : std::exp(-std::log(a) * half_exp);
        for (int64_t k = 0; k < dd; ++k) acc[k] += w * u * (yi[k] - yt[k * n + j]);
        sz += w;
      }
      for (int64_t k = 0; k < dd; ++k) r[k] += static_cast<double>(acc[k]);
      z += static_cast<double>(sz);
    }
  }

  // Rows [i0, i1) of one batch element: rep[(i - i0) * d + k] and sums[i - i0].
  static void Block(const T* yt, int64_t n, int64_t d, int64_t i0, int64_t i1, T inv_alpha,
                    T half_exp, double* rep, RowSums* sums) {
    std::vector<T> yi(d);
    for (int64_t j0 = 0; j0 < n; j0 += kCols) {
      const int64_t j1 = std::min(n, j0 + kCols);
      for (int64_t i = i0; i < i1; ++i) {
        for (int64_t k = 0; k < d; ++k) yi[k] = yt[k * n + i];
        double* r = rep + (i - i0) * d;
        double& z = sums[i - i0].z;
        // The diagonal is skipped, not subtracted afterwards.
        if (i >= j0 && i < j1) {
          Range(yt, n, d, yi.data(), j0, i, inv_alpha, half_exp, r, z);
          Range(yt, n, d, yi.data(), i + 1, j1, inv_alpha, half_exp, r, z);
        } else {
          Range(yt, n, d, yi.data(), j0, j1, inv_alpha, half_exp, r, z);
        }
      }
    }
  }
};

template <typename T>
void RepulsionBlock(bool one, const T* yt, int64_t n, int64_t d, int64_t i0, int64_t i1,
                    T inv_alpha, T half_exp, double* rep, RowSums* sums) {
#define TSNE_REP(DD)                                                                          \
  (one ? Repulsion<T, DD, true>::Block(yt, n, d, i0, i1, inv_alpha, half_exp, rep, sums)    \
       : Repulsion<T, DD, false>::Block(yt, n, d, i0, i1, inv_alpha, half_exp, rep, sums))
  switch (d) {
    case 1: TSNE_REP(1); break;
    case 2: TSNE_REP(2); break;
    case 3: TSNE_REP(3); break;
    default: TSNE_REP(0); break;
  }
#undef TSNE_REP
}

// Row i's stored entries: att[k] = sum p_ij u_ij (y_ik - y_jk) and the
// row's p sums. Scalar: a row holds about 3 x perplexity entries, gathered.
// Coordinate k of point j is yb[k * sk + j * sp]: the exact kernel passes its
// transposed copy (sk = n, sp = 1), the attraction-only kernel y itself
// (sk = 1, sp = d: one cache line per neighbour, not d).
// D > 0 fixes d at compile time (the loops over k unroll); D == 0 reads d.
// kCheck: the columns and values are the caller's, unchecked; the row stops
// at the first column outside [0, n) or value not finite and >= 0 and
// returns its entry (else -1), before reading y.
constexpr int64_t kPrefetch = 16;

template <typename T, int D, bool kCheck>
int64_t AttractionD(const int64_t* row_ptr, const int64_t* cols, const T* pv, const T* yb,
                    int64_t sk, int64_t sp, int64_t dd, int64_t n, int64_t u, int64_t i,
                    double inv_alpha, bool want_kl, double* att, RowSums& s) {
  const int64_t d = D > 0 ? D : dd;
  // Local accumulators (added to att and s at the end: both start at zero
  // for the row, so the bits are those of summing in place) keep the sums in
  // registers: the compiler cannot prove att and s do not alias yb.
  double local[D > 0 ? D : 1] = {};
  double* acc = D > 0 ? local : att;
  double p_sum = 0, p_log_p = 0, p_log_u = 0;
  int64_t bad = -1;
  const int64_t end = row_ptr[u + 1];
  for (int64_t e = row_ptr[u]; e < end; ++e) {
    const int64_t j = cols[e];
    if (kCheck && (CsrColumnBad(j, n) || CsrValueBad(pv[e]))) {
      bad = e;
      break;
    }
    // The neighbours are scattered over y (a kNN graph): fetch the one
    // kPrefetch entries ahead so its cache miss overlaps this arithmetic
    // (a hint: never faults, changes no result; checked columns only).
    if (e + kPrefetch < end) {
      const int64_t jp = cols[e + kPrefetch];
      if (!kCheck || !CsrColumnBad(jp, n)) __builtin_prefetch(yb + jp * sp);
    }
    if (j == i) continue;
    const double p = pv[e];
    double dist = 0;
    for (int64_t k = 0; k < d; ++k) {
      const double t =
          static_cast<double>(yb[k * sk + i * sp]) - static_cast<double>(yb[k * sk + j * sp]);
      dist += t * t;
    }
    const double a = dist * inv_alpha + 1.0;
    const double q = p / a;  // p_ij u_ij
    for (int64_t k = 0; k < d; ++k)
      acc[k] += q * (static_cast<double>(yb[k * sk + i * sp]) -
                     static_cast<double>(yb[k * sk + j * sp]));
    p_sum += p;
    if (want_kl) {
      if (p > 0) p_log_p += p * std::log(p);
      p_log_u -= p * std::log(a);
    }
  }
  if (D > 0)
    for (int64_t k = 0; k < d; ++k) att[k] += local[k];
  s.p_sum += p_sum;
  s.p_log_p += p_log_p;
  s.p_log_u += p_log_u;
  return bad;
}

template <typename T, bool kCheck = false>
int64_t Attraction(const int64_t* row_ptr, const int64_t* cols, const T* pv, const T* yb,
                   int64_t sk, int64_t sp, int64_t d, int64_t n, int64_t u, int64_t i,
                   double inv_alpha, bool want_kl, double* att, RowSums& s) {
#define TSNE_ATT(DD) \
  AttractionD<T, DD, kCheck>(row_ptr, cols, pv, yb, sk, sp, d, n, u, i, inv_alpha, want_kl, att, s)
  switch (d) {
    case 1: return TSNE_ATT(1);
    case 2: return TSNE_ATT(2);
    case 3: return TSNE_ATT(3);
    default: return TSNE_ATT(0);
  }
#undef TSNE_ATT
}

}  // namespace

template <typename T>
void SparseTsneGradientCpu(const int64_t* row_ptr, const int64_t* cols, const T* p_values,
                           const T* y, int64_t batch, int64_t n, int64_t d,
                           const TsneGradientOptions& options, T* grad, T* kl,
                           const ParallelFor& parallel_for) {
  const double alpha = options.dof;
  const bool one = (alpha == 1.0);
  const bool want_kl = (kl != nullptr);
  const T inv_alpha = static_cast<T>(1.0 / alpha);
  const T half_exp = static_cast<T>((alpha + 1.0) / 2.0);
  const double c = 2.0 * (alpha + 1.0) / alpha;
  const int64_t blocks = (n + kRows - 1) / kRows;
  std::vector<T> yt(batch * d * n);
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t i = 0; i < n; ++i)
      for (int64_t k = 0; k < d; ++k) yt[(b * d + k) * n + i] = y[(b * n + i) * d + k];
  std::vector<double> att(batch * n * d, 0.0), rep(batch * n * d, 0.0);
  std::vector<RowSums> sums(batch * n);
  const int64_t cost = n * d * (one ? 6 : 40) * kRows;
  parallel_for(batch * blocks, cost, [&](int64_t begin, int64_t end) {
    for (int64_t unit = begin; unit < end; ++unit) {
      const int64_t b = unit / blocks, i0 = (unit % blocks) * kRows;
      const int64_t i1 = std::min(n, i0 + kRows);
      const T* ytb = yt.data() + b * d * n;
      RepulsionBlock<T>(one, ytb, n, d, i0, i1, inv_alpha, half_exp,
                        rep.data() + (b * n + i0) * d, sums.data() + b * n + i0);
      for (int64_t i = i0; i < i1; ++i) {
        Attraction<T>(row_ptr, cols, p_values, ytb, n, 1, d, n, b * n + i, i, 1.0 / alpha,
                      want_kl, att.data() + (b * n + i) * d, sums[b * n + i]);
      }
    }
  });
  for (int64_t b = 0; b < batch; ++b) {
    // Serial, in row order: the totals do not depend on the sharding.
    double z = 0, s = 0, plp = 0, plu = 0;
    for (int64_t i = 0; i < n; ++i) {
      const RowSums& r = sums[b * n + i];
      z += r.z;
      s += r.p_sum;
      plp += r.p_log_p;
      plu += r.p_log_u;
    }
    if (grad != nullptr) {
      const double rep_scale = (options.scale_repulsion_by_p_sum ? s : 1.0) / z;
      const double ca = c * options.exaggeration, cr = c * rep_scale;
      for (int64_t e = b * n * d; e < (b + 1) * n * d; ++e)
        grad[e] = static_cast<T>(ca * att[e] - cr * rep[e]);
    }
    if (kl != nullptr) {
      // KL = sum p log p - sum p log w + S log Z, log w = ((alpha+1)/2) log u.
      kl[b] = static_cast<T>(plp - 0.5 * (alpha + 1.0) * plu + s * std::log(z));
    }
  }
}

template <typename T>
void SparseTsneGradientFromRepulsionCpu(const int64_t* row_ptr, const int64_t* cols,
                                        const T* p_values, const T* y, int64_t batch,
                                        int64_t n, int64_t d, const TsneGradientOptions& options,
                                        const T* repulsion, const T* z, T* grad, T* kl,
                                        const ParallelFor& parallel_for,
                                        int64_t* first_bad_entry) {
  const double alpha = options.dof;
  const bool want_kl = (kl != nullptr);
  const double c = 2.0 * (alpha + 1.0) / alpha;
  std::vector<double> att(batch * n * d, 0.0);
  std::vector<RowSums> sums(batch * n);
  // Only the attraction runs here (O(nnz d)); the same row function as the
  // exact kernel, so the two paths differ only in where R and Z come from.
  // Checking the caller's columns and values there costs a compare per entry
  // it reads anyway (a separate pass would read them twice: the value check
  // alone was a fifth of the op's time at 70,000 points).
  const int64_t nnz = row_ptr[batch * n];
  std::atomic<int64_t> first_bad{nnz};
  parallel_for(batch * n, 64 * d * 8, [&](int64_t begin, int64_t end) {
    for (int64_t u = begin; u < end; ++u) {
      const int64_t b = u / n, i = u % n;
      if (first_bad_entry == nullptr) {
        Attraction<T>(row_ptr, cols, p_values, y + b * n * d, 1, d, d, n, u, i, 1.0 / alpha,
                      want_kl, att.data() + u * d, sums[u]);
      } else {
        const int64_t bad = Attraction<T, true>(row_ptr, cols, p_values, y + b * n * d, 1, d, d,
                                                n, u, i, 1.0 / alpha, want_kl,
                                                att.data() + u * d, sums[u]);
        if (bad >= 0) AtomicMin(&first_bad, bad);
      }
    }
  });
  if (first_bad_entry != nullptr) {
    *first_bad_entry = first_bad.load();
    if (*first_bad_entry < nnz) return;
  }
  for (int64_t b = 0; b < batch; ++b) {
    double s = 0, plp = 0, plu = 0;
    for (int64_t i = 0; i < n; ++i) {
      const RowSums& r = sums[b * n + i];
      s += r.p_sum;
      plp += r.p_log_p;
      plu += r.p_log_u;
    }
    const double zb = static_cast<double>(z[b]);
    if (grad != nullptr) {
      const double rep_scale = (options.scale_repulsion_by_p_sum ? s : 1.0) / zb;
      const double ca = c * options.exaggeration, cr = c * rep_scale;
      for (int64_t e = b * n * d; e < (b + 1) * n * d; ++e)
        grad[e] = static_cast<T>(ca * att[e] - cr * static_cast<double>(repulsion[e]));
    }
    if (kl != nullptr) kl[b] = static_cast<T>(plp - 0.5 * (alpha + 1.0) * plu + s * std::log(zb));
  }
}

#define TSNE_OPS_INSTANTIATE_FROM_REP(T)                                                      \
  template void SparseTsneGradientFromRepulsionCpu<T>(                                        \
      const int64_t*, const int64_t*, const T*, const T*, int64_t, int64_t, int64_t,          \
      const TsneGradientOptions&, const T*, const T*, T*, T*, const ParallelFor&, int64_t*);
TSNE_OPS_INSTANTIATE_FROM_REP(float)
TSNE_OPS_INSTANTIATE_FROM_REP(double)
#undef TSNE_OPS_INSTANTIATE_FROM_REP

template void SparseTsneGradientCpu<float>(const int64_t*, const int64_t*, const float*,
                                           const float*, int64_t, int64_t, int64_t,
                                           const TsneGradientOptions&, float*, float*,
                                           const ParallelFor&);
template void SparseTsneGradientCpu<double>(const int64_t*, const int64_t*, const double*,
                                            const double*, int64_t, int64_t, int64_t,
                                            const TsneGradientOptions&, double*, double*,
                                            const ParallelFor&);

}  // namespace TSNE_CPU_ISA
}  // namespace kernels
}  // namespace tsne_ops
