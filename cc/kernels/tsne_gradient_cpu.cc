// CPU fused t-SNE gradient.
//
// One pass over the pairs computes, for every row i, the attractive sum
//   A_i = sum_j p_ij u_ij (y_i - y_j),
// the unnormalised repulsive sum R_i = sum_j w_ij u_ij (y_i - y_j), the row's
// share of the normaliser Z_i = sum_j w_ij, and (when asked) the row's KL
// terms. Then grad_i = c (ex A_i - s R_i / Z) with Z = sum_i Z_i. The repulsion
// needs Z only as a final scale, so P is read exactly once and no N x N
// temporary exists. Rows are independent units and Z is summed serially in
// row order afterwards, so the result does not depend on the thread count.
#include <algorithm>
#include <cmath>
#include <vector>

#include "cc/kernels/cpu_isa.h"
#include "cc/kernels/tsne_gradient.h"

namespace tsne_ops {
namespace kernels {
namespace TSNE_CPU_ISA {
namespace {

template <typename T>
struct RowSums {
  double z = 0, p_sum = 0, p_log_p = 0, p_log_u = 0;
};

// Sums over j in [j0, j1) for one row; y is stored transposed (yt[k * n + j])
// so the loop over j is contiguous in every array and vectorises. D is the
// embedding dimension when known at compile time (0: runtime `d`).
template <typename T, int D, bool kStudentOne, bool kWantKl>
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
      const T w = kStudentOne ? u : std::exp(half_exp * std::log(u));
      const T pj = prow[j];
      const T pu = pj * u, wu = w * u;
      a0 += pu * d0; a1 += pu * d1; a2 += pu * d2;
      r0 += wu * d0; r1 += wu * d1; r2 += wu * d2;
      z += w;
      ps += pj;
      if (kWantKl) {
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
      const T w = kStudentOne ? u : std::exp(half_exp * std::log(u));
      const T pj = prow[j];
      const T pu = pj * u, wu = w * u;
      for (int64_t k = 0; k < dd; ++k) {
        const T t = yi[k] - yt[k * n + j];
        att[k] += pu * t;
        rep[k] += wu * t;
      }
      z += w;
      ps += pj;
      if (kWantKl) {
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

template <typename T, int D, bool kStudentOne, bool kWantKl>
void Row(const T* prow, const T* yt, int64_t n, int64_t d, int64_t i, T inv_alpha, T half_exp,
         T* att, T* rep, RowSums<T>& sums) {
  std::vector<T> yi(d);
  for (int64_t k = 0; k < d; ++k) yi[k] = yt[k * n + i];
  std::fill(att, att + d, T(0));
  std::fill(rep, rep + d, T(0));
  // j < i and j > i: the diagonal is skipped, not subtracted afterwards.
  RowRange<T, D, kStudentOne, kWantKl>(prow, yt, n, d, yi.data(), 0, i, inv_alpha, half_exp, att,
                                       rep, sums);
  RowRange<T, D, kStudentOne, kWantKl>(prow, yt, n, d, yi.data(), i + 1, n, inv_alpha, half_exp,
                                       att, rep, sums);
}

template <typename T, int D, bool kStudentOne, bool kWantKl>
void AllRows(const T* p, const T* yt, int64_t n, int64_t d, T inv_alpha, T half_exp, T* att,
             T* rep, std::vector<RowSums<T>>& sums, const ParallelFor& parallel_for) {
  parallel_for(n, n * (kWantKl ? 60 : 20) * std::max<int64_t>(1, d), [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      Row<T, D, kStudentOne, kWantKl>(p + i * n, yt, n, d, i, inv_alpha, half_exp, att + i * d,
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

}  // namespace

template <typename T>
void TsneGradientCpu(const T* p, const T* y, int64_t batch, int64_t n, int64_t d,
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
    const bool want_kl = (kl != nullptr);
    switch (d) {
      case 1: Dispatch<T, 1>(student_one, want_kl, pb, yt.data(), n, d, inv_alpha, half_exp, att.data(), rep.data(), sums, parallel_for); break;
      case 2: Dispatch<T, 2>(student_one, want_kl, pb, yt.data(), n, d, inv_alpha, half_exp, att.data(), rep.data(), sums, parallel_for); break;
      case 3: Dispatch<T, 3>(student_one, want_kl, pb, yt.data(), n, d, inv_alpha, half_exp, att.data(), rep.data(), sums, parallel_for); break;
      default: Dispatch<T, 0>(student_one, want_kl, pb, yt.data(), n, d, inv_alpha, half_exp, att.data(), rep.data(), sums, parallel_for); break;
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
