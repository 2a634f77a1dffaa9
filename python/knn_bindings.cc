// _tsne_kernels bindings of the exact k-nearest-neighbour kernels
// (cc/compute/nearest_neighbors.h): `nearest_neighbors` on numpy arrays (CPU,
// or device="cuda": copy in, launch, copy out) and `cuda.nearest_neighbors`
// on raw device pointers. Same conventions as module.cc: rank 2 = a batch of
// one (outputs drop the batch axis), ValueError naming the argument and the
// value (the checks of cc/compute/validation.h, in the op library's words),
// the GIL released while kernels run.
//
// Kept in its own file so that kernel families can be added to the module
// without editing one shared list; module.cc calls BindNearestNeighbors once
// and hands over its CPU thread setting (set_num_threads) as `cpu_for`.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>
#include <vector>

#include "cc/compute/common.h"
#include "cc/compute/nearest_neighbors.h"
#include "cc/compute/validation.h"
#include "python/binding_helpers.h"

namespace py = pybind11;
namespace kn = tsne_ops::kernels;

namespace {

using namespace tsne_ops_py;  // NOLINT: the shared helpers (binding_helpers.h)

// A float32/float64 array of rank 2 ([n, dim]) or 3 ([batch, n, dim]),
// C-contiguous; with `want`, of x's dtype.
py::array Points(const py::handle& obj, const char* name, const py::dtype* want) {
  py::array a = TakeFloat(py::reinterpret_borrow<py::object>(obj), name, want, "x");
  CheckMessage(kn::CheckRank2Or3(Dims(a), name, "[n, dim]"));
  return a;
}

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
      Buf dx(xb), dy(yb), di(ib), dd(db);
      Upload(dx.p, xp, xb);
      if (y) Upload(dy.p, yp, yb);
      Finish(kn::LaunchNearestNeighbors<T>(nullptr, dx.as<T>(), y ? dy.as<T>() : nullptr, batch,
                                           n, m, dim, k, di.as<int64_t>(), dd.as<T>()),
             "nearest_neighbors");
      Download(ip, di.p, ib);
      Download(dp, dd.p, db);
#endif
    }
  }
  return py::make_tuple(indices, sq);
}

py::tuple NearestNeighbors(py::object x_obj, py::object k_obj, py::object y_obj,
                           const std::string& device, kn::ParallelFor (*cpu_for)()) {
  const bool cuda = UseCuda(device);
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
    m = y.shape(y.ndim() - 2);
  }
  const std::vector<int64_t> y_dims = has_y ? Dims(y) : std::vector<int64_t>();
  CheckMessage(kn::CheckNearestNeighborsShapes(Dims(x), has_y ? &y_dims : nullptr));
  CheckMessage(kn::CheckNearestNeighborsK(k, n, m, !has_y));
  const kn::ParallelFor pf = cpu_for();
  if (x.dtype().is(py::dtype::of<float>()))
    return Run<float>(x, has_y ? &y : nullptr, batched, batch, n, m, dim, k, cuda, pf);
  return Run<double>(x, has_y ? &y : nullptr, batched, batch, n, m, dim, k, cuda, pf);
}

#ifdef TSNE_OPS_WITH_CUDA
void RawNearestNeighbors(py::object x, py::object y, py::object indices, py::object sq_distances,
                         int64_t batch, int64_t n, int64_t m, int64_t dim, int64_t k,
                         const std::string& dtype, uintptr_t stream) {
  const bool f32 = RawIsF32(dtype);
  const uintptr_t px = Ptr(x, "x", true), py_ = Ptr(y, "y", false);
  const uintptr_t pi = Ptr(indices, "indices", true), pd = Ptr(sq_distances, "sq_distances", true);
  CheckMessage(kn::CheckAtLeast(batch, 1, "batch"));
  CheckMessage(kn::CheckAtLeast(dim, 1, "dim"));
  if (py_ == 0) m = n;
  CheckMessage(kn::CheckNearestNeighborsK(k, n, m, py_ == 0));
  py::gil_scoped_release release;
  const cudaStream_t s = Stream(stream);
  auto* ip = As<int64_t>(pi);
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
