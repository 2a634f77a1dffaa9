// Pairwise squared Euclidean distances: op definitions, shape functions,
// kernels and registrations (CPU always, GPU when built with CUDA).
#include "cc/compute/distances.h"
#include "cc/tf_ops/op_utils.h"
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/shape_inference.h"

namespace tsne_ops {

REGISTER_OP("TSNE>SquaredDistance")
    .Input("x: T")
    .Output("distances: T")
    .Attr("T: {float, double}")
    .SetShapeFn([](InferenceContext* c) {
      ShapeHandle x;
      TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 3, &x));
      c->set_output(0, c->MakeShape({c->Dim(x, 0), c->Dim(x, 1), c->Dim(x, 1)}));
      return absl::OkStatus();
    })
    .Doc(R"doc(
Squared Euclidean distances between the points of each batch.

distances[b, i, j] = sum_k (x[b, i, k] - x[b, j, k])^2, exactly symmetric, with
an exactly zero diagonal and no negative entry.

x: [batch, n, dim] points.
distances: [batch, n, n].
)doc");

REGISTER_OP("TSNE>CrossSquaredDistance")
    .Input("x: T")
    .Input("y: T")
    .Output("distances: T")
    .Attr("T: {float, double}")
    .SetShapeFn([](InferenceContext* c) {
      ShapeHandle x, y;
      TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 3, &x));
      TF_RETURN_IF_ERROR(c->WithRank(c->input(1), 3, &y));
      DimensionHandle batch, dim;
      TF_RETURN_IF_ERROR(c->Merge(c->Dim(x, 0), c->Dim(y, 0), &batch));
      TF_RETURN_IF_ERROR(c->Merge(c->Dim(x, 2), c->Dim(y, 2), &dim));
      c->set_output(0, c->MakeShape({batch, c->Dim(x, 1), c->Dim(y, 1)}));
      return absl::OkStatus();
    })
    .Doc(R"doc(
Squared Euclidean distances between two point sets, batch by batch.

distances[b, i, j] = sum_k (x[b, i, k] - y[b, j, k])^2, never negative.

x: [batch, n, dim].
y: [batch, m, dim].
distances: [batch, n, m].
)doc");

REGISTER_OP("TSNE>SquaredDistanceGrad")
    .Input("grad: T")
    .Input("x: T")
    .Output("grad_x: T")
    .Attr("T: {float, double}")
    .SetShapeFn([](InferenceContext* c) {
      c->set_output(0, c->input(1));
      return absl::OkStatus();
    })
    .Doc(R"doc(
Gradient of SquaredDistance: grad_x[i] = 2 sum_j (g_ij + g_ji) (x_i - x_j).

grad: [batch, n, n] gradient with respect to the distances.
x: [batch, n, dim] the forward input.
grad_x: [batch, n, dim].
)doc");

REGISTER_OP("TSNE>CrossSquaredDistanceGrad")
    .Input("grad: T")
    .Input("x: T")
    .Input("y: T")
    .Output("grad_x: T")
    .Output("grad_y: T")
    .Attr("T: {float, double}")
    .SetShapeFn([](InferenceContext* c) {
      c->set_output(0, c->input(1));
      c->set_output(1, c->input(2));
      return absl::OkStatus();
    })
    .Doc(R"doc(
Gradient of CrossSquaredDistance: grad_x[i] = 2 sum_j g_ij (x_i - y_j),
grad_y[j] = 2 sum_i g_ij (y_j - x_i).

grad: [batch, n, m].
x: [batch, n, dim].
y: [batch, m, dim].
grad_x: [batch, n, dim].
grad_y: [batch, m, dim].
)doc");

namespace {

absl::Status CheckPoints(const Tensor& t, const char* name) {
  auto s = CheckRank(t, 3, name, "[batch, points, dim]");
  if (!s.ok()) return s;
  return CheckMessage(kernels::CheckPoints(Dims(t), name, 0));
}

template <typename T>
absl::Status CheckFiniteOnHost(const Tensor& t, const char* name, const kernels::ParallelFor* pf) {
  return CheckMessage(kernels::CheckAllFinite<T>(t.flat<T>().data(), Dims(t), name, pf));
}

}  // namespace

// Forward: one kernel class for the self and cross forms (Cross = has y).
template <typename Device, typename T, bool Cross>
class SquaredDistanceOp : public OpKernel {
 public:
  explicit SquaredDistanceOp(OpKernelConstruction* ctx) : OpKernel(ctx) {}

