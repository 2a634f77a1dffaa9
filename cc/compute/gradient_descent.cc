// scikit-learn's t-SNE optimiser over the fused CPU gradient (see the header).
#include "cc/compute/gradient_descent.h"

#include <cmath>
#include <sstream>
#include <vector>

#include "cc/compute/tsne_gradient.h"

namespace tsne_ops {
namespace kernels {
namespace {

template <typename T>
std::string NonFinite(const char* what, const T* a, int64_t n, int64_t d, int64_t step,
                      int64_t n_steps, const GradientDescentOptions& options) {
  for (int64_t e = 0; e < n * d; ++e) {
    if (!std::isfinite(a[e])) {
      std::ostringstream s;
      s << "the t-SNE optimisation diverged: " << what << "[" << e / d << ", " << e % d
        << "] = " << a[e] << " at iteration " << step + 1 << " of " << n_steps
        << " (learning_rate = " << options.learning_rate << ", exaggeration = "
        << options.exaggeration << ", momentum = " << options.momentum
        << "); a smaller learning_rate or exaggeration may help";
      return s.str();
    }
  }
  return "";
}

}  // namespace

std::string CheckGradientDescentOptions(const GradientDescentOptions& o) {
  std::ostringstream s;
  if (!(o.learning_rate > 0) || !std::isfinite(o.learning_rate)) {
    s << "learning_rate must be a finite number > 0, got " << o.learning_rate;
  } else if (!(o.momentum >= 0) || !std::isfinite(o.momentum)) {
    s << "momentum must be a finite number >= 0, got " << o.momentum;
  } else if (!(o.exaggeration > 0) || !std::isfinite(o.exaggeration)) {
    s << "exaggeration must be a finite number > 0, got " << o.exaggeration;
  } else if (!(o.dof > 0) || !std::isfinite(o.dof)) {
    s << "dof must be a finite number > 0, got " << o.dof;
  } else if (!(o.min_gain >= 0) || !std::isfinite(o.min_gain)) {
    s << "min_gain must be a finite number >= 0, got " << o.min_gain;
  }
  return s.str();
}

template <typename T>
GradientDescentResult GradientDescentCpu(const T* p, int64_t n, int64_t d, int64_t n_steps,
                                         const GradientDescentOptions& options, T* y,
                                         T* update, T* gains, const ParallelFor& parallel_for) {
  GradientDescentResult result;
  // The TensorFlow op receives exaggeration and dof as T scalars, and the
  // TensorFlow loop holds the other constants as T tensors: round them alike.
  TsneGradientOptions grad_options;
  grad_options.exaggeration = static_cast<double>(static_cast<T>(options.exaggeration));
  grad_options.dof = static_cast<double>(static_cast<T>(options.dof));
  const T lr = static_cast<T>(options.learning_rate);
  const T momentum = static_cast<T>(options.momentum);
  const T min_gain = static_cast<T>(options.min_gain);
  const T up = static_cast<T>(0.2), down = static_cast<T>(0.8);
  const int64_t size = n * d;
  std::vector<T> grad(static_cast<size_t>(size));
  for (int64_t step = 0; step < n_steps; ++step) {
    result.error = NonFinite("y", y, n, d, step, n_steps, options);
    if (!result.error.empty()) return result;
    const bool last = step == n_steps - 1;
    T kl = T(0);
    TsneGradientCpu<T>(p, y, 1, n, d, grad_options, grad.data(), last ? &kl : nullptr,
                       parallel_for);
    result.error = NonFinite("the gradient", grad.data(), n, d, step, n_steps, options);
    if (!result.error.empty()) return result;
    for (int64_t e = 0; e < size; ++e) {
      const T g = grad[e];
      T gain = (update[e] * g < T(0)) ? gains[e] + up : gains[e] * down;
      gain = gain > min_gain ? gain : min_gain;
      gains[e] = gain;
      const T scaled = gain * g;
      grad[e] = scaled;
      // learning_rate * (gains * grad), associated as TensorFlow evaluates
      // the tf.function of tsne_ops.tsne.GradientDescent: its graph optimiser
      // hoists the constant, (learning_rate * gains) * grad, inside the
      // while_loop, where gains * grad has no other use, but not in the last
      // iteration, whose scaled gradient is also returned. The same order
      // keeps the two paths bit-identical (the difference is one rounding).
      const T a = momentum * update[e];
      const T b = last ? lr * scaled : (lr * gain) * g;
      update[e] = a - b;
      y[e] = y[e] + update[e];
    }
    if (last) {
      double sq = 0.0;
      for (int64_t e = 0; e < size; ++e) sq += static_cast<double>(grad[e]) * grad[e];
      result.kl = static_cast<double>(kl);
      result.grad_norm = std::sqrt(sq);
    }
  }
  return result;
}

template GradientDescentResult GradientDescentCpu<float>(const float*, int64_t, int64_t, int64_t,
                                                         const GradientDescentOptions&, float*,
                                                         float*, float*, const ParallelFor&);
template GradientDescentResult GradientDescentCpu<double>(const double*, int64_t, int64_t,
                                                          int64_t, const GradientDescentOptions&,
                                                          double*, double*, double*,
                                                          const ParallelFor&);

}  // namespace kernels
}  // namespace tsne_ops
