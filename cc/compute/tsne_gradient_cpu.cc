// CPU fused t-SNE gradient.
//
// For every row i we need the attractive sum A_i = sum_j p_ij u_ij (y_i - y_j),
// the unnormalised repulsive sum R_i = sum_j w_ij u_ij (y_i - y_j), the
// normaliser Z = sum w_ij and (when asked) the KL terms; then
// grad_i = c (ex A_i - s R_i / Z). P is read exactly once and no N x N
// temporary exists.
//
// d <= 3 (the embedding case) uses the pair symmetry: u_ij and w_ij are
// computed once per unordered pair {i, j} and applied to both rows, row i
// with p_ij and row j with p_ji (both are read, so a non-symmetric P is still
// handled exactly). The work is cut into 64 x 64 tiles (I, J), J >= I; an
// off-diagonal tile reads P[I, J] row-major and P[J, I] through a transposed
// copy, keeps row i's sums in registers and row j's sums in a small column
// buffer in L1. Diagonal tiles are evaluated one-sidedly (every ordered pair).
//
// Determinism: the rows are grouped into "super-blocks" whose size depends on
// n only; a work unit is the pair of super-blocks {s, nsb-1-s} (so units have
// about equal work), and it owns a private accumulator of size 2 d n (double)
// for every row its tiles touch. Units are reduced afterwards serially, in
// unit order, so the result is bit-identical whatever the thread count or the
// sharding TensorFlow's ParallelFor picks. Memory: at most ~16 accumulators
// of 2 d n doubles per batch element, i.e. O(batch n d).
//
// Vectorisation: GCC vector extensions (simd.h), 8 float / 4 double lanes in
// the AVX2 build; float reciprocals are rcp + one Newton step (~2 ulp),
// double ones exact divisions; log and exp (KL, dof != 1) are vectorised.
// float with dof = 1 and no KL, and d > 3, use the plain one-row-at-a-time
// kernel instead (see TsneGradientCpu for why).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "cc/compute/cpu_isa.h"
#include "cc/compute/simd.h"
#include "cc/compute/tsne_gradient.h"

namespace tsne_ops {
namespace kernels {
namespace TSNE_CPU_ISA {
namespace {

using simd::HSum;
using simd::Load;
using simd::Set1;
using simd::Store;
using simd::Transpose;

constexpr int64_t kT = 64;  // tile edge (rows and columns)

// ---------------------------------------------------------- pair kernel ----
struct UnitSums {
  double z = 0, p_sum = 0, p_log_p = 0, p_log_u = 0;
};

template <typename T, int D, bool kUnitDof, bool kComputeKl, bool kScaleByPSum>
struct Kernel {
  using V = simd::Vec<T>;
  static constexpr int L = simd::Traits<T>::L;

  // u = 1 / (1 + dist / alpha), w = u^half_exp, lu = log u (when needed).
  template <typename X>
  static inline void UW(X dist, T inv_alpha, T half_exp, X& u, X& w, X& lu) {
    const X a = kUnitDof ? dist + T(1) : dist * inv_alpha + T(1);
    // A true division: the divider runs beside the FMA pipes, which are the
    // bottleneck here (rcp + Newton would cost them two more operations).
    u = T(1) / a;
    if constexpr (!kUnitDof || kComputeKl) lu = -simd::Log(a);
    if constexpr (kUnitDof) {
      w = u;
    } else {
      w = simd::Exp(lu * half_exp);
    }
  }
  template <typename X>
  static inline X XLogX(X p) {
    return p > T(0) ? p * simd::Log(p) : X{};
  }
  static inline T XLogX(T p) { return p > T(0) ? p * std::log(p) : T(0); }

