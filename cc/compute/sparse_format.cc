// Checks and conversions of sparse index lists shared by the sparse kernels,
// the op library and the pybind11 module (plain C++, built once).
#include <algorithm>
#include <atomic>
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

namespace {

// Entry ix of a COO list of rank 3 (b, i, j) or rank 2 (i, j; batch 0).
struct CooEntry {
  int64_t b, i, j;
};

CooEntry CooAt(const int64_t* indices, int rank, int64_t e) {
  const int64_t* ix = indices + rank * e;
  return rank == 3 ? CooEntry{ix[0], ix[1], ix[2]} : CooEntry{0, ix[0], ix[1]};
}

bool CooInRange(const CooEntry& c, int64_t batch, int64_t n) {
  return c.b >= 0 && c.b < batch && c.i >= 0 && c.i < n && c.j >= 0 && c.j < n;
}

// "[b, i, j]" (rank 3) or "[i, j]" (rank 2): an entry or a dense shape as the
// caller wrote it.
std::string CooText(const CooEntry& c, int rank) {
  std::ostringstream m;
  m << "[";
  if (rank == 3) m << c.b << ", ";
  m << c.i << ", " << c.j << "]";
  return m.str();
}

// The message for COO entry e, or "" when e is in range and after entry e - 1.
std::string CooEntryProblem(const int64_t* indices, int rank, int64_t e, int64_t batch, int64_t n,
                            const char* name) {
  const CooEntry c = CooAt(indices, rank, e);
  if (!CooInRange(c, batch, n)) {
    std::ostringstream m;
    m << name << " indices must lie inside the dense shape " << CooText({batch, n, n}, rank)
      << ", but entry " << e << " is " << CooText(c, rank);
    return m.str();
  }
  // Entry e - 1 out of range is its own (earlier) problem.
  if (e == 0) return "";
  const CooEntry pv = CooAt(indices, rank, e - 1);
  if (!CooInRange(pv, batch, n)) return "";
  const int64_t flat = (c.b * n + c.i) * n + c.j;
  const int64_t prev = (pv.b * n + pv.i) * n + pv.j;
  if (flat <= prev) {
    std::ostringstream m;
    m << name << " must be in canonical row-major order with no duplicates "
      << "(tf.sparse.reorder, and sum duplicates), but entry " << e << " " << CooText(c, rank)
      << " " << (flat == prev ? "repeats" : "comes after") << " entry " << e - 1;
    return m.str();
  }
  return "";
}

}  // namespace

std::string CooToCsr(const int64_t* indices, int rank, int64_t nnz, int64_t batch, int64_t n,
                     const char* name, int64_t* row_ptr, int64_t* cols,
                     const ParallelFor* parallel_for) {
  if (rank != 2 && rank != 3) {
    std::ostringstream m;
    m << name << " indices must have 2 or 3 columns, but have " << rank;
    return m.str();
  }
  if (rank == 2 && batch != 1) {
    std::ostringstream m;
    m << name << " indices of rank 2 (i, j) describe one [n, n] matrix, but batch = " << batch;
    return m.str();
  }
  // Entry e starts the rows (row(e - 1), row(e)]: each row_ptr slot has one
  // writer, so ranges of entries run in parallel with no atomics beyond the
  // first bad entry (the smallest over the ranges, so the message is the one
  // a serial scan gives).
  const int64_t rows = batch * n;
  std::atomic<int64_t> first_bad{nnz};
  auto work = [&](int64_t begin, int64_t end) {
    // The previous entry's row and flat position, carried along the range
    // (-1 before the first entry, and when entry begin - 1 is out of range:
    // that is then its own, earlier, problem, and -1 keeps the row_ptr writes
    // in bounds).
    int64_t prev_row = -1, prev_flat = -1;
    if (begin > 0) {
      const CooEntry pv = CooAt(indices, rank, begin - 1);
      if (CooInRange(pv, batch, n)) {
        prev_row = pv.b * n + pv.i;
        prev_flat = prev_row * n + pv.j;
      }
    }
    for (int64_t e = begin; e < end; ++e) {
      const CooEntry c = CooAt(indices, rank, e);
      if (!CooInRange(c, batch, n)) {
        AtomicMin(&first_bad, e);
        return;
      }
      const int64_t row = c.b * n + c.i;
      const int64_t flat = row * n + c.j;
      if (flat <= prev_flat) {
        AtomicMin(&first_bad, e);
        return;
      }
      for (int64_t r = prev_row + 1; r <= row; ++r) row_ptr[r] = e;
      cols[e] = c.j;
      prev_row = row;
      prev_flat = flat;
    }
  };
  if (parallel_for != nullptr && *parallel_for) {
    (*parallel_for)(nnz, 40, work);
  } else {
    work(0, nnz);
  }
  if (first_bad.load() < nnz) {
    return CooEntryProblem(indices, rank, first_bad.load(), batch, n, name);
  }
  int64_t last_row = -1;
  if (nnz > 0) {
    const CooEntry c = CooAt(indices, rank, nnz - 1);
    last_row = c.b * n + c.i;
  }
  for (int64_t r = last_row + 1; r <= rows; ++r) row_ptr[r] = nnz;
  return "";
}

std::string CsrRowPtrMessage(int64_t u, int64_t prev, int64_t value, int64_t rows,
                             int64_t nnz) {
  std::ostringstream m;
  if (u == 0 && value != 0) {
    m << "row_ptr[0] must be 0, but is " << value;
  } else if (u > 0 && value < prev) {
    m << "row_ptr must be non-decreasing, but row_ptr[" << u << "] = " << value << " < row_ptr["
      << u - 1 << "] = " << prev;
  } else {
    m << "row_ptr's last entry row_ptr[" << rows << "] must equal nnz = " << nnz
      << " (the size of cols and p_values), but is " << value;
  }
  return m.str();
}

std::string CsrColumnMessage(int64_t e, int64_t value, int64_t n) {
  std::ostringstream m;
  m << "cols must be in [0, n) = [0, " << n << "), but cols[" << e << "] = " << value;
  return m.str();
}

std::string CheckCsrRowPtr(const int64_t* row_ptr, int64_t rows, int64_t nnz) {
  for (int64_t u = 0; u <= rows; ++u) {
    if (CsrRowPtrBad(row_ptr, u, rows, nnz)) {
      return CsrRowPtrMessage(u, u > 0 ? row_ptr[u - 1] : 0, row_ptr[u], rows, nnz);
    }
  }
  return "";
}

}  // namespace kernels
}  // namespace tsne_ops
