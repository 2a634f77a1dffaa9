// The interpolation steps of the FFT-accelerated repulsion (FIt-SNE): spread
// charges onto a regular grid of Lagrange nodes, gather potentials back. The
// convolution between them is TensorFlow's own FFT (tsne_ops/ops.py), so no
// FFT library is linked. Op definitions, shape functions, kernels and
// registrations; the maths is in cc/compute/fft_interpolation.h.
#include <vector>

#include "cc/compute/fft_interpolation.h"
#include "cc/tf_ops/op_utils.h"
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/shape_inference.h"

namespace tsne_ops {

REGISTER_OP("TSNE>FftSpread")
    .Input("y: T")
    .Input("charges: T")
    .Input("origin: T")
    .Input("box_width: T")
    .Input("n_boxes: int64")
    .Output("grid: T")
    .Attr("T: {float, double}")
    .Attr("interpolation_points: int = 3")
    .SetShapeFn([](InferenceContext* c) {
      ShapeHandle y, q;
      TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 3, &y));
      TF_RETURN_IF_ERROR(c->WithRank(c->input(1), 3, &q));
      DimensionHandle d = c->Dim(y, 2);
      if (!c->ValueKnown(d)) {
        c->set_output(0, c->UnknownShape());
        return absl::OkStatus();
      }
      std::vector<DimensionHandle> dims = {c->Dim(y, 0), c->Dim(q, 2)};
      for (int64_t k = 0; k < c->Value(d); ++k) dims.push_back(c->UnknownDim());
      c->set_output(0, c->MakeShape(dims));
      return absl::OkStatus();
    })
    .Doc(R"doc(
Spreads per-point charges onto a regular grid of Lagrange interpolation nodes.

The grid has n_boxes boxes of width box_width per dimension from origin, and
interpolation_points nodes per box at (l + 1/2) box_width / p, so m = n_boxes
p nodes per dimension: grid[b, c, node] = sum_j L_node(y_j) charges[b, j, c],
L the Lagrange polynomials of the p consecutive nodes per dimension nearest
y_j (its stencil, clamped inside the grid). Deterministic (each node summed in point order), whatever the thread count.

y: [batch, n, d] points, d = 1 or 2, inside the grid.
charges: [batch, n, c] values carried by the points, 1 <= c <= 8.
origin: [batch, d] the grid's lower corner.
box_width: [batch] > 0.
n_boxes: scalar int64 >= 1, boxes per dimension.
grid: [batch, c, m] for d = 1, [batch, c, m, m] for d = 2.
interpolation_points: nodes per box, 1 to 8.
)doc");

REGISTER_OP("TSNE>FftGather")
    .Input("y: T")
    .Input("potentials: T")
    .Input("origin: T")
    .Input("box_width: T")
    .Output("phi: T")
    .Attr("T: {float, double}")
    .Attr("interpolation_points: int = 3")
    .SetShapeFn([](InferenceContext* c) {
      ShapeHandle y, v;
      TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 3, &y));
      TF_RETURN_IF_ERROR(c->WithRankAtLeast(c->input(1), 3, &v));
      c->set_output(0, c->MakeShape({c->Dim(y, 0), c->Dim(y, 1), c->Dim(v, 1)}));
      return absl::OkStatus();
    })
    .Doc(R"doc(
Interpolates grid potentials back at the points (the adjoint of FftSpread):
phi[b, i, c] = sum_node L_node(y_i) potentials[b, c, node].

y: [batch, n, d] points, d = 1 or 2, inside the grid.
potentials: [batch, c, m] (d = 1) or [batch, c, m, m] (d = 2), m = n_boxes p.
origin: [batch, d] the grid's lower corner.
box_width: [batch] > 0.
phi: [batch, n, c].
interpolation_points: nodes per box, 1 to 8.
)doc");

