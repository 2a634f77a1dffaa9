// CPU exact k nearest neighbours (contract in nearest_neighbors.h).
//
// The work is that of the distance matrix (n m dim multiply-adds), so it runs
// on the packed GEMM micro-kernel of gemm_cpu.h, with the selection fused
// into its epilogue: memory stays O((n + m) dim + n k), never [n, m].
//
// Three steps per batch:
//  1. Centre: x and y are packed into the micro-kernel's panels minus the
//     midpoint of their bounding box. The GEMM form |x|^2 + |y|^2 - 2 x.y
//     loses about eps |x|^2 to cancellation; after centring that is eps times
//     the squared spread of the data instead of eps times its squared
//     distance from the origin, so a constant offset (data at 1e4) costs
//     nothing. The midpoint (not the mean) keeps grid data on a grid, so
//     small-integer data stays exact even in float32. Self-search packs
//     the rows in the order of a k-d tree (TreeOrder), so that a block's
//     rows are near each other.
//  2. Candidates: per row, the kc = k + kMargin smallest (GEMM distance,
//     index) pairs under the lexicographic order (a buffer cut back by a
//     selection when full, see Candidates). Each kMr x kNr block of
//     distances leaves the micro-kernel's registers through a SIMD filter:
//     its lanes are compared with each row's current kc-th distance
//     ("bound"), and only the lanes that pass (a movemask) are stored. Once
//     the buffers have been cut a few times almost nothing passes, so the
//     selection costs a few vector compares per 16 distances.
//     Self-search uses the symmetry d(i, j) = d(j, i): the n x n tile grid
//     is cut into kBlock x kBlock tiles, each off-diagonal tile is computed
//     once and feeds both its row block (rows against its columns) and its
//     column block (columns against its rows, the same filter against the
//     column rows' bounds), which halves the arithmetic.
//  3. The kc candidates' distances recomputed directly, sum of (x - y)^2 in
//     double on the original data, then sorted by (distance rounded to T,
//     index) and the first k written. The margin lets the exact recomputation
//     reorder near-ties across the k-th place that the GEMM form could not
//     tell apart; the returned distances are exact whatever the GEMM error.
//
// Determinism. The kc smallest pairs under a total order are one set,
// whatever order the candidates arrive in (rows and indices are the rows'
// own, whatever the packing order), and each pair's GEMM distance is
// computed once, in a fixed order, by whichever thread takes its tile; so the
// kept candidates are the same for any thread count. Race freedom: the
// off-diagonal tiles run in rounds of a round-robin tournament over the row
// blocks (the circle method), each round a perfect matching, so the tiles of
// a round touch disjoint blocks of rows' candidates; the diagonal tiles run as one round
// of their own. Cross search (y given) has no symmetry: a unit is one row
// block against all of y and owns its rows' candidates.
//
// This file is compiled with -ffp-contract=off (CMakeLists) so the double
// sums in step 3 are the same plain multiply-then-add sequence in the
// baseline and the AVX2 build and on the GPU (which uses __dmul_rn /
// __dadd_rn); the micro-kernel's fused multiply-adds are explicit.
#include <algorithm>
#include <limits>
#include <numeric>
#include <utility>
#include <vector>

#include "cc/compute/cpu_isa.h"
#include "cc/compute/gemm_cpu.h"
#include "cc/compute/nearest_neighbors.h"
#include "cc/compute/simd.h"

