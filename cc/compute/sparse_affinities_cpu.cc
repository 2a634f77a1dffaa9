// CPU joint probabilities over a kNN graph (contract in sparse_affinities.h).
//
// Calibration reuses the dense search unchanged. A kNN row of k distances is
// a dense row of a (k + 1)-point problem whose diagonal is a placeholder: row
// u of a [rows, k + 1] matrix has its diagonal at column u % (k + 1), which is
// exactly how PerplexityAffinitiesCpu sees a [rows / (k + 1), k + 1, k + 1]
// batch. So the rows are laid out with the placeholder at that column and the
// search runs as is (one home for the search, its tolerance and its handling
// of unreachable rows). It runs in float64 for both dtypes: O(n k) work, and
// float64 keeps rows whose perplexity cannot be reached finite (their beta
// grows past the float32 range). The last block is padded with all-zero rows;
// such a row's entropy is log(k) at every beta, so whether it counts as
// unconverged is known exactly and is subtracted from the count.
//
// Symmetrisation: the transpose of the graph is built by a counting sort
// (serial, in row order, so every transposed bucket is sorted by source row),
// each row's own neighbours are sorted by column, and the two sorted lists of
// a row are merged: once to count the union, once to write it. Rows are
// independent and written at offsets fixed by the counts: deterministic.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <vector>

#include "cc/compute/affinities.h"
#include "cc/compute/sparse_affinities.h"

