// _tsne_kernels, Barnes-Hut part: the tree-approximated t-SNE repulsion for
// numpy (CPU only: on a GPU the exact sparse_tsne_gradient runs instead). Same
// conventions as the dense ops (python/dense_api.h): rank 2 input is a batch
// of one (outputs drop the batch axis too), bad input raises ValueError naming
// the argument and the value, the GIL is released while the kernel runs.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "cc/compute/barnes_hut.h"
#include "cc/compute/common.h"
#include "cc/compute/validation.h"
#include "python/binding_helpers.h"

namespace py = pybind11;
namespace kn = tsne_ops::kernels;

namespace {

using namespace tsne_ops_py;  // NOLINT: the shared helpers (binding_helpers.h)

template <typename T>
py::tuple BarnesHutT(const py::array& y_in, double dof, double angle) {
  auto y = py::array_t<T, py::array::c_style>::ensure(y_in);
  const bool batched = y.ndim() == 3;
  const int64_t batch = batched ? y.shape(0) : 1;
  const int64_t n = y.shape(y.ndim() - 2), d = y.shape(y.ndim() - 1);
  std::vector<int64_t> dims;
  for (py::ssize_t k = 0; k < y.ndim(); ++k) dims.push_back(y.shape(k));
  const kn::ParallelFor pf = CpuFor();
  {
    std::string msg;
    {
      py::gil_scoped_release release;
      msg = kn::CheckAllFinite<T>(y.data(), dims, "y", &pf);
    }
    CheckMessage(msg);
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
  CheckMessage(kn::CheckBarnesHutResult<T>(rp, zp, batch, n, d));
  return py::make_tuple(rep, z);
}

py::tuple BarnesHut(py::object y_obj, double dof, double angle) {
  const py::array y = TakeFloat(y_obj, "y", nullptr);
  CheckMessage(kn::CheckRank2Or3(Dims(y), "y", "[n, d]"));
  CheckMessage(kn::CheckBarnesHutArgs(Dims(y), dof, angle));
  if (y.dtype().is(py::dtype::of<float>())) return BarnesHutT<float>(y, dof, angle);
  return BarnesHutT<double>(y, dof, angle);
}

}  // namespace

void BindBarnesHut(py::module_& m) {
  m.def(
      "barnes_hut_repulsion",
      &BarnesHut,
      py::arg("y"), py::arg("dof") = 1.0, py::arg("angle") = 0.5,
      "Barnes-Hut t-SNE repulsion of y [n, d] or [batch, n, d], d in {1, 2, 3}: returns "
      "(R like y, Z [batch] or a 0-d array), R_i ~ sum_{j != i} w_ij u_ij (y_i - y_j), "
      "Z ~ sum_{i != j} w_ij; angle = 0 is exact.");
}
