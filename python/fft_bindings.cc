// _tsne_kernels, FFT-interpolation part: spreading charges onto the grid of
// Lagrange nodes and gathering potentials back (cc/compute/fft_interpolation.h),
// for numpy on the CPU or device="cuda" (copy in, run, copy out). The
// convolution between the two steps is the caller's (numpy.fft here,
// tf.signal in the op library). Arrays are batched: y [batch, n, d],
// charges [batch, n, c], origin [batch, d], box_width [batch]. Bad input
// raises ValueError naming the argument; the GIL is released while kernels run.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>
#include <vector>

#include "cc/compute/common.h"
#include "cc/compute/fft_interpolation.h"
#include "python/binding_helpers.h"

namespace py = pybind11;
namespace kn = tsne_ops::kernels;

namespace {

using namespace tsne_ops_py;  // NOLINT: the shared helpers (binding_helpers.h)

struct FftArgs {
  py::array y, values, origin, box_width;
  int64_t batch, n, d, c;
};

// y, the per-point or per-node values, origin and box_width, one dtype.
FftArgs Take(py::object y_obj, py::object v_obj, const char* v_name, py::object o_obj,
             py::object h_obj) {
  FftArgs a;
  a.y = TakeFloat(y_obj, "y", nullptr);
  py::dtype yd = a.y.dtype();
  a.values = TakeFloat(v_obj, v_name, &yd, "y");
  a.origin = TakeFloat(o_obj, "origin", &yd, "y");
  a.box_width = TakeFloat(h_obj, "box_width", &yd, "y");
  if (a.y.ndim() != 3) Fail("y must be [batch, n, d], got shape " + Shape(a.y));
  a.batch = a.y.shape(0);
  a.n = a.y.shape(1);
  a.d = a.y.shape(2);
  if (a.d != 1 && a.d != 2) Fail("y must have d = 1 or 2, got shape " + Shape(a.y));
  if (a.origin.ndim() != 2 || a.origin.shape(0) != a.batch || a.origin.shape(1) != a.d) {
    Fail("origin must be [batch, d] for y of shape " + Shape(a.y) + ", got shape " +
         Shape(a.origin));
  }
  if (a.box_width.ndim() != 1 || a.box_width.shape(0) != a.batch) {
    Fail("box_width must be [batch] for y of shape " + Shape(a.y) + ", got shape " +
         Shape(a.box_width));
  }
  return a;
}

template <typename T>
void CheckGrid(const FftArgs& a, int64_t n_boxes, int p) {
  CheckMessage(kn::CheckAllFinite<T>(static_cast<const T*>(a.y.data()), Dims(a.y), "y"));
  CheckMessage(kn::CheckFftGrid<T>(static_cast<const T*>(a.y.data()),
                                   static_cast<const T*>(a.origin.data()),
                                   static_cast<const T*>(a.box_width.data()), a.batch, a.n, a.d,
                                   a.c, n_boxes, p));
}

template <typename T>
py::array SpreadT(const FftArgs& a, int64_t n_boxes, int p, bool cuda, const py::module_& m) {
  CheckGrid<T>(a, n_boxes, p);
  CheckMessage(kn::CheckAllFinite<T>(static_cast<const T*>(a.values.data()), Dims(a.values),
                                     "charges"));
  const int64_t mm = n_boxes * p;
  std::vector<py::ssize_t> shape = {a.batch, a.c, mm};
  if (a.d == 2) shape.push_back(mm);
  py::array_t<T> grid(shape);
  const T* y = static_cast<const T*>(a.y.data());
  const T* q = static_cast<const T*>(a.values.data());
  const T* o = static_cast<const T*>(a.origin.data());
  const T* h = static_cast<const T*>(a.box_width.data());
  T* g = grid.mutable_data();
  if (!cuda) {
    const kn::ParallelFor pf = CpuFor();
    py::gil_scoped_release release;
    kn::FftSpreadCpu<T>(y, q, o, h, a.batch, a.n, a.d, a.c, n_boxes, p, g, pf);
  } else {
#ifdef TSNE_OPS_WITH_CUDA
    py::gil_scoped_release release;
    const size_t ny = a.y.size(), nq = a.values.size(), ng = grid.size();
    Buf dy(ny * sizeof(T)), dq(nq * sizeof(T)), dor(a.origin.size() * sizeof(T));
    Buf dh(a.batch * sizeof(T)), dg(ng * sizeof(T));
    Buf ws(kn::FftSpreadWorkspaceBytes(a.batch, a.n, a.d, n_boxes));
    Upload(dy.p, y, ny * sizeof(T));
    Upload(dq.p, q, nq * sizeof(T));
    Upload(dor.p, o, a.origin.size() * sizeof(T));
    Upload(dh.p, h, a.batch * sizeof(T));
    CudaCheck(kn::LaunchFftSpread<T>(nullptr, dy.as<T>(), dq.as<T>(), dor.as<T>(), dh.as<T>(),
                                     a.batch, a.n, a.d, a.c, n_boxes, p, dg.as<T>(), ws.p),
              "fft_spread");
    CudaCheck(cudaDeviceSynchronize(), "fft_spread");
    Download(g, dg.p, ng * sizeof(T));
#endif
  }
  return grid;
}

template <typename T>
py::array GatherT(const FftArgs& a, int64_t n_boxes, int p, bool cuda, const py::module_& m) {
  CheckGrid<T>(a, n_boxes, p);
  py::array_t<T> phi(std::vector<py::ssize_t>{a.batch, a.n, a.c});
  const T* y = static_cast<const T*>(a.y.data());
  const T* v = static_cast<const T*>(a.values.data());
  const T* o = static_cast<const T*>(a.origin.data());
  const T* h = static_cast<const T*>(a.box_width.data());
  T* out = phi.mutable_data();
  if (!cuda) {
    const kn::ParallelFor pf = CpuFor();
    py::gil_scoped_release release;
    kn::FftGatherCpu<T>(y, v, o, h, a.batch, a.n, a.d, a.c, n_boxes, p, out, pf);
  } else {
#ifdef TSNE_OPS_WITH_CUDA
    py::gil_scoped_release release;
    const size_t ny = a.y.size(), nv = a.values.size(), np_ = phi.size();
    Buf dy(ny * sizeof(T)), dv(nv * sizeof(T)), dor(a.origin.size() * sizeof(T));
    Buf dh(a.batch * sizeof(T)), dp(np_ * sizeof(T));
    Upload(dy.p, y, ny * sizeof(T));
    Upload(dv.p, v, nv * sizeof(T));
    Upload(dor.p, o, a.origin.size() * sizeof(T));
    Upload(dh.p, h, a.batch * sizeof(T));
    CudaCheck(kn::LaunchFftGather<T>(nullptr, dy.as<T>(), dv.as<T>(), dor.as<T>(), dh.as<T>(),
                                     a.batch, a.n, a.d, a.c, n_boxes, p, dp.as<T>()),
              "fft_gather");
    CudaCheck(cudaDeviceSynchronize(), "fft_gather");
    Download(out, dp.p, np_ * sizeof(T));
#endif
  }
  return phi;
}

bool IsF32(const py::array& a) { return a.dtype().is(py::dtype::of<float>()); }

}  // namespace

