// Helpers every file of _tsne_kernels shares: CheckMessage, which raises a
// cc/compute/validation.h message as ValueError, the dtype checks of numpy
// arguments, the CPU thread setting (set_num_threads), synchronous device
// buffers for the numpy front end and the pointer / stream / workspace
// handling of the raw-pointer (`cuda`) front end.
#ifndef TSNE_OPS_PYTHON_BINDING_HELPERS_H_
#define TSNE_OPS_PYTHON_BINDING_HELPERS_H_

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <atomic>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "cc/compute/common.h"
#include "cc/compute/tsne_gradient.h"
#include "cc/compute/validation.h"

#ifdef TSNE_OPS_WITH_CUDA
#include <cuda_runtime_api.h>
#endif

namespace tsne_ops_py {

namespace py = pybind11;
namespace kn = tsne_ops::kernels;

[[noreturn]] inline void Fail(const std::string& msg) { throw py::value_error(msg); }

inline std::string Shape(const py::array& a) {
  std::string s = "(";
  for (py::ssize_t k = 0; k < a.ndim(); ++k) {
    s += (k ? ", " : "") + std::to_string(a.shape(k));
  }
  return s + (a.ndim() == 1 ? ",)" : ")");
}

// The threads the CPU kernels use (set_num_threads; 0: hardware concurrency),
// one setting for the whole module.
inline std::atomic<int>& NumThreads() {
  static std::atomic<int> num_threads{0};
  return num_threads;
}
inline kn::ParallelFor CpuFor() { return kn::ThreadFor(NumThreads().load()); }

inline py::array_t<int64_t, py::array::c_style> TakeIndices(const py::object& obj, const char* name) {
  if (!py::isinstance<py::array>(obj)) Fail(std::string(name) + " must be a numpy array of int64");
  py::array a = py::reinterpret_borrow<py::array>(obj);
  if (!a.dtype().is(py::dtype::of<int64_t>())) {
    Fail(std::string(name) + " must be int64, got dtype " + py::str(a.dtype()).cast<std::string>());
  }
  return py::array_t<int64_t, py::array::c_style>::ensure(a);
}

inline std::string DtypeName(const py::dtype& d) { return py::str(d).cast<std::string>(); }

// A float32 or float64 numpy array, C-contiguous; with `want`, of that dtype
// (the dtype of the argument `want_name`).
inline py::array TakeFloat(const py::object& obj, const char* name, const py::dtype* want,
                           const char* want_name = "the first argument") {
  if (!py::isinstance<py::array>(obj)) {
    Fail(std::string(name) + " must be a numpy array of float32 or float64, got " +
         py::str(py::type::of(obj)).cast<std::string>());
  }
  py::array a = py::reinterpret_borrow<py::array>(obj);
  const bool f32 = a.dtype().is(py::dtype::of<float>());
  if (!f32 && !a.dtype().is(py::dtype::of<double>())) {
    Fail(std::string(name) + " must be float32 or float64, but has dtype " + DtypeName(a.dtype()));
  }
  if (want != nullptr && !a.dtype().is(*want)) {
    Fail(std::string(name) + " must have the same dtype as " + want_name + " (" +
         DtypeName(*want) + "), but has dtype " + DtypeName(a.dtype()));
  }
  if (f32) return py::array_t<float, py::array::c_style>::ensure(a);
  return py::array_t<double, py::array::c_style>::ensure(a);
}

inline std::vector<int64_t> Dims(const py::array& a) {
  std::vector<int64_t> d;
  for (py::ssize_t k = 0; k < a.ndim(); ++k) d.push_back(a.shape(k));
  return d;
}

// Raises a cc/compute/validation.h message (empty: fine) as ValueError.
inline void CheckMessage(const std::string& msg) {
  if (!msg.empty()) Fail(msg);
}

// The gradient kernels' options, exaggeration and dof checked (> 0, finite).
inline kn::TsneGradientOptions GradientOptions(double exaggeration, double dof,
                                               bool scale_repulsion_by_p_sum) {
  CheckMessage(kn::CheckPositiveFinite(exaggeration, "exaggeration"));
  CheckMessage(kn::CheckPositiveFinite(dof, "dof"));
  kn::TsneGradientOptions opt;
  opt.exaggeration = exaggeration;
  opt.dof = dof;
  opt.scale_repulsion_by_p_sum = scale_repulsion_by_p_sum;
  return opt;
}

#ifdef TSNE_OPS_WITH_CUDA
inline void CudaCheck(cudaError_t err, const char* what) {
  if (err != cudaSuccess) {
    throw std::runtime_error(std::string("CUDA error in ") + what + ": " + cudaGetErrorName(err) +
                             ": " + cudaGetErrorString(err));
  }
}

// Synchronous device scratch for the numpy front end.
struct Buf {
  void* p = nullptr;
  explicit Buf(size_t bytes) {
    if (bytes > 0) CudaCheck(cudaMalloc(&p, bytes), "cudaMalloc");
  }
  Buf(const Buf&) = delete;
  Buf& operator=(const Buf&) = delete;
  ~Buf() {
    if (p) cudaFree(p);
  }
  template <typename T>
  T* as() const { return static_cast<T*>(p); }
};

inline void Upload(void* dst, const void* src, size_t bytes) {
  if (bytes > 0) CudaCheck(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice), "cudaMemcpy");
}
inline void Download(void* dst, const void* src, size_t bytes) {
  if (bytes > 0) CudaCheck(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost), "cudaMemcpy");
}
#endif

