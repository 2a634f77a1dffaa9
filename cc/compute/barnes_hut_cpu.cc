// CPU Barnes-Hut repulsion (contract and the approximation in barnes_hut.h).
//
// One implementation templated on D = d: a cell has 2^D children (binary
// tree, quadtree, octree). The tree is built top-down by a stable counting
// sort of each cell's points into its children, so the point order inside
// every cell, the cells' order and every centre of mass are fixed by the data
// alone. A cell's points are a contiguous range [lo, hi) of that order, and
// the tree keeps their coordinates in that order, one array per axis.
//
// Leaves are buckets of up to kLeafSize points, summed exactly. The
// traversal is by groups of targets (Barnes 1990): the tree is walked once
// per group (a cell of at most kGroupSize points, or a larger leaf), with
// the opening criterion applied to the distance between a cell's centre of
// mass and the group's bounding box, the shortest distance from any of the
// group's points. The walk builds two interaction lists, the single points
// to sum exactly (the buckets opened) and the cells to summarise (centre of
// mass, count, second moment); every point of the group then runs through
// both lists in SIMD loops over contiguous arrays. A cell summarised for the
// group is one every point of the group would have summarised on its own,
// so the error is no higher than the point-by-point walk's. Inside its own
// group a point meets the others exactly (j != i by index, never by
// subtracting i's own term).
//
// Each group writes only its own points' rows; Z is summed per point and
// reduced serially in point order: the result does not depend on the thread
// count. It does depend on the SIMD width of the build (the lists' sums are
// split over lanes), like the other kernels compiled per instruction set.
//
// A point whose sums come out non-finite (cells beyond about 1e150, where the
// second moments overflow while the kernel has underflowed) is recomputed
// one cell at a time, dropping a cell's correction when it is not finite.
#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <vector>

#include "cc/compute/barnes_hut.h"
#include "cc/compute/cpu_isa.h"
#include "cc/compute/simd.h"

namespace tsne_ops {
namespace kernels {
namespace TSNE_CPU_ISA {
namespace {

using simd::vd;
constexpr int kLanes = simd::Traits<double>::L;

// Leaves hold at most kLeafSize points (unless they all coincide or the
// depth cap is reached); a group is the highest cell with at most
// kGroupSize points. Summarised cells of at most kPointCell points go to the
// point list instead (as cheap, and exact). Measured on clustered 70,000
// point embeddings (2 cores): 32 / 128 was 25% faster than 16 / 64 in 3D
// with the error no higher (benchmarks/bench_barnes_hut.py gives the error).
constexpr int64_t kLeafSize = 32;
constexpr int64_t kGroupSize = 128;
constexpr int64_t kPointCell = 2;

// Second moment: the D (D + 1) / 2 entries of the symmetric matrix, row by
// row from the diagonal (xx, xy, xz, yy, yz, zz in 3D).
template <int D>
constexpr int kMoments = D * (D + 1) / 2;
template <int D>
constexpr int MomentIndex(int k, int l) {
  if (k > l) std::swap(k, l);
  return k * D - k * (k - 1) / 2 + (l - k);
}

template <int D>
struct BuildCell {
  double center[D];
  double half_width;
  int64_t lo, hi;
  int64_t first_child = -1;
  int num_children = 0;
};

// The tree of one batch element, cells and points as structures of arrays.
template <int D>
struct Tree {
  int64_t n = 0;
  std::vector<int64_t> order;       // order[p]: the point at place p
  std::array<std::vector<double>, D> x;  // x[k][p]: coordinate k of order[p]
  // Cells; the children of a cell are contiguous.
  std::array<std::vector<double>, D> com;
  std::array<std::vector<double>, kMoments<D>> m2;  // sum (y - com)(y - com)^T
  std::vector<double> trace;        // tr m2
  std::vector<double> width;        // longest side of the points' bounding box
  std::vector<double> offset;       // |com - that box's centre|
  std::vector<double> mass;         // number of points
  std::vector<int64_t> lo, hi, first_child;
  std::vector<int> num_children;    // 0: a leaf
  std::vector<char> coincident;     // all its points at com
  std::vector<int64_t> groups;      // the target groups, in place order
};

template <int D>
class TreeBuilder {
 public:
  TreeBuilder(const double* pts, int64_t n, Tree<D>* tree) : t_(*tree) {
    t_.n = n;
    t_.order.resize(n);
    for (int64_t i = 0; i < n; ++i) t_.order[i] = i;
    // The coordinates travel with the sort, so every pass reads them in order.
    buf_.assign(pts, pts + n * D);
    tmp_.resize(n);
    tmp_buf_.resize(n * D);
    double lo[D], hi[D];
    BoundingBox(0, n, lo, hi);
    BuildCell<D> root{};
    double width = 0;
    for (int k = 0; k < D; ++k) {
      // Halves first: (lo + hi) would overflow near the largest doubles.
      root.center[k] = lo[k] / 2 + hi[k] / 2;
      width = std::max(width, hi[k] - lo[k]);
    }
    root.half_width = width / 2;
    root.lo = 0;
    root.hi = n;
    cells_.reserve(n / 4 + 16);
    cells_.push_back(root);
    Append(0);
    Build(0, 0);
    for (int k = 0; k < D; ++k) {
      t_.x[k].resize(n);
      for (int64_t p = 0; p < n; ++p) t_.x[k][p] = buf_[p * D + k];
    }
    for (size_t c = 0; c < cells_.size(); ++c) {
      t_.first_child[c] = cells_[c].first_child;
      t_.num_children[c] = cells_[c].num_children;
    }
    Groups(0);
  }