void BindFft(py::module_& m) {
  m.def(
      "fft_spread",
      [m](py::object y, py::object charges, py::object origin, py::object box_width,
          int64_t n_boxes, int interpolation_points, const std::string& device) {
        const bool cuda = UseCuda(device);
        FftArgs a = Take(y, charges, "charges", origin, box_width);
        if (a.values.ndim() != 3 || a.values.shape(0) != a.batch || a.values.shape(1) != a.n) {
          Fail("charges must be [batch, n, c] for y of shape " + Shape(a.y) + ", got shape " +
               Shape(a.values));
        }
        a.c = a.values.shape(2);
        if (n_boxes < 1) Fail("n_boxes must be >= 1, got " + std::to_string(n_boxes));
        return IsF32(a.y) ? SpreadT<float>(a, n_boxes, interpolation_points, cuda, m)
                          : SpreadT<double>(a, n_boxes, interpolation_points, cuda, m);
      },
      py::arg("y"), py::arg("charges"), py::arg("origin"), py::arg("box_width"),
      py::arg("n_boxes"), py::arg("interpolation_points") = 3, py::arg("device") = "cpu",
      "Spread charges [batch, n, c] of points y [batch, n, d] (d = 1, 2) onto the Lagrange "
      "nodes of a grid of n_boxes boxes per dimension: grid [batch, c, m] or [batch, c, m, m], "
      "m = n_boxes * interpolation_points.");
  m.def(
      "fft_gather",
      [m](py::object y, py::object potentials, py::object origin, py::object box_width,
          int interpolation_points, const std::string& device) {
        const bool cuda = UseCuda(device);
        FftArgs a = Take(y, potentials, "potentials", origin, box_width);
        const int p = interpolation_points;
        if (p < 1 || p > kn::kFftMaxNodes) {
          Fail("interpolation_points must be in [1, 8], got " + std::to_string(p));
        }
        bool ok = a.values.ndim() == 2 + a.d && a.values.shape(0) == a.batch &&
                  a.values.shape(2) >= p && a.values.shape(2) % p == 0;
        if (ok && a.d == 2) ok = a.values.shape(3) == a.values.shape(2);
        if (!ok) {
          Fail("potentials must be [batch, c, m" + std::string(a.d == 2 ? ", m" : "") +
               "] with m a multiple of interpolation_points for y of shape " + Shape(a.y) +
               ", got shape " + Shape(a.values));
        }
        a.c = a.values.shape(1);
        const int64_t n_boxes = a.values.shape(2) / p;
        return IsF32(a.y) ? GatherT<float>(a, n_boxes, p, cuda, m)
                          : GatherT<double>(a, n_boxes, p, cuda, m);
      },
      py::arg("y"), py::arg("potentials"), py::arg("origin"), py::arg("box_width"),
      py::arg("interpolation_points") = 3, py::arg("device") = "cpu",
      "Interpolate grid potentials back at the points: phi [batch, n, c] (the adjoint of "
      "fft_spread).");
}