  // One vector of lanes of the symmetric kernel: pairs (i, j_l). ys[k]: the
  // lanes' coordinate k; pij, pji: p[i, j_l] and p[j_l, i]; colp[k * ldc + l]:
  // the lanes' column sums (k < D attractive, D + k repulsive). kMasked: only
  // the first `valid` lanes count in Z (the others are padding).
  template <bool kMasked>
  static inline void SymStep(const T* yi, const T* const* ys, const T* pijp, const T* pjip,
                             T* colp, int64_t ldc, T inv_alpha, T half_exp, V* va, V* vr, V& vz,
                             V& vps, V& vplp, V& vplu, int valid = L) {
    V dk[3];
    for (int k = 0; k < D; ++k) dk[k] = Set1(yi[k]) - Load(ys[k]);
    V dist = dk[0] * dk[0];
    for (int k = 1; k < D; ++k) dist += dk[k] * dk[k];
    V u, w, lu, lpij, lpji;
    const V pij = Load(pijp), pji = Load(pjip);
    if constexpr (kComputeKl) {
      // The three logarithms of a KL pair share one division (double).
      const V a = kUnitDof ? dist + T(1) : dist * inv_alpha + T(1);
      u = T(1) / a;
      V la;
      simd::Log3(a, pij, pji, la, lpij, lpji);
      lu = -la;
      if constexpr (kUnitDof) {
        w = u;
      } else {
        w = simd::Exp(lu * half_exp);
      }
    } else {
      UW(dist, inv_alpha, half_exp, u, w, lu);
    }
    const V wu = w * u, pu_ij = pij * u, pu_ji = pji * u;
    for (int k = 0; k < D; ++k) {
      va[k] += pu_ij * dk[k];
      vr[k] += wu * dk[k];
      Store(colp + k * ldc, Load(colp + k * ldc) - pu_ji * dk[k]);
      Store(colp + (D + k) * ldc, Load(colp + (D + k) * ldc) - wu * dk[k]);
    }
    if constexpr (kMasked) {
      V m = {};
      for (int l = 0; l < valid; ++l) m[l] = T(1);
      vz += w * m;
    } else {
      vz += w;
    }
    if constexpr (kScaleByPSum) vps += pij + pji;
    if constexpr (kComputeKl) {
      vplu += (pij + pji) * lu;
      vplp += (pij > T(0) ? pij * lpij : V{}) + (pji > T(0) ? pji * lpji : V{});
    }
  }

  // One vector of lanes, row side only: pairs (i, j_l), p[i, j_l] = pjp[l].
  // kMasked: z counts lane l only where zmask[l] = 1.
  template <bool kMasked>
  static inline void RowStep(const T* yi, const T* const* ys, const T* pjp, T inv_alpha,
                             T half_exp, V* va, V* vr, V& vz, V& vps, V& vplp, V& vplu,
                             V zmask = V{}) {
    V dk[3];
    for (int k = 0; k < D; ++k) dk[k] = Set1(yi[k]) - Load(ys[k]);
    V dist = dk[0] * dk[0];
    for (int k = 1; k < D; ++k) dist += dk[k] * dk[k];
    V u, w, lu;
    UW(dist, inv_alpha, half_exp, u, w, lu);
    const V pj = Load(pjp);
    const V pu = pj * u, wu = w * u;
    for (int k = 0; k < D; ++k) {
      va[k] += pu * dk[k];
      vr[k] += wu * dk[k];
    }
    if constexpr (kMasked) {
      vz += w * zmask;
    } else {
      vz += w;
    }
    if constexpr (kScaleByPSum) vps += pj;
    if constexpr (kComputeKl) {
      vplu += pj * lu;
      vplp += XLogX(pj);
    }
  }

