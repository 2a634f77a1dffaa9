// _tsne_kernels: the tsne_ops kernels for Python without TensorFlow.
//
// This file holds the module and the bindings of the dense ops; their numpy
// front end is dense_numpy.cc, their raw-device-pointer front end (submodule
// `cuda`, for CuPy / PyTorch memory) dense_cuda.cc, and the other op families
// bind themselves (knn_, sparse_, bh_, fft_bindings.cc). Bad input raises
// ValueError with the op library's message (cc/compute/validation.h); CUDA
// failures raise RuntimeError with the CUDA error string.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <string>

#include "cc/compute/affinities.h"
#include "cc/compute/common.h"
#include "python/binding_helpers.h"
#include "python/dense_api.h"

#ifdef TSNE_OPS_WITH_CUDA
#include <cuda_runtime_api.h>
#endif

namespace py = pybind11;
namespace kn = tsne_ops::kernels;
using namespace tsne_ops_py;  // NOLINT: the front ends bound here (dense_api.h)

void BindNearestNeighbors(py::module_& m, kn::ParallelFor (*cpu_for)());  // knn_bindings.cc
void BindSparse(py::module_& m);                                           // sparse_bindings.cc
void BindBarnesHut(py::module_& m);                                        // bh_bindings.cc
void BindFft(py::module_& m);                                              // fft_bindings.cc
void BindOptimizer(py::module_& m);                                         // optimizer_bindings.cc

namespace {

int CudaDeviceCount() {
#ifdef TSNE_OPS_WITH_CUDA
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();  // clear; "no device" / "no driver" is not an error here
    return 0;
  }
  return count;
#else
  return 0;
#endif
}

}  // namespace

