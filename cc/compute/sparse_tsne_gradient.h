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

// Checks a COO index list against dense shape [batch, n, n]: `rank` 3, rows
// (b, i, j) of a [nnz, 3] list, or `rank` 2, rows (i, j) of a [nnz, 2] list
// of one [n, n] matrix (batch must be 1; the rank-2 tf.SparseTensor as it is,
// with no batched copy). Every index in range and the list in strictly
// increasing row-major order (sorted, no duplicates: TensorFlow's canonical
// order). Returns "" or a message naming `name`, the entry and its value
// (written in the list's rank). On success fills row_ptr [batch * n + 1]
// (absolute offsets) and cols [nnz] (the j). With a parallel_for the entries
// are checked and copied in parallel; the result (and the message) is the
// same.
std::string CooToCsr(const int64_t* indices, int rank, int64_t nnz, int64_t batch, int64_t n,
                     const char* name, int64_t* row_ptr, int64_t* cols,
                     const ParallelFor* parallel_for = nullptr);

#if defined(__CUDACC__)
#define TSNE_OPS_HOST_DEVICE __host__ __device__
#else
#define TSNE_OPS_HOST_DEVICE
#endif

// A CSR view given by the caller (the SparseCsr op's output, reused across
// calls) over rows = batch * n rows of n columns each is safe to walk when
// row_ptr [rows + 1] starts at 0, never decreases and ends at nnz (then
// every offset lies in [0, nnz]) and every column lies in [0, n).
// CsrRowPtrBad and CsrColumnBad are the tests of one entry (shared by the
// CPU checks and the CUDA check kernel); the messages name the argument and
// the first bad value.
TSNE_OPS_HOST_DEVICE inline bool CsrRowPtrBad(const int64_t* row_ptr, int64_t u, int64_t rows,
                                              int64_t nnz) {
  const int64_t v = row_ptr[u];
  return (u == 0 && v != 0) || (u > 0 && v < row_ptr[u - 1]) || (u == rows && v != nnz);
}
TSNE_OPS_HOST_DEVICE inline bool CsrColumnBad(int64_t column, int64_t n) {
  return column < 0 || column >= n;
}
// A stored value of P that is not finite and >= 0 (CheckNonNegativeFinite's
// test, for the attraction's fused check).
template <typename T>
TSNE_OPS_HOST_DEVICE inline bool CsrValueBad(T v) {
  return !((v - v) == T(0) && v >= T(0));
}
// The message for bad entry u of row_ptr (value = row_ptr[u], prev =
// row_ptr[u - 1], unused for u = 0) and bad entry e of cols.
std::string CsrRowPtrMessage(int64_t u, int64_t prev, int64_t value, int64_t rows, int64_t nnz);
std::string CsrColumnMessage(int64_t e, int64_t value, int64_t n);
// row_ptr on the host, O(rows): "" or the message of its first bad entry.
// (On the CPU the columns and values are checked as the attraction reads
// them: SparseTsneGradientFromRepulsionCpu's first_bad_entry.)
std::string CheckCsrRowPtr(const int64_t* row_ptr, int64_t rows, int64_t nnz);

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
  /* attraction over P's stored entries runs here, O(nnz d). With               */ \
  /* first_bad_entry, cols and p_values are the caller's, unchecked (row_ptr    */ \
  /* checked): each column is checked against [0, n) and each value for finite */ \
  /* and >= 0 as the attraction reads it, and the first bad entry (nnz when    */ \
  /* none) is stored there; with one, the results are meaningless, but no      */ \
  /* memory outside the inputs is read.                                         */ \
  template <typename T>                                                         \
  void SparseTsneGradientFromRepulsionCpu(                                      \
      const int64_t* row_ptr, const int64_t* cols, const T* p_values, const T* y, \
      int64_t batch, int64_t n, int64_t d, const TsneGradientOptions& options,   \
      const T* repulsion, const T* z, T* grad, T* kl, const ParallelFor& parallel_for, \
      int64_t* first_bad_entry = nullptr);

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
// With csr_guard (the flags LaunchCheckCsr wrote earlier on the stream), the
// attraction pass does not read row_ptr or cols when a flag is set (the
// results are then meaningless; the caller reports the flags).
template <typename T>
cudaError_t LaunchSparseTsneGradientFromRepulsion(
    cudaStream_t stream, const int64_t* row_ptr, const int64_t* cols, const T* p_values,
    const T* y, int64_t batch, int64_t n, int64_t d, const TsneGradientOptions& options,
    const T* repulsion, const T* z, T* grad, T* kl, void* workspace,
    const unsigned long long* csr_guard = nullptr);
// The CSR checks on the device, without copying the CSR back: first_bad[0] (the
// first bad entry of row_ptr) and first_bad[1] (of cols), two device
// values, end as ~0ull when fine.
cudaError_t LaunchCheckCsr(cudaStream_t stream, const int64_t* row_ptr, int64_t rows,
                           const int64_t* cols, int64_t nnz, int64_t n,
                           unsigned long long* first_bad);
#endif

}  // namespace kernels
}  // namespace tsne_ops

#endif  // TSNE_OPS_CC_COMPUTE_SPARSE_TSNE_GRADIENT_H_