namespace tsne_ops {
namespace kernels {

namespace {

// Where neighbour t of row u sits in the calibration layout: rows of w = k + 1
// slots, the placeholder at slot u % w.
inline int64_t SlotOf(int64_t w, int64_t u, int64_t t) { return t + (t >= u % w ? 1 : 0); }

// P = (P_cond + P_cond^T) / sum from the calibrated rows pc (the [rows, k + 1]
// layout above, freed here once read); J holds a row or column number within
// a batch element and a position among the rows * k kNN entries.
template <typename T, typename J>
bool SymmetriseKnn(const int64_t* indices, std::vector<double>& pc, int64_t batch, int64_t n,
                   int64_t k, const SparseAllocator<T>& allocate, const ParallelFor& parallel_for,
                   int index_rank) {
  const int64_t rows = batch * n, w = k + 1;
  auto col_of = [w](int64_t u, int64_t t) { return SlotOf(w, u, t); };
  // Each row's neighbours sorted by column, with their P(j|i).
  std::vector<J> own_j(rows * k);
  std::vector<double> own_p(rows * k), row_sum(rows);
  parallel_for(rows, k * 10, [&](int64_t begin, int64_t end) {
    std::vector<int64_t> order(k);
    for (int64_t u = begin; u < end; ++u) {
      const int64_t* ix = indices + u * k;
      std::iota(order.begin(), order.end(), 0);
      std::sort(order.begin(), order.end(), [ix](int64_t a, int64_t b) { return ix[a] < ix[b]; });
      double s = 0;
      for (int64_t t = 0; t < k; ++t) {
        own_j[u * k + t] = static_cast<J>(ix[order[t]]);
        own_p[u * k + t] = pc[u * w + col_of(u, order[t])];
        s += own_p[u * k + t];
      }
      row_sum[u] = s;
    }
  });
  std::vector<double>().swap(pc);
  // The transpose: bucket v = b * n + j holds, for every i with j among its
  // neighbours, sorted by i, that i and where P(j|i) sits in own_p (a
  // position, not a second copy of the value). Rows are visited in order, so
  // each bucket is sorted by i whatever the order within a row.
  std::vector<int64_t> t_ptr(rows + 1, 0);
  for (int64_t u = 0; u < rows; ++u)
    for (int64_t t = 0; t < k; ++t) ++t_ptr[(u / n) * n + indices[u * k + t] + 1];
  for (int64_t v = 0; v < rows; ++v) t_ptr[v + 1] += t_ptr[v];
  std::vector<J> t_i(rows * k), t_at(rows * k);
  {
    std::vector<int64_t> fill(t_ptr.begin(), t_ptr.end() - 1);
    for (int64_t u = 0; u < rows; ++u) {
      for (int64_t a = u * k; a < u * k + k; ++a) {
        const int64_t v = (u / n) * n + own_j[a];
        t_i[fill[v]] = static_cast<J>(u % n);
        t_at[fill[v]++] = static_cast<J>(a);
      }
    }
  }
  // 1 / sum(P_cond + P_cond^T) per batch element, summed in row order.
  std::vector<double> scale(batch);
  for (int64_t b = 0; b < batch; ++b) {
    double total = 0;
    for (int64_t i = 0; i < n; ++i) total += row_sum[b * n + i];
    total *= 2;
    scale[b] = total > 0 ? 1.0 / total : 0.0;
  }
  // Merge row u's own list with its bucket; emit(j, value) for the union.
  auto merge_row = [&](int64_t u, auto&& emit) {
    int64_t a = u * k, a_end = a + k, c = t_ptr[u], c_end = t_ptr[u + 1];
    while (a < a_end || c < c_end) {
      if (c == c_end || (a < a_end && own_j[a] < t_i[c])) {
        emit(own_j[a], own_p[a]);
        ++a;
      } else if (a == a_end || t_i[c] < own_j[a]) {
        emit(t_i[c], own_p[t_at[c]]);
        ++c;
      } else {
        emit(own_j[a], own_p[a] + own_p[t_at[c]]);
        ++a;
        ++c;
      }
    }
  };
  std::vector<int64_t> out_ptr(rows + 1, 0);
  parallel_for(rows, k * 4, [&](int64_t begin, int64_t end) {
    for (int64_t u = begin; u < end; ++u) {
      int64_t m = 0;
      merge_row(u, [&m](int64_t, double) { ++m; });
      out_ptr[u + 1] = m;
    }
  });
  for (int64_t u = 0; u < rows; ++u) out_ptr[u + 1] += out_ptr[u];
  int64_t* out_indices = nullptr;
  T* out_values = nullptr;
  if (!allocate(out_ptr[rows], &out_indices, &out_values)) return false;
  parallel_for(rows, k * 8, [&](int64_t begin, int64_t end) {
    for (int64_t u = begin; u < end; ++u) {
      const int64_t b = u / n, i = u % n;
      const double s = scale[b];
      int64_t e = out_ptr[u];
      merge_row(u, [&](int64_t j, double v) {
        int64_t* out = out_indices + index_rank * e;
        if (index_rank == 3) *out++ = b;
        out[0] = i;
        out[1] = j;
        out_values[e++] = static_cast<T>(v * s);
      });
    }
  });
  return true;
}

}  // namespace

template <typename T>
bool KnnJointProbabilitiesCpu(const int64_t* indices, const T* sq_dist, int64_t batch,
                              int64_t n, int64_t k, double perplexity, double tolerance,
                              int max_iter, const SparseAllocator<T>& allocate,
                              int64_t* unconverged, const ParallelFor& parallel_for,
                              int index_rank) {
  const int64_t rows = batch * n, w = k + 1;
  const int64_t blocks = (rows + w - 1) / w, padded = blocks * w;
  auto col_of = [w](int64_t u, int64_t t) { return SlotOf(w, u, t); };
  std::vector<double> pc(padded * w);
  {
    std::vector<double> dist(padded * w, 0.0), beta(padded);
    parallel_for(rows, k, [&](int64_t begin, int64_t end) {
      for (int64_t u = begin; u < end; ++u)
        for (int64_t t = 0; t < k; ++t) dist[u * w + col_of(u, t)] = sq_dist[u * k + t];
    });
    int64_t count = PerplexityAffinitiesCpu<double>(dist.data(), blocks, w, perplexity, tolerance,
                                                    max_iter, pc.data(), beta.data(),
                                                    parallel_for);
    if (std::abs(std::log(static_cast<double>(k)) - std::log(perplexity)) > tolerance)
      count -= padded - rows;
    if (unconverged != nullptr) *unconverged = count;
  }
  // Row and column numbers and positions among the kNN entries fit in 32
  // bits up to 2^31 entries (23 million points at k = 90): half the memory
  // of the symmetrisation's three index lists (whose peak, with the output,
  // is the largest of the sparse fit), the same results.
  if (rows * k <= std::numeric_limits<int32_t>::max()) {
    return SymmetriseKnn<T, int32_t>(indices, pc, batch, n, k, allocate, parallel_for,
                                     index_rank);
  }
  return SymmetriseKnn<T, int64_t>(indices, pc, batch, n, k, allocate, parallel_for, index_rank);
}

template bool KnnJointProbabilitiesCpu<float>(const int64_t*, const float*, int64_t, int64_t,
                                              int64_t, double, double, int,
                                              const SparseAllocator<float>&, int64_t*,
                                              const ParallelFor&, int);
template bool KnnJointProbabilitiesCpu<double>(const int64_t*, const double*, int64_t, int64_t,
                                               int64_t, double, double, int,
                                               const SparseAllocator<double>&, int64_t*,
                                               const ParallelFor&, int);

}  // namespace kernels
}  // namespace tsne_ops
