// _tsne_kernels bindings of the exact k-nearest-neighbour kernels
// (cc/compute/nearest_neighbors.h): `nearest_neighbors` on numpy arrays (CPU,
// or device="cuda": copy in, launch, copy out) and `cuda.nearest_neighbors`
// on raw device pointers. Same conventions as module.cc: rank 2 = a batch of
// one (outputs drop the batch axis), ValueError naming the argument and the
// value, the GIL released while kernels run.
//
// Kept in its own file so that kernel families can be added to the module
// without editing one shared list; module.cc calls BindNearestNeighbors once
// and hands over its CPU thread setting (set_num_threads) as `cpu_for`.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <sstream>
#include <string>
#include <vector>

#include "cc/compute/common.h"
#include "cc/compute/validation.h"
#include "cc/compute/nearest_neighbors.h"

#ifdef TSNE_OPS_WITH_CUDA
#include <cuda_runtime_api.h>
#endif

namespace py = pybind11;
namespace kn = tsne_ops::kernels;

namespace {

[[noreturn]] void Fail(const std::string& msg) { throw py::value_error(msg); }

std::string Shape(const py::array& a) {
  std::ostringstream s;
  s << "(";
  for (py::ssize_t q = 0; q < a.ndim(); ++q) s << (q ? ", " : "") << a.shape(q);
  s << (a.ndim() == 1 ? ",)" : ")");
  return s.str();
}

// A float32/float64 array of rank 2 or 3, C-contiguous; dtype must equal
// `want` when given.
py::array Points(const py::handle& obj, const char* name, const py::dtype* want) {
  if (!py::isinstance<py::array>(obj)) {
    Fail(std::string(name) + " must be a numpy array of float32 or float64, got " +
         py::str(py::type::of(obj)).cast<std::string>());
  }
  py::array a = py::reinterpret_borrow<py::array>(obj);
  const bool f32 = a.dtype().is(py::dtype::of<float>()), f64 = a.dtype().is(py::dtype::of<double>());
  if (!f32 && !f64) {
    Fail(std::string(name) + " must be float32 or float64, got dtype " +
         py::str(a.dtype()).cast<std::string>());
  }
  if (want != nullptr && !a.dtype().is(*want)) {
    Fail(std::string(name) + " has dtype " + py::str(a.dtype()).cast<std::string>() +
         " but must match x's " + py::str(*want).cast<std::string>());
  }
  if (a.ndim() != 2 && a.ndim() != 3) {
    Fail(std::string(name) + " must have rank 2 ([n, dim]) or 3 ([batch, n, dim]), got shape " +
         Shape(a));
  }
  if (a.shape(a.ndim() - 1) < 1) Fail(std::string(name) + " must have dim >= 1, got shape " + Shape(a));
  if (f32) return py::array_t<float, py::array::c_style>::ensure(a);
  return py::array_t<double, py::array::c_style>::ensure(a);
}

#ifdef TSNE_OPS_WITH_CUDA
void CudaCheck(cudaError_t err, const char* what) {
  if (err != cudaSuccess) {
    throw std::runtime_error(std::string("CUDA error in ") + what + ": " + cudaGetErrorName(err) +
                             ": " + cudaGetErrorString(err));
  }
}

struct DeviceMemory {  // synchronous scratch of the numpy front end
  void* ptr = nullptr;
  explicit DeviceMemory(size_t bytes) {
    if (bytes > 0) CudaCheck(cudaMalloc(&ptr, bytes), "cudaMalloc");
  }
  ~DeviceMemory() {
    if (ptr != nullptr) cudaFree(ptr);
  }
  DeviceMemory(const DeviceMemory&) = delete;
  DeviceMemory& operator=(const DeviceMemory&) = delete;
};
#endif

template <typename T>
py::tuple Run(const py::array& x, const py::array* y, bool batched, int64_t batch, int64_t n,
              int64_t m, int64_t dim, int64_t k, bool cuda, const kn::ParallelFor& pf) {
  std::vector<py::ssize_t> shape;
  if (batched) shape.push_back(batch);
  shape.push_back(n);
  shape.push_back(k);
  py::array_t<int64_t> indices(shape);
  py::array_t<T> sq(shape);
  const T* xp = static_cast<const T*>(x.data());
  const T* yp = y ? static_cast<const T*>(y->data()) : nullptr;
  int64_t* ip = indices.mutable_data();
  T* dp = sq.mutable_data();
  std::string msg;
  {
    py::gil_scoped_release release;
    msg = kn::CheckAllFinite<T>(xp, {batch, n, dim}, "x", &pf);
    if (msg.empty() && y) msg = kn::CheckAllFinite<T>(yp, {batch, m, dim}, "y", &pf);
  }
  if (!msg.empty()) Fail(msg);
  {
    py::gil_scoped_release release;
    if (!cuda) {
      kn::NearestNeighborsCpu<T>(xp, yp, batch, n, m, dim, k, ip, dp, pf);
    } else {
#ifdef TSNE_OPS_WITH_CUDA
      const size_t xb = sizeof(T) * batch * n * dim, yb = y ? sizeof(T) * batch * m * dim : 0;
      const size_t ib = sizeof(int64_t) * batch * n * k, db = sizeof(T) * batch * n * k;
      DeviceMemory dx(xb), dy(yb), di(ib), dd(db);
      CudaCheck(cudaMemcpy(dx.ptr, xp, xb, cudaMemcpyHostToDevice), "cudaMemcpy (host to device)");
      if (y) CudaCheck(cudaMemcpy(dy.ptr, yp, yb, cudaMemcpyHostToDevice), "cudaMemcpy (host to device)");
      CudaCheck(kn::LaunchNearestNeighbors<T>(nullptr, static_cast<const T*>(dx.ptr),
                                              y ? static_cast<const T*>(dy.ptr) : nullptr, batch,
                                              n, m, dim, k, static_cast<int64_t*>(di.ptr),
                                              static_cast<T*>(dd.ptr)),
                "nearest_neighbors");
      CudaCheck(cudaStreamSynchronize(nullptr), "nearest_neighbors");
      CudaCheck(cudaMemcpy(ip, di.ptr, ib, cudaMemcpyDeviceToHost), "cudaMemcpy (device to host)");
      CudaCheck(cudaMemcpy(dp, dd.ptr, db, cudaMemcpyDeviceToHost), "cudaMemcpy (device to host)");
#endif
    }
  }
  return py::make_tuple(indices, sq);
}

py::tuple NearestNeighbors(py::object x_obj, py::object k_obj, py::object y_obj,
                           const std::string& device, kn::ParallelFor (*cpu_for)()) {
  bool cuda = false;
  if (device == "cuda" || device == "gpu" || device == "cuda:0") {
    cuda = true;
  } else if (device != "cpu") {
    Fail("device must be 'cpu' or 'cuda', got '" + device + "'");
  }
#ifndef TSNE_OPS_WITH_CUDA
  if (cuda) {
    throw std::runtime_error(
        "device='cuda' requested but _tsne_kernels was built without CUDA (no nvcc at build time, "
        "or -DTSNE_OPS_WITH_CUDA=OFF)");
  }
#endif
  // Python and numpy integers (anything with __index__), not bool.
  if (py::isinstance<py::bool_>(k_obj) || !PyIndex_Check(k_obj.ptr())) {
    Fail("k must be an int, got " + py::repr(k_obj).cast<std::string>());
  }
  const int64_t k = py::reinterpret_steal<py::int_>(PyNumber_Index(k_obj.ptr())).cast<int64_t>();
  py::array x = Points(x_obj, "x", nullptr);
  const bool batched = x.ndim() == 3;
  const int64_t batch = batched ? x.shape(0) : 1, n = x.shape(x.ndim() - 2),
                dim = x.shape(x.ndim() - 1);
  py::array y;
  const bool has_y = !y_obj.is_none();
  int64_t m = n;
  if (has_y) {
    py::dtype xd = x.dtype();
    y = Points(y_obj, "y", &xd);
    const int64_t yb = y.ndim() == 3 ? y.shape(0) : 1;
    if (y.ndim() != x.ndim() || yb != batch || y.shape(y.ndim() - 1) != dim) {
      Fail("y must have the rank, batch size and dim of x: x has shape " + Shape(x) +
           ", y has shape " + Shape(y));
    }
    m = y.shape(y.ndim() - 2);
  }
  if (n < (has_y ? 1 : 2)) {
    Fail(std::string("x needs at least ") + (has_y ? "1 point" : "2 points") + ", got shape " +
         Shape(x));
  }
  const std::string k_msg = kn::CheckNearestNeighborsK(k, n, m, !has_y);
  if (!k_msg.empty()) Fail(k_msg);
  const kn::ParallelFor pf = cpu_for();
  if (x.dtype().is(py::dtype::of<float>()))
    return Run<float>(x, has_y ? &y : nullptr, batched, batch, n, m, dim, k, cuda, pf);
  return Run<double>(x, has_y ? &y : nullptr, batched, batch, n, m, dim, k, cuda, pf);
}

#ifdef TSNE_OPS_WITH_CUDA
uintptr_t Pointer(const py::object& o, const char* name, bool required) {
  if (o.is_none()) {
    if (required) Fail(std::string(name) + " must be a device pointer (int), got None");
    return 0;
  }
  const uintptr_t v = o.cast<uintptr_t>();
  if (required && v == 0) Fail(std::string(name) + " must be a non-null device pointer, got 0");
  return v;
}

void RawNearestNeighbors(py::object x, py::object y, py::object indices, py::object sq_distances,
                         int64_t batch, int64_t n, int64_t m, int64_t dim, int64_t k,
                         const std::string& dtype, uintptr_t stream) {
  const bool f32 = dtype == "float32" || dtype == "float";
  if (!f32 && dtype != "float64" && dtype != "double") {
    Fail("dtype must be 'float32' or 'float64', got '" + dtype + "'");
  }
  const uintptr_t px = Pointer(x, "x", true), py_ = Pointer(y, "y", false);
  const uintptr_t pi = Pointer(indices, "indices", true), pd = Pointer(sq_distances, "sq_distances", true);
  if (batch < 1) Fail("batch must be >= 1, got " + std::to_string(batch));
  if (dim < 1) Fail("dim must be >= 1, got " + std::to_string(dim));
  if (py_ == 0) m = n;
  const std::string k_msg = kn::CheckNearestNeighborsK(k, n, m, py_ == 0);
  if (!k_msg.empty()) Fail(k_msg);
  py::gil_scoped_release release;
  auto s = reinterpret_cast<cudaStream_t>(stream);
  auto* ip = reinterpret_cast<int64_t*>(pi);
  const cudaError_t err =
      f32 ? kn::LaunchNearestNeighbors<float>(s, reinterpret_cast<const float*>(px),
                                              reinterpret_cast<const float*>(py_), batch, n, m,
                                              dim, k, ip, reinterpret_cast<float*>(pd))
          : kn::LaunchNearestNeighbors<double>(s, reinterpret_cast<const double*>(px),
                                               reinterpret_cast<const double*>(py_), batch, n, m,
                                               dim, k, ip, reinterpret_cast<double*>(pd));
  CudaCheck(err, "cuda.nearest_neighbors");
}
#endif

}  // namespace