PYBIND11_MODULE(_tsne_kernels, m) {
  m.doc() =
      "tsne_ops kernels without TensorFlow: numpy arrays on the CPU (or device='cuda': copy, "
      "run, copy back) and, in submodule `cuda`, raw device pointers for CuPy / PyTorch.";

  m.def("has_cuda", [] { return CudaDeviceCount() > 0; },
        "True when the module was built with CUDA and a CUDA device is usable.");
  m.def("built_with_cuda", [] {
#ifdef TSNE_OPS_WITH_CUDA
    return true;
#else
    return false;
#endif
  }, "True when the CUDA kernels were compiled in.");
  m.def("cuda_device_count", &CudaDeviceCount, "Number of visible CUDA devices (0 without CUDA).");
  m.def("cpu_isa", [] { return std::string(kn::CpuIsaName()); },
        "Which CPU kernel build runs: 'avx2' or 'baseline'.");
  m.def("set_num_threads", [](int n) {
    CheckMessage(kn::CheckAtLeast(n, 0, "num_threads"));
    NumThreads() = n;
  }, py::arg("num_threads"), "Threads for the CPU kernels (0: hardware concurrency).");
  m.def("get_num_threads", [] { return NumThreads().load(); });

  m.def("pairwise_squared_distance", &PairwiseSquaredDistance, py::arg("x"), py::arg("y") = py::none(),
        py::arg("device") = "cpu",
        "out[b, i, j] = |x[b, i] - y[b, j]|^2; y=None: self-distances (exactly symmetric, zero "
        "diagonal).");
  m.def("pairwise_squared_distance_grad", &PairwiseSquaredDistanceGrad, py::arg("grad"), py::arg("x"),
        py::arg("y") = py::none(), py::arg("device") = "cpu",
        "Backward of pairwise_squared_distance: returns (grad_x, grad_y or None).");
  m.def("perplexity_affinities", &PerplexityAffinities, py::arg("sq_dist"), py::arg("perplexity"),
        py::arg("tolerance") = kn::kAffinityTolerance, py::arg("max_iter") = kn::kAffinityMaxIter,
        py::arg("device") = "cpu",
        "Per-row perplexity calibration: returns (p_conditional, beta, unconverged_row_count).");
  m.def("symmetrize_affinities", &SymmetrizeAffinities, py::arg("p_conditional"), py::arg("device") = "cpu",
        "Joint P = max((Pc + Pc^T) / sum, 2.2e-16) off the diagonal, 0 on it.");
  m.def("joint_probabilities", &JointProbabilities, py::arg("sq_dist"), py::arg("perplexity"),
        py::arg("tolerance") = kn::kAffinityTolerance, py::arg("max_iter") = kn::kAffinityMaxIter,
        py::arg("device") = "cpu", "perplexity_affinities followed by symmetrize_affinities.");
  m.def("tsne_gradient", &TsneGradient, py::arg("p"), py::arg("y"), py::arg("exaggeration") = 1.0,
        py::arg("dof") = 1.0, py::arg("compute_kl") = true, py::arg("scale_repulsion_by_p_sum") = false,
        py::arg("device") = "cpu",
        "Fused t-SNE gradient and KL(P || Q): returns (grad, kl or None).");

  py::module_ cuda = m.def_submodule(
      "cuda",
      "Raw device-pointer API (CuPy: arr.data.ptr, PyTorch: t.data_ptr()). Pointers are ints, 0 or "
      "None for an absent optional one; arrays are C-contiguous; `stream` is a cudaStream_t as int "
      "(torch.cuda.current_stream().cuda_stream, cupy.cuda.get_current_stream().ptr; 0 = legacy "
      "default). Launches are asynchronous; workspace=0 allocates scratch stream-ordered.");
#ifdef TSNE_OPS_WITH_CUDA
  cuda.attr("available") = true;
  cuda.def("pairwise_squared_distance", &RawDistance, py::arg("x"), py::arg("y"), py::arg("out"),
           py::arg("batch"), py::arg("n"), py::arg("m"), py::arg("dim"), py::arg("dtype") = "float32",
           py::arg("stream") = 0);
  cuda.def("pairwise_squared_distance_grad_workspace_bytes", &RawDistanceGradWs, py::arg("batch"),
           py::arg("n"), py::arg("m"), py::arg("dim"), py::arg("dtype") = "float32");
  cuda.def("pairwise_squared_distance_grad", &RawDistanceGrad, py::arg("grad"), py::arg("x"), py::arg("y"),
           py::arg("grad_x"), py::arg("grad_y"), py::arg("batch"), py::arg("n"), py::arg("m"),
           py::arg("dim"), py::arg("dtype") = "float32", py::arg("workspace") = 0, py::arg("stream") = 0);
  cuda.def("perplexity_affinities_workspace_bytes", &RawPerplexityWs, py::arg("batch"), py::arg("n"),
           py::arg("dtype") = "float32");
  cuda.def("perplexity_affinities", &RawPerplexity, py::arg("sq_dist"), py::arg("p_conditional"),
           py::arg("beta"), py::arg("batch"), py::arg("n"), py::arg("perplexity"),
           py::arg("tolerance") = kn::kAffinityTolerance, py::arg("max_iter") = kn::kAffinityMaxIter,
           py::arg("unconverged") = py::none(), py::arg("dtype") = "float32", py::arg("workspace") = 0,
           py::arg("stream") = 0);
  cuda.def("symmetrize_affinities_workspace_bytes", &RawSymWs, py::arg("batch"), py::arg("n"),
           py::arg("dtype") = "float32");
  cuda.def("symmetrize_affinities", &RawSym, py::arg("p_conditional"), py::arg("p"), py::arg("batch"),
           py::arg("n"), py::arg("dtype") = "float32", py::arg("workspace") = 0, py::arg("stream") = 0);
  cuda.def("tsne_gradient_workspace_bytes", &RawTsneWs, py::arg("batch"), py::arg("n"), py::arg("d"),
           py::arg("dtype") = "float32");
  cuda.def("tsne_gradient", &RawTsne, py::arg("p"), py::arg("y"), py::arg("grad"), py::arg("kl"),
           py::arg("batch"), py::arg("n"), py::arg("d"), py::arg("dtype") = "float32",
           py::arg("exaggeration") = 1.0, py::arg("dof") = 1.0,
           py::arg("scale_repulsion_by_p_sum") = false, py::arg("workspace") = 0, py::arg("stream") = 0);
  cuda.def("synchronize", [] {
    py::gil_scoped_release release;
    CudaCheck(cudaDeviceSynchronize(), "cuda.synchronize");
  });
#else
  cuda.attr("available") = false;
#endif
  BindNearestNeighbors(m, &CpuFor);
  BindSparse(m);
  BindBarnesHut(m);
  BindFft(m);
  BindOptimizer(m);
}
