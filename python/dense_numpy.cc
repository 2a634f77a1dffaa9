// The numpy front end of the dense ops: validation (cc/compute/validation.h,
// the op library's checks and messages), then the CPU kernels, or with
// device='cuda' a synchronous copy in, launch and copy out.
#include <cstdint>
#include <string>
#include <vector>

#include "cc/compute/affinities.h"
#include "cc/compute/distances.h"
#include "cc/compute/tsne_gradient.h"
#include "cc/compute/validation.h"
#include "python/binding_helpers.h"
#include "python/dense_api.h"

namespace tsne_ops_py {

namespace {

// An input array: float32 or float64, rank 2 or 3, C-contiguous.
struct Input {
  py::array arr;
  bool batched = false;  // rank 3
  int64_t batch = 0, rows = 0, cols = 0;
  kn::Shape shape;
};

// `layout` names the rank-2 form ("[n, dim]"); with `like`, the dtype must
// be that of the argument `like_name`.
Input TakeArray(const py::object& obj, const char* name, const char* layout,
                const Input* like = nullptr, const char* like_name = nullptr) {
  py::dtype like_dtype = like ? like->arr.dtype() : py::dtype::of<float>();
  Input in;
  in.arr = TakeFloat(obj, name, like ? &like_dtype : nullptr, like_name);
  in.shape = Dims(in.arr);
  CheckMessage(kn::CheckRank2Or3(in.shape, name, layout));
  in.batched = in.shape.size() == 3;
  in.batch = in.batched ? in.shape[0] : 1;
  in.rows = in.shape[in.shape.size() - 2];
  in.cols = in.shape.back();
  return in;
}

bool IsF32(const Input& a) { return a.arr.dtype().is(py::dtype::of<float>()); }

template <typename T>
const T* Data(const Input& in) { return static_cast<const T*>(in.arr.data()); }

template <typename T>
size_t Bytes(int64_t count) { return static_cast<size_t>(count) * sizeof(T); }

template <typename T>
py::array_t<T> NewArray(bool batched, int64_t batch, std::vector<int64_t> tail) {
  std::vector<py::ssize_t> shape;
  if (batched) shape.push_back(batch);
  for (int64_t t : tail) shape.push_back(t);
  return py::array_t<T>(shape);
}

// The values of `in`: finite (and >= 0 with `non_negative`), scanned with
// the GIL released.
template <typename T>
void CheckValues(const Input& in, const char* name, bool non_negative) {
  const kn::ParallelFor pf = CpuFor();
  std::string msg;
  {
    py::gil_scoped_release release;
    msg = non_negative ? kn::CheckNonNegativeFinite<T>(Data<T>(in), in.shape, name, &pf)
                       : kn::CheckAllFinite<T>(Data<T>(in), in.shape, name, &pf);
  }
  CheckMessage(msg);
}

#ifdef TSNE_OPS_WITH_CUDA
template <typename T>
void ToDevice(const Buf& dst, const Input& in) {
  Upload(dst.p, in.arr.data(), Bytes<T>(in.arr.size()));
}
#endif

// ------------------------------------------------------------ distances --

template <typename T>
py::array DistanceT(const Input& x, const Input* y, bool cuda) {
  const int64_t batch = x.batch, n = x.rows, dim = x.cols, m = y ? y->rows : n;
  py::array_t<T> out = NewArray<T>(x.batched, batch, {n, m});
  T* o = out.mutable_data();
  if (!cuda) {
    const kn::ParallelFor pf = CpuFor();
    {
      py::gil_scoped_release release;  // the kernel holds no Python state
      kn::PairwiseSquaredDistanceCpu<T>(Data<T>(x), y ? Data<T>(*y) : nullptr, batch, n, m, dim,
                                        o, pf);
    }
    CheckMessage(kn::CheckDistancesFinite<T>(o, batch, n, m, y != nullptr));
    return out;
  }
#ifdef TSNE_OPS_WITH_CUDA
  {
    py::gil_scoped_release release;
    Buf dx(Bytes<T>(batch * n * dim)), dy(y ? Bytes<T>(batch * m * dim) : 0);
    Buf dout(Bytes<T>(batch * n * m));
    ToDevice<T>(dx, x);
    if (y) ToDevice<T>(dy, *y);
    Finish(kn::LaunchPairwiseSquaredDistance<T>(nullptr, dx.as<T>(), y ? dy.as<T>() : nullptr,
                                                batch, n, m, dim, dout.as<T>()),
           "pairwise_squared_distance");
    Download(o, dout.p, Bytes<T>(batch * n * m));
  }
#endif
  return out;
}

template <typename T>
py::tuple DistanceGradT(const Input& g, const Input& x, const Input* y, bool cuda) {
  const int64_t batch = x.batch, n = x.rows, dim = x.cols, m = y ? y->rows : n;
  py::array_t<T> gx = NewArray<T>(x.batched, batch, {n, dim});
  py::object gy_obj = py::none();
  T* gy_ptr = nullptr;
  if (y) {
    py::array_t<T> gy = NewArray<T>(x.batched, batch, {m, dim});
    gy_ptr = gy.mutable_data();
    gy_obj = gy;
  }
  T* gx_ptr = gx.mutable_data();
  if (!cuda) {
    const kn::ParallelFor pf = CpuFor();
    py::gil_scoped_release release;  // the kernel holds no Python state
    kn::PairwiseSquaredDistanceGradCpu<T>(Data<T>(g), Data<T>(x), y ? Data<T>(*y) : nullptr,
                                          batch, n, m, dim, gx_ptr, gy_ptr, pf);
  } else {
#ifdef TSNE_OPS_WITH_CUDA
    py::gil_scoped_release release;
    Buf dg(Bytes<T>(batch * n * m)), dx(Bytes<T>(batch * n * dim));
    Buf dy(y ? Bytes<T>(batch * m * dim) : 0);
    ToDevice<T>(dg, g);
    ToDevice<T>(dx, x);
    if (y) ToDevice<T>(dy, *y);
    Buf dgx(Bytes<T>(batch * n * dim)), dgy(y ? Bytes<T>(batch * m * dim) : 0);
    Buf ws(kn::PairwiseSquaredDistanceGradWorkspaceBytes<T>(batch, n, m, dim));
    Finish(kn::LaunchPairwiseSquaredDistanceGrad<T>(nullptr, dg.as<T>(), dx.as<T>(),
                                                    y ? dy.as<T>() : nullptr, batch, n, m, dim,
                                                    dgx.as<T>(), y ? dgy.as<T>() : nullptr, ws.p),
           "pairwise_squared_distance_grad");
    Download(gx_ptr, dgx.p, Bytes<T>(batch * n * dim));
    if (y) Download(gy_ptr, dgy.p, Bytes<T>(batch * m * dim));
#endif
  }
  return py::make_tuple(gx, gy_obj);
}

// ----------------------------------------------------------- affinities --

template <typename T>
py::tuple PerplexityT(const Input& d, double perplexity, double tolerance, int max_iter,
                      bool cuda) {
  const int64_t batch = d.batch, n = d.rows;
  py::array_t<T> pc = NewArray<T>(d.batched, batch, {n, n});
  py::array_t<T> beta = NewArray<T>(d.batched, batch, {n});
  T* pc_ptr = pc.mutable_data();
  T* beta_ptr = beta.mutable_data();
  int64_t unconverged = 0;
  if (!cuda) {
    const kn::ParallelFor pf = CpuFor();
    py::gil_scoped_release release;  // the kernel holds no Python state
    unconverged = kn::PerplexityAffinitiesCpu<T>(Data<T>(d), batch, n, perplexity, tolerance,
                                                 max_iter, pc_ptr, beta_ptr, pf);
  } else {
#ifdef TSNE_OPS_WITH_CUDA
    py::gil_scoped_release release;
    Buf dd(Bytes<T>(batch * n * n)), dpc(Bytes<T>(batch * n * n)), dbeta(Bytes<T>(batch * n));
    Buf dcount(sizeof(int64_t));
    Buf ws(kn::PerplexityAffinitiesWorkspaceBytes<T>(batch, n));
    ToDevice<T>(dd, d);
    Finish(kn::LaunchPerplexityAffinities<T>(nullptr, dd.as<T>(), batch, n, perplexity, tolerance,
                                             max_iter, dpc.as<T>(), dbeta.as<T>(),
                                             dcount.as<int64_t>(), ws.p),
           "perplexity_affinities");
    Download(pc_ptr, dpc.p, Bytes<T>(batch * n * n));
    Download(beta_ptr, dbeta.p, Bytes<T>(batch * n));
    Download(&unconverged, dcount.p, sizeof(int64_t));
#endif
  }
  return py::make_tuple(pc, beta, unconverged);
}

template <typename T>
py::array SymmetrizeT(const Input& pc, bool cuda) {
  const int64_t batch = pc.batch, n = pc.rows;
  py::array_t<T> p = NewArray<T>(pc.batched, batch, {n, n});
  T* p_ptr = p.mutable_data();
  if (!cuda) {
    const kn::ParallelFor pf = CpuFor();
    py::gil_scoped_release release;  // the kernel holds no Python state
    kn::SymmetrizeAffinitiesCpu<T>(Data<T>(pc), batch, n, p_ptr, pf);
  } else {
#ifdef TSNE_OPS_WITH_CUDA
    py::gil_scoped_release release;
    Buf dpc(Bytes<T>(batch * n * n)), dp(Bytes<T>(batch * n * n));
    Buf ws(kn::SymmetrizeAffinitiesWorkspaceBytes<T>(batch, n));
    ToDevice<T>(dpc, pc);
    Finish(kn::LaunchSymmetrizeAffinities<T>(nullptr, dpc.as<T>(), batch, n, dp.as<T>(), ws.p),
           "symmetrize_affinities");
    Download(p_ptr, dp.p, Bytes<T>(batch * n * n));
#endif
  }
  return p;
}

template <typename T>
py::array JointT(const Input& d, double perplexity, double tolerance, int max_iter, bool cuda) {
  const int64_t batch = d.batch, n = d.rows;
  py::array_t<T> p = NewArray<T>(d.batched, batch, {n, n});
  T* p_ptr = p.mutable_data();
  if (!cuda) {
    const kn::ParallelFor pf = CpuFor();
    py::gil_scoped_release release;  // the kernel holds no Python state
    std::vector<T> pc(static_cast<size_t>(batch * n * n)), beta(static_cast<size_t>(batch * n));
    kn::PerplexityAffinitiesCpu<T>(Data<T>(d), batch, n, perplexity, tolerance, max_iter,
                                   pc.data(), beta.data(), pf);
    kn::SymmetrizeAffinitiesCpu<T>(pc.data(), batch, n, p_ptr, pf);
  } else {
#ifdef TSNE_OPS_WITH_CUDA
    py::gil_scoped_release release;
    Buf dd(Bytes<T>(batch * n * n)), dpc(Bytes<T>(batch * n * n)), dbeta(Bytes<T>(batch * n));
    Buf ws1(kn::PerplexityAffinitiesWorkspaceBytes<T>(batch, n));
    ToDevice<T>(dd, d);
    CudaCheck(kn::LaunchPerplexityAffinities<T>(nullptr, dd.as<T>(), batch, n, perplexity,
                                                tolerance, max_iter, dpc.as<T>(), dbeta.as<T>(),
                                                nullptr, ws1.p),
              "joint_probabilities (perplexity_affinities)");
    Buf ws2(kn::SymmetrizeAffinitiesWorkspaceBytes<T>(batch, n));
    // dd is free to reuse as the output (same size).
    Finish(kn::LaunchSymmetrizeAffinities<T>(nullptr, dpc.as<T>(), batch, n, dd.as<T>(), ws2.p),
           "joint_probabilities (symmetrize_affinities)");
    Download(p_ptr, dd.p, Bytes<T>(batch * n * n));
#endif
  }
  return p;
}

// ------------------------------------------------------------- gradient --

template <typename T>
py::tuple TsneGradientT(const Input& p, const Input& y, const kn::TsneGradientOptions& opt,
                        bool compute_kl, bool cuda) {
  const int64_t batch = y.batch, n = y.rows, d = y.cols;
  py::array_t<T> grad = NewArray<T>(y.batched, batch, {n, d});
  py::array_t<T> kl = NewArray<T>(y.batched, batch, {});
  T* g_ptr = grad.mutable_data();
  T* kl_ptr = compute_kl ? kl.mutable_data() : nullptr;
  if (!cuda) {
    const kn::ParallelFor pf = CpuFor();
    py::gil_scoped_release release;
    kn::TsneGradientCpu<T>(Data<T>(p), Data<T>(y), batch, n, d, opt, g_ptr, kl_ptr, pf);
  } else {
#ifdef TSNE_OPS_WITH_CUDA
    py::gil_scoped_release release;
    Buf dp(Bytes<T>(batch * n * n)), dy(Bytes<T>(batch * n * d));
    ToDevice<T>(dp, p);
    ToDevice<T>(dy, y);
    Buf dg(Bytes<T>(batch * n * d)), dkl(compute_kl ? Bytes<T>(batch) : 0);
    Buf ws(kn::TsneGradientWorkspaceBytes<T>(batch, n, d));
    Finish(kn::LaunchTsneGradient<T>(nullptr, dp.as<T>(), dy.as<T>(), batch, n, d, opt,
                                     dg.as<T>(), compute_kl ? dkl.as<T>() : nullptr, ws.p),
           "tsne_gradient");
    Download(g_ptr, dg.p, Bytes<T>(batch * n * d));
    if (compute_kl) Download(kl_ptr, dkl.p, Bytes<T>(batch));
#endif
  }
  py::object kl_out = py::none();
  if (compute_kl) kl_out = kl;
  return py::make_tuple(grad, kl_out);
}

// The affinity ops' input: a square, finite, non-negative matrix.
Input TakeSquare(const py::object& obj, const char* name) {
  Input d = TakeArray(obj, name, "[n, n]");
  CheckMessage(kn::CheckSquare(d.shape, name));
  if (IsF32(d)) {
    CheckValues<float>(d, name, true);
  } else {
    CheckValues<double>(d, name, true);
  }
  return d;
}

// sq_dist and the perplexity search's arguments (the ops' checks, in their
// order: shapes and scalars before the full scan of the values).
Input TakeDistances(const py::object& obj, double perplexity, double tolerance, int max_iter) {
  Input d = TakeArray(obj, "sq_dist", "[n, n]");
  CheckMessage(kn::CheckSquare(d.shape, "sq_dist"));
  CheckMessage(kn::CheckPerplexity(perplexity, d.rows));
  CheckMessage(kn::CheckPerplexitySearch(tolerance, max_iter));
  if (IsF32(d)) {
    CheckValues<float>(d, "sq_dist", true);
  } else {
    CheckValues<double>(d, "sq_dist", true);
  }
  return d;
}

}  // namespace

py::array PairwiseSquaredDistance(py::object x_obj, py::object y_obj, const std::string& device) {
  const bool cuda = UseCuda(device);
  const Input x = TakeArray(x_obj, "x", "[n, dim]");
  CheckMessage(kn::CheckPoints(x.shape, "x", 1));
  Input y;
  const bool has_y = !y_obj.is_none();
  if (has_y) {
    y = TakeArray(y_obj, "y", "[m, dim]", &x, "x");
    CheckMessage(kn::CheckSameBatchAndDim(x.shape, "x", y.shape, "y"));
    CheckMessage(kn::CheckPoints(y.shape, "y", 1));
  }
  if (IsF32(x)) {
    CheckValues<float>(x, "x", false);
    if (has_y) CheckValues<float>(y, "y", false);
    return DistanceT<float>(x, has_y ? &y : nullptr, cuda);
  }
  CheckValues<double>(x, "x", false);
  if (has_y) CheckValues<double>(y, "y", false);
  return DistanceT<double>(x, has_y ? &y : nullptr, cuda);
}

py::tuple PairwiseSquaredDistanceGrad(py::object g_obj, py::object x_obj, py::object y_obj,
                                      const std::string& device) {
  const bool cuda = UseCuda(device);
  const Input x = TakeArray(x_obj, "x", "[n, dim]");
  CheckMessage(kn::CheckPoints(x.shape, "x", 1));
  const Input g = TakeArray(g_obj, "grad", "[n, m]", &x, "x");
  Input y;
  const bool has_y = !y_obj.is_none();
  if (has_y) {
    y = TakeArray(y_obj, "y", "[m, dim]", &x, "x");
    CheckMessage(kn::CheckSameBatchAndDim(x.shape, "x", y.shape, "y"));
    CheckMessage(kn::CheckPoints(y.shape, "y", 1));
  }
  kn::Shape want = {x.rows, has_y ? y.rows : x.rows};
  if (x.batched) want.insert(want.begin(), x.batch);
  CheckMessage(kn::CheckShapeIs(g.shape, want, "grad"));
  if (IsF32(x)) {
    CheckValues<float>(g, "grad", false);
    CheckValues<float>(x, "x", false);
    if (has_y) CheckValues<float>(y, "y", false);
    return DistanceGradT<float>(g, x, has_y ? &y : nullptr, cuda);
  }
  CheckValues<double>(g, "grad", false);
  CheckValues<double>(x, "x", false);
  if (has_y) CheckValues<double>(y, "y", false);
  return DistanceGradT<double>(g, x, has_y ? &y : nullptr, cuda);
}

py::tuple PerplexityAffinities(py::object d_obj, double perplexity, double tolerance, int max_iter,
                               const std::string& device) {
  const bool cuda = UseCuda(device);
  const Input d = TakeDistances(d_obj, perplexity, tolerance, max_iter);
  return IsF32(d) ? PerplexityT<float>(d, perplexity, tolerance, max_iter, cuda)
                  : PerplexityT<double>(d, perplexity, tolerance, max_iter, cuda);
}

py::array SymmetrizeAffinities(py::object pc_obj, const std::string& device) {
  const bool cuda = UseCuda(device);
  const Input pc = TakeSquare(pc_obj, "p_conditional");
  return IsF32(pc) ? SymmetrizeT<float>(pc, cuda) : SymmetrizeT<double>(pc, cuda);
}

py::array JointProbabilities(py::object d_obj, double perplexity, double tolerance, int max_iter,
                             const std::string& device) {
  const bool cuda = UseCuda(device);
  const Input d = TakeDistances(d_obj, perplexity, tolerance, max_iter);
  return IsF32(d) ? JointT<float>(d, perplexity, tolerance, max_iter, cuda)
                  : JointT<double>(d, perplexity, tolerance, max_iter, cuda);
}

py::tuple TsneGradient(py::object p_obj, py::object y_obj, double exaggeration, double dof,
                       bool compute_kl, bool scale_repulsion_by_p_sum, const std::string& device) {
  const bool cuda = UseCuda(device);
  const Input y = TakeArray(y_obj, "y", "[n, d]");
  const Input p = TakeArray(p_obj, "p", "[n, n]", &y, "y");
  CheckMessage(kn::CheckGradientShapes(p.shape, y.shape));
  const kn::TsneGradientOptions opt =
      GradientOptions(exaggeration, dof, scale_repulsion_by_p_sum);
  if (IsF32(y)) {
    CheckValues<float>(p, "p", true);
    CheckValues<float>(y, "y", false);
    return TsneGradientT<float>(p, y, opt, compute_kl, cuda);
  }
  CheckValues<double>(p, "p", true);
  CheckValues<double>(y, "y", false);
  return TsneGradientT<double>(p, y, opt, compute_kl, cuda);
}

}  // namespace tsne_ops_py