 private:
  void BoundingBox(int64_t a, int64_t b, double* lo, double* hi) const {
    for (int k = 0; k < D; ++k) lo[k] = hi[k] = buf_[a * D + k];
    for (int64_t p = a + 1; p < b; ++p) {
      const double* q = buf_.data() + p * D;
      for (int k = 0; k < D; ++k) {
        lo[k] = std::min(lo[k], q[k]);
        hi[k] = std::max(hi[k], q[k]);
      }
    }
  }

  // Room for cell `id` in the tree's arrays (filled by Build).
  void Append(int64_t id) {
    const BuildCell<D>& c = cells_[id];
    for (int k = 0; k < D; ++k) t_.com[k].push_back(0);
    for (int e = 0; e < kMoments<D>; ++e) t_.m2[e].push_back(0);
    t_.trace.push_back(0);
    t_.width.push_back(0);
    t_.offset.push_back(0);
    t_.mass.push_back(static_cast<double>(c.hi - c.lo));
    t_.lo.push_back(c.lo);
    t_.hi.push_back(c.hi);
    t_.first_child.push_back(-1);
    t_.num_children.push_back(0);
    t_.coincident.push_back(0);
  }

  void Build(int64_t id, int depth) {
    const int64_t a = cells_[id].lo, b = cells_[id].hi, m = b - a;
    double lo[D], hi[D], sum[D] = {};
    BoundingBox(a, b, lo, hi);
    for (int64_t p = a; p < b; ++p)
      for (int k = 0; k < D; ++k) sum[k] += buf_[p * D + k];
    bool same = true;
    for (int k = 0; k < D; ++k) same &= (lo[k] == hi[k]);
    t_.coincident[id] = same;
    double com[D], off2 = 0;
    for (int k = 0; k < D; ++k) {
      com[k] = same ? lo[k] : sum[k] / static_cast<double>(m);
      t_.com[k][id] = com[k];
      const double mid = lo[k] / 2 + hi[k] / 2;
      off2 += (com[k] - mid) * (com[k] - mid);
    }
    // The criterion sees the box the points occupy, not the cubic cell.
    double width = 0;
    for (int k = 0; k < D; ++k) width = std::max(width, hi[k] - lo[k]);
    t_.width[id] = width;
    t_.offset[id] = std::sqrt(off2);
    if (!same) {
      double m2[kMoments<D>] = {};
      for (int64_t p = a; p < b; ++p) {
        double t[D];
        for (int k = 0; k < D; ++k) t[k] = buf_[p * D + k] - com[k];
        for (int k = 0; k < D; ++k)
          for (int l = k; l < D; ++l) m2[MomentIndex<D>(k, l)] += t[k] * t[l];
      }
      double tr = 0;
      for (int k = 0; k < D; ++k) tr += m2[MomentIndex<D>(k, k)];
      for (int e = 0; e < kMoments<D>; ++e) t_.m2[e][id] = m2[e];
      t_.trace[id] = tr;
    }
    // A bucket; coincident points (one point included) are one body; below
    // the depth cap the cell is too small to matter relative to the root.
    if (m <= kLeafSize || same || depth >= kBarnesHutMaxDepth) return;

    constexpr int kChildren = 1 << D;
    double center[D];
    for (int k = 0; k < D; ++k) center[k] = cells_[id].center[k];
    const double quarter = cells_[id].half_width / 2;
    auto octant = [&](int64_t p) {
      int o = 0;
      for (int k = 0; k < D; ++k) o |= (buf_[p * D + k] >= center[k] ? 1 : 0) << k;
      return o;
    };
    std::array<int64_t, kChildren + 1> start{};
    for (int64_t p = a; p < b; ++p) ++start[octant(p) + 1];
    for (int o = 0; o < kChildren; ++o) start[o + 1] += start[o];
    std::array<int64_t, kChildren> fill{};
    for (int64_t p = a; p < b; ++p) {
      const int o = octant(p);
      const int64_t q = a + start[o] + fill[o]++;
      tmp_[q] = t_.order[p];
      for (int k = 0; k < D; ++k) tmp_buf_[q * D + k] = buf_[p * D + k];
    }
    std::copy(tmp_.begin() + a, tmp_.begin() + b, t_.order.begin() + a);
    std::copy(tmp_buf_.begin() + a * D, tmp_buf_.begin() + b * D, buf_.begin() + a * D);

    const int64_t first = static_cast<int64_t>(cells_.size());
    int num = 0;
    for (int o = 0; o < kChildren; ++o) {
      if (start[o + 1] == start[o]) continue;
      BuildCell<D> child{};
      for (int k = 0; k < D; ++k) child.center[k] = center[k] + ((o >> k) & 1 ? quarter : -quarter);
      child.half_width = quarter;
      child.lo = a + start[o];
      child.hi = a + start[o + 1];
      cells_.push_back(child);
      Append(first + num);
      ++num;
    }
    cells_[id].first_child = first;
    cells_[id].num_children = num;
    for (int64_t ch = first; ch < first + num; ++ch) Build(ch, depth + 1);
  }

