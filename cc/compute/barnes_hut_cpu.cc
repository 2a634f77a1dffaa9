// CPU Barnes-Hut repulsion (contract and the approximation in barnes_hut.h).
//
// One implementation templated on D = d: a cell has 2^D children (binary
// tree, quadtree, octree). The tree is built top-down by a stable counting
// sort of each cell's points into its children, so the point order inside
// every cell, the cells' order and every centre of mass are fixed by the data
// alone. A cell's points are a contiguous range order[lo, hi) of that sort:
// "cell contains point i" is lo <= pos[i] < hi, with no search.
//
// A traversal is a depth-first walk with an explicit stack; its bound is
// (kBarnesHutMaxDepth + 1) 2^D entries since the depth is capped, so no
// recursion and no allocation in the parallel part. The build recurses at
// most kBarnesHutMaxDepth deep.
//
// Not compiled per instruction set (unlike the tiled kernels): the walk is
// branchy and gathers one cell at a time, there is little for AVX2 to do.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "cc/compute/barnes_hut.h"
#include "cc/compute/validation.h"

namespace tsne_ops {
namespace kernels {
namespace {

template <int D>
struct Cell {
  double center[D];
  double half_width;
  double com[D];       // centre of mass of the cell's points
  double offset;       // |com - center|
  double m2[D][D];     // second moment sum_j (y_j - com)(y_j - com)^T
  int64_t count;       // number of points (duplicates count one each)
  int64_t lo, hi;      // the points are order[lo, hi)
  int64_t first_child;  // children: cells[first_child, first_child + num_children)
  int num_children;    // 0: a leaf
  bool coincident;     // a leaf whose points all lie exactly at com
};

template <int D>
class Tree {
 public:
  // pts [n, D] (one batch element, in double).
  Tree(const double* pts, int64_t n) : order(n), pos(n), pts_(pts) {
    for (int64_t i = 0; i < n; ++i) order[i] = i;
    double lo[D], hi[D];
    BoundingBox(0, n, lo, hi);
    Cell<D> root{};
    double width = 0;
    for (int k = 0; k < D; ++k) {
      // Halves first: (lo + hi) would overflow near the largest doubles.
      root.center[k] = lo[k] / 2 + hi[k] / 2;
      width = std::max(width, hi[k] - lo[k]);
    }
    root.half_width = width / 2;
    root.lo = 0;
    root.hi = n;
    cells.reserve(2 * n + 1);
    cells.push_back(root);
    tmp_.resize(n);
    Build(0, 0);
    tmp_.clear();
    tmp_.shrink_to_fit();
    for (int64_t p = 0; p < n; ++p) pos[order[p]] = p;
  }

  std::vector<Cell<D>> cells;
  std::vector<int64_t> order;  // points in cell order
  std::vector<int64_t> pos;    // pos[i]: i's place in order

 private:
  void BoundingBox(int64_t a, int64_t b, double* lo, double* hi) const {
    for (int k = 0; k < D; ++k) lo[k] = hi[k] = pts_[order[a] * D + k];
    for (int64_t p = a + 1; p < b; ++p) {
      const double* q = pts_ + order[p] * D;
      for (int k = 0; k < D; ++k) {
        lo[k] = std::min(lo[k], q[k]);
        hi[k] = std::max(hi[k], q[k]);
      }
    }
  }

