// Perplexity-calibrated affinities and joint probabilities: op definitions,
// shape functions, kernels and registrations. Neither op is differentiable
// (the Python layer registers them as such).
#include "cc/compute/affinities.h"
#include "cc/tf_ops/op_utils.h"
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/shape_inference.h"

namespace tsne_ops {

namespace {

absl::Status SquareShape(InferenceContext* c, ShapeHandle* d) {
  TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 3, d));
  DimensionHandle n;
  TF_RETURN_IF_ERROR(c->Merge(c->Dim(*d, 1), c->Dim(*d, 2), &n));
  *d = c->MakeShape({c->Dim(*d, 0), n, n});
  return absl::OkStatus();
}

}  // namespace

REGISTER_OP("TSNE>PerplexityAffinities")
    .Input("sq_dist: T")
    .Output("p_conditional: T")
    .Output("beta: T")
    .Attr("T: {float, double}")
    .Attr("perplexity: float")
    .Attr("tolerance: float = 1e-5")
    .Attr("max_iter: int = 200")
    .SetShapeFn([](InferenceContext* c) {
      ShapeHandle d;
      TF_RETURN_IF_ERROR(SquareShape(c, &d));
      c->set_output(0, d);
      c->set_output(1, c->MakeShape({c->Dim(d, 0), c->Dim(d, 1)}));
      return absl::OkStatus();
    })
    .Doc(R"doc(
Conditional affinities P(j|i) calibrated to a perplexity.

For each row i a search on the precision beta_i makes the entropy of
P(j|i) = exp(-beta_i d_ij) / sum_{k != i} exp(-beta_i d_ik) equal
log(perplexity) nats to within `tolerance`, in at most `max_iter` steps. Rows
sum to 1 and the diagonal is zero.

sq_dist: [batch, n, n] squared distances (the diagonal is ignored).
p_conditional: [batch, n, n] P(j|i).
beta: [batch, n] the precision found for each row.
perplexity: the target perplexity, in (0, n - 1).
tolerance: entropy tolerance, nats.
max_iter: the most search steps per row.
)doc");

REGISTER_OP("TSNE>JointProbabilities")
    .Input("sq_dist: T")
    .Output("p: T")
    .Attr("T: {float, double}")
    .Attr("perplexity: float")
    .Attr("tolerance: float = 1e-5")
    .Attr("max_iter: int = 200")
    .SetShapeFn([](InferenceContext* c) {
      ShapeHandle d;
      TF_RETURN_IF_ERROR(SquareShape(c, &d));
      c->set_output(0, d);
      return absl::OkStatus();
    })
    .Doc(R"doc(
Symmetric joint probabilities P for t-SNE.

p_ij = max((P(j|i) + P(i|j)) / sum, 2.2e-16) for i != j and p_ii = 0, with
P(j|i) from PerplexityAffinities: each batch sums to 1 (up to the floor), as
scikit-learn's _joint_probabilities, in square form.

sq_dist: [batch, n, n] squared distances.
p: [batch, n, n].
perplexity: the target perplexity, in (0, n - 1).
tolerance: entropy tolerance, nats.
max_iter: the most search steps per row.
)doc");

