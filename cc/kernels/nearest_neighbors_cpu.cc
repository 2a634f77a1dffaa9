// CPU exact k nearest neighbours (contract in nearest_neighbors.h).
//
// The work is that of the distance matrix (n m dim multiply-adds), so it runs
// on the distance kernel's packed GEMM micro-kernel, one kRowBlock x
// kColBlock tile at a time: memory stays O((n + m) dim) plus one tile and
// one candidate heap per row per thread, never [n, m].
//
// Three steps per batch:
//  1. Centre x and y on the midpoint of their bounding box. The GEMM form
//     |x|^2 + |y|^2 - 2 x.y loses about eps |x|^2 to cancellation; after
//     centring that is eps times the squared spread of the data instead of
//     eps times its squared distance from the origin, so a constant offset
//     (data at 1e4) costs nothing. The midpoint (not the mean) keeps grid
//     data on a grid, so small-integer data stays exact even in float32.
//  2. Per row, a bounded max-heap of the kc = k + kMargin smallest
//     (GEMM distance, index) pairs over the column tiles, scanned in index
//     order (an equal distance arriving later has a larger index, so it
//     loses the tie).
//  3. The kc candidates' distances recomputed directly, sum of (x - y)^2 in
//     double on the original data, then sorted by (distance rounded to T,
//     index) and the first k written. The margin lets the exact recomputation
//     reorder near-ties across the k-th place that the GEMM form could not
//     tell apart; the returned distances are exact whatever the GEMM error.
//
// Units are (batch, row block); each writes only its own rows and scans in a
// fixed order, so the result does not depend on the thread count. This file
// is compiled with -ffp-contract=off (CMakeLists) so the double sums in
// step 3 are the same plain multiply-then-add sequence in the baseline and
// the AVX2 build and on the GPU (which uses __dmul_rn / __dadd_rn).
#include <algorithm>
#include <utility>
#include <vector>

#include "cc/kernels/cpu_isa.h"
#include "cc/kernels/distances.h"
#include "cc/kernels/nearest_neighbors.h"

namespace tsne_ops {
namespace kernels {
namespace TSNE_CPU_ISA {
namespace {

// Multiples of the distance kernel's 96 x 96 tile, so its padding is not
// wasted. Each call re-packs its kColBlock rows of y and their norms, so the
// row block is tall to keep that O(n m dim / kRowBlock) copying small next to
// the GEMM; a float32 tile is 1.2 MB.
constexpr int64_t kRowBlock = 384;
constexpr int64_t kColBlock = 768;
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

template <typename T>
void Centre(const T* src, int64_t rows, int64_t dim, const T* ref, T* out) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t q = 0; q < dim; ++q) out[r * dim + q] = src[r * dim + q] - ref[q];
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
  // Step 1, all batches at once (one unit per batch).
  std::vector<T> xc(batch * n * dim), yc(self ? 0 : batch * m * dim);
  parallel_for(batch, (n + m) * dim * 4, [&](int64_t begin, int64_t end) {
    std::vector<T> ref(dim);
    for (int64_t b = begin; b < end; ++b) {
      const T* xb = x + b * n * dim;
      const T* yb = self ? nullptr : y + b * m * dim;
      BoxMidpoint(xb, n, yb, m, dim, ref.data());
      Centre(xb, n, dim, ref.data(), xc.data() + b * n * dim);
      if (!self) Centre(yb, m, dim, ref.data(), yc.data() + b * m * dim);
    }
  });
  const int64_t blocks = (n + kRowBlock - 1) / kRowBlock;
  using Candidate = std::pair<T, int64_t>;  // (distance, index): compares lexicographically
  parallel_for(batch * blocks, kRowBlock * m * dim * 2, [&](int64_t begin, int64_t end) {
    const ParallelFor serial = SerialFor();
    std::vector<T> tile(kRowBlock * kColBlock);
    std::vector<Candidate> heaps(kRowBlock * kc), exact(kc);
    std::vector<int64_t> sizes(kRowBlock);
    for (int64_t u = begin; u < end; ++u) {
      const int64_t b = u / blocks, i0 = (u % blocks) * kRowBlock;
      const int64_t rows = std::min(kRowBlock, n - i0);
      const T* xb = x + b * n * dim;
      const T* yb = self ? xb : y + b * m * dim;
      const T* xcb = xc.data() + b * n * dim;
      const T* ycb = self ? xcb : yc.data() + b * m * dim;
      std::fill(sizes.begin(), sizes.end(), 0);
      // Step 2.
      for (int64_t j0 = 0; j0 < m; j0 += kColBlock) {
        const int64_t cols = std::min(kColBlock, m - j0);
        PairwiseSquaredDistanceCpu<T>(xcb + i0 * dim, ycb + j0 * dim, 1, rows, cols, dim,
                                      tile.data(), serial);
        for (int64_t r = 0; r < rows; ++r) {
          const int64_t i = i0 + r;
          Candidate* h = heaps.data() + r * kc;
          int64_t& size = sizes[r];
          const T* dr = tile.data() + r * cols;
          for (int64_t c = 0; c < cols; ++c) {
            const T d = dr[c];
            if (size == kc && !(d < h[0].first)) continue;  // the common case: rejected
            const int64_t j = j0 + c;
            if (self && j == i) continue;
            if (size < kc) {
              h[size++] = Candidate(d, j);
              std::push_heap(h, h + size);
            } else {
              std::pop_heap(h, h + kc);
              h[kc - 1] = Candidate(d, j);
              std::push_heap(h, h + kc);
            }
          }
        }
      }
      // Step 3.
      for (int64_t r = 0; r < rows; ++r) {
        const int64_t i = i0 + r;
        const Candidate* h = heaps.data() + r * kc;
        for (int64_t q = 0; q < kc; ++q) {
          const int64_t j = h[q].second;
          exact[q] = Candidate(static_cast<T>(ExactSquaredDistance(xb + i * dim, yb + j * dim, dim)), j);
        }
        std::partial_sort(exact.begin(), exact.begin() + k, exact.end());
        int64_t* oi = indices + (b * n + i) * k;
        T* od = sq_distances + (b * n + i) * k;
        for (int64_t q = 0; q < k; ++q) {
          oi[q] = exact[q].second;
          od[q] = exact[q].first;
        }
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