  void Build(int64_t id, int depth) {
    const int64_t a = cells[id].lo, b = cells[id].hi, m = b - a;
    double lo[D], hi[D], sum[D] = {};
    BoundingBox(a, b, lo, hi);
    for (int64_t p = a; p < b; ++p)
      for (int k = 0; k < D; ++k) sum[k] += pts_[order[p] * D + k];
    Cell<D>& c = cells[id];
    c.count = m;
    c.first_child = -1;
    c.num_children = 0;
    bool same = true;
    for (int k = 0; k < D; ++k) same &= (lo[k] == hi[k]);
    c.coincident = same;
    double off2 = 0;
    for (int k = 0; k < D; ++k) {
      c.com[k] = same ? lo[k] : sum[k] / static_cast<double>(m);
      off2 += (c.com[k] - c.center[k]) * (c.com[k] - c.center[k]);
    }
    c.offset = std::sqrt(off2);
    for (int k = 0; k < D; ++k)
      for (int l = 0; l < D; ++l) c.m2[k][l] = 0;
    if (!same) {
      for (int64_t p = a; p < b; ++p) {
        double t[D];
        for (int k = 0; k < D; ++k) t[k] = pts_[order[p] * D + k] - c.com[k];
        for (int k = 0; k < D; ++k)
          for (int l = 0; l < D; ++l) c.m2[k][l] += t[k] * t[l];
      }
    }
    // Coincident points (one point included) are one body; below the depth cap
    // the cell is too small to matter relative to the root.
    if (same || depth >= kBarnesHutMaxDepth) return;

    constexpr int kChildren = 1 << D;
    double center[D];
    for (int k = 0; k < D; ++k) center[k] = c.center[k];
    const double quarter = c.half_width / 2;
    auto octant = [&](int64_t i) {
      int o = 0;
      for (int k = 0; k < D; ++k) o |= (pts_[i * D + k] >= center[k] ? 1 : 0) << k;
      return o;
    };
    std::array<int64_t, kChildren + 1> start{};
    for (int64_t p = a; p < b; ++p) ++start[octant(order[p]) + 1];
    for (int o = 0; o < kChildren; ++o) start[o + 1] += start[o];
    std::array<int64_t, kChildren> fill{};
    for (int64_t p = a; p < b; ++p) {
      const int o = octant(order[p]);
      tmp_[a + start[o] + fill[o]++] = order[p];
    }
    std::copy(tmp_.begin() + a, tmp_.begin() + b, order.begin() + a);

    const int64_t first = static_cast<int64_t>(cells.size());
    int num = 0;
    for (int o = 0; o < kChildren; ++o) {
      if (start[o + 1] == start[o]) continue;
      Cell<D> child{};
      for (int k = 0; k < D; ++k) child.center[k] = center[k] + ((o >> k) & 1 ? quarter : -quarter);
      child.half_width = quarter;
      child.lo = a + start[o];
      child.hi = a + start[o + 1];
      cells.push_back(child);  // may reallocate: `c` is not used below
      ++num;
    }
    cells[id].first_child = first;
    cells[id].num_children = num;
    for (int64_t ch = first; ch < first + num; ++ch) Build(ch, depth + 1);
  }

