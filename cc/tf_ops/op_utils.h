// Helpers shared by the op kernels: the CPU thread pool as a kernels::
// ParallelFor, the GPU stream, scratch allocation, and CheckMessage, which
// turns a cc/compute/validation.h message into an InvalidArgument error.
#ifndef TSNE_OPS_CC_TF_OPS_OP_UTILS_H_
#define TSNE_OPS_CC_TF_OPS_OP_UTILS_H_

#include <cmath>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "cc/compute/common.h"
#include "cc/compute/tsne_gradient.h"
#include "cc/compute/validation.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/shape_inference.h"
#include "tensorflow/core/framework/tensor.h"
#include "tensorflow/core/framework/tensor_shape.h"
#include "tensorflow/core/util/work_sharder.h"
#include "xla/stream_executor/stream.h"

#ifdef TSNE_OPS_WITH_CUDA
#include <cuda_runtime_api.h>
#endif

namespace tsne_ops {

// The TensorFlow names every op file uses.
using tensorflow::OpKernel;
using tensorflow::OpKernelConstruction;
using tensorflow::OpKernelContext;
using tensorflow::Tensor;
using tensorflow::TensorShape;
using tensorflow::shape_inference::DimensionHandle;
using tensorflow::shape_inference::InferenceContext;
using tensorflow::shape_inference::ShapeHandle;

using CPUDevice = Eigen::ThreadPoolDevice;
struct GPUDevice {};  // tag: kernels below never touch Eigen's GPU device

// TensorFlow's intra-op thread pool as the kernels' parallel-for.
inline kernels::ParallelFor CpuParallelFor(tensorflow::OpKernelContext* ctx) {
  auto* pool = ctx->device()->tensorflow_cpu_worker_threads()->workers;
  return [pool](int64_t total, int64_t cost_per_unit,
                const std::function<void(int64_t, int64_t)>& work) {
    pool->ParallelFor(total, cost_per_unit, work);
  };
}

inline std::vector<int64_t> Dims(const tensorflow::Tensor& t) {
  std::vector<int64_t> d;
  for (int i = 0; i < t.dims(); ++i) d.push_back(t.dim_size(i));
  return d;
}

// Status for a kernels:: validation message (empty message: OK). The checks
// themselves live in cc/compute/validation.h, shared with the pybind11 module.
inline absl::Status CheckMessage(const std::string& message) {
  return message.empty() ? absl::OkStatus() : absl::InvalidArgumentError(message);
}

inline absl::Status CheckRank(const tensorflow::Tensor& t, int rank, const char* name,
                              const char* layout) {
  return CheckMessage(kernels::CheckRank(Dims(t), rank, name, layout));
}

// A positive finite scalar input (exaggeration, dof), read on the host.
template <typename T>
absl::Status PositiveScalarInput(tensorflow::OpKernelContext* ctx, int index, const char* name,
                                 double* value) {
  const tensorflow::Tensor& t = ctx->input(index);
  if (t.dims() != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, " must be a scalar, but has shape ", t.shape().DebugString()));
  }
  *value = static_cast<double>(t.scalar<T>()());
  return CheckMessage(kernels::CheckPositiveFinite(*value, name));
}

// What the t-SNE gradient and loss ops (dense and sparse P) share: the
// scalars exaggeration (gradient ops only; input index < 0 for the loss) and
// dof, read on the host; the outputs grad (like y, output 0) and kl ([batch],
// or [0] without compute_kl; output 1, or 0 for the loss); the options.
template <typename T>
struct GradientOutputs {
  kernels::TsneGradientOptions options;
  T* grad = nullptr;  // null for the loss
  T* kl = nullptr;    // null without compute_kl
  int64_t grad_size = 0, batch = 0;

  // Finite inputs can still give non-finite outputs (overflow).
  bool Finite() const {
    bool finite = true;
    for (int64_t i = 0; grad && i < grad_size; ++i) finite &= std::isfinite(grad[i]);
    for (int64_t b = 0; kl && b < batch; ++b) finite &= std::isfinite(kl[b]);
    return finite;
  }
};

// The gradient ops' attributes compute_kl and scale_repulsion_by_p_sum.
inline absl::Status ReadGradientAttrs(tensorflow::OpKernelConstruction* ctx, bool* compute_kl,
                                      bool* scale_by_p_sum) {
  TF_RETURN_IF_ERROR(ctx->GetAttr("compute_kl", compute_kl));
  return ctx->GetAttr("scale_repulsion_by_p_sum", scale_by_p_sum);
}