template <typename Device, typename T>
class FftSpreadOp : public OpKernel {
 public:
  explicit FftSpreadOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("interpolation_points", &p_));
  }

  void Compute(OpKernelContext* ctx) override {
    constexpr bool kCpu = std::is_same<Device, CPUDevice>::value;
    const Tensor& y = ctx->input(0);
    const Tensor& q = ctx->input(1);
    const Tensor& origin = ctx->input(2);
    const Tensor& box_width = ctx->input(3);
    const Tensor& nb_t = ctx->input(4);
    OP_REQUIRES_OK(ctx, CheckMessage(kernels::CheckFftShapes(Dims(y), Dims(origin),
                                                              Dims(box_width))));
    const int64_t batch = y.dim_size(0), n = y.dim_size(1), d = y.dim_size(2);
    OP_REQUIRES_OK(ctx, CheckMessage(kernels::CheckFftCharges(Dims(q), Dims(y))));
    OP_REQUIRES(ctx, nb_t.dims() == 0,
                absl::InvalidArgumentError(absl::StrCat("n_boxes must be a scalar, but has shape ",
                                                        nb_t.shape().DebugString())));
    const int64_t n_boxes = nb_t.scalar<int64_t>()();
    const int64_t c = q.dim_size(2);
    OP_REQUIRES_OK(ctx, CheckMessage(kernels::CheckFftBoxes(n_boxes, p_, d)));
    const int64_t m = n_boxes * p_;
    TensorShape shape({batch, c, m});
    if (d == 2) shape.AddDim(m);
    Tensor* grid = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, shape, &grid));
    if (batch == 0 || n == 0) {
      if constexpr (kCpu) std::fill_n(grid->flat<T>().data(), grid->NumElements(), T(0));
      if (batch == 0 || grid->NumElements() == 0) return;
    }
    if constexpr (kCpu) {
      kernels::ParallelFor pf = CpuParallelFor(ctx);
      OP_REQUIRES_OK(ctx, CheckMessage(kernels::CheckAllFinite<T>(y.flat<T>().data(), Dims(y),
                                                                  "y", &pf)));
      OP_REQUIRES_OK(ctx, CheckMessage(kernels::CheckAllFinite<T>(q.flat<T>().data(), Dims(q),
                                                                  "charges", &pf)));
      OP_REQUIRES_OK(ctx, CheckMessage(kernels::CheckFftGrid<T>(
                              y.flat<T>().data(), origin.flat<T>().data(),
                              box_width.flat<T>().data(), batch, n, d, c, n_boxes, p_)));
      if (n == 0) return;
      kernels::FftSpreadCpu<T>(y.flat<T>().data(), q.flat<T>().data(), origin.flat<T>().data(),
                               box_width.flat<T>().data(), batch, n, d, c, n_boxes, p_,
                               grid->flat<T>().data(), pf);
    } else {
#ifdef TSNE_OPS_WITH_CUDA
      OP_REQUIRES_OK(ctx, CheckMessage(kernels::CheckFftSizes(d, p_, c, n_boxes)));
      cudaStream_t stream = GpuStream(ctx);
      if (n == 0) {
        OP_REQUIRES_OK(ctx, CudaStatus(cudaMemsetAsync(grid->flat<T>().data(), 0,
                                                       sizeof(T) * grid->NumElements(), stream),
                                       "FftSpread"));
        return;
      }
      Tensor scratch;
      void* ws = nullptr;
      OP_REQUIRES_OK(ctx, AllocateScratch(ctx, kernels::FftSpreadWorkspaceBytes(batch, n, d,
                                                                                  n_boxes, p_),
                                          &scratch, &ws));
      OP_REQUIRES_OK(ctx, CudaStatus(kernels::LaunchFftSpread<T>(
                                         stream, y.flat<T>().data(), q.flat<T>().data(),
                                         origin.flat<T>().data(), box_width.flat<T>().data(),
                                         batch, n, d, c, n_boxes, p_, grid->flat<T>().data(), ws),
                                     "FftSpread"));
#endif
    }
  }

 private:
  int p_ = 3;
};

