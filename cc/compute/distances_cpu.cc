// CPU pairwise squared distances. Two strategies:
//  * small dim (embeddings, dim <= kDirectMaxDim): the direct sum of squared
//    differences, exact and automatically symmetric;
//  * larger dim: the norm expansion |x|^2 + |y|^2 - 2 x.y with a cache-blocked
//    dot-product micro-kernel (the work of a GEMM); self-distances compute only
//    the upper triangle of tiles and mirror it, so the result is exactly
//    symmetric, the diagonal is exactly zero and negatives are clamped to zero.
//
// The expansion cancels: its terms are of size |x|^2, so its rounding error is
// eps |x|^2, not eps |x - y|^2. Data far from the origin (a feature mean of
// 1000 over a unit spread) would lose every digit in float32. Distances do not
// change under translation, so both the expansion and the gradient's
// r_i x_i - sum_j G_ij y_j run on x - c and y - c, with c one row of the
// batch (ReferenceRow): |x_i - c| is at most the largest distance, so the
// error becomes eps times the spread of the data, not its magnitude.
#include <algorithm>
#include <cstring>
#include <vector>

#include "cc/compute/cpu_isa.h"
#include "cc/compute/distances.h"
#include "cc/compute/gemm_cpu.h"
#include "cc/compute/simd.h"

