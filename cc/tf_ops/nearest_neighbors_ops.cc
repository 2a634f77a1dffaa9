// Exact k nearest neighbours: op definitions, shape functions, kernel and
// registrations (CPU always, GPU when built with CUDA). Not differentiable
// (tf.no_gradient in tsne_ops/ops.py): the outputs are indices and the
// distances of a discrete selection.
#include "cc/compute/nearest_neighbors.h"
#include "cc/tf_ops/op_utils.h"
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/shape_inference.h"

namespace tsne_ops {

namespace {

absl::Status NearestNeighborsShape(InferenceContext* c, bool cross) {
  ShapeHandle x;
  TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 3, &x));
  DimensionHandle batch = c->Dim(x, 0);
  if (cross) {
    ShapeHandle y;
    TF_RETURN_IF_ERROR(c->WithRank(c->input(1), 3, &y));
    DimensionHandle dim;
    TF_RETURN_IF_ERROR(c->Merge(c->Dim(x, 0), c->Dim(y, 0), &batch));
    TF_RETURN_IF_ERROR(c->Merge(c->Dim(x, 2), c->Dim(y, 2), &dim));
  }
  int64_t k;
  TF_RETURN_IF_ERROR(c->GetAttr("k", &k));
  if (k < 1) return absl::InvalidArgumentError(absl::StrCat("k must be >= 1, but k = ", k));
  ShapeHandle out = c->MakeShape({batch, c->Dim(x, 1), c->MakeDim(k)});
  c->set_output(0, out);
  c->set_output(1, out);
  return absl::OkStatus();
}

}  // namespace

REGISTER_OP("TSNE>NearestNeighbors")
    .Input("x: T")
    .Output("indices: int64")
    .Output("sq_distances: T")
    .Attr("k: int")
    .Attr("T: {float, double}")
    .SetShapeFn([](InferenceContext* c) { return NearestNeighborsShape(c, false); })
    .Doc(R"doc(
The exact k nearest neighbours of each point among the other points of its
batch (the point itself excluded by index; an exact duplicate is still a
neighbour, at distance 0).

indices[b, i, :] are the k rows j != i of x[b] closest to x[b, i], by
increasing squared Euclidean distance, ties broken by the smaller j;
sq_distances[b, i, :] = |x[b, i] - x[b, j]|^2 for those j, computed directly
(sum of squared differences in double, rounded once). Blocked: no [n, n]
matrix is formed. Not differentiable.

x: [batch, n, dim] finite points, n >= 2.
k: the number of neighbours, 1 <= k <= n - 1.
indices: [batch, n, k] int64.
sq_distances: [batch, n, k], the dtype of x.
)doc");

REGISTER_OP("TSNE>CrossNearestNeighbors")
    .Input("x: T")
    .Input("y: T")
    .Output("indices: int64")
    .Output("sq_distances: T")
    .Attr("k: int")
    .Attr("T: {float, double}")
    .SetShapeFn([](InferenceContext* c) { return NearestNeighborsShape(c, true); })
    .Doc(R"doc(
The exact k nearest neighbours of each point of x among the points of y,
batch by batch.

indices[b, i, :] are the k rows j of y[b] closest to x[b, i], by increasing
squared Euclidean distance, ties broken by the smaller j; sq_distances[b, i, :]
= |x[b, i] - y[b, j]|^2 for those j, computed directly. Blocked: no [n, m]
matrix is formed. Not differentiable.

x: [batch, n, dim] finite query points, n >= 1.
y: [batch, m, dim] finite reference points.
k: the number of neighbours, 1 <= k <= m.
indices: [batch, n, k] int64.
sq_distances: [batch, n, k], the dtype of x.
)doc");

template <typename Device, typename T, bool Cross>
class NearestNeighborsOp : public OpKernel {
 public:
  explicit NearestNeighborsOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("k", &k_));
  }

  void Compute(OpKernelContext* ctx) override {
    constexpr bool kCpu = std::is_same<Device, CPUDevice>::value;
    const Tensor& x = ctx->input(0);
    const Tensor* y = Cross ? &ctx->input(1) : nullptr;
    OP_REQUIRES_OK(ctx, CheckRank(x, 3, "x", "[batch, points, dim]"));
    if (Cross) OP_REQUIRES_OK(ctx, CheckRank(*y, 3, "y", "[batch, points, dim]"));
    const kernels::Shape y_dims = Cross ? Dims(*y) : kernels::Shape();
    OP_REQUIRES_OK(ctx, CheckMessage(kernels::CheckNearestNeighborsShapes(
                            Dims(x), Cross ? &y_dims : nullptr)));
    const int64_t batch = x.dim_size(0), n = x.dim_size(1), dim = x.dim_size(2);
    const int64_t m = Cross ? y->dim_size(1) : n;
    OP_REQUIRES_OK(ctx, CheckMessage(kernels::CheckNearestNeighborsK(k_, n, m, !Cross)));
    kernels::ParallelFor pf;
    if constexpr (kCpu) {
      pf = CpuParallelFor(ctx);
      OP_REQUIRES_OK(ctx, CheckMessage(kernels::CheckAllFinite<T>(x.flat<T>().data(), Dims(x),
                                                                  "x", &pf)));
      if (Cross) {
        OP_REQUIRES_OK(ctx, CheckMessage(kernels::CheckAllFinite<T>(y->flat<T>().data(),
                                                                    Dims(*y), "y", &pf)));
      }
    }
    Tensor* indices = nullptr;
    Tensor* sq = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, TensorShape({batch, n, k_}), &indices));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, TensorShape({batch, n, k_}), &sq));
    if (batch == 0) return;
    const T* yp = Cross ? y->flat<T>().data() : nullptr;
    int64_t* ip = indices->flat<int64_t>().data();
    if constexpr (kCpu) {
      kernels::NearestNeighborsCpu<T>(x.flat<T>().data(), yp, batch, n, m, dim, k_, ip,
                                      sq->flat<T>().data(), pf);
    } else {
#ifdef TSNE_OPS_WITH_CUDA
      OP_REQUIRES_OK(ctx, CudaStatus(kernels::LaunchNearestNeighbors<T>(
                                         GpuStream(ctx), x.flat<T>().data(), yp, batch, n, m,
                                         dim, k_, ip, sq->flat<T>().data()),
                                     "NearestNeighbors"));
#endif
    }
  }

 private:
  int64_t k_;
};

#define TSNE_OPS_REGISTER(DEV, DEVICE, T)                                                  \
  REGISTER_KERNEL_BUILDER(Name("TSNE>NearestNeighbors")                                    \
                              .Device(tensorflow::DEV)                                     \
                              .TypeConstraint<T>("T"),                                     \
                          NearestNeighborsOp<DEVICE, T, false>);                           \
  REGISTER_KERNEL_BUILDER(Name("TSNE>CrossNearestNeighbors")                               \
                              .Device(tensorflow::DEV)                                     \
                              .TypeConstraint<T>("T"),                                     \
                          NearestNeighborsOp<DEVICE, T, true>);

TSNE_OPS_REGISTER_ALL_TYPES(TSNE_OPS_REGISTER)
#undef TSNE_OPS_REGISTER

}  // namespace tsne_ops
