// Checks and conversions of sparse index lists shared by the sparse kernels,
// the op library and the pybind11 module (plain C++, built once).
#include <algorithm>
#include <sstream>
#include <vector>

#include "cc/compute/sparse_affinities.h"
#include "cc/compute/sparse_tsne_gradient.h"

namespace tsne_ops {
namespace kernels {
namespace {

// The message for row u of a kNN index array, or "" when the row is fine.
std::string KnnRowProblem(const int64_t* row, int64_t n, int64_t k, int64_t u, const char* name,
                          std::vector<int64_t>& sorted) {
  const int64_t b = u / n, i = u % n;
  std::ostringstream m;
  for (int64_t t = 0; t < k; ++t) {
    if (row[t] < 0 || row[t] >= n) {
      m << name << " must be in [0, n) = [0, " << n << "), but " << name << "[" << b << ", " << i
        << ", " << t << "] = " << row[t];
      return m.str();
    }
    if (row[t] == i) {
      m << name << " must not list a point as its own neighbour, but " << name << "[" << b
        << ", " << i << ", " << t << "] = " << i;
      return m.str();
    }
  }
  sorted.assign(row, row + k);
  std::sort(sorted.begin(), sorted.end());
  const auto dup = std::adjacent_find(sorted.begin(), sorted.end());
  if (dup != sorted.end()) {
    m << name << " must hold k distinct neighbours per row, but row " << name << "[" << b << ", "
      << i << "] lists " << *dup << " twice";
    return m.str();
  }
  return "";
}

}  // namespace

std::string CheckKnnIndices(const int64_t* indices, int64_t batch, int64_t n, int64_t k,
                            const char* name, const ParallelFor* parallel_for) {
  const int64_t rows = batch * n;
  std::vector<char> bad(rows, 0);
  auto scan = [&](int64_t begin, int64_t end) {
    std::vector<int64_t> sorted;
    for (int64_t u = begin; u < end; ++u)
      bad[u] = !KnnRowProblem(indices + u * k, n, k, u, name, sorted).empty();
  };
  if (parallel_for != nullptr) (*parallel_for)(rows, k * 20, scan); else scan(0, rows);
  // The first bad row, whatever the sharding.
  for (int64_t u = 0; u < rows; ++u) {
    if (bad[u]) {
      std::vector<int64_t> sorted;
      return KnnRowProblem(indices + u * k, n, k, u, name, sorted);
    }
  }
  return "";
}

std::string CooToCsr(const int64_t* indices, int64_t nnz, int64_t batch, int64_t n,
                     const char* name, int64_t* row_ptr, int64_t* cols) {
  std::fill(row_ptr, row_ptr + batch * n + 1, 0);
  int64_t prev = -1;  // the previous entry's flat position b * n * n + i * n + j
  for (int64_t e = 0; e < nnz; ++e) {
    const int64_t* ix = indices + 3 * e;
    const int64_t lim[3] = {batch, n, n};
    for (int c = 0; c < 3; ++c) {
      if (ix[c] < 0 || ix[c] >= lim[c]) {
        std::ostringstream m;
        m << name << " indices must lie inside the dense shape [" << batch << ", " << n << ", "
          << n << "], but entry " << e << " is [" << ix[0] << ", " << ix[1] << ", " << ix[2]
          << "]";
        return m.str();
      }
    }
    const int64_t flat = (ix[0] * n + ix[1]) * n + ix[2];
    if (flat <= prev) {
      std::ostringstream m;
      m << name << " must be in canonical row-major order with no duplicates "
        << "(tf.sparse.reorder, and sum duplicates), but entry " << e << " [" << ix[0] << ", "
        << ix[1] << ", " << ix[2] << "] " << (flat == prev ? "repeats" : "comes after")
        << " entry " << e - 1;
      return m.str();
    }
    prev = flat;
    ++row_ptr[ix[0] * n + ix[1] + 1];
    cols[e] = ix[2];
  }
  for (int64_t u = 0; u < batch * n; ++u) row_ptr[u + 1] += row_ptr[u];
  return "";
}

}  // namespace kernels
}  // namespace tsne_ops
