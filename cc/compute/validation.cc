#include "cc/compute/validation.h"

#include "cc/compute/barnes_hut.h"
#include "cc/compute/fft_interpolation.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <sstream>

namespace tsne_ops {
namespace kernels {

namespace {

std::string IndexString(int64_t flat, const Shape& shape) {
  Shape idx(shape.size(), 0);
  for (int64_t k = static_cast<int64_t>(shape.size()) - 1; k >= 0; --k) {
    const int64_t extent = std::max<int64_t>(1, shape[k]);
    idx[k] = flat % extent;
    flat /= extent;
  }
  std::ostringstream s;
  s << "[";
  for (size_t k = 0; k < idx.size(); ++k) s << (k ? ", " : "") << idx[k];
  s << "]";
  return s.str();
}

template <typename T>
std::string ValueString(T v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  std::ostringstream s;
  s.precision(17);
  s << static_cast<double>(v);
  return s.str();
}

// Index of the first element failing `ok`, or -1. Sharded scan; the answer
// is the smallest failing index whatever the sharding.
template <typename T, typename Ok>
int64_t FirstBad(const T* data, int64_t size, const ParallelFor* parallel_for, Ok ok) {
  const int64_t block = 1 << 16;
  const int64_t blocks = (size + block - 1) / block;
  Shape first(blocks, -1);
  auto scan = [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t lo = b * block, hi = std::min(size, lo + block);
      bool all_ok = true;
      for (int64_t i = lo; i < hi; ++i) all_ok &= ok(data[i]);  // branch-free, vectorises
      if (all_ok) continue;
      for (int64_t i = lo; i < hi; ++i) {
        if (!ok(data[i])) { first[b] = i; break; }
      }
    }
  };
  if (parallel_for != nullptr) {
    (*parallel_for)(blocks, block * 2, scan);
  } else {
    scan(0, blocks);
  }
  for (int64_t b = 0; b < blocks; ++b) {
    if (first[b] >= 0) return first[b];
  }
  return -1;
}

int64_t Product(const Shape& shape) {
  int64_t n = 1;
  for (int64_t s : shape) n *= s;
  return n;
}

}  // namespace

std::string ShapeString(const Shape& shape) {
  std::string s = "[";
  for (size_t k = 0; k < shape.size(); ++k) s += (k ? "," : "") + std::to_string(shape[k]);
  return s + "]";
}

std::string NumberString(double value) {
  if (std::isnan(value)) return "nan";
  if (std::isinf(value)) return value > 0 ? "inf" : "-inf";
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%g", value);
  return buf;
}


template <typename T>
std::string CheckAllFinite(const T* data, const Shape& shape,
                           const char* name, const ParallelFor* parallel_for) {
  const int64_t bad = FirstBad(data, Product(shape), parallel_for,
                               [](T v) { return (v - v) == T(0); });
  if (bad < 0) return "";
  return std::string(name) + " must be finite, but " + name +
         IndexString(bad, shape) + " = " + ValueString(data[bad]);
}

template <typename T>
std::string CheckNonNegativeFinite(const T* data, const Shape& shape,
                                   const char* name, const ParallelFor* parallel_for) {
  const int64_t bad = FirstBad(data, Product(shape), parallel_for,
                               [](T v) { return (v - v) == T(0) && v >= T(0); });
  if (bad < 0) return "";
  return std::string(name) + " must be finite and non-negative, but " + name +
         IndexString(bad, shape) + " = " + ValueString(data[bad]);
}

template std::string CheckAllFinite<float>(const float*, const Shape&, const char*, const ParallelFor*);
template std::string CheckAllFinite<double>(const double*, const Shape&, const char*, const ParallelFor*);
template std::string CheckNonNegativeFinite<float>(const float*, const Shape&, const char*, const ParallelFor*);
template std::string CheckNonNegativeFinite<double>(const double*, const Shape&, const char*, const ParallelFor*);


template <typename T>
std::string CheckDistancesFinite(const T* d, int64_t batch, int64_t n, int64_t m, bool cross) {
  const int64_t bad = FirstBad(d, batch * n * m, nullptr, [](T v) { return (v - v) == T(0); });
  if (bad < 0) return "";
  const int64_t b = bad / (n * m), i = (bad / m) % n, j = bad % m;
  const char* other = cross ? "y" : "x";
  return "the squared distance between x[" + std::to_string(b) + ", " + std::to_string(i) +
         "] and " + other + "[" + std::to_string(b) + ", " + std::to_string(j) + "] overflows " +
         (sizeof(T) == 4 ? "float32" : "float64") + " (the inputs are finite); scale " +
         (cross ? "x and y" : "x") + " down";
}

template std::string CheckDistancesFinite<float>(const float*, int64_t, int64_t, int64_t, bool);
template std::string CheckDistancesFinite<double>(const double*, int64_t, int64_t, int64_t, bool);

// ---------------------------------------------------------------- scalars --

std::string CheckPositiveFinite(double value, const char* name) {
  if (value > 0 && std::isfinite(value)) return "";
  return std::string(name) + " must be a finite number > 0, but is " + NumberString(value);
}

std::string CheckAtLeast(int64_t value, int64_t min, const char* name) {
  if (value >= min) return "";
  return std::string(name) + " must be >= " + std::to_string(min) + ", but is " +
         std::to_string(value);
}

std::string CheckPerplexity(double perplexity, int64_t n) {
  if (perplexity > 0 && perplexity < static_cast<double>(n - 1) && std::isfinite(perplexity)) {
    return "";
  }
  return "perplexity must be in (0, n - 1) = (0, " + std::to_string(n - 1) + ") for n = " +
         std::to_string(n) + " points, but is " + NumberString(perplexity);
}

std::string CheckPerplexitySearch(double tolerance, int64_t max_iter) {
  std::string msg = CheckPositiveFinite(tolerance, "tolerance");
  if (msg.empty()) msg = CheckAtLeast(max_iter, 1, "max_iter");
  return msg;
}

// ----------------------------------------------------------------- shapes --

namespace {

int64_t Rows(const Shape& s) { return s.size() >= 2 ? s[s.size() - 2] : 0; }
int64_t Cols(const Shape& s) { return s.empty() ? 0 : s.back(); }
int64_t Batch(const Shape& s) { return s.size() == 3 ? s[0] : 1; }

}  // namespace

std::string CheckRank(const Shape& shape, int rank, const char* name, const char* layout) {
  if (static_cast<int>(shape.size()) == rank) return "";
  return std::string(name) + " must be rank " + std::to_string(rank) + " " + layout +
         ", but has shape " + ShapeString(shape);
}

std::string CheckRank2Or3(const Shape& shape, const char* name, const char* layout) {
  if (shape.size() == 2 || shape.size() == 3) return "";
  // layout "[n, k]" -> "[batch, n, k]"
  return std::string(name) + " must be rank 2 " + layout + " or rank 3 [batch, " +
         std::string(layout).substr(1) + ", but has shape " + ShapeString(shape);
}

std::string CheckShapeIs(const Shape& shape, const Shape& expected, const char* name) {
  if (shape == expected) return "";
  return std::string(name) + " must have shape " + ShapeString(expected) + ", but has shape " +
         ShapeString(shape);
}

std::string CheckPoints(const Shape& shape, const char* name, int64_t min_points) {
  if (Cols(shape) < 1) {
    return std::string(name) + " must have dim >= 1, but has shape " + ShapeString(shape);
  }
  if (Rows(shape) < min_points) {
    return std::string(name) + " needs at least " + std::to_string(min_points) +
           (min_points == 1 ? " point" : " points") + ", but has shape " + ShapeString(shape);
  }
  return "";
}

std::string CheckSameBatchAndDim(const Shape& x, const char* x_name, const Shape& y,
                                 const char* y_name) {
  const std::string names = std::string(x_name) + " and " + y_name;
  if (x.size() != y.size()) {
    return names + " must have the same rank, but have shapes " + ShapeString(x) + " and " +
           ShapeString(y);
  }
  if (Batch(x) != Batch(y) || Cols(x) != Cols(y)) {
    return names + " must have the same batch size and dim, but " + x_name + " has shape " +
           ShapeString(x) + " and " + y_name + " has shape " + ShapeString(y);
  }
  return "";
}

std::string CheckSquare(const Shape& shape, const char* name) {
  if (Rows(shape) != Cols(shape)) {
    return std::string(name) + " must be square [batch, n, n], but has shape " +
           ShapeString(shape);
  }
  if (Rows(shape) < 2) {
    return std::string(name) + " needs at least 2 points, but has shape " + ShapeString(shape);
  }
  return "";
}

std::string CheckGradientShapes(const Shape& p, const Shape& y) {
  if (p.size() != y.size()) {
    return "p and y must have the same rank, but have shapes " + ShapeString(p) + " and " +
           ShapeString(y);
  }
  const int64_t n = Rows(y);
  Shape want = p;
  if (want.size() == 3) want[0] = Batch(y);
  if (want.size() >= 2) want[want.size() - 2] = want[want.size() - 1] = n;
  if (p != want) {
    return "p must have shape [batch, n, n] = " + ShapeString(want) + " to match y of shape " +
           ShapeString(y) + ", but has shape " + ShapeString(p);
  }
  return CheckPoints(y, "y", 2);
}

std::string CheckKnnShapes(const Shape& indices, const Shape& sq_distances) {
  if (indices != sq_distances) {
    return "indices and sq_distances must have the same shape [batch, n, k], but have shapes " +
           ShapeString(indices) + " and " + ShapeString(sq_distances);
  }
  const int64_t n = Rows(indices), k = Cols(indices);
  if (n < 2) {
    return "indices needs at least 2 points, but has shape " + ShapeString(indices);
  }
  if (k < 1 || k > n - 1) {
    return "indices must have 1 <= k <= n - 1 = " + std::to_string(n - 1) +
           " neighbours, but k = " + std::to_string(k);
  }
  return "";
}

std::string CheckKnnPerplexity(double perplexity, int64_t k) {
  if (perplexity > 0 && perplexity < static_cast<double>(k) && std::isfinite(perplexity)) {
    return "";
  }
  return "perplexity must be in (0, k) = (0, " + std::to_string(k) + ") for k = " +
         std::to_string(k) + " neighbours, but is " + NumberString(perplexity);
}

// ------------------------------------------------ exact nearest neighbours --

std::string CheckNearestNeighborsShapes(const Shape& x, const Shape* y) {
  std::string msg = CheckPoints(x, "x", y ? 1 : 2);
  if (msg.empty() && y) msg = CheckPoints(*y, "y", 1);
  if (msg.empty() && y) msg = CheckSameBatchAndDim(x, "x", *y, "y");
  return msg;
}

std::string CheckNearestNeighborsK(int64_t k, int64_t n, int64_t m, bool self) {
  const int64_t limit = self ? n - 1 : m;
  if (k >= 1 && k <= limit) return "";
  std::string msg = "k must be in [1, " + std::to_string(limit) + "] (";
  msg += self ? "n - 1 for the neighbours of x among its own " + std::to_string(n) + " points"
              : "m, the number of points in y";
  msg += "), but k = " + std::to_string(k);
  return msg;
}

// ---------------------------------------------------- FFT interpolation ----

std::string CheckFftShapes(const Shape& y, const Shape& origin, const Shape& box_width) {
  std::string msg = CheckRank(y, 3, "y", "[batch, n, d]");
  if (!msg.empty()) return msg;
  const int64_t batch = y[0], d = y[2];
  if (d != 1 && d != 2) {
    return "the FFT interpolation supports d = 1 or 2, but y has shape " + ShapeString(y);
  }
  if (origin != Shape{batch, d}) {
    return "origin must be [batch, d] = [" + std::to_string(batch) + ", " + std::to_string(d) +
           "], but has shape " + ShapeString(origin);
  }
  if (box_width != Shape{batch}) {
    return "box_width must be [batch] = [" + std::to_string(batch) + "], but has shape " +
           ShapeString(box_width);
  }
  return "";
}

std::string CheckFftCharges(const Shape& charges, const Shape& y) {
  std::string msg = CheckRank(charges, 3, "charges", "[batch, n, c]");
  if (!msg.empty()) return msg;
  if (charges[0] != y[0] || charges[1] != y[1]) {
    return "charges must be [batch, n, c] with [batch, n] = [" + std::to_string(y[0]) + ", " +
           std::to_string(y[1]) + "] from y, but has shape " + ShapeString(charges);
  }
  return "";
}

std::string CheckFftBoxes(int64_t n_boxes, int p, int64_t d) {
  // Bounds the grid a caller can ask for: 2^31 nodes (16 GiB of float64).
  if (n_boxes >= 1 && n_boxes * p <= (d == 2 ? 46340 : (int64_t{1} << 31))) return "";
  return "n_boxes must be >= 1 and give at most 2^31 grid nodes, but is " +
         std::to_string(n_boxes);
}

std::string CheckFftPotentials(const Shape& v, const Shape& y, int p) {
  if (p < 1 || p > kFftMaxNodes) {
    return "interpolation_points must be in [1, " + std::to_string(kFftMaxNodes) + "], but is " +
           std::to_string(p);
  }
  const int64_t batch = y[0], d = y[2];
  bool ok = static_cast<int64_t>(v.size()) == 2 + d && v[0] == batch && v[1] >= 1 &&
            v[2] >= p && v[2] % p == 0;
  if (ok && d == 2) ok = v[3] == v[2];
  if (ok) return "";
  return std::string("potentials must be [batch, c") + (d == 2 ? ", m, m" : ", m") +
         "] with batch = " + std::to_string(batch) +
         " and m a multiple of interpolation_points = " + std::to_string(p) +
         ", but has shape " + ShapeString(v);
}

std::string CheckFftSizes(int64_t d, int p, int64_t n_charges, int64_t n_boxes) {
  if (d != 1 && d != 2) return "y must have d = 1 or 2, but d = " + std::to_string(d);
  if (p < 1 || p > kFftMaxNodes) {
    return "interpolation_points must be in [1, " + std::to_string(kFftMaxNodes) + "], but is " +
           std::to_string(p);
  }
  if (n_charges < 1 || n_charges > kFftMaxCharges) {
    return "charges must have 1 to " + std::to_string(kFftMaxCharges) + " columns, but has " +
           std::to_string(n_charges);
  }
  if (n_boxes < 1) return "n_boxes must be >= 1, but is " + std::to_string(n_boxes);
  return "";
}

// ------------------------------------------------------------- Barnes-Hut ---

std::string CheckBarnesHutArgs(const std::vector<int64_t>& y_shape, double dof, double angle) {
  const int64_t d = y_shape.empty() ? 0 : y_shape.back();
  if (d < 1 || d > 3) {
    return "Barnes-Hut repulsion needs an embedding of d = 1, 2 or 3 dimensions (a tree of "
           "2^d-ary cells), but y has d = " + std::to_string(d);
  }
  std::string msg = CheckPoints(y_shape, "y", 2);
  if (msg.empty()) msg = CheckPositiveFinite(dof, "dof");
  if (msg.empty() && !(angle >= 0 && std::isfinite(angle))) {
    msg = "angle must be a finite number >= 0, but is " + NumberString(angle);
  }
  return msg;
}

template <typename T>
std::string CheckBarnesHutResult(const T* repulsion, const T* z, int64_t batch, int64_t n,
                                 int64_t d) {
  bool finite = true;
  for (int64_t e = 0; e < batch * n * d; ++e) finite &= std::isfinite(repulsion[e]);
  for (int64_t b = 0; b < batch; ++b) finite &= std::isfinite(z[b]);
  if (finite) return "";
  return "the Barnes-Hut repulsion overflowed (y is finite); are y's coordinates beyond about "
         "1e150?";
}

template std::string CheckBarnesHutResult<float>(const float*, const float*, int64_t, int64_t,
                                                 int64_t);
template std::string CheckBarnesHutResult<double>(const double*, const double*, int64_t, int64_t,
                                                  int64_t);

}  // namespace kernels
}  // namespace tsne_ops
