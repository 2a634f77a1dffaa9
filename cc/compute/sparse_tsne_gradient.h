// The t-SNE gradient, Z and KL for a sparse P (the large-N path): the same
// quantities as tsne_gradient.h, with P given in CSR form.
//
// For each batch element b, rows u = b * n + i hold the stored entries
// [row_ptr[u], row_ptr[u + 1]) of P: columns cols[e] (in [0, n), within the
// batch element) and values p_values[e] >= 0. Stored diagonal entries are
// ignored, as the dense kernel ignores the diagonal. With alpha = dof:
//   attraction  A_i = sum_{stored j != i} p_ij u_ij (y_i - y_j)        O(nnz d)
//   repulsion   R_i = sum_{j != i} w_ij u_ij (y_i - y_j),  Z = sum w   O(n^2 d)
//   grad_i = (2 (alpha + 1) / alpha) (exaggeration A_i - s R_i / Z)
//   kl = sum_{stored, p > 0} p log p - sum_stored p log w + s log Z
// where s = 1, or s = sum of the stored off-diagonal p with
// scale_repulsion_by_p_sum, exactly as TsneGradientCpu on the dense P. The
// repulsion is exact (every pair), computed in tiles with O(n d) extra
// memory: the reference for the approximate repulsions (FFT, Barnes-Hut).
#ifndef TSNE_OPS_CC_COMPUTE_SPARSE_TSNE_GRADIENT_H_
#define TSNE_OPS_CC_COMPUTE_SPARSE_TSNE_GRADIENT_H_

#include <cstdint>
#include <string>

#include "cc/compute/common.h"
#include "cc/compute/tsne_gradient.h"

#ifdef TSNE_OPS_WITH_CUDA
#include <cuda_runtime_api.h>
#endif

namespace tsne_ops {
namespace kernels {

// Checks a COO index list [nnz, 3] of (b, i, j) against dense shape
// [batch, n, n]: every index in range and the list in strictly increasing
// row-major order (sorted, no duplicates: TensorFlow's canonical order).
// Returns "" or a message naming `name`, the entry and its value. On success
// fills row_ptr [batch * n + 1] (absolute offsets) and cols [nnz] (the j).
// With a parallel_for the entries are checked and copied in parallel; the
// result (and the message) is the same.
std::string CooToCsr(const int64_t* indices, int64_t nnz, int64_t batch, int64_t n,
                     const char* name, int64_t* row_ptr, int64_t* cols,
                     const ParallelFor* parallel_for = nullptr);

#define TSNE_OPS_SPARSE_GRADIENT_CPU_DECLS                                      \
  /* grad [batch, n, d] and kl [batch] may each be nullptr to skip them. */     \
  template <typename T>                                                         \
  void SparseTsneGradientCpu(const int64_t* row_ptr, const int64_t* cols,       \
                             const T* p_values, const T* y, int64_t batch,      \
                             int64_t n, int64_t d,                              \
                             const TsneGradientOptions& options, T* grad,       \
                             T* kl, const ParallelFor& parallel_for);             \
  /* The same grad and kl from a repulsion computed elsewhere (FFT, Barnes-Hut): */ \
  /* repulsion [batch, n, d] = R (unnormalised) and z [batch] = Z > 0; only the  */ \
  /* attraction over P's stored entries runs here, O(nnz d).                     */ \
  template <typename T>                                                         \
  void SparseTsneGradientFromRepulsionCpu(                                      \
      const int64_t* row_ptr, const int64_t* cols, const T* p_values, const T* y, \
      int64_t batch, int64_t n, int64_t d, const TsneGradientOptions& options,   \
      const T* repulsion, const T* z, T* grad, T* kl, const ParallelFor& parallel_for);

TSNE_OPS_SPARSE_GRADIENT_CPU_DECLS
namespace baseline { TSNE_OPS_SPARSE_GRADIENT_CPU_DECLS }
namespace avx2 { TSNE_OPS_SPARSE_GRADIENT_CPU_DECLS }

#ifdef TSNE_OPS_WITH_CUDA
template <typename T>
size_t SparseTsneGradientWorkspaceBytes(int64_t batch, int64_t n, int64_t d);
// Same contract; every pointer is device memory (row_ptr and cols too).
template <typename T>
cudaError_t LaunchSparseTsneGradient(cudaStream_t stream, const int64_t* row_ptr,
                                     const int64_t* cols, const T* p_values, const T* y,
                                     int64_t batch, int64_t n, int64_t d,
                                     const TsneGradientOptions& options, T* grad, T* kl,
                                     void* workspace);
// SparseTsneGradientFromRepulsionCpu on the device (same workspace size).
template <typename T>
cudaError_t LaunchSparseTsneGradientFromRepulsion(
    cudaStream_t stream, const int64_t* row_ptr, const int64_t* cols, const T* p_values,
    const T* y, int64_t batch, int64_t n, int64_t d, const TsneGradientOptions& options,
    const T* repulsion, const T* z, T* grad, T* kl, void* workspace);
#endif

}  // namespace kernels
}  // namespace tsne_ops

#endif  // TSNE_OPS_CC_COMPUTE_SPARSE_TSNE_GRADIENT_H_
