// The fused t-SNE kernel: gradient of KL(P || Q) with respect to the
// embedding, the normaliser Z and the KL divergence, in one pass over the
// pairs and with no N x N temporary (extra memory is O(batch * n * d)).
//
// p is [batch, n, n] (symmetric, non-negative; its diagonal is ignored), y is
// [batch, n, d]. With alpha = dof, for i != j:
//   u_ij = 1 / (1 + |y_i - y_j|^2 / alpha)
//   w_ij = u_ij^((alpha + 1) / 2)            (Student-t kernel)
//   Z    = sum_{k != l} w_kl,   q_ij = w_ij / Z
//   grad_i = (2 (alpha + 1) / alpha)
//            * sum_j (exaggeration * p_ij - s * q_ij) * u_ij * (y_i - y_j)
//   kl   = sum_{i != j, p_ij > 0} p_ij log(p_ij / q_ij)
// where s = 1, or s = sum_{i != j} p_ij when scale_repulsion_by_p_sum is set
// (which makes grad the exact gradient of kl for a P that does not sum to 1).
#ifndef TSNE_OPS_CC_COMPUTE_TSNE_GRADIENT_H_
#define TSNE_OPS_CC_COMPUTE_TSNE_GRADIENT_H_

#include <cstdint>

#include "cc/compute/common.h"

#ifdef TSNE_OPS_WITH_CUDA
#include <cuda_runtime_api.h>
#endif

namespace tsne_ops {
namespace kernels {

struct TsneGradientOptions {
  double exaggeration = 1.0;
  double dof = 1.0;
  bool scale_repulsion_by_p_sum = false;
};

#define TSNE_OPS_GRADIENT_CPU_DECLS                                           \
  /* grad [batch, n, d] and kl [batch] may each be nullptr to skip that      \
     output (kl costs two logarithms per pair). */                            \
  template <typename T>                                                       \
  void TsneGradientCpu(const T* p, const T* y, int64_t batch, int64_t n,      \
                       int64_t d, const TsneGradientOptions& options,         \
                       T* grad, T* kl, const ParallelFor& parallel_for);

TSNE_OPS_GRADIENT_CPU_DECLS
namespace baseline { TSNE_OPS_GRADIENT_CPU_DECLS }
namespace avx2 { TSNE_OPS_GRADIENT_CPU_DECLS }

#ifdef TSNE_OPS_WITH_CUDA
template <typename T>
size_t TsneGradientWorkspaceBytes(int64_t batch, int64_t n, int64_t d);
template <typename T>
cudaError_t LaunchTsneGradient(cudaStream_t stream, const T* p, const T* y,
                               int64_t batch, int64_t n, int64_t d,
                               const TsneGradientOptions& options, T* grad,
                               T* kl, void* workspace);
#endif

}  // namespace kernels
}  // namespace tsne_ops

#endif  // TSNE_OPS_CC_COMPUTE_TSNE_GRADIENT_H_
