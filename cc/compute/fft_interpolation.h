// Spreading and gathering for the FFT-accelerated interpolation repulsion
// (Linderman et al., "Fast interpolation-based t-SNE", FIt-SNE; openTSNE).
//
// The embedding's bounding box is cut into n_boxes intervals per dimension
// (d = 1 or 2), all boxes of width h; each box holds p interpolation nodes at
// (l + 1/2) h / p, l = 0..p-1, so the m = n_boxes p nodes per dimension form
// one regular grid of spacing h / p. A kernel sum
//   phi_i = sum_j K(y_i, y_j) q_j
// is approximated by interpolating K in both arguments with the Lagrange
// polynomials L_l of the nodes of the box a point falls in:
//   spread:   g_c(node)  = sum_j L_node(y_j) q_jc          O(n p^d c)
//   convolve: v_c(node)  = sum_node' K(node - node') g_c(node')
//             (K is translation invariant on a regular grid: a Toeplitz
//             product, done by the caller with TensorFlow's FFT)
//   gather:   phi_ic     = sum_node L_node(y_i) v_c(node)   O(n p^d c)
// These kernels do the two interpolation steps; the convolution is not here.
//
// Layout: y [batch, n, d]; charges [batch, n, c]; origin [batch, d] (the
// grid's lower corner); box_width [batch] (h > 0); grid [batch, c, m] for
// d = 1, [batch, c, m, m] for d = 2 (node (gx, gy) at gx * m + gy, gx along
// y[..., 0]); phi [batch, n, c]. A point's box is floor((y - origin) / h),
// clamped to [0, n_boxes): the caller makes the grid cover the points
// (CheckFftGrid says which point does not).
//
// Determinism: the CPU spread gives each box row (d = 2) or box (d = 1) to
// one work unit, which owns the grid nodes of that row and adds its points
// in index order (a counting sort by box, stable), so no two threads write
// one node and the sums do not depend on the thread count; no atomics, no
// per-thread grids. The CUDA spread sorts the points by box with a stable
// radix sort and gives each node to one thread, which adds its box's points
// in that order: the same property on the GPU. Gathering is one thread per
// point. All sums are in double.
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

// The p Lagrange weights at t in [0, 1] (a point's place in its box), nodes
// at (l + 1/2) / p: w[l] = prod_{k != l} (t - x_k) / (x_l - x_k).
TSNE_OPS_HOST_DEVICE inline void FftLagrangeWeights(double t, int p, double* w) {
  for (int l = 0; l < p; ++l) {
    const double xl = (l + 0.5) / p;
    double num = 1.0, den = 1.0;
    for (int k = 0; k < p; ++k) {
      if (k == l) continue;
      const double xk = (k + 0.5) / p;
      num *= t - xk;
      den *= xl - xk;
    }
    w[l] = num / den;
  }
}

// The box of grid coordinate s = (y - origin) / h, clamped to [0, n_boxes),
// and the point's place t = s - box in it.
TSNE_OPS_HOST_DEVICE inline int64_t FftBoxOf(double s, int64_t n_boxes, double* t) {
  int64_t b = static_cast<int64_t>(s >= 0 ? s : -1.0);  // floor for s >= 0, else box 0
  if (b < 0) b = 0;
  if (b > n_boxes - 1) b = n_boxes - 1;
  *t = s - static_cast<double>(b);
  return b;
}

#ifdef TSNE_OPS_WITH_CUDA
// Same contracts; every pointer is device memory.
size_t FftSpreadWorkspaceBytes(int64_t batch, int64_t n, int64_t d, int64_t n_boxes);
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
