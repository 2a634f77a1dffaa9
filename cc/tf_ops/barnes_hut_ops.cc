// Barnes-Hut repulsion: op definition, shape function, CPU kernel and
// registrations. The op returns the raw repulsion R and Z (the maths in
// cc/compute/barnes_hut.h); turning them into the t-SNE gradient with the
// attraction of a sparse P is a separate, shared step. CPU only: on a GPU the
// exact tiled repulsion of SparseTsneGradient runs instead (see the header).
#include <cmath>

#include "cc/compute/barnes_hut.h"
#include "cc/tf_ops/op_utils.h"
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/shape_inference.h"

namespace tsne_ops {

REGISTER_OP("TSNE>BarnesHutRepulsion")
    .Input("y: T")
    .Input("dof: T")
    .Output("repulsion: T")
    .Output("z: T")
    .Attr("T: {float, double}")
    .Attr("angle: float = 0.5")
    .SetShapeFn([](InferenceContext* c) {
      ShapeHandle y, dof;
      TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 3, &y));
      TF_RETURN_IF_ERROR(c->WithRank(c->input(1), 0, &dof));
      c->set_output(0, y);
      c->set_output(1, c->MakeShape({c->Dim(y, 0)}));
      return absl::OkStatus();
    })
    .Doc(R"doc(
The t-SNE repulsion by Barnes-Hut: a quadtree (d = 2), octree (d = 3) or
binary tree (d = 1) per batch element, walked once per group of targets; a
cell is summarised by its centre of mass and second moment when width /
distance < angle (scikit-learn's criterion, with the distance from the
group's bounding box and guarded for off-centre mass).

With a = dof, u_ij = 1 / (1 + |y_i - y_j|^2 / a), w_ij = u_ij^((a + 1) / 2):
repulsion_i ~ sum_{j != i} w_ij u_ij (y_i - y_j) and z ~ sum_{i != j} w_ij,
the same quantities as the exact repulsion of SparseTsneGradient. angle = 0
is exact. O(n log n) per batch element; deterministic for any thread count.

y: [batch, n, d] embedding, d in {1, 2, 3}, finite.
dof: scalar, degrees of freedom of the Student-t kernel, > 0.
repulsion: [batch, n, d], summed in double.
z: [batch].
angle: the Barnes-Hut criterion theta, >= 0 (scikit-learn's angle).
)doc");

template <typename T>
class BarnesHutRepulsionOp : public OpKernel {
 public:
  explicit BarnesHutRepulsionOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("angle", &angle_));
    OP_REQUIRES(ctx, angle_ >= 0 && std::isfinite(angle_),
                absl::InvalidArgumentError(
                    absl::StrCat("angle must be a finite number >= 0, but is ", angle_)));
  }

  void Compute(OpKernelContext* ctx) override {
    const Tensor& y = ctx->input(0);
    const Tensor& dof_t = ctx->input(1);
    OP_REQUIRES_OK(ctx, CheckRank(y, 3, "y", "[batch, n, d]"));
    const int64_t batch = y.dim_size(0), n = y.dim_size(1), d = y.dim_size(2);
    OP_REQUIRES(ctx, dof_t.dims() == 0,
                absl::InvalidArgumentError(absl::StrCat(
                    "dof must be a scalar, but has shape ", dof_t.shape().DebugString())));
    const double dof = static_cast<double>(dof_t.scalar<T>()());
    OP_REQUIRES_OK(ctx, CheckMessage(kernels::CheckBarnesHutArgs(Dims(y), dof, angle_)));
    kernels::ParallelFor pf = CpuParallelFor(ctx);
    OP_REQUIRES_OK(ctx, CheckMessage(kernels::CheckAllFinite<T>(y.flat<T>().data(), Dims(y),
                                                                "y", &pf)));
    Tensor* rep = nullptr;
    Tensor* z = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, y.shape(), &rep));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, TensorShape({batch}), &z));
    T* rp = rep->flat<T>().data();
    T* zp = z->flat<T>().data();
    kernels::BarnesHutRepulsionCpu<T>(y.flat<T>().data(), batch, n, d, dof, angle_, rp, zp, pf);
    OP_REQUIRES_OK(ctx, CheckMessage(kernels::CheckBarnesHutResult<T>(rp, zp, batch, n, d)));
  }

 private:
  float angle_ = 0.5f;
};

#define TSNE_OPS_REGISTER_CPU(T)                                                              \
  REGISTER_KERNEL_BUILDER(                                                                    \
      Name("TSNE>BarnesHutRepulsion").Device(tensorflow::DEVICE_CPU).TypeConstraint<T>("T"), \
      BarnesHutRepulsionOp<T>);
TSNE_OPS_REGISTER_CPU(float)
TSNE_OPS_REGISTER_CPU(double)
#undef TSNE_OPS_REGISTER_CPU

}  // namespace tsne_ops