  // Row i of a diagonal tile: every column j in [ja, jb) but i, row side
  // only. Vectors holding the diagonal or the tile's end run on padded
  // copies (y_j = y_i and p = 0 in the lanes that do not count, which then
  // add nothing but w = 1 to Z: masked).
  static void DiagRow(const T* __restrict prow, const T* __restrict yt, int64_t n,
                      const T* yi, int64_t i, int64_t ja, int64_t jb, T inv_alpha, T half_exp,
                      double* r, UnitSums& s) {
    V va[3] = {}, vr[3] = {};
    V vz = {}, vps = {}, vplp = {}, vplu = {};
    for (int64_t j = ja; j < jb; j += L) {
      const T* ys[3];
      if (j + L <= jb && !(i >= j && i < j + L)) {
        for (int k = 0; k < D; ++k) ys[k] = yt + k * n + j;
        RowStep<false>(yi, ys, prow + j, inv_alpha, half_exp, va, vr, vz, vps, vplp, vplu);
      } else {
        T ybuf[3][L], pbuf[L];
        V m;
        for (int l = 0; l < L; ++l) {
          const bool ok = j + l < jb && j + l != i;
          for (int k = 0; k < D; ++k) ybuf[k][l] = ok ? yt[k * n + j + l] : yi[k];
          pbuf[l] = ok ? prow[j + l] : T(0);
          m[l] = ok ? T(1) : T(0);
        }
        for (int k = 0; k < D; ++k) ys[k] = ybuf[k];
        RowStep<true>(yi, ys, pbuf, inv_alpha, half_exp, va, vr, vz, vps, vplp, vplu, m);
      }
    }
    for (int k = 0; k < D; ++k) {
      r[k] += HSum(va[k]);
      r[D + k] += HSum(vr[k]);
    }
    s.z += HSum(vz);
    if constexpr (kScaleByPSum) s.p_sum += HSum(vps);
    if constexpr (kComputeKl) {
      s.p_log_p += HSum(vplp);
      s.p_log_u += HSum(vplu);
    }
  }

  // Off-diagonal tile: rows [i0, i1), columns [j0, j1), every j > every i.
  // pt[(i - i0) * kT + (j - j0)] = p[j, i]. Row sums go to row[(i - i0) * 2D
  // + {k, D + k}] (double), column sums to col[{k, D + k} * kT + (j - j0)].
  // While row i runs, row (i - i0) of the next tile's two P blocks (pf_a,
  // pf_b: first rows, stride n; pf_rows valid rows) is prefetched into L2: the
  // block read through the transpose has no sequential stream to follow.
  static void Off(const T* __restrict p, const T* __restrict yt, int64_t n, int64_t i0,
                  int64_t i1, int64_t j0, int64_t j1, const T* __restrict pt, T* __restrict col,
                  double* __restrict row, T inv_alpha, T half_exp, UnitSums& s,
                  const T* pf_a, int64_t pf_a_rows, const T* pf_b, int64_t pf_b_rows) {
    const int64_t wdt = j1 - j0, wv = wdt - wdt % L;
    const T* ytj[3];
    for (int k = 0; k < D; ++k) ytj[k] = yt + k * n + j0;
    V vz = {}, vps = {}, vplp = {}, vplu = {};
    for (int64_t i = i0; i < i1; ++i) {
      T yi[3];
      for (int k = 0; k < D; ++k) yi[k] = yt[k * n + i];
      V va[3] = {}, vr[3] = {};
      const T* prow = p + i * n + j0;
      const T* ptr = pt + (i - i0) * kT;
      if (i - i0 < pf_a_rows) {
        const char* a = reinterpret_cast<const char*>(pf_a + (i - i0) * n);
        for (int64_t off = 0; off < kT * int64_t(sizeof(T)); off += 64) __builtin_prefetch(a + off, 0, 2);
      }
      if (i - i0 < pf_b_rows) {
        const char* b = reinterpret_cast<const char*>(pf_b + (i - i0) * n);
        for (int64_t off = 0; off < kT * int64_t(sizeof(T)); off += 64) __builtin_prefetch(b + off, 0, 2);
      }
      for (int64_t jj = 0; jj < wv; jj += L) {
        const T* ys[3];
        for (int k = 0; k < D; ++k) ys[k] = ytj[k] + jj;
        SymStep<false>(yi, ys, prow + jj, ptr + jj, col + jj, kT, inv_alpha, half_exp, va, vr, vz,
                       vps, vplp, vplu);
      }
      if (wv < wdt) {
        // Tail: one vector step on zero-padded copies. Padded lanes have
        // y_j = y_i and p = 0, so they add nothing but w = 1 to Z: masked.
        const int64_t rem = wdt - wv;
        T ybuf[3][L], pa[L] = {}, pb[L] = {}, cbuf[2 * D * L];
        const T* ys[3];
        for (int k = 0; k < D; ++k) {
          for (int l = 0; l < L; ++l) ybuf[k][l] = l < rem ? ytj[k][wv + l] : yi[k];
          ys[k] = ybuf[k];
        }
        for (int l = 0; l < rem; ++l) {
          pa[l] = prow[wv + l];
          pb[l] = ptr[wv + l];
        }
        for (int k = 0; k < 2 * D; ++k)
          for (int l = 0; l < L; ++l) cbuf[k * L + l] = l < rem ? col[k * kT + wv + l] : T(0);
        SymStep<true>(yi, ys, pa, pb, cbuf, L, inv_alpha, half_exp, va, vr, vz, vps, vplp, vplu,
                      rem);
        for (int k = 0; k < 2 * D; ++k)
          for (int l = 0; l < rem; ++l) col[k * kT + wv + l] = cbuf[k * L + l];
      }
      double* r = row + (i - i0) * 2 * D;
      for (int k = 0; k < D; ++k) {
        r[k] += HSum(va[k]);
        r[D + k] += HSum(vr[k]);
      }
    }
    // Each unordered pair stands for two ordered ones in Z.
    s.z += 2.0 * static_cast<double>(HSum(vz));
    if constexpr (kScaleByPSum) s.p_sum += HSum(vps);
    if constexpr (kComputeKl) {
      s.p_log_p += HSum(vplp);
      s.p_log_u += HSum(vplu);
    }
  }

