// _tsne_kernels, FFT-interpolation part: spreading charges onto the grid of
// Lagrange nodes and gathering potentials back (cc/compute/fft_interpolation.h),
// for numpy on the CPU or device="cuda" (copy in, run, copy out). The
// convolution between the two steps is the caller's (numpy.fft here,
// tf.signal in the op library). Arrays are batched: y [batch, n, d],
// charges [batch, n, c], origin [batch, d], box_width [batch]. Bad input
// raises ValueError with the op library's message (cc/compute/validation.h);
// the GIL is released while kernels run.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>
#include <vector>

#include "cc/compute/common.h"
#include "cc/compute/fft_interpolation.h"
#include "cc/compute/validation.h"
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
  CheckMessage(kn::CheckFftShapes(Dims(a.y), Dims(a.origin), Dims(a.box_width)));
  a.batch = a.y.shape(0);
  a.n = a.y.shape(1);
  a.d = a.y.shape(2);
  return a;
}

// The checks of the values, in the op's order: y finite, the charges finite
// (spread only), then the grid (cc/compute/fft_interpolation.h).
template <typename T>
void CheckValues(const FftArgs& a, const char* values_name, int64_t n_boxes, int p) {
  CheckMessage(kn::CheckAllFinite<T>(static_cast<const T*>(a.y.data()), Dims(a.y), "y"));
  if (values_name != nullptr) {
    CheckMessage(kn::CheckAllFinite<T>(static_cast<const T*>(a.values.data()), Dims(a.values),
                                       values_name));
  }
  CheckMessage(kn::CheckFftGrid<T>(static_cast<const T*>(a.y.data()),
                                   static_cast<const T*>(a.origin.data()),
                                   static_cast<const T*>(a.box_width.data()), a.batch, a.n, a.d,
                                   a.c, n_boxes, p));
}

// Spreads a.values (charges) onto the grid, or gathers a.values
// (potentials) back at the points: the same arguments, copies and checks.
template <typename T>
py::array RunT(const FftArgs& a, int64_t n_boxes, int p, bool cuda, bool spread) {
  CheckValues<T>(a, spread ? "charges" : nullptr, n_boxes, p);
  const int64_t mm = n_boxes * p;
  std::vector<py::ssize_t> shape = {a.batch, a.n, a.c};
  if (spread) {
    shape = {a.batch, a.c, mm};
    if (a.d == 2) shape.push_back(mm);
  }
  py::array_t<T> result(shape);
  const T* y = static_cast<const T*>(a.y.data());
  const T* v = static_cast<const T*>(a.values.data());
  const T* o = static_cast<const T*>(a.origin.data());
  const T* h = static_cast<const T*>(a.box_width.data());
  T* out = result.mutable_data();
  if (!cuda) {
    const kn::ParallelFor pf = CpuFor();
    py::gil_scoped_release release;
    if (spread) {
      kn::FftSpreadCpu<T>(y, v, o, h, a.batch, a.n, a.d, a.c, n_boxes, p, out, pf);
    } else {
      kn::FftGatherCpu<T>(y, v, o, h, a.batch, a.n, a.d, a.c, n_boxes, p, out, pf);
    }
  } else {
#ifdef TSNE_OPS_WITH_CUDA
    py::gil_scoped_release release;
    const size_t ny = a.y.size(), nv = a.values.size(), no = a.origin.size(), nr = result.size();
    Buf dy(ny * sizeof(T)), dv(nv * sizeof(T)), dor(no * sizeof(T));
    Buf dh(a.batch * sizeof(T)), dr(nr * sizeof(T));
    Buf ws(spread ? kn::FftSpreadWorkspaceBytes(a.batch, a.n, a.d, n_boxes, p) : 0);
    Upload(dy.p, y, ny * sizeof(T));
    Upload(dv.p, v, nv * sizeof(T));
    Upload(dor.p, o, no * sizeof(T));
    Upload(dh.p, h, a.batch * sizeof(T));
    const char* what = spread ? "fft_spread" : "fft_gather";
    CudaCheck(spread ? kn::LaunchFftSpread<T>(nullptr, dy.as<T>(), dv.as<T>(), dor.as<T>(),
                                              dh.as<T>(), a.batch, a.n, a.d, a.c, n_boxes, p,
                                              dr.as<T>(), ws.p)
                     : kn::LaunchFftGather<T>(nullptr, dy.as<T>(), dv.as<T>(), dor.as<T>(),
                                              dh.as<T>(), a.batch, a.n, a.d, a.c, n_boxes, p,
                                              dr.as<T>()),
              what);
    CudaCheck(cudaDeviceSynchronize(), what);
    Download(out, dr.p, nr * sizeof(T));
#endif
  }
  return result;
}

bool IsF32(const py::array& a) { return a.dtype().is(py::dtype::of<float>()); }

}  // namespace

void BindFft(py::module_& m) {
  m.def(
      "fft_spread",
      [](py::object y, py::object charges, py::object origin, py::object box_width,
          int64_t n_boxes, int interpolation_points, const std::string& device) {
        const bool cuda = UseCuda(device);
        FftArgs a = Take(y, charges, "charges", origin, box_width);
        CheckMessage(kn::CheckFftCharges(Dims(a.values), Dims(a.y)));
        a.c = a.values.shape(2);
        CheckMessage(kn::CheckFftBoxes(n_boxes, interpolation_points, a.d));
        return IsF32(a.y) ? RunT<float>(a, n_boxes, interpolation_points, cuda, true)
                          : RunT<double>(a, n_boxes, interpolation_points, cuda, true);
      },
      py::arg("y"), py::arg("charges"), py::arg("origin"), py::arg("box_width"),
      py::arg("n_boxes"), py::arg("interpolation_points") = 3, py::arg("device") = "cpu",
      "Spread charges [batch, n, c] of points y [batch, n, d] (d = 1, 2) onto the Lagrange "
      "nodes of a grid of n_boxes boxes per dimension: grid [batch, c, m] or [batch, c, m, m], "
      "m = n_boxes * interpolation_points.");
  m.def(
      "fft_gather",
      [](py::object y, py::object potentials, py::object origin, py::object box_width,
          int interpolation_points, const std::string& device) {
        const bool cuda = UseCuda(device);
        FftArgs a = Take(y, potentials, "potentials", origin, box_width);
        const int p = interpolation_points;
        CheckMessage(kn::CheckFftPotentials(Dims(a.values), Dims(a.y), p));
        a.c = a.values.shape(1);
        const int64_t n_boxes = a.values.shape(2) / p;
        return IsF32(a.y) ? RunT<float>(a, n_boxes, p, cuda, false)
                          : RunT<double>(a, n_boxes, p, cuda, false);
      },
      py::arg("y"), py::arg("potentials"), py::arg("origin"), py::arg("box_width"),
      py::arg("interpolation_points") = 3, py::arg("device") = "cpu",
      "Interpolate grid potentials back at the points: phi [batch, n, c] (the adjoint of "
      "fft_spread).");
}