namespace tsne_ops {
namespace kernels {
namespace TSNE_CPU_ISA {
namespace {

// Rows per block: a multiple of kMr and of every kNr (16, 8, 4), and tall
// enough that a tile (kBlock^2 dim multiply-adds) outweighs its scheduling,
// small enough that a round of the tournament has many tiles for the threads.
constexpr int64_t kBlock = 384;
constexpr int64_t kMargin = 8;

template <typename T>
double ExactSquaredDistance(const T* a, const T* b, int64_t dim) {
  double s = 0;
  for (int64_t q = 0; q < dim; ++q) {
    const double t = static_cast<double>(a[q]) - static_cast<double>(b[q]);
    s += t * t;
  }
  return s;
}

// ref = the per-dimension midpoint of the bounding box of the rows of a
// (and of b, when given).
template <typename T>
void BoxMidpoint(const T* a, int64_t a_rows, const T* b, int64_t b_rows, int64_t dim, T* ref) {
  for (int64_t q = 0; q < dim; ++q) {
    T lo = a[q], hi = a[q];
    for (int64_t r = 1; r < a_rows; ++r) {
      lo = std::min(lo, a[r * dim + q]);
      hi = std::max(hi, a[r * dim + q]);
    }
    for (int64_t r = 0; b != nullptr && r < b_rows; ++r) {
      lo = std::min(lo, b[r * dim + q]);
      hi = std::max(hi, b[r * dim + q]);
    }
    // In double: lo + hi may overflow T.
    ref[q] = static_cast<T>(0.5 * (static_cast<double>(lo) + static_cast<double>(hi)));
  }
}

// (d1, j1) < (d2, j2) in the order of the result: distance, then index.
template <typename T>
inline bool Before(T d1, int64_t j1, T d2, int64_t j2) {
  return d1 < d2 || (d1 == d2 && j1 < j2);
}

// Each row's candidates: a buffer of up to `cap` (distance, index) pairs,
// appended to, and cut back whenever it fills. A cut finds the kc-th
// smallest distance (a selection over the buffer's distances) and keeps
// every pair at or below it, in place; that is a superset of the kc smallest
// pairs under the (distance, index) order, and is exactly kc pairs unless
// distances tie there (then the pairs themselves are selected, if the ties
// would leave too little room). `bound` is that kc-th distance (+inf before
// the first cut): a pair with a larger distance has kc pairs before it and
// cannot be among the kc smallest. The cut is amortised over the cap - kc
// appends before the next; a bounded heap would do the same work in log(kc)
// steps per pair, but its sift touches a cache line per level and at
// 70,000 rows the rows' candidates live in L3, where appending touches one.
template <typename T>
struct Candidates {
  using Pair = std::pair<T, int64_t>;  // compares as (distance, index)
  int64_t kc, cap;
  std::vector<T> dist;         // [rows, cap]
  std::vector<int64_t> index;  // [rows, cap]
  std::vector<int64_t> count;  // [rows]
  // [rows + padding]: padded so whole vectors load past the last row.
  std::vector<T> bound;

  Candidates(int64_t rows, int64_t kc_)
      : kc(kc_), cap(kc_ + std::max<int64_t>(32, kc_ / 2)), dist(rows * cap), index(rows * cap), count(rows, 0),
        bound(rows + 64, std::numeric_limits<T>::infinity()) {}

  void Offer(int64_t row, T d, int64_t j) {
    int64_t& c = count[row];
    dist[row * cap + c] = d;
    index[row * cap + c] = j;
    if (++c == cap) Cut(row);
  }

  void Cut(int64_t row) {
    T* rd = dist.data() + row * cap;
    int64_t* rj = index.data() + row * cap;
    int64_t& c = count[row];
    thread_local std::vector<T> keys;
    keys.assign(rd, rd + c);
    std::nth_element(keys.begin(), keys.begin() + (kc - 1), keys.end());
    const T t = keys[kc - 1];
    int64_t kept = 0;
    for (int64_t q = 0; q < c; ++q) {
      if (rd[q] <= t) {
        rd[kept] = rd[q];
        rj[kept] = rj[q];
        ++kept;
      }
    }
    if (kept > cap - 16) {  // many ties at t: keep exactly the kc smallest pairs
      c = kept;
      thread_local std::vector<Pair> pairs;
      Select(row, &pairs);
      for (int64_t q = 0; q < kc; ++q) {
        rd[q] = pairs[q].first;
        rj[q] = pairs[q].second;
      }
      kept = kc;
    }
    c = kept;
    bound[row] = t;
  }