template <typename T>
absl::Status AllocateGradientOutputs(tensorflow::OpKernelContext* ctx, const tensorflow::Tensor& y,
                                     int exaggeration_input, int dof_input, bool compute_kl,
                                     bool scale_by_p_sum, GradientOutputs<T>* out) {
  const bool loss_only = exaggeration_input < 0;
  double exaggeration = 1.0, dof = 1.0;
  if (!loss_only) {
    TF_RETURN_IF_ERROR(PositiveScalarInput<T>(ctx, exaggeration_input, "exaggeration",
                                              &exaggeration));
  }
  TF_RETURN_IF_ERROR(PositiveScalarInput<T>(ctx, dof_input, "dof", &dof));
  out->options.exaggeration = exaggeration;
  out->options.dof = dof;
  out->options.scale_repulsion_by_p_sum = scale_by_p_sum;
  out->batch = y.dim_size(0);
  const bool want_kl = loss_only || compute_kl;
  tensorflow::Tensor* grad = nullptr;
  tensorflow::Tensor* kl = nullptr;
  if (!loss_only) TF_RETURN_IF_ERROR(ctx->allocate_output(0, y.shape(), &grad));
  TF_RETURN_IF_ERROR(ctx->allocate_output(
      loss_only ? 0 : 1, tensorflow::TensorShape({want_kl ? out->batch : 0}), &kl));
  if (grad) {
    out->grad = grad->flat<T>().data();
    out->grad_size = grad->NumElements();
  }
  if (want_kl) out->kl = kl->flat<T>().data();
  return absl::OkStatus();
}

// The perplexity search's attributes of the dense and the kNN affinity ops,
// read and checked (tolerance > 0, max_iter >= 1) when the kernel is built.
struct PerplexitySearchAttrs {
  float perplexity = 30.f;
  float tolerance = 1e-5f;
  int max_iter = 200;

  absl::Status Read(tensorflow::OpKernelConstruction* ctx) {
    TF_RETURN_IF_ERROR(ctx->GetAttr("perplexity", &perplexity));
    TF_RETURN_IF_ERROR(ctx->GetAttr("tolerance", &tolerance));
    TF_RETURN_IF_ERROR(ctx->GetAttr("max_iter", &max_iter));
    return CheckMessage(kernels::CheckPerplexitySearch(tolerance, max_iter));
  }
};

// A self-distance matrix: rank 3, square, N >= 2.
inline absl::Status CheckSquareDistances(const tensorflow::Tensor& d, const char* name) {
  auto s = CheckRank(d, 3, name, "[batch, n, n]");
  if (!s.ok()) return s;
  return CheckMessage(kernels::CheckSquare(Dims(d), name));
}

#ifdef TSNE_OPS_WITH_CUDA
inline cudaStream_t GpuStream(tensorflow::OpKernelContext* ctx) {
  return static_cast<cudaStream_t>(
      ctx->op_device_context()->stream()->platform_specific_handle().stream);
}

inline absl::Status CudaStatus(cudaError_t err, const char* what) {
  if (err == cudaSuccess) return absl::OkStatus();
  return absl::InternalError(
      absl::StrCat(what, " failed to launch: ", cudaGetErrorString(err)));
}

// Device scratch of `bytes` bytes (nullptr when 0), owned by `holder`.
inline absl::Status AllocateScratch(tensorflow::OpKernelContext* ctx, size_t bytes,
                                    tensorflow::Tensor* holder, void** ptr) {
  *ptr = nullptr;
  if (bytes == 0) return absl::OkStatus();
  auto s = ctx->allocate_temp(tensorflow::DT_INT8,
                              tensorflow::TensorShape({static_cast<int64_t>(bytes)}), holder);
  if (!s.ok()) return s;
  *ptr = holder->flat<int8_t>().data();
  return absl::OkStatus();
}
#endif

}  // namespace tsne_ops

// REGISTER(DEV, DEVICE, T) for float and double on the CPU, and on the GPU
// when built with CUDA: an op file defines REGISTER for its kernels.
#ifdef TSNE_OPS_WITH_CUDA
#define TSNE_OPS_REGISTER_GPU_TYPES(REGISTER)  \
  REGISTER(DEVICE_GPU, GPUDevice, float)       \
  REGISTER(DEVICE_GPU, GPUDevice, double)
#else
#define TSNE_OPS_REGISTER_GPU_TYPES(REGISTER)
#endif
#define TSNE_OPS_REGISTER_ALL_TYPES(REGISTER)  \
  REGISTER(DEVICE_CPU, CPUDevice, float)       \
  REGISTER(DEVICE_CPU, CPUDevice, double)      \
  TSNE_OPS_REGISTER_GPU_TYPES(REGISTER)

#endif  // TSNE_OPS_CC_TF_OPS_OP_UTILS_H_
