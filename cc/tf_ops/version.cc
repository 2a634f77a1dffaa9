// Records the TensorFlow version the library was built against, so the Python
// loader can give a clear error when another version imports it.
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/shape_inference.h"

REGISTER_OP("TSNE>BuildInfo")
    .Output("tensorflow_version: string")
    .Output("cuda: bool")
    .SetShapeFn([](tensorflow::shape_inference::InferenceContext* c) {
      c->set_output(0, c->Scalar());
      c->set_output(1, c->Scalar());
      return absl::OkStatus();
    })
    .Doc(R"doc(
How this op library was built.

tensorflow_version: the TensorFlow version whose headers it was compiled against.
cuda: whether its GPU kernels were compiled in.
)doc");

class BuildInfoOp : public tensorflow::OpKernel {
 public:
  explicit BuildInfoOp(tensorflow::OpKernelConstruction* ctx) : OpKernel(ctx) {}
  void Compute(tensorflow::OpKernelContext* ctx) override {
    tensorflow::Tensor* version = nullptr;
    tensorflow::Tensor* cuda = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, tensorflow::TensorShape({}), &version));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, tensorflow::TensorShape({}), &cuda));
    version->scalar<tensorflow::tstring>()() = TSNE_OPS_TF_VERSION;
#ifdef TSNE_OPS_WITH_CUDA
    cuda->scalar<bool>()() = true;
#else
    cuda->scalar<bool>()() = false;
#endif
  }
};

REGISTER_KERNEL_BUILDER(Name("TSNE>BuildInfo").Device(tensorflow::DEVICE_CPU), BuildInfoOp);