  // pairs[0, kc) = the row's kc smallest pairs (unordered).
  void Select(int64_t row, std::vector<Pair>* pairs) const {
    const int64_t c = count[row];
    pairs->resize(c);
    for (int64_t q = 0; q < c; ++q)
      (*pairs)[q] = Pair(dist[row * cap + q], index[row * cap + q]);
    if (c > kc) std::nth_element(pairs->begin(), pairs->begin() + (kc - 1), pairs->end());
  }
};

// Sum of (a - b)^2 in double, one term after the other, for four rows b at
// once: four independent chains (each in the order of ExactSquaredDistance),
// so the additions' latency overlaps.
template <typename T>
void ExactSquaredDistances4(const T* a, const T* b0, const T* b1, const T* b2, const T* b3,
                            int64_t dim, double* out) {
  double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  for (int64_t q = 0; q < dim; ++q) {
    const double aq = static_cast<double>(a[q]);
    const double t0 = aq - static_cast<double>(b0[q]), t1 = aq - static_cast<double>(b1[q]);
    const double t2 = aq - static_cast<double>(b2[q]), t3 = aq - static_cast<double>(b3[q]);
    s0 += t0 * t0;
    s1 += t1 * t1;
    s2 += t2 * t2;
    s3 += t3 * t3;
  }
  out[0] = s0;
  out[1] = s1;
  out[2] = s2;
  out[3] = s3;
}

// Orders the n rows of x so that each kBlock-row block is a compact cell of
// a k-d tree (median splits, at block boundaries, on the coordinate of
// largest variance): a row meets many of its near neighbours in its own
// block, in the first round, so the bounds are tight early and fewer
// candidates pass the filter later (on MNIST about 40% fewer than in index
// order). The result does not depend on the order (see the top of the
// file); the order itself is deterministic (ties by row index).
template <typename T>
void TreeOrder(const T* x, int64_t n, int64_t dim, int64_t* order) {
  std::iota(order, order + n, int64_t{0});
  std::vector<std::pair<int64_t, int64_t>> stack{{0, n}};
  std::vector<double> sum(dim), sum2(dim);
  while (!stack.empty()) {
    const auto [lo, hi] = stack.back();
    stack.pop_back();
    if (hi - lo <= kBlock) continue;
    std::fill(sum.begin(), sum.end(), 0.0);
    std::fill(sum2.begin(), sum2.end(), 0.0);
    for (int64_t r = lo; r < hi; ++r) {
      const T* row = x + order[r] * dim;
      for (int64_t q = 0; q < dim; ++q) {
        const double v = static_cast<double>(row[q]);
        sum[q] += v;
        sum2[q] += v * v;
      }
    }
    int64_t axis = 0;
    double widest = -1;
    for (int64_t q = 0; q < dim; ++q) {
      const double spread = sum2[q] - sum[q] * sum[q] / static_cast<double>(hi - lo);
      if (spread > widest) {
        widest = spread;
        axis = q;
      }
    }
    const int64_t h = lo + std::max(kBlock, ((hi - lo) / 2 + kBlock / 2) / kBlock * kBlock);
    std::nth_element(order + lo, order + h, order + hi, [&](int64_t a, int64_t b) {
      const T va = x[a * dim + axis], vb = x[b * dim + axis];
      return va < vb || (va == vb && a < b);
    });
    stack.emplace_back(lo, h);
    stack.emplace_back(h, hi);
  }
}

// Offers every distance of the tile rows [i0, i1) x columns [j0, j1) to the
// rows' candidates (row_base + i gets (d, ids[j])) and, with columns, to
// the columns' candidates too (row_base + j gets (d, ids[i])). i and j are
// positions in the packed order; ids maps them to the rows' own indices
// (self-search, see TreeOrder; null: the identity). xp / yp are the kMr /
// kNr panels of the centred rows, xn / yn their squared norms (padded with
// zeros); i0 and j0 are multiples of kBlock. diagonal: the same block on
// both sides, (i, i) skipped.
template <typename T, bool kColumns>
void ScanTile(const T* xp, const T* yp, const T* xn, const T* yn, int64_t dim, int64_t i0,
              int64_t i1, int64_t j0, int64_t j1, bool diagonal, int64_t row_base,
              const int64_t* ids, Candidates<T>& cands) {
  using G = Gemm<T>;
  using V = simd::Vec<T>;
  constexpr int L = G::L, kNr = G::kNr;
  const V minus_two = simd::Set1(T(-2)), zero = V{};
  const T* bound = cands.bound.data() + row_base;
  for (int64_t jc = j0; jc < j1; jc += kNr) {
    const T* bp = yp + (jc / kNr) * kNr * dim;
    const V yn0 = simd::Load(yn + jc), yn1 = simd::Load(yn + jc + L);
    const unsigned col_valid = j1 - jc >= kNr ? (1u << kNr) - 1 : (1u << (j1 - jc)) - 1;
    for (int64_t ir = i0; ir < i1; ir += kMr) {
      V c0[kMr], c1[kMr];
      G::Accumulate(xp + (ir / kMr) * kMr * dim, bp, dim, c0, c1);
      V tc0{}, tc1{};
      if (kColumns) {
        tc0 = simd::Load(bound + jc);
        tc1 = simd::Load(bound + jc + L);
      }
      unsigned row_mask[kMr], col_mask[kMr], any = 0;
      const int rows = static_cast<int>(std::min<int64_t>(kMr, i1 - ir));
      for (int r = 0; r < kMr; ++r) {
        const V xr = simd::Set1(xn[ir + r]);
        V e0 = MulAdd(minus_two, c0[r], xr + yn0), e1 = MulAdd(minus_two, c1[r], xr + yn1);
        e0 = e0 > zero ? e0 : zero;  // also maps a NaN (overflow) to 0
        e1 = e1 > zero ? e1 : zero;
        c0[r] = e0;
        c1[r] = e1;
        if (r >= rows) {
          row_mask[r] = col_mask[r] = 0;
          continue;
        }
        const V tr = simd::Set1(bound[ir + r]);
        row_mask[r] = (simd::LessEqualMask(e0, tr) | simd::LessEqualMask(e1, tr) << L) & col_valid;
        col_mask[r] = kColumns ? (simd::LessEqualMask(e0, tc0) | simd::LessEqualMask(e1, tc1) << L) &
                                     col_valid
                               : 0u;
        any |= row_mask[r] | col_mask[r];
      }
      if (any == 0) continue;  // the common case once the buffers are cut
      T d[kMr][kNr];
      for (int r = 0; r < rows; ++r) {
        simd::Store(d[r], c0[r]);
        simd::Store(d[r] + L, c1[r]);
      }
      for (int r = 0; r < rows; ++r) {
        const int64_t i = ir + r;
        for (unsigned bits = row_mask[r]; bits != 0; bits &= bits - 1) {
          const int c = __builtin_ctz(bits);
          const int64_t j = jc + c;
          if (diagonal && j == i) continue;
          cands.Offer(row_base + i, d[r][c], ids != nullptr ? ids[j] : j);
        }
        for (unsigned bits = col_mask[r]; bits != 0; bits &= bits - 1) {
          const int c = __builtin_ctz(bits);
          cands.Offer(row_base + jc + c, d[r][c], ids[i]);
        }
      }
    }
  }
}

// Packs panel p of the rows of src (rows x dim) minus ref into `w`-row
// panels (rows padded to rows_pad) and, unless norms is null, writes their
// squared norms (zeros past rows).
template <typename T>
void PackRows(const T* src, const T* ref, int64_t rows, int64_t rows_pad, int64_t dim, int w,
              T* panels, T* norms, int64_t p) {
  Gemm<T>::Pack(src, ref, rows, rows_pad, dim, w, panels, p, p + 1);
  for (int64_t r = p * w; norms != nullptr && r < (p + 1) * w; ++r) {
    T s = 0;
    for (int64_t q = 0; r < rows && q < dim; ++q) {
      const T t = src[r * dim + q] - ref[q];
      s += t * t;
    }
    norms[r] = s;
  }
}

}  // namespace

template <typename T>
void NearestNeighborsCpu(const T* x, const T* y, int64_t batch, int64_t n, int64_t m,
                         int64_t dim, int64_t k, int64_t* indices, T* sq_distances,
                         const ParallelFor& parallel_for) {
  const bool self = (y == nullptr);
  if (self) m = n;
  if (batch <= 0 || n <= 0 || k <= 0) return;
  const int64_t available = self ? n - 1 : m;
  const int64_t kc = std::min(available, k + kMargin);
  constexpr int kNr = Gemm<T>::kNr;
  const int64_t n_pad = (n + kBlock - 1) / kBlock * kBlock;
  const int64_t m_pad = (m + kBlock - 1) / kBlock * kBlock;
  // Step 1: x as kMr panels (the tiles' rows); for self-search x again as
  // kNr panels (the columns), else y as kNr panels.
  std::vector<T> xp(batch * n_pad * dim), yp(batch * m_pad * dim);
  std::vector<T> xn(batch * n_pad + kNr), yn(self ? 0 : batch * m_pad + kNr);
  std::vector<T> refs(batch * dim);
  parallel_for(batch, (n + m) * dim * 2, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b)
      BoxMidpoint(x + b * n * dim, n, self ? nullptr : y + b * m * dim, m, dim,
                  refs.data() + b * dim);
  });
  // Self-search packs the rows in TreeOrder: xs holds them in that order.
  std::vector<int64_t> order(self ? batch * n : 0);
  std::vector<T> xs(self ? batch * n * dim : 0);
  if (self) {
    parallel_for(batch, n * dim * 40, [&](int64_t begin, int64_t end) {
      for (int64_t b = begin; b < end; ++b) {
        int64_t* ob = order.data() + b * n;
        TreeOrder(x + b * n * dim, n, dim, ob);
        for (int64_t r = 0; r < n; ++r)
          std::copy_n(x + (b * n + ob[r]) * dim, dim, xs.data() + (b * n + r) * dim);
      }
    });
  }
  const T* xrows = self ? xs.data() : x;
  const int64_t xpanels = n_pad / kMr, ypanels = m_pad / kNr;
  parallel_for(batch * (xpanels + ypanels), kNr * dim * 4, [&](int64_t begin, int64_t end) {
    for (int64_t u = begin; u < end; ++u) {
      const int64_t b = u / (xpanels + ypanels), q = u % (xpanels + ypanels);
      const T* ref = refs.data() + b * dim;
      if (q < xpanels) {
        PackRows(xrows + b * n * dim, ref, n, n_pad, dim, kMr, xp.data() + b * n_pad * dim,
                 xn.data() + b * n_pad, q);
      } else {
        // Self: the norms are those of x, already written by the x panels.
        T* norms = self ? nullptr : yn.data() + b * m_pad;
        PackRows(self ? xrows + b * n * dim : y + b * m * dim, ref, m, m_pad, dim, kNr,
                 yp.data() + b * m_pad * dim, norms, q - xpanels);
      }
    }
  });
  // Step 2.
  Candidates<T> cands(batch * n, kc);
  const int64_t blocks = n_pad / kBlock;
  const int64_t tile_cost = kBlock * kBlock * dim * 2;
  auto tile = [&](int64_t b, int64_t bi, int64_t bj, bool columns) {
    const int64_t i0 = bi * kBlock, j0 = bj * kBlock;
    const T* xpb = xp.data() + b * n_pad * dim;
    const T* ypb = yp.data() + b * m_pad * dim;
    const T* xnb = xn.data() + b * n_pad;
    const T* ynb = self ? xnb : yn.data() + b * m_pad;
    const int64_t i1 = std::min(n, i0 + kBlock);
    const int64_t j1 = self ? std::min(n, j0 + kBlock) : m;
    const int64_t* ids = self ? order.data() + b * n : nullptr;
    if (columns)
      ScanTile<T, true>(xpb, ypb, xnb, ynb, dim, i0, i1, j0, j1, false, b * n, ids, cands);
    else
      ScanTile<T, false>(xpb, ypb, xnb, ynb, dim, i0, i1, j0, j1, self && bi == bj, b * n, ids,
                         cands);
  };
  if (!self) {
    parallel_for(batch * blocks, tile_cost * (m_pad / kBlock), [&](int64_t begin, int64_t end) {
      for (int64_t u = begin; u < end; ++u) tile(u / blocks, u % blocks, 0, false);
    });
  } else {
    parallel_for(batch * blocks, tile_cost, [&](int64_t begin, int64_t end) {
      for (int64_t u = begin; u < end; ++u) tile(u / blocks, u % blocks, u % blocks, false);
    });
    // Circle method: slot slots - 1 stays, the others rotate; with an odd
    // number of blocks the fixed slot is a bye.
    const int64_t slots = blocks + (blocks & 1);
    std::vector<std::pair<int64_t, int64_t>> pairs;
    for (int64_t round = 0; round + 1 < slots; ++round) {
      pairs.clear();
      for (int64_t q = 0; q < slots / 2; ++q) {
        const int64_t a = q == 0 ? slots - 1 : (round + q) % (slots - 1);
        const int64_t c = (round - q + slots - 1) % (slots - 1);
        if (a < blocks && c < blocks) pairs.emplace_back(a, c);
      }
      const int64_t per_batch = static_cast<int64_t>(pairs.size());
      parallel_for(batch * per_batch, tile_cost, [&](int64_t begin, int64_t end) {
        for (int64_t u = begin; u < end; ++u) {
          const auto [a, c] = pairs[u % per_batch];
          tile(u / per_batch, a, c, true);
        }
      });
    }
  }
  // Step 3.
  parallel_for(batch * n, cands.cap * 8 + kc * (dim * 3 + 8), [&](int64_t begin, int64_t end) {
    using Pair = typename Candidates<T>::Pair;
    std::vector<Pair> exact;
    for (int64_t u = begin; u < end; ++u) {
      const int64_t b = u / n, i = self ? order[u] : u % n;  // u: a position, i: the row
      const T* xi = x + (b * n + i) * dim;
      const T* yb = self ? x + b * n * dim : y + b * m * dim;
      cands.Select(u, &exact);
      int64_t q = 0;
      for (; q + 4 <= kc; q += 4) {
        double e[4];
        ExactSquaredDistances4(xi, yb + exact[q].second * dim, yb + exact[q + 1].second * dim,
                               yb + exact[q + 2].second * dim, yb + exact[q + 3].second * dim, dim, e);
        for (int l = 0; l < 4; ++l) exact[q + l].first = static_cast<T>(e[l]);
      }
      for (; q < kc; ++q)
        exact[q].first = static_cast<T>(ExactSquaredDistance(xi, yb + exact[q].second * dim, dim));
      std::sort(exact.begin(), exact.begin() + kc);  // kc is k + 8: a sort beats a partial one
      int64_t* oi = indices + (b * n + i) * k;
      T* od = sq_distances + (b * n + i) * k;
      for (int64_t q = 0; q < k; ++q) {
        oi[q] = exact[q].second;
        od[q] = exact[q].first;
      }
    }
  });
}

template void NearestNeighborsCpu<float>(const float*, const float*, int64_t, int64_t, int64_t,
                                         int64_t, int64_t, int64_t*, float*, const ParallelFor&);
template void NearestNeighborsCpu<double>(const double*, const double*, int64_t, int64_t, int64_t,
                                          int64_t, int64_t, int64_t*, double*, const ParallelFor&);

}  // namespace TSNE_CPU_ISA
}  // namespace kernels
}  // namespace tsne_ops