namespace tsne_ops {
namespace kernels {
namespace TSNE_CPU_ISA {
namespace {

constexpr int64_t kDirectMaxDim = 16;
constexpr int64_t kTile = 64;    // column block of the gradient's column term

template <typename T>
T Dot(const T* a, const T* b, int64_t len) {
  T s = 0;
#pragma omp simd reduction(+ : s)
  for (int64_t k = 0; k < len; ++k) s += a[k] * b[k];
  return s;
}

template <typename T>
T SquaredDiff(const T* a, const T* b, int64_t len) {
  T s = 0;
  for (int64_t k = 0; k < len; ++k) {
    const T t = a[k] - b[k];
    s += t * t;
  }
  return s;
}

// The reference point rows are shifted by: the batch's first row of x (of
// y when x has none). Not the mean: a data row keeps small-integer data
// (binary or 0..255 pixels) integer after the shift, so its dot products and
// distances stay exact and tied distances stay exactly tied.
template <typename T>
const T* ReferenceRow(const T* x, const T* y, int64_t b, int64_t n, int64_t m, int64_t dim) {
  return n > 0 ? x + b * n * dim : y + b * m * dim;
}

// out[k] = x[k] - c[k]: one row shifted by the reference row.
template <typename T>
void ShiftRow(const T* x, const T* c, int64_t dim, T* out) {
  for (int64_t k = 0; k < dim; ++k) out[k] = x[k] - c[k];
}


}  // namespace

template <typename T>
void PairwiseSquaredDistanceCpu(const T* x, const T* y, int64_t batch, int64_t n, int64_t m,
                                int64_t dim, T* out, const ParallelFor& parallel_for) {
  const bool self = (y == nullptr);
  if (self) m = n;
  if (dim <= kDirectMaxDim) {
    // One unit = one row of one batch; exact and symmetric by construction
    // ((a - b)^2 == (b - a)^2 bit for bit, summed in the same order).
    parallel_for(batch * n, m * (3 * dim + 2), [&](int64_t begin, int64_t end) {
      for (int64_t u = begin; u < end; ++u) {
        const int64_t b = u / n, i = u % n;
        const T* xi = x + (b * n + i) * dim;
        const T* yb = (self ? x + b * n * dim : y + b * m * dim);
        T* row = out + (b * n + i) * m;
        for (int64_t j = 0; j < m; ++j) row[j] = SquaredDiff(xi, yb + j * dim, dim);
        if (self) row[i] = 0;
      }
    });
    return;
  }
  // Norm expansion |x|^2 + |y|^2 - 2 x.y of the shifted rows (see the top of
  // the file) over kTileR x kTileC tiles of a packed GEMM. Self-distances take
  // the norms from the diagonal of the GEMM itself: the micro-kernel adds each
  // entry's products in the same order, so for duplicate rows x_i == x_j,
  // x_i.x_j == |x_i|^2 bit for bit and their distance is exactly 0 (a tie,
  // as perplexity calibration must see it). Cross distances use a row's own
  // dot product. Self-distances: only tiles with tj >= ti; each computed
  // value is written to (i, j) and (j, i), so the result is exactly
  // symmetric. Each unit (batch, tile) computes its dot products in a fixed
  // order and writes its own entries: deterministic for any thread count.
  using G = Gemm<T>;
  const int64_t tn = (n + kTileR - 1) / kTileR, tm = (m + kTileC - 1) / kTileC;
  const int64_t n_pad = tn * kTileR, m_pad = tm * kTileC;
  std::vector<T> xnorm(batch * n), ynorm(self ? 0 : batch * m);
  // Self: X packed both as kMr-row panels (left side) and kNr-row panels.
  std::vector<T> xp(batch * n_pad * dim), yp(batch * (self ? n_pad : m_pad) * dim);
  const int64_t xpanels = n_pad / kMr, ypanels = (self ? n_pad : m_pad) / G::kNr;
  parallel_for(batch * (xpanels + ypanels), kMr * dim * 4, [&](int64_t begin, int64_t end) {
    std::vector<T> row(dim);
    for (int64_t u = begin; u < end; ++u) {
      const int64_t b = u / (xpanels + ypanels), q = u % (xpanels + ypanels);
      const T* c = ReferenceRow(x, y, b, n, m, dim);
      // The norms of the rows this unit packs (each row is in one x panel,
      // and, for cross distances, in one y panel).
      auto norms = [&](const T* src, int64_t rows, int64_t r0, int64_t r1, T* out) {
        for (int64_t r = r0; r < std::min(rows, r1); ++r) {
          ShiftRow(src + r * dim, c, dim, row.data());
          out[r] = Dot(row.data(), row.data(), dim);
        }
      };
      if (q < xpanels) {
        G::Pack(x + b * n * dim, c, n, n_pad, dim, kMr, xp.data() + b * n_pad * dim, q, q + 1);
        if (!self) norms(x + b * n * dim, n, q * kMr, (q + 1) * kMr, xnorm.data() + b * n);
      } else {
        const int64_t mm = self ? n : m, mp = self ? n_pad : m_pad;
        const T* src = self ? x + b * n * dim : y + b * m * dim;
        const int64_t p = q - xpanels;
        G::Pack(src, c, mm, mp, dim, G::kNr, yp.data() + b * mp * dim, p, p + 1);
        if (!self) norms(src, m, p * G::kNr, (p + 1) * G::kNr, ynorm.data() + b * m);
      }
    }
  });
  const int64_t mp = self ? n_pad : m_pad;
  if (self) {
    // The diagonal tiles' products, computed again below: 2 / (tn + 1) of the
    // GEMM, the price of exact zeros between duplicates.
    static_assert(kTileR == kTileC, "a diagonal tile holds its rows' own products");
    parallel_for(batch * tn, kTileR * kTileC * dim * 2 / 16, [&](int64_t begin, int64_t end) {
      std::vector<T> dots(kTileR * kTileC);
      for (int64_t u = begin; u < end; ++u) {
        const int64_t b = u / tn, i0 = (u % tn) * kTileR, i1 = std::min(n, i0 + kTileR);
        G::Tile(xp.data() + b * n_pad * dim, yp.data() + b * mp * dim, dim, i0, i0, dots.data());
        for (int64_t i = i0; i < i1; ++i)
          xnorm[b * n + i] = dots[(i - i0) * kTileC + (i - i0)];
      }
    });
  }
  std::vector<std::pair<int64_t, int64_t>> tiles;
  for (int64_t ti = 0; ti < tn; ++ti)
    for (int64_t tj = self ? ti : 0; tj < tm; ++tj) tiles.emplace_back(ti, tj);
  const int64_t per_batch = static_cast<int64_t>(tiles.size());
  parallel_for(batch * per_batch, kTileR * kTileC * dim * 2 / 16, [&](int64_t begin, int64_t end) {
    std::vector<T> dots_buf(kTileR * kTileC + 64);
    T* dots = dots_buf.data();
    for (int64_t u = begin; u < end; ++u) {
      const int64_t b = u / per_batch;
      const auto [ti, tj] = tiles[u % per_batch];
      const T* xn = xnorm.data() + b * n;
      const T* yn = self ? xn : ynorm.data() + b * m;
      T* ob = out + b * n * m;
      const int64_t i0 = ti * kTileR, i1 = std::min(n, i0 + kTileR);
      const int64_t j0 = tj * kTileC, j1 = std::min(m, j0 + kTileC);
      G::Tile(xp.data() + b * n_pad * dim, yp.data() + b * mp * dim, dim, i0, j0, dots);
      // Final values into the tile buffer first, so the entry and its mirror
      // are the same stored number.
      for (int64_t i = i0; i < i1; ++i) {
        T* dr = dots + (i - i0) * kTileC;
        const T xi = xn[i];
        for (int64_t j = j0; j < j1; ++j) {
          const T v = xi + yn[j] - 2 * dr[j - j0];
          dr[j - j0] = v > 0 ? v : T(0);
        }
      }
      if (self && ti == tj) {
        for (int64_t i = i0; i < i1; ++i) {
          dots[(i - i0) * kTileC + (i - j0)] = 0;
          for (int64_t j = i + 1; j < j1; ++j)
            dots[(j - i0) * kTileC + (i - j0)] = dots[(i - i0) * kTileC + (j - j0)];
        }
      }
      for (int64_t i = i0; i < i1; ++i)
        std::memcpy(ob + i * m + j0, dots + (i - i0) * kTileC, (j1 - j0) * sizeof(T));
      if (self && ti != tj) {
        for (int64_t j = j0; j < j1; ++j) {
          T* orow = ob + j * n;
          for (int64_t i = i0; i < i1; ++i) orow[i] = dots[(i - i0) * kTileC + (j - j0)];
        }
      }
    }
  });
}

template <typename T>
void PairwiseSquaredDistanceGradCpu(const T* grad, const T* x, const T* y, int64_t batch,
                                    int64_t n, int64_t m, int64_t dim, T* grad_x, T* grad_y,
                                    const ParallelFor& parallel_for) {
  const bool self = (y == nullptr);
  if (self) m = n;
  // grad_x[i] = 2 (r_i x_i - sum_j G_ij y_j), r_i = sum_j G_ij   (plus the
  // transposed term for self-distances). Row i of G is contiguous, so one
  // unit = one row of x.
  auto row_term = [&](const T* g, const T* xb, const T* yb, int64_t rows, int64_t cols,
                      T* gx, bool accumulate, int64_t r) {
    const T* gr = g + r * cols;
    std::vector<T> acc(dim, T(0));
    T rs = 0;
    for (int64_t j = 0; j < cols; ++j) {
      const T gij = gr[j];
      rs += gij;
      const T* yj = yb + j * dim;
      for (int64_t k = 0; k < dim; ++k) acc[k] += gij * yj[k];
    }
    T* out = gx + r * dim;
    const T* xr = xb + r * dim;
    for (int64_t k = 0; k < dim; ++k) {
      const T v = 2 * (rs * xr[k] - acc[k]);
      out[k] = accumulate ? out[k] + v : v;
    }
    (void)rows;
  };
  // Column term: out[c] (+)= 2 (s_c v_c - sum_r G_rc u_r), s_c = sum_r G_rc.
  // Reads G in row segments of a column block, so access stays contiguous.
  auto col_term = [&](const T* g, const T* vb, const T* ub, int64_t rows, int64_t cols,
                      T* out, bool accumulate, int64_t c0, int64_t c1) {
    const int64_t w = c1 - c0;
    std::vector<T> acc(w * dim, T(0)), cs(w, T(0));
    for (int64_t r = 0; r < rows; ++r) {
      const T* gr = g + r * cols + c0;
      const T* ur = ub + r * dim;
      for (int64_t c = 0; c < w; ++c) {
        const T gv = gr[c];
        cs[c] += gv;
        T* a = acc.data() + c * dim;
        for (int64_t k = 0; k < dim; ++k) a[k] += gv * ur[k];
      }
    }
    for (int64_t c = 0; c < w; ++c) {
      const T* vc = vb + (c0 + c) * dim;
      T* o = out + (c0 + c) * dim;
      for (int64_t k = 0; k < dim; ++k) {
        const T v = 2 * (cs[c] * vc[k] - acc[c * dim + k]);
        o[k] = accumulate ? o[k] + v : v;
      }
    }
  };
  // The terms above are of size |x| and cancel to |x_i - y_j|: computed on
  // the shifted rows (see the top of the file), the same sums lose nothing to
  // a large mean.
  std::vector<T> xc(n * dim), yc(self ? 0 : m * dim);
  for (int64_t b = 0; b < batch; ++b) {
    const T* g = grad + b * n * m;
    const T* c = ReferenceRow(x, y, b, n, m, dim);
    parallel_for(n + (self ? 0 : m), dim * 2, [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        if (r < n) ShiftRow(x + (b * n + r) * dim, c, dim, xc.data() + r * dim);
        else ShiftRow(y + (b * m + r - n) * dim, c, dim, yc.data() + (r - n) * dim);
      }
    });
    const T* xb = xc.data();
    const T* yb = self ? xb : yc.data();
    T* gx = grad_x + b * n * dim;
    parallel_for(n, m * dim * 2 + m, [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) row_term(g, xb, yb, n, m, gx, false, r);
    });
    const int64_t blocks = (m + kTile - 1) / kTile;
    if (self) {
      // grad_x also gets 2 sum_j G_ji (x_i - x_j): the column term on x.
      parallel_for(blocks, n * kTile * dim * 2, [&](int64_t begin, int64_t end) {
        for (int64_t blk = begin; blk < end; ++blk)
          col_term(g, xb, xb, n, n, gx, true, blk * kTile, std::min(n, (blk + 1) * kTile));
      });
    } else if (grad_y != nullptr) {
      T* gy = grad_y + b * m * dim;
      parallel_for(blocks, n * kTile * dim * 2, [&](int64_t begin, int64_t end) {
        for (int64_t blk = begin; blk < end; ++blk)
          col_term(g, yb, xb, n, m, gy, false, blk * kTile, std::min(m, (blk + 1) * kTile));
      });
    }
  }
}

template void PairwiseSquaredDistanceCpu<float>(const float*, const float*, int64_t, int64_t,
                                                int64_t, int64_t, float*, const ParallelFor&);
template void PairwiseSquaredDistanceCpu<double>(const double*, const double*, int64_t, int64_t,
                                                 int64_t, int64_t, double*, const ParallelFor&);
template void PairwiseSquaredDistanceGradCpu<float>(const float*, const float*, const float*,
                                                    int64_t, int64_t, int64_t, int64_t, float*,
                                                    float*, const ParallelFor&);
template void PairwiseSquaredDistanceGradCpu<double>(const double*, const double*,
                                                     const double*, int64_t, int64_t, int64_t,
                                                     int64_t, double*, double*,
                                                     const ParallelFor&);

}  // namespace TSNE_CPU_ISA
}  // namespace kernels
}  // namespace tsne_ops
