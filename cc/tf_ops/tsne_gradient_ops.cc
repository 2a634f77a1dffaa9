// The fused t-SNE gradient and the t-SNE loss: op definitions, shape
// functions, kernels and registrations. The loss's gradient (registered in
// Python) runs TsneGradient with scale_repulsion_by_p_sum, the same kernel.
#include "cc/compute/tsne_gradient.h"
#include "cc/tf_ops/op_utils.h"
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/shape_inference.h"

namespace tsne_ops {

namespace {

// p [B, N, N] and y [B, N, d]: merges the batch and point dimensions.
absl::Status PairShapes(InferenceContext* c, DimensionHandle* batch, DimensionHandle* n,
                        ShapeHandle* y) {
  ShapeHandle p;
  TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 3, &p));
  TF_RETURN_IF_ERROR(c->WithRank(c->input(1), 3, y));
  TF_RETURN_IF_ERROR(c->Merge(c->Dim(p, 0), c->Dim(*y, 0), batch));
  TF_RETURN_IF_ERROR(c->Merge(c->Dim(p, 1), c->Dim(p, 2), n));
  TF_RETURN_IF_ERROR(c->Merge(*n, c->Dim(*y, 1), n));
  return absl::OkStatus();
}

// The kernel never reads p's diagonal, so a NaN there cannot show in the
// outputs that the lazy p check watches; the N diagonal entries are cheap.
template <typename T>
absl::Status CheckDiagonalFinite(const Tensor& p) {
  const T* data = p.flat<T>().data();
  const int64_t batch = p.dim_size(0), n = p.dim_size(1);
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t i = 0; i < n; ++i) {
      const T v = data[(b * n + i) * n + i];
      if (!std::isfinite(v)) {
        return absl::InvalidArgumentError(
            absl::StrCat("p must be finite, but p[", b, ", ", i, ", ", i, "] = ", v));
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace

REGISTER_OP("TSNE>TsneGradient")
    .Input("p: T")
    .Input("y: T")
    .Input("exaggeration: T")
    .Input("dof: T")
    .Output("grad: T")
    .Output("kl: T")
    .Attr("T: {float, double}")
    .Attr("compute_kl: bool = true")
    .Attr("scale_repulsion_by_p_sum: bool = false")
    .SetShapeFn([](InferenceContext* c) {
      DimensionHandle batch, n;
      ShapeHandle y;
      TF_RETURN_IF_ERROR(PairShapes(c, &batch, &n, &y));
      ShapeHandle scalar;
      TF_RETURN_IF_ERROR(c->WithRank(c->input(2), 0, &scalar));
      TF_RETURN_IF_ERROR(c->WithRank(c->input(3), 0, &scalar));
      bool compute_kl = true;
      TF_RETURN_IF_ERROR(c->GetAttr("compute_kl", &compute_kl));
      c->set_output(0, c->MakeShape({batch, n, c->Dim(y, 2)}));
      c->set_output(1, compute_kl ? c->MakeShape({batch}) : c->MakeShape({0}));
      return absl::OkStatus();
    })
    .Doc(R"doc(
The fused t-SNE gradient and KL divergence, with no N x N temporary.

With alpha = dof, u_ij = (1 + |y_i - y_j|^2 / alpha)^-1, w_ij = u_ij^((alpha+1)/2),
q_ij = w_ij / sum_{k != l} w_kl:
grad_i = (2 (alpha + 1) / alpha) sum_j (exaggeration p_ij - s q_ij) u_ij (y_i - y_j)
kl = KL(P || Q) = sum_{i != j} p_ij log(p_ij / q_ij) for the p given,
where s = 1, or s = sum_{i != j} p_ij with scale_repulsion_by_p_sum (the exact
gradient of kl when p does not sum to 1). p should be symmetric and
non-negative; its diagonal is ignored.

p: [batch, n, n] joint probabilities.
y: [batch, n, d] embedding.
grad: [batch, n, d].
kl: [batch], or [0] when compute_kl is false (it costs two logarithms a pair).
exaggeration: scalar, multiplies the attractive term, > 0.
dof: scalar, degrees of freedom alpha of the Student-t kernel, > 0.
compute_kl: whether to compute kl.
scale_repulsion_by_p_sum: scale the repulsive term by sum(p).
)doc");

REGISTER_OP("TSNE>TsneLoss")
    .Input("p: T")
    .Input("y: T")
    .Input("dof: T")
    .Output("kl: T")
    .Attr("T: {float, double}")
    .SetShapeFn([](InferenceContext* c) {
      DimensionHandle batch, n;
      ShapeHandle y;
      TF_RETURN_IF_ERROR(PairShapes(c, &batch, &n, &y));
      ShapeHandle scalar;
      TF_RETURN_IF_ERROR(c->WithRank(c->input(2), 0, &scalar));
      c->set_output(0, c->MakeShape({batch}));
      return absl::OkStatus();
    })
    .Doc(R"doc(
The t-SNE loss KL(P || Q) per batch, Q from the Student-t kernel with dof
degrees of freedom on the embedding y. Differentiable in y (the gradient runs
TsneGradient) and in p.

p: [batch, n, n] joint probabilities (symmetric, non-negative).
y: [batch, n, d] embedding.
dof: scalar, degrees of freedom of the Student-t kernel, > 0.
kl: [batch].
)doc");

template <typename Device, typename T, bool LossOnly>
class TsneGradientOp : public OpKernel {
 public:
  explicit TsneGradientOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    if (!LossOnly) OP_REQUIRES_OK(ctx, ReadGradientAttrs(ctx, &compute_kl_, &scale_by_p_sum_));
  }

  void Compute(OpKernelContext* ctx) override {
    constexpr bool kCpu = std::is_same<Device, CPUDevice>::value;
    const Tensor& p = ctx->input(0);
    const Tensor& y = ctx->input(1);
    OP_REQUIRES_OK(ctx, CheckRank(p, 3, "p", "[batch, n, n]"));
    OP_REQUIRES_OK(ctx, CheckRank(y, 3, "y", "[batch, n, d]"));
    const int64_t batch = y.dim_size(0), n = y.dim_size(1), d = y.dim_size(2);
    OP_REQUIRES_OK(ctx, CheckMessage(kernels::CheckGradientShapes(Dims(p), Dims(y))));
    // Scalars (host memory on the GPU too): exaggeration (gradient only), dof.
    GradientOutputs<T> out;
    OP_REQUIRES_OK(ctx, AllocateGradientOutputs<T>(ctx, y, LossOnly ? -1 : 2, LossOnly ? 2 : 3,
                                                   compute_kl_, scale_by_p_sum_, &out));
    if (batch == 0) return;
    const kernels::TsneGradientOptions& options = out.options;
    T* grad_ptr = out.grad;
    T* kl_ptr = out.kl;
    if constexpr (kCpu) {
      kernels::ParallelFor pf = CpuParallelFor(ctx);
      OP_REQUIRES_OK(ctx, CheckMessage(kernels::CheckAllFinite<T>(y.flat<T>().data(), Dims(y),
                                                                  "y", &pf)));
      OP_REQUIRES_OK(ctx, CheckDiagonalFinite<T>(p));
      kernels::TsneGradientCpu<T>(p.flat<T>().data(), y.flat<T>().data(), batch, n, d, options,
                                  grad_ptr, kl_ptr, pf);
      // p is checked lazily: a non-finite p always makes the outputs
      // non-finite, so the full N x N scan only runs to name the culprit.
      // Negative entries are caught the same way when kl is computed.
      if (!out.Finite()) {
        OP_REQUIRES_OK(ctx, CheckMessage(kernels::CheckNonNegativeFinite<T>(
                                p.flat<T>().data(), Dims(p), "p", &pf)));
        OP_REQUIRES(ctx, false,
                    absl::InvalidArgumentError(absl::StrCat(
                        "the t-SNE gradient overflowed (inputs are finite); is y too large, "
                        "p not normalised, or dof = ", options.dof,
                        " / exaggeration = ", options.exaggeration, " too extreme?")));
      }
    } else {
#ifdef TSNE_OPS_WITH_CUDA
      Tensor scratch;
      void* ws = nullptr;
      OP_REQUIRES_OK(ctx, AllocateScratch(ctx, kernels::TsneGradientWorkspaceBytes<T>(batch, n, d),
                                          &scratch, &ws));
      OP_REQUIRES_OK(ctx, CudaStatus(kernels::LaunchTsneGradient<T>(
                                         GpuStream(ctx), p.flat<T>().data(), y.flat<T>().data(),
                                         batch, n, d, options, grad_ptr, kl_ptr, ws),
                                     "TsneGradient"));
#endif
    }
  }

 private:
  bool compute_kl_ = true;
  bool scale_by_p_sum_ = false;
};

#define TSNE_OPS_REGISTER(DEV, DEVICE, T)                                                 \
  REGISTER_KERNEL_BUILDER(Name("TSNE>TsneGradient")                                    \
                              .Device(tensorflow::DEV)                                    \
                              .TypeConstraint<T>("T")                                     \
                              .HostMemory("exaggeration")                                 \
                              .HostMemory("dof"),                                         \
                          TsneGradientOp<DEVICE, T, false>);                              \
  REGISTER_KERNEL_BUILDER(Name("TSNE>TsneLoss")                                          \
                              .Device(tensorflow::DEV)                                    \
                              .TypeConstraint<T>("T")                                     \
                              .HostMemory("dof"),                                         \
                          TsneGradientOp<DEVICE, T, true>);

TSNE_OPS_REGISTER_ALL_TYPES(TSNE_OPS_REGISTER)
#undef TSNE_OPS_REGISTER

}  // namespace tsne_ops
