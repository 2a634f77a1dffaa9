// _tsne_kernels, optimiser part: scikit-learn's t-SNE gradient descent over
// the fused dense CPU gradient (cc/compute/gradient_descent.h), for numpy.
// The state arrays y, update and gains are updated in place, so they must be
// C-contiguous, writeable and of p's dtype (no silent copy). Bad input raises
// ValueError naming the argument and the value; the GIL is released while
// the loop runs.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>

#include "cc/compute/gradient_descent.h"
#include "python/binding_helpers.h"

namespace tsne_ops_py {
namespace {

template <typename T>
py::array_t<T, py::array::c_style> TakeState(const py::object& obj, const char* name,
                                             const py::array& y_shape_of, bool is_y) {
  if (!py::isinstance<py::array>(obj)) Fail(std::string(name) + " must be a numpy array");
  py::array a = py::reinterpret_borrow<py::array>(obj);
  if (!a.dtype().is(py::dtype::of<T>())) {
    Fail(std::string(name) + " must have p's dtype " + py::str(py::dtype::of<T>()).cast<std::string>() +
         ", got dtype " + py::str(a.dtype()).cast<std::string>());
  }
  if (!is_y && Dims(a) != Dims(y_shape_of)) {
    Fail(std::string(name) + " must have y's shape " + Shape(y_shape_of) + ", got shape " + Shape(a));
  }
  if (!py::isinstance<py::array_t<T, py::array::c_style>>(a) || !a.writeable()) {
    Fail(std::string(name) + " is updated in place, so it must be a C-contiguous, writeable array "
         "(np.ascontiguousarray(" + name + ") makes one)");
  }
  return py::reinterpret_borrow<py::array_t<T, py::array::c_style>>(a);
}

template <typename T>
py::tuple RunT(const py::array& p, const py::object& y_obj, const py::object& update_obj,
               const py::object& gains_obj, int64_t n_steps, const kn::GradientDescentOptions& opt,
               const py::module_& m) {
  auto y = TakeState<T>(y_obj, "y", p, true);
  if (y.ndim() != 2) Fail("y must have rank 2 ([n, d]), got shape " + Shape(y));
  const int64_t n = y.shape(0), d = y.shape(1);
  if (p.shape(0) != n) {
    Fail("p must be [n, n] with n = y's number of points: p has shape " + Shape(p) +
         ", y has shape " + Shape(y));
  }
  if (d < 1) Fail("y must have at least one embedding dimension, got shape " + Shape(y));
  auto update = TakeState<T>(update_obj, "update", y, false);
  auto gains = TakeState<T>(gains_obj, "gains", y, false);
  const kn::ParallelFor pf = CpuFor();
  const T* pp = static_cast<const T*>(p.data());
  kn::GradientDescentResult result;
  {
    py::gil_scoped_release release;
    std::string msg = kn::CheckNonNegativeFinite<T>(pp, Dims(p), "p", &pf);
    if (msg.empty()) msg = kn::CheckAllFinite<T>(y.data(), Dims(y), "y", &pf);
    if (msg.empty()) msg = kn::CheckAllFinite<T>(update.data(), Dims(update), "update", &pf);
    if (msg.empty()) msg = kn::CheckAllFinite<T>(gains.data(), Dims(gains), "gains", &pf);
    if (msg.empty()) {
      result = kn::GradientDescentCpu<T>(pp, n, d, n_steps, opt, y.mutable_data(),
                                         update.mutable_data(), gains.mutable_data(), pf);
    } else {
      result.error = msg;
    }
  }
  CheckMessage(result.error);
  return py::make_tuple(result.kl, result.grad_norm);
}

py::tuple GradientDescent(py::object p_obj, py::object y, py::object update, py::object gains,
                          int64_t n_steps, double learning_rate, double momentum,
                          double exaggeration, double dof, double min_gain, const py::module_& m) {
  py::array p = TakeFloat(p_obj, "p", nullptr);
  if (p.ndim() != 2 || p.shape(0) != p.shape(1)) {
    Fail("p must be a square [n, n] matrix, got shape " + Shape(p));
  }
  if (p.shape(0) < 2) Fail("p must have at least 2 points, got shape " + Shape(p));
  if (n_steps < 1) Fail("n_steps must be >= 1, got " + std::to_string(n_steps));
  kn::GradientDescentOptions opt;
  opt.learning_rate = learning_rate;
  opt.momentum = momentum;
  opt.exaggeration = exaggeration;
  opt.dof = dof;
  opt.min_gain = min_gain;
  CheckMessage(kn::CheckGradientDescentOptions(opt));
  if (p.dtype().is(py::dtype::of<float>())) return RunT<float>(p, y, update, gains, n_steps, opt, m);
  return RunT<double>(p, y, update, gains, n_steps, opt, m);
}

}  // namespace
}  // namespace tsne_ops_py

void BindOptimizer(pybind11::module_& m) {
  namespace py = pybind11;
  m.def(
      "gradient_descent",
      [m](py::object p, py::object y, py::object update, py::object gains, int64_t n_steps,
          double learning_rate, double momentum, double exaggeration, double dof,
          double min_gain) {
        return tsne_ops_py::GradientDescent(p, y, update, gains, n_steps, learning_rate, momentum,
                                            exaggeration, dof, min_gain, m);
      },
      py::arg("p"), py::arg("y"), py::arg("update"), py::arg("gains"), py::arg("n_steps"),
      py::arg("learning_rate"), py::arg("momentum"), py::arg("exaggeration") = 1.0,
      py::arg("dof") = 1.0, py::arg("min_gain") = 0.01,
      "n_steps iterations of scikit-learn's t-SNE gradient descent (gains +0.2 / x0.8, momentum, "
      "learning rate, exaggeration) on the dense p [n, n], updating y, update and gains [n, d] "
      "in place (C-contiguous, p's dtype). Returns (kl, grad_norm) of the last iteration: KL "
      "at its start (with exaggeration) and the norm of its gains-scaled gradient. CPU only; "
      "deterministic for any set_num_threads.");
}
