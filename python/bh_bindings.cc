// _tsne_kernels, Barnes-Hut part: the tree-approximated t-SNE repulsion for
// numpy (CPU only: on a GPU the exact sparse_tsne_gradient runs instead). Same
// conventions as module.cc: rank 2 input is a batch of one (outputs drop the
// batch axis too), bad input raises ValueError naming the argument and the
// value, the GIL is released while the kernel runs.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "cc/kernels/barnes_hut.h"
#include "cc/kernels/common.h"

namespace py = pybind11;
namespace kn = tsne_ops::kernels;

namespace {

[[noreturn]] void Fail(const std::string& msg) { throw py::value_error(msg); }

std::string Shape(const py::array& a) {
  std::string s = "(";
  for (py::ssize_t k = 0; k < a.ndim(); ++k) s += (k ? ", " : "") + std::to_string(a.shape(k));
  return s + (a.ndim() == 1 ? ",)" : ")");
}

template <typename T>
py::tuple BarnesHutT(const py::array& y_in, double dof, double angle, const py::module_& m) {
  auto y = py::array_t<T, py::array::c_style>::ensure(y_in);
  const bool batched = y.ndim() == 3;
  const int64_t batch = batched ? y.shape(0) : 1;
  const int64_t n = y.shape(y.ndim() - 2), d = y.shape(y.ndim() - 1);
  std::vector<int64_t> dims;
  for (py::ssize_t k = 0; k < y.ndim(); ++k) dims.push_back(y.shape(k));
  // The threads the CPU kernels use: module.cc's set_num_threads.
  const kn::ParallelFor pf = kn::ThreadFor(m.attr("get_num_threads")().cast<int>());
  {
    std::string msg;
    {
      py::gil_scoped_release release;
      msg = kn::CheckAllFinite<T>(y.data(), dims, "y", &pf);
    }
    if (!msg.empty()) Fail(msg);
  }
  std::vector<py::ssize_t> rshape, zshape;
  if (batched) {
    rshape = {batch, n, d};
    zshape = {batch};
  } else {
    rshape = {n, d};
  }
  py::array_t<T> rep(rshape), z(zshape);
  T* rp = rep.mutable_data();
  T* zp = z.mutable_data();
  {
    py::gil_scoped_release release;
    kn::BarnesHutRepulsionCpu<T>(y.data(), batch, n, d, dof, angle, rp, zp, pf);
  }
  bool finite = true;
  for (int64_t e = 0; e < batch * n * d; ++e) finite &= std::isfinite(rp[e]);
  for (int64_t b = 0; b < batch; ++b) finite &= std::isfinite(zp[b]);
  if (!finite) {
    Fail("the Barnes-Hut repulsion overflowed (y is finite); are y's coordinates beyond about "
         "1e150?");
  }
  return py::make_tuple(rep, z);
}

py::tuple BarnesHut(py::object y_obj, double dof, double angle, const py::module_& m) {
  if (!py::isinstance<py::array>(y_obj)) Fail("y must be a numpy array of float32 or float64");
  py::array y = py::reinterpret_borrow<py::array>(y_obj);
  if (y.ndim() != 2 && y.ndim() != 3) {
    Fail("y must have rank 2 ([n, d]) or 3 ([batch, n, d]), got shape " + Shape(y));
  }
  const int64_t n = y.shape(y.ndim() - 2), d = y.shape(y.ndim() - 1);
  if (n < 2) Fail("y must have at least 2 points, got shape " + Shape(y));
  const std::string msg = kn::CheckBarnesHutArgs(d, dof, angle);
  if (!msg.empty()) Fail(msg);
  if (y.dtype().is(py::dtype::of<float>())) return BarnesHutT<float>(y, dof, angle, m);
  if (y.dtype().is(py::dtype::of<double>())) return BarnesHutT<double>(y, dof, angle, m);
  Fail("y must be float32 or float64, got dtype " + py::str(y.dtype()).cast<std::string>());
}

}  // namespace

void BindBarnesHut(py::module_& m) {
  m.def(
      "barnes_hut_repulsion",
      [m](py::object y, double dof, double angle) { return BarnesHut(y, dof, angle, m); },
      py::arg("y"), py::arg("dof") = 1.0, py::arg("angle") = 0.5,
      "Barnes-Hut t-SNE repulsion of y [n, d] or [batch, n, d], d in {1, 2, 3}: returns "
      "(R like y, Z [batch] or a 0-d array), R_i ~ sum_{j != i} w_ij u_ij (y_i - y_j), "
      "Z ~ sum_{i != j} w_ij; angle = 0 is exact.");
}