  void Compute(OpKernelContext* ctx) override {
    constexpr bool kCpu = std::is_same<Device, CPUDevice>::value;
    const Tensor& x = ctx->input(0);
    const Tensor* y = Cross ? &ctx->input(1) : nullptr;
    kernels::ParallelFor pf;
    if (kCpu) pf = CpuParallelFor(ctx);
    OP_REQUIRES_OK(ctx, CheckPoints(x, "x"));
    if (Cross) {
      OP_REQUIRES_OK(ctx, CheckPoints(*y, "y"));
      OP_REQUIRES_OK(ctx, CheckMessage(kernels::CheckSameBatchAndDim(Dims(x), "x", Dims(*y), "y")));
    }
    if (kCpu) {
      OP_REQUIRES_OK(ctx, CheckFiniteOnHost<T>(x, "x", &pf));
      if (Cross) OP_REQUIRES_OK(ctx, CheckFiniteOnHost<T>(*y, "y", &pf));
    }
    const int64_t batch = x.dim_size(0), n = x.dim_size(1), dim = x.dim_size(2);
    const int64_t m = Cross ? y->dim_size(1) : n;
    Tensor* out = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, TensorShape({batch, n, m}), &out));
    if (out->NumElements() == 0) return;
    const T* yp = Cross ? y->flat<T>().data() : nullptr;
    if constexpr (kCpu) {
      kernels::PairwiseSquaredDistanceCpu<T>(x.flat<T>().data(), yp, batch, n, m, dim,
                                             out->flat<T>().data(), pf);
      // Finite inputs can still overflow |x - y|^2 (float32 data near 1e19);
      // an inf distance would pass silently into P, so name the pair here.
      OP_REQUIRES_OK(ctx, CheckMessage(kernels::CheckDistancesFinite<T>(
                              out->flat<T>().data(), batch, n, m, Cross)));
    } else {
#ifdef TSNE_OPS_WITH_CUDA
      OP_REQUIRES_OK(ctx, CudaStatus(kernels::LaunchPairwiseSquaredDistance<T>(
                                         GpuStream(ctx), x.flat<T>().data(), yp, batch, n, m,
                                         dim, out->flat<T>().data()),
                                     "PairwiseSquaredDistance"));
#endif
    }
  }
};

template <typename Device, typename T, bool Cross>
class SquaredDistanceGradOp : public OpKernel {
 public:
  explicit SquaredDistanceGradOp(OpKernelConstruction* ctx) : OpKernel(ctx) {}

  void Compute(OpKernelContext* ctx) override {
    constexpr bool kCpu = std::is_same<Device, CPUDevice>::value;
    const Tensor& grad = ctx->input(0);
    const Tensor& x = ctx->input(1);
    const Tensor* y = Cross ? &ctx->input(2) : nullptr;
    OP_REQUIRES_OK(ctx, CheckPoints(x, "x"));
    if (Cross) {
      OP_REQUIRES_OK(ctx, CheckPoints(*y, "y"));
      OP_REQUIRES_OK(ctx, CheckMessage(kernels::CheckSameBatchAndDim(Dims(x), "x", Dims(*y), "y")));
    }
    const int64_t batch = x.dim_size(0), n = x.dim_size(1), dim = x.dim_size(2);
    const int64_t m = Cross ? y->dim_size(1) : n;
    OP_REQUIRES_OK(ctx, CheckMessage(kernels::CheckShapeIs(Dims(grad), {batch, n, m}, "grad")));
    Tensor* gx = nullptr;
    Tensor* gy = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, x.shape(), &gx));
    if (Cross) OP_REQUIRES_OK(ctx, ctx->allocate_output(1, y->shape(), &gy));
    const T* yp = Cross ? y->flat<T>().data() : nullptr;
    T* gyp = Cross ? gy->flat<T>().data() : nullptr;
    if (x.NumElements() == 0 && (!Cross || y->NumElements() == 0)) return;
    if constexpr (kCpu) {
      if (grad.NumElements() == 0) {
        gx->flat<T>().setZero();
        if (Cross) gy->flat<T>().setZero();
        return;
      }
      kernels::PairwiseSquaredDistanceGradCpu<T>(grad.flat<T>().data(), x.flat<T>().data(), yp,
                                                 batch, n, m, dim, gx->flat<T>().data(), gyp,
                                                 CpuParallelFor(ctx));
    } else {
#ifdef TSNE_OPS_WITH_CUDA
      Tensor scratch;
      void* ws = nullptr;
      OP_REQUIRES_OK(ctx, AllocateScratch(ctx,
                                          kernels::PairwiseSquaredDistanceGradWorkspaceBytes<T>(
                                              batch, n, m, dim),
                                          &scratch, &ws));
      OP_REQUIRES_OK(ctx, CudaStatus(kernels::LaunchPairwiseSquaredDistanceGrad<T>(
                                         GpuStream(ctx), grad.flat<T>().data(),
                                         x.flat<T>().data(), yp, batch, n, m, dim,
                                         gx->flat<T>().data(), gyp, ws),
                                     "PairwiseSquaredDistanceGrad"));
#endif
    }
  }
};

#define TSNE_OPS_REGISTER(DEV, DEVICE, T)                                                   \
  REGISTER_KERNEL_BUILDER(                                                                  \
      Name("TSNE>SquaredDistance").Device(tensorflow::DEV).TypeConstraint<T>("T"),          \
      SquaredDistanceOp<DEVICE, T, false>);                                                 \
  REGISTER_KERNEL_BUILDER(                                                                  \
      Name("TSNE>CrossSquaredDistance").Device(tensorflow::DEV).TypeConstraint<T>("T"),     \
      SquaredDistanceOp<DEVICE, T, true>);                                                  \
  REGISTER_KERNEL_BUILDER(                                                                  \
      Name("TSNE>SquaredDistanceGrad").Device(tensorflow::DEV).TypeConstraint<T>("T"),      \
      SquaredDistanceGradOp<DEVICE, T, false>);                                             \
  REGISTER_KERNEL_BUILDER(                                                                  \
      Name("TSNE>CrossSquaredDistanceGrad").Device(tensorflow::DEV).TypeConstraint<T>("T"), \
      SquaredDistanceGradOp<DEVICE, T, true>);

TSNE_OPS_REGISTER_ALL_TYPES(TSNE_OPS_REGISTER)
#undef TSNE_OPS_REGISTER

}  // namespace tsne_ops