template <typename Device, typename T>
class FftGatherOp : public OpKernel {
 public:
  explicit FftGatherOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("interpolation_points", &p_));
  }

  void Compute(OpKernelContext* ctx) override {
    constexpr bool kCpu = std::is_same<Device, CPUDevice>::value;
    const Tensor& y = ctx->input(0);
    const Tensor& v = ctx->input(1);
    const Tensor& origin = ctx->input(2);
    const Tensor& box_width = ctx->input(3);
    OP_REQUIRES_OK(ctx, CheckMessage(kernels::CheckFftShapes(Dims(y), Dims(origin),
                                                              Dims(box_width))));
    const int64_t batch = y.dim_size(0), n = y.dim_size(1), d = y.dim_size(2);
    OP_REQUIRES_OK(ctx,
                   CheckMessage(kernels::CheckFftPotentials(Dims(v), Dims(y), p_)));
    const int64_t c = v.dim_size(1), n_boxes = v.dim_size(2) / p_;
    Tensor* phi = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, TensorShape({batch, n, c}), &phi));
    if (batch == 0 || n == 0) return;
    if constexpr (kCpu) {
      kernels::ParallelFor pf = CpuParallelFor(ctx);
      OP_REQUIRES_OK(ctx, CheckMessage(kernels::CheckAllFinite<T>(y.flat<T>().data(), Dims(y),
                                                                  "y", &pf)));
      OP_REQUIRES_OK(ctx, CheckMessage(kernels::CheckFftGrid<T>(
                              y.flat<T>().data(), origin.flat<T>().data(),
                              box_width.flat<T>().data(), batch, n, d, c, n_boxes, p_)));
      kernels::FftGatherCpu<T>(y.flat<T>().data(), v.flat<T>().data(), origin.flat<T>().data(),
                               box_width.flat<T>().data(), batch, n, d, c, n_boxes, p_,
                               phi->flat<T>().data(), pf);
    } else {
#ifdef TSNE_OPS_WITH_CUDA
      OP_REQUIRES_OK(ctx, CheckMessage(kernels::CheckFftSizes(d, p_, c, n_boxes)));
      OP_REQUIRES_OK(ctx, CudaStatus(kernels::LaunchFftGather<T>(
                                         GpuStream(ctx), y.flat<T>().data(), v.flat<T>().data(),
                                         origin.flat<T>().data(), box_width.flat<T>().data(),
                                         batch, n, d, c, n_boxes, p_, phi->flat<T>().data()),
                                     "FftGather"));
#endif
    }
  }

 private:
  int p_ = 3;
};

#define TSNE_OPS_REGISTER_CPU(T)                                                           \
  REGISTER_KERNEL_BUILDER(                                                                 \
      Name("TSNE>FftSpread").Device(tensorflow::DEVICE_CPU).TypeConstraint<T>("T"),        \
      FftSpreadOp<CPUDevice, T>);                                                          \
  REGISTER_KERNEL_BUILDER(                                                                 \
      Name("TSNE>FftGather").Device(tensorflow::DEVICE_CPU).TypeConstraint<T>("T"),        \
      FftGatherOp<CPUDevice, T>);
TSNE_OPS_REGISTER_CPU(float)
TSNE_OPS_REGISTER_CPU(double)
#undef TSNE_OPS_REGISTER_CPU

#ifdef TSNE_OPS_WITH_CUDA
#define TSNE_OPS_REGISTER_GPU(T)                                                           \
  REGISTER_KERNEL_BUILDER(Name("TSNE>FftSpread")                                           \
                              .Device(tensorflow::DEVICE_GPU)                              \
                              .TypeConstraint<T>("T")                                      \
                              .HostMemory("n_boxes"),                                      \
                          FftSpreadOp<GPUDevice, T>);                                      \
  REGISTER_KERNEL_BUILDER(                                                                 \
      Name("TSNE>FftGather").Device(tensorflow::DEVICE_GPU).TypeConstraint<T>("T"),        \
      FftGatherOp<GPUDevice, T>);
TSNE_OPS_REGISTER_GPU(float)
TSNE_OPS_REGISTER_GPU(double)
#undef TSNE_OPS_REGISTER_GPU
#endif

}  // namespace tsne_ops