void BindNearestNeighbors(py::module_& m, kn::ParallelFor (*cpu_for)()) {
  m.def(
      "nearest_neighbors",
      [cpu_for](py::object x, py::object k, py::object y, const std::string& device) {
        return NearestNeighbors(x, k, y, device, cpu_for);
      },
      py::arg("x"), py::arg("k"), py::arg("y") = py::none(), py::arg("device") = "cpu",
      "Exact k nearest neighbours: returns (indices int64, sq_distances), [batch, n, k], by "
      "increasing distance, ties to the smaller index; y=None: among the other rows of x.");
  py::module_ cuda = m.attr("cuda").cast<py::module_>();
#ifdef TSNE_OPS_WITH_CUDA
  cuda.def("nearest_neighbors", &RawNearestNeighbors, py::arg("x"), py::arg("y"),
           py::arg("indices"), py::arg("sq_distances"), py::arg("batch"), py::arg("n"),
           py::arg("m"), py::arg("dim"), py::arg("k"), py::arg("dtype") = "float32",
           py::arg("stream") = 0,
           "indices: int64 [batch, n, k], sq_distances: dtype [batch, n, k]; y=0/None: self "
           "(m is then ignored). No scratch; asynchronous on `stream`.");
#else
  (void)cuda;
#endif
}
