// Barnes-Hut approximation of the t-SNE repulsion (the large-N path, d <= 3).
//
// For each batch element b and point i of y [batch, n, d], with alpha = dof,
// u_ij = 1 / (1 + |y_i - y_j|^2 / alpha) and w_ij = u_ij^((alpha + 1) / 2):
//   R_i = sum_{j != i} w_ij u_ij (y_i - y_j)      repulsion [batch, n, d]
//   Z   = sum_{i != j} w_ij                       z [batch]
// the same quantities as the exact tiled repulsion of sparse_tsne_gradient.h;
// a combining step turns them into the gradient
// (2 (alpha + 1) / alpha) (exaggeration A_i - s R_i / Z).
//
// The approximation (Barnes & Hut 1986; van der Maaten 2014): the points of a
// batch element go into a 2^d-ary tree of cubic cells (binary in 1D, quadtree
// in 2D, octree in 3D), split until a cell holds at most 32 points (a leaf,
// whose points are summed one by one). The tree is walked once per group of
// targets (a cell of at most 128 points; Barnes 1990). A cell whose points
// span a box of longest side w, with its centre of mass at distance r from
// the group's bounding box, is summarised when w / (r - delta) < angle,
// otherwise its children are visited. That is scikit-learn's criterion
// w / r < angle, made safe for cells whose centre of mass lies off the
// centre of their box (delta = the distance between the two; Barnes 1994),
// and since r is the shortest distance from any target of the group, a cell
// summarised for the group is one each of its points would have summarised
// alone. A summarised cell acts through its count and centre of mass plus
// its second moment (the quadrupole term of the expansion of the kernel
// about the centre of mass; the first-order term vanishes there): the error
// is O(angle^3), a few 1e-4 relative at angle 0.5 on clustered embeddings
// where the monopole alone is about 1e-2. angle = 0 visits every leaf: the
// exact sums, to rounding.
//
// Self-interaction is excluded exactly: a cell that overlaps i's group is
// never summarised, and inside the group the other points are summed
// exactly, j != i by index.
//
// Duplicates: a cell whose points all coincide is not split (it is a leaf of
// `count` bodies at one place), and no cell is split below depth
// kBarnesHutMaxDepth, where a cell is 2^-48 of the root's width (below double
// resolution relative to the root): the tree's depth is bounded whatever the
// data, and all-identical points make a one-leaf tree.
//
// Everything is computed in double. The tree is built serially; the groups'
// walks run in parallel, each writing its own points' rows, and Z is reduced
// serially in point order: the result is bit-identical whatever the thread
// count (it depends on the SIMD width of the build, like every kernel
// compiled per instruction set).
#ifndef TSNE_OPS_CC_COMPUTE_BARNES_HUT_H_
#define TSNE_OPS_CC_COMPUTE_BARNES_HUT_H_

#include <cstdint>
#include <string>
#include <vector>

#include "cc/compute/common.h"

namespace tsne_ops {
namespace kernels {

constexpr int kBarnesHutMaxDepth = 48;

// "" when y's shape ([n, d] or [batch, n, d]), dof and angle are valid for
// BarnesHutRepulsionCpu (d in {1, 2, 3}, n >= 2, dof finite > 0, angle finite
// >= 0), else a message naming the argument and its value (validation.h).
// y's finiteness is checked separately (CheckAllFinite).
std::string CheckBarnesHutArgs(const std::vector<int64_t>& y_shape, double dof, double angle);

// "" when the repulsion [batch, n, d] and z [batch] came out finite, else the
// error for an overflow (y finite but beyond about 1e150).
template <typename T>
std::string CheckBarnesHutResult(const T* repulsion, const T* z, int64_t batch, int64_t n,
                                 int64_t d);

// y [batch, n, d] finite, n >= 1, d in {1, 2, 3} (checked by the caller).
// repulsion [batch, n, d] and z [batch] are written. Compiled per instruction
// set (cpu_isa.h); the public entry point dispatches.
#define TSNE_OPS_BARNES_HUT_CPU_DECLS                                                  \
  template <typename T>                                                                \
  void BarnesHutRepulsionCpu(const T* y, int64_t batch, int64_t n, int64_t d, double dof, \
                             double angle, T* repulsion, T* z,                         \
                             const ParallelFor& parallel_for);

TSNE_OPS_BARNES_HUT_CPU_DECLS
namespace baseline { TSNE_OPS_BARNES_HUT_CPU_DECLS }
namespace avx2 { TSNE_OPS_BARNES_HUT_CPU_DECLS }

}  // namespace kernels
}  // namespace tsne_ops

#endif  // TSNE_OPS_CC_COMPUTE_BARNES_HUT_H_
