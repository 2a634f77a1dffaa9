// scikit-learn's t-SNE optimiser as a C++ loop over the fused CPU gradient
// kernel (tsne_gradient.h), for plain t-SNE with a dense P without any
// framework: the loop that tsne_ops.tsne.GradientDescent runs as a
// tf.while_loop, here with no Python and no graph between iterations.
//
// Per iteration (sklearn.manifold._t_sne._gradient_descent), element-wise in T:
//   grad   = tsne_gradient(p, y, exaggeration, dof)
//   gains  = max(update * grad < 0 ? gains + 0.2 : gains * 0.8, min_gain)
//   grad   = gains * grad
//   update = momentum * update - learning_rate * grad
//   y     += update
// The scalars are rounded to T first and the update is evaluated in the same
// order as the TensorFlow path's element-wise ops (see the .cc on how its
// graph optimiser associates learning_rate * gains * grad), without fused
// multiply-adds
// (gradient_descent.cc is compiled with -ffp-contract=off), so both paths give
// the same embedding to T's rounding. The update is serial (O(n d), small
// beside the O(n^2) gradient), and the gradient kernel is deterministic for
// any thread count: so is the loop.
#ifndef TSNE_OPS_CC_COMPUTE_GRADIENT_DESCENT_H_
#define TSNE_OPS_CC_COMPUTE_GRADIENT_DESCENT_H_

#include <cstdint>
#include <string>

#include "cc/compute/common.h"

namespace tsne_ops {
namespace kernels {

struct GradientDescentOptions {
  double learning_rate = 200.0;
  double momentum = 0.8;
  double exaggeration = 1.0;
  double dof = 1.0;
  double min_gain = 0.01;
};

struct GradientDescentResult {
  // KL(P || Q) at the start of the last iteration (with exaggeration, as the
  // gradient kernel computes it), and the norm of the last gains-scaled
  // gradient: the two numbers scikit-learn's convergence check reads.
  double kl = 0.0;
  double grad_norm = 0.0;
  // Empty, or why the run stopped early (y or the gradient became
  // non-finite: a learning rate or exaggeration too large for the data).
  std::string error;
};

// An empty string when the options are valid, else a message naming the
// option and its value (learning_rate, momentum, exaggeration, dof, min_gain).
std::string CheckGradientDescentOptions(const GradientDescentOptions& options);

// Runs n_steps >= 1 iterations on p [n, n] (symmetric, non-negative, finite)
// and the state y, update, gains [n, d], updated in place. On an error the
// state is that of the iteration that failed.
template <typename T>
GradientDescentResult GradientDescentCpu(const T* p, int64_t n, int64_t d, int64_t n_steps,
                                         const GradientDescentOptions& options, T* y,
                                         T* update, T* gains, const ParallelFor& parallel_for);

}  // namespace kernels
}  // namespace tsne_ops

#endif  // TSNE_OPS_CC_COMPUTE_GRADIENT_DESCENT_H_
