// Helpers the numpy front ends of _tsne_kernels share (sparse_bindings.cc,
// fft_bindings.cc): argument checks that raise ValueError naming the
// argument, the thread setting of module.cc, and synchronous device buffers.
#ifndef TSNE_OPS_PYTHON_BINDING_HELPERS_H_
#define TSNE_OPS_PYTHON_BINDING_HELPERS_H_

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "cc/kernels/common.h"

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

// The threads the CPU kernels use: module.cc's set_num_threads, read back
// through the module so that both files share one setting.
inline kn::ParallelFor CpuFor(const py::module_& m) {
  return kn::ThreadFor(m.attr("get_num_threads")().cast<int>());
}

inline py::array_t<int64_t, py::array::c_style> TakeIndices(const py::object& obj, const char* name) {
  if (!py::isinstance<py::array>(obj)) Fail(std::string(name) + " must be a numpy array of int64");
  py::array a = py::reinterpret_borrow<py::array>(obj);
  if (!a.dtype().is(py::dtype::of<int64_t>())) {
    Fail(std::string(name) + " must be int64, got dtype " + py::str(a.dtype()).cast<std::string>());
  }
  return py::array_t<int64_t, py::array::c_style>::ensure(a);
}

inline py::array TakeFloat(const py::object& obj, const char* name, const py::dtype* want) {
  if (!py::isinstance<py::array>(obj)) {
    Fail(std::string(name) + " must be a numpy array of float32 or float64");
  }
  py::array a = py::reinterpret_borrow<py::array>(obj);
  const bool f32 = a.dtype().is(py::dtype::of<float>());
  if (!f32 && !a.dtype().is(py::dtype::of<double>())) {
    Fail(std::string(name) + " must be float32 or float64, got dtype " +
         py::str(a.dtype()).cast<std::string>());
  }
  if (want != nullptr && !a.dtype().is(*want)) {
    Fail(std::string(name) + " has dtype " + py::str(a.dtype()).cast<std::string>() +
         " but must match " + py::str(*want).cast<std::string>());
  }
  if (f32) return py::array_t<float, py::array::c_style>::ensure(a);
  return py::array_t<double, py::array::c_style>::ensure(a);
}

inline std::vector<int64_t> Dims(const py::array& a) {
  std::vector<int64_t> d;
  for (py::ssize_t k = 0; k < a.ndim(); ++k) d.push_back(a.shape(k));
  return d;
}

inline void CheckMessage(const std::string& msg) {
  if (!msg.empty()) Fail(msg);
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

inline bool UseCuda(const std::string& device) {
  if (device == "cpu") return false;
  if (device == "cuda" || device == "gpu" || device == "cuda:0") {
#ifdef TSNE_OPS_WITH_CUDA
    return true;
#else
    throw std::runtime_error("device='cuda' requested but _tsne_kernels was built without CUDA");
#endif
  }
  Fail("device must be 'cpu' or 'cuda', got '" + device + "'");
}


}  // namespace tsne_ops_py

#endif  // TSNE_OPS_PYTHON_BINDING_HELPERS_H_
