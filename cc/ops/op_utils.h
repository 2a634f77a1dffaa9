// Helpers shared by the op kernels: the CPU thread pool as a kernels::
// ParallelFor, the GPU stream, scratch allocation, and input checks that turn
// kernels:: validation messages into InvalidArgument errors.
#ifndef TSNE_OPS_CC_OPS_OP_UTILS_H_
#define TSNE_OPS_CC_OPS_OP_UTILS_H_

#include <cmath>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "cc/kernels/common.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/tensor.h"
#include "tensorflow/core/framework/tensor_shape.h"
#include "tensorflow/core/util/work_sharder.h"
#include "xla/stream_executor/stream.h"

#ifdef TSNE_OPS_WITH_CUDA
#include <cuda_runtime_api.h>
#endif

namespace tsne_ops {

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

// Status for a kernels:: check message (empty message: OK).
inline absl::Status CheckMessage(const std::string& message) {
  return message.empty() ? absl::OkStatus() : absl::InvalidArgumentError(message);
}

inline absl::Status CheckRank(const tensorflow::Tensor& t, int rank, const char* name,
                              const char* layout) {
  if (t.dims() != rank) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, " must be rank ", rank, " ", layout, ", but has shape ",
                     t.shape().DebugString()));
  }
  return absl::OkStatus();
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
  if (!(*value > 0) || !std::isfinite(*value)) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, " must be a finite number > 0, but is ", *value));
  }
  return absl::OkStatus();
}

inline absl::Status CheckPositiveFiniteAttr(float value, const char* name) {
  if (!(value > 0) || !std::isfinite(value)) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, " must be a finite number > 0, but is ", value));
  }
  return absl::OkStatus();
}

// A self-distance matrix: rank 3, square, N >= 2.
inline absl::Status CheckSquareDistances(const tensorflow::Tensor& d, const char* name) {
  auto s = CheckRank(d, 3, name, "[batch, n, n]");
  if (!s.ok()) return s;
  if (d.dim_size(1) != d.dim_size(2)) {
    return absl::InvalidArgumentError(absl::StrCat(
        name, " must be square [batch, n, n], but has shape ", d.shape().DebugString()));
  }
  if (d.dim_size(1) < 2) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, " needs at least 2 points, but n = ", d.dim_size(1)));
  }
  return absl::OkStatus();
}

inline absl::Status CheckPerplexity(float perplexity, int64_t n) {
  if (!(perplexity > 0) || !(perplexity < n - 1) || !std::isfinite(perplexity)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "perplexity must be in (0, n - 1) = (0, ", n - 1, ") for n = ", n, " points, but is ",
        perplexity));
  }
  return absl::OkStatus();
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

#endif  // TSNE_OPS_CC_OPS_OP_UTILS_H_