  // One work unit: super-blocks sb_a and sb_b (may be equal) of `sbr` rows.
  // acc is [2D][n] doubles, zeroed here.
  static void Unit(const T* p, const T* yt, int64_t n, int64_t sbr, int64_t sb_a, int64_t sb_b,
                   T inv_alpha, T half_exp, double* acc, UnitSums& s) {
    std::fill(acc, acc + 2 * D * n, 0.0);
    std::vector<T> pt(kT * kT), col(2 * D * kT);
    std::vector<double> row(sbr * 2 * D);
    for (int64_t sb : {sb_a, sb_b}) {
      const int64_t r0 = sb * sbr, r1 = std::min(n, r0 + sbr);
      std::fill(row.begin(), row.end(), 0.0);
      for (int64_t j0 = r0; j0 < n; j0 += kT) {
        const int64_t j1 = std::min(n, j0 + kT);
        bool any_col = false;
        for (int64_t i0 = r0; i0 < r1 && i0 <= j0; i0 += kT) {
          const int64_t i1 = std::min(r1, i0 + kT);
          if (i0 == j0) {
            // Diagonal tile: every ordered pair, row side only.
            for (int64_t i = i0; i < i1; ++i) {
              T yi[3];
              for (int k = 0; k < D; ++k) yi[k] = yt[k * n + i];
              DiagRow(p + i * n, yt, n, yi, i, i0, i1, inv_alpha, half_exp,
                      row.data() + (i - r0) * 2 * D, s);
            }
          } else {
            if (!any_col) std::fill(col.begin(), col.end(), T(0));
            any_col = true;
            Transpose(p + j0 * n + i0, n, j1 - j0, i1 - i0, pt.data(), kT);
            // The next off-diagonal tile in this loop order, for prefetching.
            int64_t ni0 = i0 + kT, nj0 = j0;
            if (ni0 >= r1 || ni0 >= nj0) {
              ni0 = r0;
              nj0 = j0 + kT;
              if (ni0 == nj0) ni0 = nj0 + kT;  // diagonal tile: nothing to fetch
            }
            const bool has_next = nj0 < n && ni0 < r1 && ni0 < nj0;
            const T* pf_a = has_next ? p + ni0 * n + nj0 : p;
            const T* pf_b = has_next ? p + nj0 * n + ni0 : p;
            const int64_t pf_a_rows = has_next ? std::min(kT, r1 - ni0) : 0;
            const int64_t pf_b_rows = has_next ? std::min(kT, n - nj0) : 0;
            Off(p, yt, n, i0, i1, j0, j1, pt.data(), col.data(), row.data() + (i0 - r0) * 2 * D,
                inv_alpha, half_exp, s, pf_a, pf_a_rows, pf_b, pf_b_rows);
          }
        }
        if (any_col) {
          for (int k = 0; k < 2 * D; ++k)
            for (int64_t j = j0; j < j1; ++j) acc[k * n + j] += col[k * kT + (j - j0)];
        }
      }
      for (int64_t i = r0; i < r1; ++i)
        for (int k = 0; k < 2 * D; ++k) acc[k * n + i] += row[(i - r0) * 2 * D + k];
      if (sb_a == sb_b) break;
    }
  }
};

// ----------------------------- row-streaming path (no symmetry) -------
template <typename T>
struct RowSums {
  double z = 0, p_sum = 0, p_log_p = 0, p_log_u = 0;
};

// Sums over j in [j0, j1) for one row; y is stored transposed (yt[k * n + j])
// so the loop over j is contiguous in every array and vectorises. D is the
// embedding dimension when known at compile time (0: runtime `d`).
template <typename T, int D, bool kUnitDof, bool kComputeKl>
void RowRange(const T* prow, const T* yt, int64_t n, int64_t d, const T* yi, int64_t j0,
              int64_t j1, T inv_alpha, T half_exp, T* att, T* rep, RowSums<T>& sums) {
  const int64_t dd = D > 0 ? D : d;
  T a0 = 0, a1 = 0, a2 = 0, r0 = 0, r1 = 0, r2 = 0, z = 0, ps = 0, plp = 0, plu = 0;
  if (D > 0 && D <= 3) {
    const T y0 = yi[0], y1 = D > 1 ? yi[1] : T(0), y2 = D > 2 ? yi[2] : T(0);
    const T* c0 = yt;
    const T* c1 = yt + (D > 1 ? n : 0);
    const T* c2 = yt + (D > 2 ? 2 * n : 0);
#pragma omp simd reduction(+ : a0, a1, a2, r0, r1, r2, z, ps, plp, plu)
    for (int64_t j = j0; j < j1; ++j) {
      const T d0 = y0 - c0[j];
      const T d1 = D > 1 ? y1 - c1[j] : T(0);
      const T d2 = D > 2 ? y2 - c2[j] : T(0);
      const T dist = d0 * d0 + d1 * d1 + d2 * d2;
      const T u = T(1) / (T(1) + dist * inv_alpha);
      const T w = kUnitDof ? u : std::exp(half_exp * std::log(u));
      const T pj = prow[j];
      const T pu = pj * u, wu = w * u;
      a0 += pu * d0; a1 += pu * d1; a2 += pu * d2;
      r0 += wu * d0; r1 += wu * d1; r2 += wu * d2;
      z += w;
      ps += pj;
      if (kComputeKl) {
        plp += pj > T(0) ? pj * std::log(pj) : T(0);
        plu += pj * std::log(u);
      }
    }
    att[0] += a0; rep[0] += r0;
    if (D > 1) { att[1] += a1; rep[1] += r1; }
    if (D > 2) { att[2] += a2; rep[2] += r2; }
  } else {
    for (int64_t j = j0; j < j1; ++j) {
      T dist = 0;
      for (int64_t k = 0; k < dd; ++k) {
        const T t = yi[k] - yt[k * n + j];
        dist += t * t;
      }
      const T u = T(1) / (T(1) + dist * inv_alpha);
      const T w = kUnitDof ? u : std::exp(half_exp * std::log(u));
      const T pj = prow[j];
      const T pu = pj * u, wu = w * u;
      for (int64_t k = 0; k < dd; ++k) {
        const T t = yi[k] - yt[k * n + j];
        att[k] += pu * t;
        rep[k] += wu * t;
      }
      z += w;
      ps += pj;
      if (kComputeKl) {
        plp += pj > T(0) ? pj * std::log(pj) : T(0);
        plu += pj * std::log(u);
      }
    }
  }
  sums.z += z;
  sums.p_sum += ps;
  sums.p_log_p += plp;
  sums.p_log_u += plu;
}

template <typename T, int D, bool kUnitDof, bool kComputeKl>
void Row(const T* prow, const T* yt, int64_t n, int64_t d, int64_t i, T inv_alpha, T half_exp,
         T* att, T* rep, RowSums<T>& sums) {
  std::vector<T> yi(d);
  for (int64_t k = 0; k < d; ++k) yi[k] = yt[k * n + i];
  std::fill(att, att + d, T(0));
  std::fill(rep, rep + d, T(0));
  // j < i and j > i: the diagonal is skipped, not subtracted afterwards.
  RowRange<T, D, kUnitDof, kComputeKl>(prow, yt, n, d, yi.data(), 0, i, inv_alpha, half_exp, att,
                                       rep, sums);
  RowRange<T, D, kUnitDof, kComputeKl>(prow, yt, n, d, yi.data(), i + 1, n, inv_alpha, half_exp,
                                       att, rep, sums);
}

template <typename T, int D, bool kUnitDof, bool kComputeKl>
void AllRows(const T* p, const T* yt, int64_t n, int64_t d, T inv_alpha, T half_exp, T* att,
             T* rep, std::vector<RowSums<T>>& sums, const ParallelFor& parallel_for) {
  parallel_for(n, n * (kComputeKl ? 60 : 20) * std::max<int64_t>(1, d), [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      Row<T, D, kUnitDof, kComputeKl>(p + i * n, yt, n, d, i, inv_alpha, half_exp, att + i * d,
                                      rep + i * d, sums[i]);
    }
  });
}

template <typename T, int D>
void Dispatch(bool student_one, bool want_kl, const T* p, const T* yt, int64_t n, int64_t d,
              T inv_alpha, T half_exp, T* att, T* rep, std::vector<RowSums<T>>& sums,
              const ParallelFor& pf) {
  if (student_one) {
    if (want_kl) AllRows<T, D, true, true>(p, yt, n, d, inv_alpha, half_exp, att, rep, sums, pf);
    else AllRows<T, D, true, false>(p, yt, n, d, inv_alpha, half_exp, att, rep, sums, pf);
  } else {
    if (want_kl) AllRows<T, D, false, true>(p, yt, n, d, inv_alpha, half_exp, att, rep, sums, pf);
    else AllRows<T, D, false, false>(p, yt, n, d, inv_alpha, half_exp, att, rep, sums, pf);
  }
}


// ------------------------------------------------------------- driver ------
template <typename T, int D, bool kUnitDof, bool kComputeKl, bool kScaleByPSum>
void SymmetricUnits(const T* p, const T* yt, int64_t batch, int64_t n, int64_t sbr, int64_t nsb,
                    T inv_alpha, T half_exp, double* acc, UnitSums* sums,
                    const ParallelFor& parallel_for) {
  const int64_t upb = (nsb + 1) / 2;
  const int64_t cost = n * sbr * (kComputeKl ? 24 : (kUnitDof ? 4 : 12));
  parallel_for(batch * upb, cost, [&](int64_t begin, int64_t end) {
    for (int64_t u = begin; u < end; ++u) {
      const int64_t b = u / upb, k = u % upb;
      Kernel<T, D, kUnitDof, kComputeKl, kScaleByPSum>::Unit(p + b * n * n, yt + b * D * n, n, sbr, k, nsb - 1 - k,
                                         inv_alpha, half_exp, acc + u * 2 * D * n, sums[u]);
    }
  });
}

template <typename T, int D>
void SymmetricDispatch(bool one, bool kl, bool ps, const T* p, const T* yt, int64_t batch,
                       int64_t n, int64_t sbr, int64_t nsb, T inv_alpha, T half_exp, double* acc,
                       UnitSums* sums, const ParallelFor& pf) {
#define TSNE_SYM(O, K, S) \
  SymmetricUnits<T, D, O, K, S>(p, yt, batch, n, sbr, nsb, inv_alpha, half_exp, acc, sums, pf)
  if (one) {
    if (kl) TSNE_SYM(true, true, true);
    else if (ps) TSNE_SYM(true, false, true);
    else TSNE_SYM(true, false, false);
  } else {
    if (kl) TSNE_SYM(false, true, true);
    else if (ps) TSNE_SYM(false, false, true);
    else TSNE_SYM(false, false, false);
  }
#undef TSNE_SYM
}

template <typename T>
void GenericGradient(const T* p, const T* y, int64_t batch, int64_t n, int64_t d,
                     const TsneGradientOptions& options, T* grad, T* kl,
                     const ParallelFor& parallel_for) {
  const double alpha = options.dof;
  const bool student_one = (alpha == 1.0);
  const T inv_alpha = static_cast<T>(1.0 / alpha);
  const T half_exp = static_cast<T>((alpha + 1.0) / 2.0);
  const double c = 2.0 * (alpha + 1.0) / alpha;
  std::vector<T> yt(n * d), att(n * d), rep(n * d);
  std::vector<RowSums<T>> sums(n);
  for (int64_t b = 0; b < batch; ++b) {
    const T* pb = p + b * n * n;
    const T* yb = y + b * n * d;
    for (int64_t i = 0; i < n; ++i)
      for (int64_t k = 0; k < d; ++k) yt[k * n + i] = yb[i * d + k];
    std::fill(sums.begin(), sums.end(), RowSums<T>());
    switch (d) {
      case 1: Dispatch<T, 1>(student_one, kl != nullptr, pb, yt.data(), n, d, inv_alpha, half_exp, att.data(), rep.data(), sums, parallel_for); break;
      case 2: Dispatch<T, 2>(student_one, kl != nullptr, pb, yt.data(), n, d, inv_alpha, half_exp, att.data(), rep.data(), sums, parallel_for); break;
      case 3: Dispatch<T, 3>(student_one, kl != nullptr, pb, yt.data(), n, d, inv_alpha, half_exp, att.data(), rep.data(), sums, parallel_for); break;
      default: Dispatch<T, 0>(student_one, kl != nullptr, pb, yt.data(), n, d, inv_alpha, half_exp, att.data(), rep.data(), sums, parallel_for); break;
    }
    double z = 0, s = 0, plp = 0, plu = 0;
    for (int64_t i = 0; i < n; ++i) {
      z += sums[i].z;
      s += sums[i].p_sum;
      plp += sums[i].p_log_p;
      plu += sums[i].p_log_u;
    }
    if (grad != nullptr) {
      const double rep_scale = (options.scale_repulsion_by_p_sum ? s : 1.0) / z;
      T* gb = grad + b * n * d;
      for (int64_t i = 0; i < n * d; ++i) {
        gb[i] = static_cast<T>(c * (options.exaggeration * att[i] - rep_scale * rep[i]));
      }
    }
    if (kl != nullptr) {
      kl[b] = static_cast<T>(plp - 0.5 * (alpha + 1.0) * plu + s * std::log(z));
    }
  }
}

}  // namespace

template <typename T>
void TsneGradientCpu(const T* p, const T* y, int64_t batch, int64_t n, int64_t d,
                     const TsneGradientOptions& options, T* grad, T* kl,
                     const ParallelFor& parallel_for) {
  const double alpha = options.dof;
  const bool one = (alpha == 1.0);
  const bool want_kl = (kl != nullptr);
  // The row-streaming kernel wins where a pair costs only multiplies and one
  // division (float, dof = 1, no KL: FMA-pipe bound, P streamed sequentially);
  // the symmetric tiles win where a pair costs transcendentals (KL, dof != 1)
  // or double precision. d > 3 always streams rows.
  if (d > 3 || (sizeof(T) == 4 && one && !want_kl)) {
    GenericGradient(p, y, batch, n, d, options, grad, kl, parallel_for);
    return;
  }
  const bool want_ps = want_kl || options.scale_repulsion_by_p_sum;
  const T inv_alpha = static_cast<T>(1.0 / alpha);
  const T half_exp = static_cast<T>((alpha + 1.0) / 2.0);
  const double c = 2.0 * (alpha + 1.0) / alpha;
  // Super-blocks: a multiple of the tile, about 32 of them (n only decides).
  const int64_t nb = (n + kT - 1) / kT;
  const int64_t sbr = kT * ((nb + 31) / 32);
  const int64_t nsb = (n + sbr - 1) / sbr;
  const int64_t upb = (nsb + 1) / 2;
  std::vector<T> yt(batch * d * n);
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t i = 0; i < n; ++i)
      for (int64_t k = 0; k < d; ++k) yt[(b * d + k) * n + i] = y[(b * n + i) * d + k];
  std::vector<double> acc(batch * upb * 2 * d * n);
  std::vector<UnitSums> sums(batch * upb);
  switch (d) {
    case 1: SymmetricDispatch<T, 1>(one, want_kl, want_ps, p, yt.data(), batch, n, sbr, nsb, inv_alpha, half_exp, acc.data(), sums.data(), parallel_for); break;
    case 2: SymmetricDispatch<T, 2>(one, want_kl, want_ps, p, yt.data(), batch, n, sbr, nsb, inv_alpha, half_exp, acc.data(), sums.data(), parallel_for); break;
    default: SymmetricDispatch<T, 3>(one, want_kl, want_ps, p, yt.data(), batch, n, sbr, nsb, inv_alpha, half_exp, acc.data(), sums.data(), parallel_for); break;
  }
  std::vector<double> att(d * n), rep(d * n);
  for (int64_t b = 0; b < batch; ++b) {
    double z = 0, s = 0, plp = 0, plu = 0;
    for (int64_t u = 0; u < upb; ++u) {
      const UnitSums& us = sums[b * upb + u];
      z += us.z;
      s += us.p_sum;
      plp += us.p_log_p;
      plu += us.p_log_u;
    }
    if (grad != nullptr) {
      // Fixed order: units in index order, for every row.
      const double* a0 = acc.data() + b * upb * 2 * d * n;
      std::copy(a0, a0 + d * n, att.begin());
      std::copy(a0 + d * n, a0 + 2 * d * n, rep.begin());
      for (int64_t u = 1; u < upb; ++u) {
        const double* au = a0 + u * 2 * d * n;
        for (int64_t i = 0; i < d * n; ++i) att[i] += au[i];
        for (int64_t i = 0; i < d * n; ++i) rep[i] += au[d * n + i];
      }
      const double rep_scale = (options.scale_repulsion_by_p_sum ? s : 1.0) / z;
      const double ca = c * options.exaggeration, cr = c * rep_scale;
      T* gb = grad + b * n * d;
      for (int64_t i = 0; i < n; ++i)
        for (int64_t k = 0; k < d; ++k)
          gb[i * d + k] = static_cast<T>(ca * att[k * n + i] - cr * rep[k * n + i]);
    }
    if (kl != nullptr) {
      // KL = sum p log p - sum p log w + S log Z, log w = ((alpha+1)/2) log u.
      kl[b] = static_cast<T>(plp - 0.5 * (alpha + 1.0) * plu + s * std::log(z));
    }
  }
}

template void TsneGradientCpu<float>(const float*, const float*, int64_t, int64_t, int64_t,
                                     const TsneGradientOptions&, float*, float*,
                                     const ParallelFor&);
template void TsneGradientCpu<double>(const double*, const double*, int64_t, int64_t, int64_t,
                                      const TsneGradientOptions&, double*, double*,
                                      const ParallelFor&);

}  // namespace TSNE_CPU_ISA
}  // namespace kernels
}  // namespace tsne_ops
