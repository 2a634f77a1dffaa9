// Spreading and gathering for the FFT-accelerated interpolation repulsion
// (Linderman et al., "Fast interpolation-based t-SNE", FIt-SNE; openTSNE).
//
// The embedding's bounding box is cut into n_boxes intervals per dimension
// (d = 1 or 2), all boxes of width h; each box holds p interpolation nodes at
// (l + 1/2) h / p, l = 0..p-1, so the m = n_boxes p nodes per dimension form
// one regular grid of spacing s = h / p. A kernel sum
//   phi_i = sum_j K(y_i, y_j) q_j
// is approximated by interpolating K in both arguments with the Lagrange
// polynomials L_l of p consecutive nodes per dimension, the stencil centred
// on the point (FftStencil; clamped inside the grid at its edges):
//   spread:   g_c(node)  = sum_j L_node(y_j) q_jc          O(n p^d c)
//   convolve: v_c(node)  = sum_node' K(node - node') g_c(node')
//             (K is translation invariant on a regular grid: a Toeplitz
//             product, done by the caller with TensorFlow's FFT)
//   gather:   phi_ic     = sum_node L_node(y_i) v_c(node)   O(n p^d c)
// These kernels do the two interpolation steps; the convolution is not here.
// FIt-SNE and openTSNE interpolate on the p nodes of the box a point falls
// in, so a point near a box edge extrapolates from nodes all on one side; the
// centred stencil keeps every point within half a node of its stencil's
// middle, which cuts the repulsion's error 2-3 times on the same grid
// (experiments/fft_interpolation_accuracy.py), so the grid can be coarser.
//
// Layout: y [batch, n, d]; charges [batch, n, c]; origin [batch, d] (the
// grid's lower corner); box_width [batch] (h > 0); grid [batch, c, m] for
// d = 1, [batch, c, m, m] for d = 2 (node (gx, gy) at gx * m + gy, gx along
// y[..., 0]); phi [batch, n, c]. The caller makes the grid cover the points
// (CheckFftGrid says which point does not).
//
// Determinism: the CPU spread sorts the points (counting sort, stable) by
// their stencil's first node row along y[..., 0]; a work unit owns one such
// row r and adds its points, in index order, to grid rows [r, r + p). The
// rows are done in p passes, r = pass mod p, so within a pass no two units
// touch one node, and each node's sum comes in one fixed order whatever the
// thread count; no atomics, no per-thread grids. The CUDA spread sorts the
// points by stencil cell (first node row and column) with a stable radix
// sort and gives each node to one thread, which adds the points of the p^d
// cells whose stencils cover it, cell by cell in a fixed order: the same
// property on the GPU. Gathering is one thread per point. All sums are in
// double.
#ifndef TSNE_OPS_CC_COMPUTE_FFT_INTERPOLATION_H_
#define TSNE_OPS_CC_COMPUTE_FFT_INTERPOLATION_H_

#include <cstddef>
#include <cstdint>
#include <string>

#include "cc/compute/common.h"

#ifdef TSNE_OPS_WITH_CUDA
#include <cuda_runtime_api.h>
#endif

namespace tsne_ops {
namespace kernels {

// The most interpolation nodes per box and charges per point the kernels take.
constexpr int kFftMaxNodes = 8;
constexpr int64_t kFftMaxCharges = 8;

// "" or a message naming the argument: the sizes (validation.h's
// CheckFftSizes: d in {1, 2}, 1 <= p <= kFftMaxNodes, 1 <= c <=
// kFftMaxCharges, n_boxes >= 1), every box_width finite and > 0,
// every origin finite, and every point of y inside the grid (to a relative
// 1e-6 of its side).
template <typename T>
std::string CheckFftGrid(const T* y, const T* origin, const T* box_width, int64_t batch,
                         int64_t n, int64_t d, int64_t n_charges, int64_t n_boxes, int p);

template <typename T>
void FftSpreadCpu(const T* y, const T* charges, const T* origin, const T* box_width,
                  int64_t batch, int64_t n, int64_t d, int64_t n_charges, int64_t n_boxes, int p,
                  T* grid, const ParallelFor& parallel_for);

template <typename T>
void FftGatherCpu(const T* y, const T* potentials, const T* origin, const T* box_width,
                  int64_t batch, int64_t n, int64_t d, int64_t n_charges, int64_t n_boxes, int p,
                  T* phi, const ParallelFor& parallel_for);

#ifdef __CUDACC__
#define TSNE_OPS_HOST_DEVICE __host__ __device__
#else
#define TSNE_OPS_HOST_DEVICE
#endif

// The stencil of a point at grid coordinate s = (y - origin) / spacing (in
// node spacings; node k sits at k + 1/2): its first node, of the p nodes
// nearest the point (clamped to [0, m - p] at the grid's edges).
TSNE_OPS_HOST_DEVICE inline int64_t FftStencilFirst(double s, int64_t m, int p) {
  const double u = s - 0.5;  // node coordinate: node k at u = k
  // odd p: the nearest node in the middle; even p: the point between the
  // two middle nodes.
  const double c = (p % 2 == 1) ? u + 0.5 : u;
  int64_t first = static_cast<int64_t>(c >= 0 ? c : c - 1.0) - (p - 1) / 2;
  if (first > m - p) first = m - p;
  if (first < 0) first = 0;
  return first;
}

// FftStencilFirst, and the p Lagrange weights w[l] = prod_{k != l} (t - k) /
// (l - k) of the point's place t = s - 1/2 - first among the stencil's nodes,
// formed as prefix and suffix products over the fixed denominators
// (-1)^(p-1-l) l! (p-1-l)!: O(p), no division.
TSNE_OPS_HOST_DEVICE inline int64_t FftStencil(double s, int64_t m, int p, double* w) {
  const double inv_fact[kFftMaxNodes] = {1.0, 1.0, 1.0 / 2, 1.0 / 6, 1.0 / 24, 1.0 / 120,
                                         1.0 / 720, 1.0 / 5040};
  const int64_t first = FftStencilFirst(s, m, p);
  const double t = s - 0.5 - static_cast<double>(first);
  double prefix = 1.0;
  for (int l = 0; l < p; ++l) {
    w[l] = prefix;
    prefix *= t - l;
  }
  double suffix = 1.0;
  for (int l = p - 1; l >= 0; --l) {
    const double sign = ((p - 1 - l) % 2 == 1) ? -1.0 : 1.0;
    w[l] *= suffix * sign * inv_fact[l] * inv_fact[p - 1 - l];
    suffix *= t - l;
  }
  return first;
}

#ifdef TSNE_OPS_WITH_CUDA
// Same contracts; every pointer is device memory.
size_t FftSpreadWorkspaceBytes(int64_t batch, int64_t n, int64_t d, int64_t n_boxes, int p);
template <typename T>
cudaError_t LaunchFftSpread(cudaStream_t stream, const T* y, const T* charges, const T* origin,
                            const T* box_width, int64_t batch, int64_t n, int64_t d,
                            int64_t n_charges, int64_t n_boxes, int p, T* grid, void* workspace);
template <typename T>
cudaError_t LaunchFftGather(cudaStream_t stream, const T* y, const T* potentials,
                            const T* origin, const T* box_width, int64_t batch, int64_t n,
                            int64_t d, int64_t n_charges, int64_t n_boxes, int p, T* phi);
#endif

}  // namespace kernels
}  // namespace tsne_ops

#endif  // TSNE_OPS_CC_COMPUTE_FFT_INTERPOLATION_H_