template <typename Device, typename T, bool Joint>
class AffinityOp : public OpKernel {
 public:
  explicit AffinityOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, search_.Read(ctx));
  }

  void Compute(OpKernelContext* ctx) override {
    constexpr bool kCpu = std::is_same<Device, CPUDevice>::value;
    const Tensor& d = ctx->input(0);
    OP_REQUIRES_OK(ctx, CheckSquareDistances(d, "sq_dist"));
    const int64_t batch = d.dim_size(0), n = d.dim_size(1);
    OP_REQUIRES_OK(ctx, CheckMessage(kernels::CheckPerplexity(search_.perplexity, n)));
    kernels::ParallelFor pf;
    if (kCpu) {
      pf = CpuParallelFor(ctx);
      OP_REQUIRES_OK(ctx, CheckMessage(kernels::CheckNonNegativeFinite<T>(
                              d.flat<T>().data(), Dims(d), "sq_dist", &pf)));
    }
    Tensor* p = nullptr;
    Tensor* beta = nullptr;
    Tensor p_cond_tmp, beta_tmp;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, d.shape(), &p));
    Tensor* p_cond = p;
    if (Joint) {
      OP_REQUIRES_OK(ctx, ctx->allocate_temp(tensorflow::DataTypeToEnum<T>::value, d.shape(),
                                             &p_cond_tmp));
      OP_REQUIRES_OK(ctx, ctx->allocate_temp(tensorflow::DataTypeToEnum<T>::value,
                                             TensorShape({batch, n}), &beta_tmp));
      p_cond = &p_cond_tmp;
      beta = &beta_tmp;
    } else {
      OP_REQUIRES_OK(ctx, ctx->allocate_output(1, TensorShape({batch, n}), &beta));
    }
    if (batch == 0) return;
    if constexpr (kCpu) {
      const int64_t unconverged = kernels::PerplexityAffinitiesCpu<T>(
          d.flat<T>().data(), batch, n, search_.perplexity, search_.tolerance, search_.max_iter,
          p_cond->flat<T>().data(), beta->flat<T>().data(), pf);
      if (unconverged > 0) {
        LOG(WARNING) << "tsne_ops: " << unconverged << " of " << batch * n
                     << " rows did not reach perplexity " << search_.perplexity << " within "
                     << search_.tolerance << " nats in " << search_.max_iter
                     << " steps. Where more than " << search_.perplexity
                     << " points tie at a row's smallest distance (duplicates, binary or"
                     << " integer data) no beta can: such rows are uniform on their tied"
                     << " points; any other keeps its closest beta.";
      }
      if (Joint) {
        kernels::SymmetrizeAffinitiesCpu<T>(p_cond->flat<T>().data(), batch, n,
                                            p->flat<T>().data(), pf);
      }
    } else {
#ifdef TSNE_OPS_WITH_CUDA
      Tensor scratch;
      void* ws = nullptr;
      OP_REQUIRES_OK(ctx, AllocateScratch(ctx,
                                          kernels::PerplexityAffinitiesWorkspaceBytes<T>(batch, n),
                                          &scratch, &ws));
      OP_REQUIRES_OK(ctx, CudaStatus(kernels::LaunchPerplexityAffinities<T>(
                                         GpuStream(ctx), d.flat<T>().data(), batch, n,
                                         search_.perplexity, search_.tolerance, search_.max_iter,
                                         p_cond->flat<T>().data(), beta->flat<T>().data(),
                                         nullptr, ws),
                                     "PerplexityAffinities"));
      if (Joint) {
        Tensor scratch2;
        void* ws2 = nullptr;
        OP_REQUIRES_OK(ctx, AllocateScratch(
                                ctx, kernels::SymmetrizeAffinitiesWorkspaceBytes<T>(batch, n),
                                &scratch2, &ws2));
        OP_REQUIRES_OK(ctx, CudaStatus(kernels::LaunchSymmetrizeAffinities<T>(
                                           GpuStream(ctx), p_cond->flat<T>().data(), batch, n,
                                           p->flat<T>().data(), ws2),
                                       "SymmetrizeAffinities"));
      }
#endif
    }
  }

 private:
  PerplexitySearchAttrs search_;
};

#define TSNE_OPS_REGISTER(DEV, DEVICE, T)                                                   \
  REGISTER_KERNEL_BUILDER(                                                                  \
      Name("TSNE>PerplexityAffinities").Device(tensorflow::DEV).TypeConstraint<T>("T"),     \
      AffinityOp<DEVICE, T, false>);                                                        \
  REGISTER_KERNEL_BUILDER(                                                                  \
      Name("TSNE>JointProbabilities").Device(tensorflow::DEV).TypeConstraint<T>("T"),       \
      AffinityOp<DEVICE, T, true>);

TSNE_OPS_REGISTER_ALL_TYPES(TSNE_OPS_REGISTER)
#undef TSNE_OPS_REGISTER

}  // namespace tsne_ops