  const double* pts_;
  std::vector<int64_t> tmp_;
};

// Kernel constants: alpha = dof, h = (alpha + 1) / 2 (w = a^-h), g = h + 1
// (w u = a^-g), with a = 1 + |x|^2 / alpha.
struct KernelConsts {
  double inv_alpha, h;
};

// r += m w u x, z += m w for m points at `at`, x = yi - at.
//
// With the cell's second moment m2 = sum_j d_j d_j^T (d_j = y_j - com,
// sum_j d_j = 0) the quadrupole term of the expansion about com is added
// too: for f(x - d) summed over the cell's points, the first order vanishes
// and the second is (1/2) sum_{kl} m2_kl d_k d_l f(x). With M = m2, t = tr M,
// q = x^T M x:
//   Z:   -(h / alpha) a^-(h+1) t        + (2 h (h+1) / alpha^2) a^-(h+2) q
//   R_k: -(g / alpha) a^-(g+1) (2 (M x)_k + t x_k)
//                                       + (2 g (g+1) / alpha^2) a^-(g+2) x_k q
// It makes the error O(angle^3) instead of O(angle^2) for a few flops a
// cell, with the same cells visited: at angle 0.5 the monopole alone left
// R 1.3e-2 from exact on clustered data.
template <int D, bool kUnitDof>
inline void AddBody(const double* yi, const double* at, double m, const double (*m2)[D],
                    const KernelConsts& kc, double* r, double& z) {
  double x[D], dist = 0;
  for (int k = 0; k < D; ++k) {
    x[k] = yi[k] - at[k];
    dist += x[k] * x[k];
  }
  const double a = 1.0 + dist * kc.inv_alpha;
  const double u = 1.0 / a;
  const double w = kUnitDof ? u : std::exp(-kc.h * std::log1p(dist * kc.inv_alpha));
  const double wu = w * u;
  double f = m * wu, zz = m * w;
  if (m2 != nullptr) {
    double mx[D] = {};
    double t = 0, q = 0;
    for (int k = 0; k < D; ++k) {
      for (int l = 0; l < D; ++l) mx[k] += m2[k][l] * x[l];
      t += m2[k][k];
      q += x[k] * mx[k];
    }
    const double h = kc.h, g = h + 1.0, ia = kc.inv_alpha;
    const double wu2 = wu * u, wu3 = wu2 * u;
    const double dz = -h * ia * wu * t + 2.0 * h * (h + 1.0) * ia * ia * wu2 * q;
    const double df = -g * ia * wu2 * t + 2.0 * g * (g + 1.0) * ia * ia * wu3 * q;
    const double dm = -2.0 * g * ia * wu2;  // coefficient of (M x)_k
    double dr[D];
    bool finite = std::isfinite(dz);
    for (int k = 0; k < D; ++k) {
      dr[k] = dm * mx[k] + df * x[k];
      finite &= std::isfinite(dr[k]);
    }
    // Cells wider than about 1e150 overflow their moments where the kernel
    // has underflowed: the correction, negligible there, is dropped rather
    // than turned into NaN (the monopole stays finite, as the exact sum is).
    if (finite) {
      z += dz;
      for (int k = 0; k < D; ++k) r[k] += dr[k];
    }
  }
  for (int k = 0; k < D; ++k) r[k] += f * x[k];
  z += zz;
}

// R_i (into r) and i's share of Z for point i of the tree's batch element.
template <int D, bool kUnitDof>
void Traverse(const Tree<D>& tree, const double* pts, int64_t i, double angle,
              const KernelConsts& kc, double* r, double& z) {
  constexpr int kStack = (kBarnesHutMaxDepth + 1) * (1 << D);
  int64_t stack[kStack];
  int top = 0;
  stack[top++] = 0;
  const double* yi = pts + i * D;
  const int64_t pi = tree.pos[i];
  while (top > 0) {
    const Cell<D>& c = tree.cells[stack[--top]];
    const bool contains = c.lo <= pi && pi < c.hi;
    if (c.num_children == 0) {
      if (!contains) {
        AddBody<D, kUnitDof>(yi, c.com, static_cast<double>(c.count), c.m2, kc, r, z);
        continue;
      }
      // i's own leaf: the other count - 1 points. Coincident ones sit at
      // com = y_i; otherwise (a leaf at the depth cap) at their own centre.
      const int64_t others = c.count - 1;
      if (others == 0) continue;
      double at[D];
      for (int k = 0; k < D; ++k) {
        at[k] = c.coincident ? c.com[k]
                             : (static_cast<double>(c.count) * c.com[k] - yi[k]) /
                                   static_cast<double>(others);
      }
      AddBody<D, kUnitDof>(yi, at, static_cast<double>(others), nullptr, kc, r, z);
      continue;
    }
    if (!contains) {
      double dist = 0;
      for (int k = 0; k < D; ++k) {
        const double t = yi[k] - c.com[k];
        dist += t * t;
      }
      const double width = 2 * c.half_width;
      if (width < angle * (std::sqrt(dist) - c.offset)) {
        AddBody<D, kUnitDof>(yi, c.com, static_cast<double>(c.count), c.m2, kc, r, z);
        continue;
      }
    }
    // Reverse order: children are visited first to last.
    for (int ch = c.num_children - 1; ch >= 0; --ch) stack[top++] = c.first_child + ch;
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
  std::vector<Tree<D>> trees;
  trees.reserve(batch);
  for (int64_t b = 0; b < batch; ++b) trees.emplace_back(pts.data() + b * n * D, n);
  const bool one = (dof == 1.0);
  const KernelConsts kc{1.0 / dof, (dof + 1.0) / 2.0};
  std::vector<double> zrow(batch * n);
  // A rough cycle count: a few hundred cells of 2^D children per point.
  const int64_t cost = 40 * (1 << D) * static_cast<int64_t>(std::log2(n + 1.0) + 1) *
                       (one ? 4 : 12);
  parallel_for(batch * n, cost, [&](int64_t begin, int64_t end) {
    for (int64_t u = begin; u < end; ++u) {
      const int64_t b = u / n, i = u % n;
      double r[D] = {}, zi = 0;
      const double* pb = pts.data() + b * n * D;
      if (one) {
        Traverse<D, true>(trees[b], pb, i, angle, kc, r, zi);
      } else {
        Traverse<D, false>(trees[b], pb, i, angle, kc, r, zi);
      }
      for (int k = 0; k < D; ++k) repulsion[u * D + k] = static_cast<T>(r[k]);
      zrow[u] = zi;
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

}  // namespace kernels
}  // namespace tsne_ops
