// CPU pairwise squared distances. Two strategies:
//  * small dim (embeddings, dim <= kDirectMaxDim): the direct sum of squared
//    differences, exact and automatically symmetric;
//  * larger dim: the norm expansion |x|^2 + |y|^2 - 2 x.y with a cache-blocked
//    dot-product micro-kernel (the work of a GEMM); self-distances compute only
//    the upper triangle of tiles and mirror it, so the result is exactly
//    symmetric, the diagonal is exactly zero and negatives are clamped to zero.
#include <algorithm>
#include <cstring>
#include <vector>

#include "cc/kernels/cpu_isa.h"
#include "cc/kernels/distances.h"

namespace tsne_ops {
namespace kernels {
namespace TSNE_CPU_ISA {
namespace {

constexpr int64_t kDirectMaxDim = 16;
constexpr int64_t kTile = 64;    // rows of x and of y per cache tile
constexpr int64_t kDepth = 512;  // depth (dim) per cache tile

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

// acc[r][c] += x_r . y_c over `len` for a 4 x 4 block; lanes of independent
// accumulators let the compiler keep everything in vector registers.
template <typename T>
void Dot4x4(const T* const xr[4], const T* const yc[4], int64_t len, T acc[4][4]) {
  T s[4][4] = {};
  for (int r = 0; r < 4; ++r) {
    for (int c = 0; c < 4; ++c) {
      T v = 0;
      const T* a = xr[r];
      const T* b = yc[c];
#pragma omp simd reduction(+ : v)
      for (int64_t k = 0; k < len; ++k) v += a[k] * b[k];
      s[r][c] = v;
    }
  }
  for (int r = 0; r < 4; ++r)
    for (int c = 0; c < 4; ++c) acc[r][c] += s[r][c];
}

// dots[i][j] (row stride ld) = x_i . y_j for i in [i0, i1), j in [j0, j1).
template <typename T>
void DotTile(const T* x, const T* y, int64_t dim, int64_t i0, int64_t i1, int64_t j0,
             int64_t j1, T* dots, int64_t ld) {
  for (int64_t i = i0; i < i1; ++i)
    for (int64_t j = j0; j < j1; ++j) dots[(i - i0) * ld + (j - j0)] = 0;
  for (int64_t k0 = 0; k0 < dim; k0 += kDepth) {
    const int64_t len = std::min(kDepth, dim - k0);
    int64_t i = i0;
    for (; i + 4 <= i1; i += 4) {
      const T* xr[4] = {x + i * dim + k0, x + (i + 1) * dim + k0, x + (i + 2) * dim + k0,
                        x + (i + 3) * dim + k0};
      int64_t j = j0;
      for (; j + 4 <= j1; j += 4) {
        const T* yc[4] = {y + j * dim + k0, y + (j + 1) * dim + k0, y + (j + 2) * dim + k0,
                          y + (j + 3) * dim + k0};
        T acc[4][4] = {};
        Dot4x4(xr, yc, len, acc);
        for (int r = 0; r < 4; ++r)
          for (int c = 0; c < 4; ++c) dots[(i + r - i0) * ld + (j + c - j0)] += acc[r][c];
      }
      for (; j < j1; ++j)
        for (int r = 0; r < 4; ++r) dots[(i + r - i0) * ld + (j - j0)] += Dot(xr[r], y + j * dim + k0, len);
    }
    for (; i < i1; ++i)
      for (int64_t j = j0; j < j1; ++j)
        dots[(i - i0) * ld + (j - j0)] += Dot(x + i * dim + k0, y + j * dim + k0, len);
  }
}

template <typename T>
void SquaredNorms(const T* x, int64_t rows, int64_t dim, T* norms) {
  for (int64_t i = 0; i < rows; ++i) norms[i] = Dot(x + i * dim, x + i * dim, dim);
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
  // Norm expansion over cache tiles. Units are (batch, tile-row, tile-col)
  // triples; for self-distances only tile-col >= tile-row.
  const int64_t tn = (n + kTile - 1) / kTile, tm = (m + kTile - 1) / kTile;
  std::vector<T> xnorm(batch * n), ynorm(self ? 0 : batch * m);
  parallel_for(batch, n * dim * 2, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) {
      SquaredNorms(x + b * n * dim, n, dim, xnorm.data() + b * n);
      if (!self) SquaredNorms(y + b * m * dim, m, dim, ynorm.data() + b * m);
    }
  });
  std::vector<std::pair<int64_t, int64_t>> tiles;
  for (int64_t ti = 0; ti < tn; ++ti)
    for (int64_t tj = self ? ti : 0; tj < tm; ++tj) tiles.emplace_back(ti, tj);
  const int64_t per_batch = static_cast<int64_t>(tiles.size());
  parallel_for(batch * per_batch, kTile * kTile * dim * 2, [&](int64_t begin, int64_t end) {
    std::vector<T> dots(kTile * kTile);
    for (int64_t u = begin; u < end; ++u) {
      const int64_t b = u / per_batch;
      const auto [ti, tj] = tiles[u % per_batch];
      const T* xb = x + b * n * dim;
      const T* yb = self ? xb : y + b * m * dim;
      const T* xn = xnorm.data() + b * n;
      const T* yn = self ? xn : ynorm.data() + b * m;
      T* ob = out + b * n * m;
      const int64_t i0 = ti * kTile, i1 = std::min(n, i0 + kTile);
      const int64_t j0 = tj * kTile, j1 = std::min(m, j0 + kTile);
      DotTile(xb, yb, dim, i0, i1, j0, j1, dots.data(), kTile);
      for (int64_t i = i0; i < i1; ++i) {
        for (int64_t j = j0; j < j1; ++j) {
          T v = xn[i] + yn[j] - 2 * dots[(i - i0) * kTile + (j - j0)];
          v = v > 0 ? v : T(0);
          if (self) {
            if (i == j) v = 0;
            if (j < i) continue;  // the diagonal tile writes its upper half...
            ob[j * n + i] = v;    // ...and mirrors it
          }
          ob[i * m + j] = v;
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
  for (int64_t b = 0; b < batch; ++b) {
    const T* g = grad + b * n * m;
    const T* xb = x + b * n * dim;
    const T* yb = self ? xb : y + b * m * dim;
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