// device='cpu' or 'cuda' (also 'gpu', 'cuda:0'). A CUDA device in a build
// without CUDA is a RuntimeError.
inline bool UseCuda(const std::string& device) {
  if (device == "cpu") return false;
  if (device == "cuda" || device == "gpu" || device == "cuda:0") {
#ifdef TSNE_OPS_WITH_CUDA
    return true;
#else
    throw std::runtime_error(
        "device='cuda' requested but _tsne_kernels was built without CUDA (no nvcc at build "
        "time, or -DTSNE_OPS_WITH_CUDA=OFF)");
#endif
  }
  Fail("device must be 'cpu' or 'cuda', got '" + device + "'");
}

#ifdef TSNE_OPS_WITH_CUDA
// ------------------------------------------ raw device pointer front end --
// Pointers are Python ints (0 or None: absent), the stream an int
// (cudaStream_t; 0 = legacy default stream).

inline void CheckNonNull(uintptr_t v, const char* name) {
  if (v == 0) Fail(std::string(name) + " must be a non-null device pointer, got 0");
}

inline uintptr_t Ptr(const py::object& o, const char* name, bool required) {
  if (o.is_none()) {
    if (required) Fail(std::string(name) + " must be a device pointer (int), got None");
    return 0;
  }
  const uintptr_t v = o.cast<uintptr_t>();
  if (required) CheckNonNull(v, name);
  return v;
}

template <typename T>
T* As(uintptr_t v) { return reinterpret_cast<T*>(v); }

inline cudaStream_t Stream(uintptr_t s) { return reinterpret_cast<cudaStream_t>(s); }

// dtype='float32' (or 'float') -> true, 'float64' (or 'double') -> false.
inline bool RawIsF32(const std::string& dtype) {
  if (dtype == "float32" || dtype == "float") return true;
  if (dtype == "float64" || dtype == "double") return false;
  Fail("dtype must be 'float32' or 'float64', got '" + dtype + "'");
}

// Runs launch(workspace) with the caller's workspace, or with a temporary
// one allocated and freed stream-ordered when the caller passed 0.
template <typename Launch>
void WithWorkspace(size_t bytes, uintptr_t workspace, cudaStream_t stream, const char* what,
                   Launch launch) {
  void* ws = reinterpret_cast<void*>(workspace);
  bool owned = false;
  if (ws == nullptr && bytes > 0) {
    CudaCheck(cudaMallocAsync(&ws, bytes, stream), what);
    owned = true;
  }
  const cudaError_t err = launch(ws);
  if (owned) cudaFreeAsync(ws, stream);
  CudaCheck(err, what);
}

// A synchronous launch of the numpy front end: the launch status, then the
// stream's.
inline void Finish(cudaError_t launch_err, const char* what) {
  CudaCheck(launch_err, what);
  CudaCheck(cudaStreamSynchronize(nullptr), what);
  CudaCheck(cudaGetLastError(), what);
}
#endif


}  // namespace tsne_ops_py

#endif  // TSNE_OPS_PYTHON_BINDING_HELPERS_H_