  void Groups(int64_t id) {
    const BuildCell<D>& c = cells_[id];
    if (c.num_children == 0 || c.hi - c.lo <= kGroupSize) {
      t_.groups.push_back(id);
      return;
    }
    for (int64_t ch = c.first_child; ch < c.first_child + c.num_children; ++ch) Groups(ch);
  }

  Tree<D>& t_;
  std::vector<BuildCell<D>> cells_;
  std::vector<double> buf_, tmp_buf_;  // coordinates in place order, [n, D]
  std::vector<int64_t> tmp_;
};

// Kernel constants: alpha = dof, h = (alpha + 1) / 2 (w = a^-h), g = h + 1
// (w u = a^-g), with a = 1 + |x|^2 / alpha; and the quadrupole's
// coefficients (see AddCell).
struct KernelConsts {
  double inv_alpha, h;
  double cz1, cz2, cr1, cr2, cm;
  bool three_halves;  // h = 3/2 (dof = 2, the 3-D default): w = u sqrt(u)
  explicit KernelConsts(double dof) {
    inv_alpha = 1.0 / dof;
    h = (dof + 1.0) / 2.0;
    three_halves = (dof == 2.0);
    const double g = h + 1.0, ia = inv_alpha;
    cz1 = -h * ia;
    cz2 = 2.0 * h * (h + 1.0) * ia * ia;
    cr1 = -g * ia;
    cr2 = 2.0 * g * (g + 1.0) * ia * ia;
    cm = -2.0 * g * ia;
  }
};

// The interaction lists of one group: points (unit mass) and cells.
template <int D>
struct Lists {
  std::array<std::vector<double>, D> px;
  std::array<std::vector<double>, D> cx;
  std::vector<double> cmass, ctrace;
  std::array<std::vector<double>, kMoments<D>> cm2;
  void Clear() {
    for (auto& v : px) v.clear();
    for (auto& v : cx) v.clear();
    for (auto& v : cm2) v.clear();
    cmass.clear();
    ctrace.clear();
  }
  size_t Points() const { return px[0].size(); }
  size_t Cells() const { return cmass.size(); }
};

// Scalar and vector versions of the same loop bodies.
template <typename V>
inline V LoadAt(const double* p);
template <>
inline double LoadAt<double>(const double* p) { return *p; }
template <>
inline vd LoadAt<vd>(const double* p) { return simd::Load(p); }
template <typename V>
inline V Splat(double x);
template <>
inline double Splat<double>(double x) { return x; }
template <>
inline vd Splat<vd>(double x) { return simd::Set1(x); }

// w = a^-h; zero where a is not finite (the kernel has underflowed).
template <typename V, bool kUnitDof>
inline V Weight(V a, V u, const KernelConsts& kc) {
  if constexpr (kUnitDof) {
    return u;
  } else {
    // a^-3/2 as u sqrt(u) (a square root, not an exp and a log, a pair);
    // any other dof through exp(-h log a).
    const V w = kc.three_halves ? u * simd::Sqrt(u) : simd::Exp(simd::Log(a) * Splat<V>(-kc.h));
    return a < Splat<V>(std::numeric_limits<double>::max()) ? w : Splat<V>(0.0);
  }
}

// Points px[k][j] (unit masses, from entry j): r += w u x, z += w.
template <int D, typename V, bool kUnitDof>
inline void AddPoints(const std::array<const double*, D>& px, size_t j, const V* yi,
                      const KernelConsts& kc, V* r, V& z) {
  V x[D], dist = Splat<V>(0.0);
  for (int k = 0; k < D; ++k) {
    x[k] = yi[k] - LoadAt<V>(px[k] + j);
    dist += x[k] * x[k];
  }
  const V a = dist * kc.inv_alpha + 1.0;
  const V u = 1.0 / a;
  const V w = Weight<V, kUnitDof>(a, u, kc);
  const V wu = w * u;
  for (int k = 0; k < D; ++k) r[k] += wu * x[k];
  z += w;
}

// A summarised cell from entry j: its count m at its centre of mass, plus
// the quadrupole term of the expansion about it. With M = m2, t = tr M,
// q = x^T M x (the first-order term vanishes about the centre of mass):
//   Z:   m w - (h / alpha) a^-(h+1) t        + (2 h (h+1) / alpha^2) a^-(h+2) q
//   R_k: m w u x_k - (g / alpha) a^-(g+1) (2 (M x)_k + t x_k)
//                                            + (2 g (g+1) / alpha^2) a^-(g+2) x_k q
// which makes the error O(angle^3) instead of O(angle^2) for a few flops.
template <int D, typename V, bool kUnitDof>
inline void AddCell(const Lists<D>& L, size_t j, const V* yi, const KernelConsts& kc, V* r,
                    V& z) {
  V x[D], dist = Splat<V>(0.0);
  for (int k = 0; k < D; ++k) {
    x[k] = yi[k] - LoadAt<V>(L.cx[k].data() + j);
    dist += x[k] * x[k];
  }
  const V a = dist * kc.inv_alpha + 1.0;
  const V u = 1.0 / a;
  const V w = Weight<V, kUnitDof>(a, u, kc);
  const V wu = w * u, wu2 = wu * u, wu3 = wu2 * u;
  V mx[D], q = Splat<V>(0.0);
  for (int k = 0; k < D; ++k) {
    mx[k] = Splat<V>(0.0);
    for (int l = 0; l < D; ++l) mx[k] += LoadAt<V>(L.cm2[MomentIndex<D>(k, l)].data() + j) * x[l];
    q += x[k] * mx[k];
  }
  const V m = LoadAt<V>(L.cmass.data() + j), t = LoadAt<V>(L.ctrace.data() + j);
  z += m * w + (kc.cz1 * wu * t + kc.cz2 * wu2 * q);
  const V f = m * wu + (kc.cr1 * wu2 * t + kc.cr2 * wu3 * q);
  const V dm = kc.cm * wu2;
  for (int k = 0; k < D; ++k) r[k] += f * x[k] + dm * mx[k];
}

// Points [j0, j1) of px, in lanes, then one at a time.
template <int D, bool kUnitDof>
inline void RunPoints(const std::array<const double*, D>& px, size_t j0, size_t j1,
                      const double* yi, const vd* vy, const KernelConsts& kc, vd* vr, vd& vz,
                      double* sr, double& sz) {
  size_t j = j0;
  for (; j + kLanes <= j1; j += kLanes) AddPoints<D, vd, kUnitDof>(px, j, vy, kc, vr, vz);
  for (; j < j1; ++j) AddPoints<D, double, kUnitDof>(px, j, yi, kc, sr, sz);
}

template <int D>
std::array<const double*, D> Columns(const std::array<std::vector<double>, D>& x) {
  std::array<const double*, D> out;
  for (int k = 0; k < D; ++k) out[k] = x[k].data();
  return out;
}

// R_i and i's share of Z: both lists, and the other points of i's group
// [glo, ghi) (place pi) unless `own` is false.
template <int D, bool kUnitDof>
void RunLists(const Lists<D>& L, const Tree<D>& t, bool own, int64_t glo, int64_t ghi,
              int64_t pi, const double* yi, const KernelConsts& kc, double* r, double& z) {
  vd vy[D], vr[D], vz = simd::Set1(0.0);
  double sr[D] = {}, sz = 0;
  for (int k = 0; k < D; ++k) {
    vy[k] = simd::Set1(yi[k]);
    vr[k] = simd::Set1(0.0);
  }
  if (own) {
    // j != i by place: the ranges on either side of i.
    const auto tx = Columns<D>(t.x);
    RunPoints<D, kUnitDof>(tx, glo, pi, yi, vy, kc, vr, vz, sr, sz);
    RunPoints<D, kUnitDof>(tx, pi + 1, ghi, yi, vy, kc, vr, vz, sr, sz);
  }
  RunPoints<D, kUnitDof>(Columns<D>(L.px), 0, L.Points(), yi, vy, kc, vr, vz, sr, sz);
  const size_t nc = L.Cells();
  size_t j = 0;
  for (; j + kLanes <= nc; j += kLanes) AddCell<D, vd, kUnitDof>(L, j, vy, kc, vr, vz);
  for (; j < nc; ++j) AddCell<D, double, kUnitDof>(L, j, yi, kc, sr, sz);
  for (int k = 0; k < D; ++k) r[k] += simd::HSum(vr[k]) + sr[k];
  z += simd::HSum(vz) + sz;
}

// The same sums one entry at a time, dropping a cell's correction where it
// is not finite (cells beyond about 1e150: their moments overflow where the
// kernel has underflowed, and the monopole alone is finite, as the exact sum
// is). Only for points whose vector sums came out non-finite.
template <int D, bool kUnitDof>
void RunListsSafe(const Lists<D>& L, const Tree<D>& t, bool own, int64_t glo, int64_t ghi,
                  int64_t pi, const double* yi, const KernelConsts& kc, double* r, double& z) {
  if (own) {
    const auto tx = Columns<D>(t.x);
    for (int64_t j = glo; j < ghi; ++j) {
      if (j != pi) AddPoints<D, double, kUnitDof>(tx, j, yi, kc, r, z);
    }
  }
  const auto px = Columns<D>(L.px);
  for (size_t j = 0; j < L.Points(); ++j) AddPoints<D, double, kUnitDof>(px, j, yi, kc, r, z);
  for (size_t j = 0; j < L.Cells(); ++j) {
    double rr[D] = {}, zz = 0;
    AddCell<D, double, kUnitDof>(L, j, yi, kc, rr, zz);
    bool finite = std::isfinite(zz);
    for (int k = 0; k < D; ++k) finite &= std::isfinite(rr[k]);
    if (!finite) {
      // The monopole alone.
      double x[D], dist = 0;
      for (int k = 0; k < D; ++k) {
        x[k] = yi[k] - L.cx[k][j];
        dist += x[k] * x[k];
      }
      const double a = dist * kc.inv_alpha + 1.0, u = 1.0 / a;
      const double w = Weight<double, kUnitDof>(a, u, kc);
      zz = L.cmass[j] * w;
      for (int k = 0; k < D; ++k) rr[k] = L.cmass[j] * w * u * x[k];
    }
    for (int k = 0; k < D; ++k) r[k] += rr[k];
    z += zz;
  }
}

// Walks the tree for group g and fills its lists. `stack` has room for the
// walk (depth-capped: at most (kBarnesHutMaxDepth + 1) 2^D entries).
template <int D>
void BuildLists(const Tree<D>& t, int64_t g, double angle, std::vector<int64_t>& stack,
                Lists<D>& L) {
  L.Clear();
  const int64_t glo = t.lo[g], ghi = t.hi[g];
  double blo[D], bhi[D];
  for (int k = 0; k < D; ++k) {
    blo[k] = bhi[k] = t.x[k][glo];
    for (int64_t p = glo + 1; p < ghi; ++p) {
      blo[k] = std::min(blo[k], t.x[k][p]);
      bhi[k] = std::max(bhi[k], t.x[k][p]);
    }
  }
  auto add_points = [&](int64_t c) {
    for (int k = 0; k < D; ++k)
      L.px[k].insert(L.px[k].end(), t.x[k].begin() + t.lo[c], t.x[k].begin() + t.hi[c]);
  };
  auto add_cell = [&](int64_t c) {
    for (int k = 0; k < D; ++k) L.cx[k].push_back(t.com[k][c]);
    for (int e = 0; e < kMoments<D>; ++e) L.cm2[e].push_back(t.m2[e][c]);
    L.cmass.push_back(t.mass[c]);
    L.ctrace.push_back(t.trace[c]);
  };
  int64_t top = 0;
  stack[top++] = 0;
  while (top > 0) {
    const int64_t c = stack[--top];
    const int64_t lo = t.lo[c], hi = t.hi[c];
    if (lo >= glo && hi <= ghi) continue;  // the group itself, or inside it
    const bool disjoint = hi <= glo || lo >= ghi;
    if (disjoint) {
      double d2 = 0;
      for (int k = 0; k < D; ++k) {
        const double cx = t.com[k][c];
        const double e = std::max(std::max(blo[k] - cx, cx - bhi[k]), 0.0);
        d2 += e * e;
      }
      const bool leaf = t.num_children[c] == 0;
      if (t.width[c] < angle * (std::sqrt(d2) - t.offset[c])) {
        if (hi - lo <= kPointCell) {
          add_points(c);
        } else {
          add_cell(c);
        }
        continue;
      }
      if (leaf) {
        // A bucket is summed point by point; a larger leaf (coincident
        // points, exact as one body, or a cell at the depth cap) as a cell.
        if (hi - lo <= kLeafSize) {
          add_points(c);
        } else {
          add_cell(c);
        }
        continue;
      }
    }
    // An ancestor of the group (never a leaf), or a cell to open.
    for (int ch = t.num_children[c] - 1; ch >= 0; --ch) stack[top++] = t.first_child[c] + ch;
  }
}

template <typename T, int D>
void Repulsion(const T* y, int64_t batch, int64_t n, double dof, double angle, T* repulsion,
               T* z, const ParallelFor& parallel_for) {
  std::vector<double> pts(static_cast<size_t>(batch * n * D));
  for (size_t e = 0; e < pts.size(); ++e) pts[e] = static_cast<double>(y[e]);
  // R and Z depend only on differences: centring each batch element on its
  // bounding box keeps the centres of mass and moments accurate for data far
  // from the origin.
  for (int64_t b = 0; b < batch; ++b) {
    double* pb = pts.data() + b * n * D;
    for (int k = 0; k < D; ++k) {
      double lo = pb[k], hi = pb[k];
      for (int64_t i = 1; i < n; ++i) {
        lo = std::min(lo, pb[i * D + k]);
        hi = std::max(hi, pb[i * D + k]);
      }
      const double mid = lo / 2 + hi / 2;
      for (int64_t i = 0; i < n; ++i) pb[i * D + k] -= mid;
    }
  }
  std::vector<Tree<D>> trees(batch);
  // Work units: every group of every batch element.
  std::vector<int64_t> unit_start(batch + 1, 0);
  for (int64_t b = 0; b < batch; ++b) {
    TreeBuilder<D>(pts.data() + b * n * D, n, &trees[b]);
    unit_start[b + 1] = unit_start[b] + static_cast<int64_t>(trees[b].groups.size());
  }
  const KernelConsts kc(dof);
  const bool one = (dof == 1.0);
  std::vector<double> zrow(batch * n);
  // A rough cycle count per group: a few hundred list entries for each of
  // its points.
  const int64_t cost = 300 * kGroupSize / 2 * (one ? 20 : 60);
  parallel_for(unit_start[batch], cost, [&](int64_t begin, int64_t end) {
    std::vector<int64_t> stack((kBarnesHutMaxDepth + 1) * (1 << D) + 1);
    Lists<D> lists;
    for (int64_t u = begin; u < end; ++u) {
      const int64_t b = std::upper_bound(unit_start.begin(), unit_start.end(), u) -
                        unit_start.begin() - 1;
      const Tree<D>& t = trees[b];
      const int64_t g = t.groups[u - unit_start[b]];
      BuildLists<D>(t, g, angle, stack, lists);
      const int64_t glo = t.lo[g], ghi = t.hi[g];
      const double m = t.mass[g];
      const bool body = t.num_children[g] == 0 && ghi - glo > kLeafSize;
      for (int64_t p = glo; p < ghi; ++p) {
        double yi[D], r[D] = {}, zi = 0;
        for (int k = 0; k < D; ++k) yi[k] = t.x[k][p];
        if (one) {
          RunLists<D, true>(lists, t, !body, glo, ghi, p, yi, kc, r, zi);
        } else {
          RunLists<D, false>(lists, t, !body, glo, ghi, p, yi, kc, r, zi);
        }
        bool finite = std::isfinite(zi);
        for (int k = 0; k < D; ++k) finite &= std::isfinite(r[k]);
        if (!finite) {
          for (int k = 0; k < D; ++k) r[k] = 0;
          zi = 0;
          if (one) {
            RunListsSafe<D, true>(lists, t, !body, glo, ghi, p, yi, kc, r, zi);
          } else {
            RunListsSafe<D, false>(lists, t, !body, glo, ghi, p, yi, kc, r, zi);
          }
        }
        if (body && t.coincident[g]) {
          // m - 1 others at i's place: w = 1 each, no push.
          zi += m - 1;
        } else if (body) {
          // A leaf at the depth cap: the others as one body at their centre.
          double at[D], x[D], dist = 0;
          for (int k = 0; k < D; ++k) {
            at[k] = (m * t.com[k][g] - yi[k]) / (m - 1);
            x[k] = yi[k] - at[k];
            dist += x[k] * x[k];
          }
          const double a = dist * kc.inv_alpha + 1.0, uu = 1.0 / a;
          const double w = one ? uu : Weight<double, false>(a, uu, kc);
          for (int k = 0; k < D; ++k) r[k] += (m - 1) * w * uu * x[k];
          zi += (m - 1) * w;
        }
        const int64_t i = t.order[p];
        for (int k = 0; k < D; ++k) repulsion[(b * n + i) * D + k] = static_cast<T>(r[k]);
        zrow[b * n + i] = zi;
      }
    }
  });
  for (int64_t b = 0; b < batch; ++b) {
    // Serial, in point order: Z does not depend on the sharding.
    double s = 0;
    for (int64_t i = 0; i < n; ++i) s += zrow[b * n + i];
    z[b] = static_cast<T>(s);
  }
}

}  // namespace

template <typename T>
void BarnesHutRepulsionCpu(const T* y, int64_t batch, int64_t n, int64_t d, double dof,
                           double angle, T* repulsion, T* z, const ParallelFor& parallel_for) {
  if (batch == 0) return;
  if (n == 0) {
    for (int64_t b = 0; b < batch; ++b) z[b] = T(0);
    return;
  }
  switch (d) {
    case 1: Repulsion<T, 1>(y, batch, n, dof, angle, repulsion, z, parallel_for); break;
    case 2: Repulsion<T, 2>(y, batch, n, dof, angle, repulsion, z, parallel_for); break;
    case 3: Repulsion<T, 3>(y, batch, n, dof, angle, repulsion, z, parallel_for); break;
    default: break;  // CheckBarnesHutArgs rejects it first
  }
}

template void BarnesHutRepulsionCpu<float>(const float*, int64_t, int64_t, int64_t, double,
                                           double, float*, float*, const ParallelFor&);
template void BarnesHutRepulsionCpu<double>(const double*, int64_t, int64_t, int64_t, double,
                                            double, double*, double*, const ParallelFor&);

}  // namespace TSNE_CPU_ISA
}  // namespace kernels
}  // namespace tsne_ops
