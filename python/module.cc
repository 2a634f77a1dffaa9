// _tsne_kernels: the tsne_ops kernels for Python without TensorFlow.
//
// Numpy front end (CPU kernels, or device="cuda": copy in, launch, copy out)
// and a raw-device-pointer front end (submodule `cuda`) for CuPy / PyTorch
// tensors. Arrays are float32 or float64, rank 2 (a batch of one; outputs
// drop the batch axis too) or rank 3 ([batch, ...]). Bad input raises
// ValueError naming the argument and the value; CUDA failures raise
// RuntimeError with the CUDA error string. The GIL is released while kernels
// run.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <atomic>
#include <cmath>
#include <cstdint>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "cc/kernels/affinities.h"
#include "cc/kernels/common.h"
#include "cc/kernels/distances.h"
#include "cc/kernels/tsne_gradient.h"

#ifdef TSNE_OPS_WITH_CUDA
#include <cuda_runtime_api.h>
#endif

namespace py = pybind11;
namespace kn = tsne_ops::kernels;

void BindSparse(py::module_& m);  // python/sparse_bindings.cc
void BindBarnesHut(py::module_& m);  // python/bh_bindings.cc
void BindFft(py::module_& m);     // python/fft_bindings.cc
void BindOptimizer(py::module_& m);  // python/optimizer_bindings.cc

namespace {

std::atomic<int> g_num_threads{0};  // 0: hardware concurrency

kn::ParallelFor CpuFor() { return kn::ThreadFor(g_num_threads.load()); }

// ------------------------------------------------------------ helpers -----

[[noreturn]] void Fail(const std::string& msg) { throw py::value_error(msg); }

std::string ShapeString(const py::array& a) {
  std::ostringstream s;
  s << "(";
  for (py::ssize_t k = 0; k < a.ndim(); ++k) s << (k ? ", " : "") << a.shape(k) << (a.ndim() == 1 ? "," : "");
  s << ")";
  return s.str();
}

std::string DtypeName(const py::array& a) { return py::str(a.dtype()).cast<std::string>(); }

enum class Device { kCpu, kCuda };

Device ParseDevice(const std::string& device) {
  if (device == "cpu") return Device::kCpu;
  if (device == "cuda" || device == "gpu" || device == "cuda:0") return Device::kCuda;
  Fail("device must be 'cpu' or 'cuda', got '" + device + "'");
}

void CheckScalarFinite(double v, const char* name) {
  if (!std::isfinite(v)) {
    std::ostringstream s;
    s << name << " must be finite, got " << v;
    Fail(s.str());
  }
}

// An input array: dtype checked, rank 2 or 3, made C-contiguous.
struct Input {
  py::array arr;  // C-contiguous, original dtype
  bool batched;   // rank 3
  int64_t batch, rows, cols;
  std::vector<int64_t> shape;
};

Input TakeArray(const py::handle& obj, const char* name, const py::dtype* want_dtype) {
  if (!py::isinstance<py::array>(obj)) {
    Fail(std::string(name) + " must be a numpy array of float32 or float64, got " +
         py::str(py::type::of(obj)).cast<std::string>());
  }
  py::array a = py::reinterpret_borrow<py::array>(obj);
  const bool is_f32 = a.dtype().is(py::dtype::of<float>());
  const bool is_f64 = a.dtype().is(py::dtype::of<double>());
  if (!is_f32 && !is_f64) {
    Fail(std::string(name) + " must be float32 or float64, got dtype " + DtypeName(a));
  }
  if (want_dtype != nullptr && !a.dtype().is(*want_dtype)) {
    Fail(std::string(name) + " has dtype " + DtypeName(a) + " but must match the first input's " +
         py::str(*want_dtype).cast<std::string>());
  }
  if (a.ndim() != 2 && a.ndim() != 3) {
    Fail(std::string(name) + " must have rank 2 ([n, k]) or 3 ([batch, n, k]), got rank " +
         std::to_string(a.ndim()) + " with shape " + ShapeString(a));
  }
  Input in;
  if (is_f32) {
    in.arr = py::array_t<float, py::array::c_style>::ensure(a);
  } else {
    in.arr = py::array_t<double, py::array::c_style>::ensure(a);
  }
  in.batched = a.ndim() == 3;
  in.batch = in.batched ? a.shape(0) : 1;
  in.rows = a.shape(a.ndim() - 2);
  in.cols = a.shape(a.ndim() - 1);
  for (py::ssize_t k = 0; k < a.ndim(); ++k) in.shape.push_back(a.shape(k));
  return in;
}

template <typename T>
const T* Data(const Input& in) { return static_cast<const T*>(in.arr.data()); }

template <typename T>
py::array_t<T> NewArray(bool batched, int64_t batch, std::vector<int64_t> tail) {
  std::vector<py::ssize_t> shape;
  if (batched) shape.push_back(batch);
  for (int64_t t : tail) shape.push_back(t);
  return py::array_t<T>(shape);
}

template <typename T>
void CheckFinite(const Input& in, const char* name, bool non_negative) {
  const kn::ParallelFor pf = CpuFor();
  std::string msg;
  {
    py::gil_scoped_release release;
    msg = non_negative ? kn::CheckNonNegativeFinite<T>(Data<T>(in), in.shape, name, &pf)
                       : kn::CheckAllFinite<T>(Data<T>(in), in.shape, name, &pf);
  }
  if (!msg.empty()) Fail(msg);
}

void CheckSameBatch(const Input& a, const char* an, const Input& b, const char* bn) {
  if (a.batched != b.batched || a.batch != b.batch) {
    Fail(std::string(bn) + " must have the same rank and batch size as " + an + ": " + an +
         " has shape " + ShapeString(a.arr) + ", " + bn + " has shape " + ShapeString(b.arr));
  }
}

void CheckSquare(const Input& a, const char* name) {
  if (a.rows != a.cols) {
    Fail(std::string(name) + " must be square in its last two dimensions, got shape " + ShapeString(a.arr));
  }
}

void CheckAtLeastTwo(int64_t n, const char* name, const Input& a) {
  if (n < 2) {
    Fail(std::string(name) + " must have at least 2 points (N >= 2), got N = " + std::to_string(n) +
         " (shape " + ShapeString(a.arr) + ")");
  }
}

void CheckPerplexity(double perplexity, int64_t n) {
  if (!(perplexity > 0.0) || !(perplexity < static_cast<double>(n - 1)) || !std::isfinite(perplexity)) {
    std::ostringstream s;
    s << "perplexity must be in (0, N - 1) = (0, " << (n - 1) << ") for N = " << n << ", got " << perplexity;
    Fail(s.str());
  }
}

void CheckSearch(double tolerance, int max_iter) {
  if (!(tolerance > 0.0) || !std::isfinite(tolerance)) {
    std::ostringstream s;
    s << "tolerance must be positive and finite, got " << tolerance;
    Fail(s.str());
  }
  if (max_iter < 1) Fail("max_iter must be >= 1, got " + std::to_string(max_iter));
}

void CheckTsneOptions(double exaggeration, double dof) {
  CheckScalarFinite(exaggeration, "exaggeration");
  CheckScalarFinite(dof, "dof");
  if (!(exaggeration > 0)) {
    std::ostringstream s;
    s << "exaggeration must be > 0, got " << exaggeration;
    Fail(s.str());
  }
  if (!(dof > 0)) {
    std::ostringstream s;
    s << "dof must be > 0, got " << dof;
    Fail(s.str());
  }
}

bool IsF32(const Input& a) { return a.arr.dtype().is(py::dtype::of<float>()); }

// --------------------------------------------------------------- CUDA -----

#ifdef TSNE_OPS_WITH_CUDA
void CudaCheck(cudaError_t err, const char* what) {
  if (err != cudaSuccess) {
    throw std::runtime_error(std::string("CUDA error in ") + what + ": " + cudaGetErrorName(err) +
                             ": " + cudaGetErrorString(err));
  }
}

// Device memory for the numpy front end (synchronous: allocation, copies and
// the final synchronisation all happen inside one call).
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(size_t bytes) : bytes_(bytes) {
    if (bytes > 0) CudaCheck(cudaMalloc(&ptr_, bytes), "cudaMalloc");
  }
  DeviceBuffer(DeviceBuffer&& o) noexcept : ptr_(o.ptr_), bytes_(o.bytes_) { o.ptr_ = nullptr; }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(DeviceBuffer&&) = delete;
  ~DeviceBuffer() {
    if (ptr_ != nullptr) cudaFree(ptr_);
  }
  template <typename T>
  T* as() const { return static_cast<T*>(ptr_); }
  void* get() const { return ptr_; }
  void Upload(const void* host, size_t bytes) {
    CudaCheck(cudaMemcpy(ptr_, host, bytes, cudaMemcpyHostToDevice), "cudaMemcpy (host to device)");
  }
  void Download(void* host, size_t bytes) const {
    CudaCheck(cudaMemcpy(host, ptr_, bytes, cudaMemcpyDeviceToHost), "cudaMemcpy (device to host)");
  }

 private:
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
};

template <typename T>
DeviceBuffer ToDevice(const Input& in) {
  const size_t bytes = static_cast<size_t>(in.arr.size()) * sizeof(T);
  DeviceBuffer buf(bytes);
  if (bytes > 0) buf.Upload(in.arr.data(), bytes);
  return buf;
}

void Finish(cudaError_t launch_err, const char* what) {
  CudaCheck(launch_err, what);
  CudaCheck(cudaStreamSynchronize(nullptr), what);
  CudaCheck(cudaGetLastError(), what);
}
#endif

[[noreturn]] void NoCuda() {
  throw std::runtime_error(
      "device='cuda' requested but _tsne_kernels was built without CUDA (no nvcc at build time, "
      "or -DTSNE_OPS_WITH_CUDA=OFF)");
}

int CudaDeviceCount() {
#ifdef TSNE_OPS_WITH_CUDA
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();  // clear; "no device" / "no driver" is not an error here
    return 0;
  }
  return count;
#else
  return 0;
#endif
}

// ------------------------------------------------------ numpy front end ---

template <typename T>
py::array PairwiseSquaredDistanceT(const Input& x, const Input* y, Device device) {
  const int64_t batch = x.batch, n = x.rows, dim = x.cols, m = y ? y->rows : n;
  py::array_t<T> out = NewArray<T>(x.batched, batch, {n, m});
  T* o = out.mutable_data();
  if (device == Device::kCpu) {
    const kn::ParallelFor pf = CpuFor();
    {
      py::gil_scoped_release release;  // the kernel holds no Python state
      kn::PairwiseSquaredDistanceCpu<T>(Data<T>(x), y ? Data<T>(*y) : nullptr, batch, n, m, dim, o, pf);
    }
    return out;
  }
#ifdef TSNE_OPS_WITH_CUDA
  {
    py::gil_scoped_release release;
    DeviceBuffer dx = ToDevice<T>(x);
    DeviceBuffer dy(y ? static_cast<size_t>(batch * m * dim) * sizeof(T) : 0);
    if (y) dy.Upload(y->arr.data(), static_cast<size_t>(batch * m * dim) * sizeof(T));
    DeviceBuffer dout(static_cast<size_t>(batch * n * m) * sizeof(T));
    Finish(kn::LaunchPairwiseSquaredDistance<T>(nullptr, dx.as<T>(), y ? dy.as<T>() : nullptr, batch,
                                                n, m, dim, dout.as<T>()),
           "pairwise_squared_distance");
    dout.Download(o, static_cast<size_t>(batch * n * m) * sizeof(T));
  }
  return out;
#else
  NoCuda();
#endif
}

py::array PairwiseSquaredDistance(py::object x_obj, py::object y_obj, const std::string& device) {
  const Device dev = ParseDevice(device);
  Input x = TakeArray(x_obj, "x", nullptr);
  if (x.rows < 1) Fail("x must have at least one point, got shape " + ShapeString(x.arr));
  if (x.cols < 1) Fail("x must have at least one feature, got shape " + ShapeString(x.arr));
  Input y;
  const bool has_y = !y_obj.is_none();
  if (has_y) {
    py::dtype xd = x.arr.dtype();
    y = TakeArray(y_obj, "y", &xd);
    CheckSameBatch(x, "x", y, "y");
    if (y.rows < 1) Fail("y must have at least one point, got shape " + ShapeString(y.arr));
    if (y.cols != x.cols) {
      Fail("y must have as many features as x: x has shape " + ShapeString(x.arr) + ", y has shape " +
           ShapeString(y.arr));
    }
  }
  if (IsF32(x)) {
    CheckFinite<float>(x, "x", false);
    if (has_y) CheckFinite<float>(y, "y", false);
    return PairwiseSquaredDistanceT<float>(x, has_y ? &y : nullptr, dev);
  }
  CheckFinite<double>(x, "x", false);
  if (has_y) CheckFinite<double>(y, "y", false);
  return PairwiseSquaredDistanceT<double>(x, has_y ? &y : nullptr, dev);
}

template <typename T>
py::tuple PairwiseSquaredDistanceGradT(const Input& g, const Input& x, const Input* y, Device device) {
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
  if (device == Device::kCpu) {
    const kn::ParallelFor pf = CpuFor();
    {
      py::gil_scoped_release release;  // the kernel holds no Python state
      kn::PairwiseSquaredDistanceGradCpu<T>(Data<T>(g), Data<T>(x), y ? Data<T>(*y) : nullptr, batch, n,
                                            m, dim, gx_ptr, gy_ptr, pf);
    }
    return py::make_tuple(gx, gy_obj);
  }
#ifdef TSNE_OPS_WITH_CUDA
  {
    py::gil_scoped_release release;
    DeviceBuffer dg = ToDevice<T>(g), dx = ToDevice<T>(x);
    DeviceBuffer dy(y ? static_cast<size_t>(batch * m * dim) * sizeof(T) : 0);
    if (y) dy.Upload(y->arr.data(), static_cast<size_t>(batch * m * dim) * sizeof(T));
    DeviceBuffer dgx(static_cast<size_t>(batch * n * dim) * sizeof(T));
    DeviceBuffer dgy(y ? static_cast<size_t>(batch * m * dim) * sizeof(T) : 0);
    DeviceBuffer ws(kn::PairwiseSquaredDistanceGradWorkspaceBytes<T>(batch, n, m, dim));
    Finish(kn::LaunchPairwiseSquaredDistanceGrad<T>(nullptr, dg.as<T>(), dx.as<T>(),
                                                    y ? dy.as<T>() : nullptr, batch, n, m, dim,
                                                    dgx.as<T>(), y ? dgy.as<T>() : nullptr, ws.get()),
           "pairwise_squared_distance_grad");
    dgx.Download(gx_ptr, static_cast<size_t>(batch * n * dim) * sizeof(T));
    if (y) dgy.Download(gy_ptr, static_cast<size_t>(batch * m * dim) * sizeof(T));
  }
  return py::make_tuple(gx, gy_obj);
#else
  NoCuda();
#endif
}

py::tuple PairwiseSquaredDistanceGrad(py::object g_obj, py::object x_obj, py::object y_obj,
                                      const std::string& device) {
  const Device dev = ParseDevice(device);
  Input x = TakeArray(x_obj, "x", nullptr);
  py::dtype xd = x.arr.dtype();
  Input g = TakeArray(g_obj, "grad", &xd);
  if (x.rows < 1 || x.cols < 1) Fail("x must have at least one point and one feature, got shape " + ShapeString(x.arr));
  CheckSameBatch(x, "x", g, "grad");
  Input y;
  const bool has_y = !y_obj.is_none();
  int64_t m = x.rows;
  if (has_y) {
    y = TakeArray(y_obj, "y", &xd);
    CheckSameBatch(x, "x", y, "y");
    if (y.rows < 1 || y.cols != x.cols) {
      Fail("y must have at least one point and as many features as x: x has shape " +
           ShapeString(x.arr) + ", y has shape " + ShapeString(y.arr));
    }
    m = y.rows;
  }
  if (g.rows != x.rows || g.cols != m) {
    Fail("grad must have shape [..., " + std::to_string(x.rows) + ", " + std::to_string(m) +
         "] (the distance matrix's), got " + ShapeString(g.arr));
  }
  if (IsF32(x)) {
    CheckFinite<float>(g, "grad", false);
    CheckFinite<float>(x, "x", false);
    if (has_y) CheckFinite<float>(y, "y", false);
    return PairwiseSquaredDistanceGradT<float>(g, x, has_y ? &y : nullptr, dev);
  }
  CheckFinite<double>(g, "grad", false);
  CheckFinite<double>(x, "x", false);
  if (has_y) CheckFinite<double>(y, "y", false);
  return PairwiseSquaredDistanceGradT<double>(g, x, has_y ? &y : nullptr, dev);
}

template <typename T>
py::tuple PerplexityAffinitiesT(const Input& d, double perplexity, double tolerance, int max_iter,
                                Device device) {
  const int64_t batch = d.batch, n = d.rows;
  py::array_t<T> pc = NewArray<T>(d.batched, batch, {n, n});
  py::array_t<T> beta = NewArray<T>(d.batched, batch, {n});
  T* pc_ptr = pc.mutable_data();
  T* beta_ptr = beta.mutable_data();
  int64_t unconverged = 0;
  if (device == Device::kCpu) {
    const kn::ParallelFor pf = CpuFor();
    {
      py::gil_scoped_release release;  // the kernel holds no Python state
      unconverged = kn::PerplexityAffinitiesCpu<T>(Data<T>(d), batch, n, perplexity, tolerance, max_iter,
                                                   pc_ptr, beta_ptr, pf);
    }
    return py::make_tuple(pc, beta, unconverged);
  }
#ifdef TSNE_OPS_WITH_CUDA
  {
    py::gil_scoped_release release;
    DeviceBuffer dd = ToDevice<T>(d);
    DeviceBuffer dpc(static_cast<size_t>(batch * n * n) * sizeof(T));
    DeviceBuffer dbeta(static_cast<size_t>(batch * n) * sizeof(T));
    DeviceBuffer dcount(sizeof(int64_t));
    DeviceBuffer ws(kn::PerplexityAffinitiesWorkspaceBytes<T>(batch, n));
    Finish(kn::LaunchPerplexityAffinities<T>(nullptr, dd.as<T>(), batch, n, perplexity, tolerance,
                                             max_iter, dpc.as<T>(), dbeta.as<T>(),
                                             dcount.as<int64_t>(), ws.get()),
           "perplexity_affinities");
    dpc.Download(pc_ptr, static_cast<size_t>(batch * n * n) * sizeof(T));
    dbeta.Download(beta_ptr, static_cast<size_t>(batch * n) * sizeof(T));
    dcount.Download(&unconverged, sizeof(int64_t));
  }
  return py::make_tuple(pc, beta, unconverged);
#else
  NoCuda();
#endif
}

Input TakeSquareAffinityInput(py::object obj, const char* name) {
  Input d = TakeArray(obj, name, nullptr);
  CheckSquare(d, name);
  CheckAtLeastTwo(d.rows, name, d);
  if (IsF32(d)) CheckFinite<float>(d, name, true);
  else CheckFinite<double>(d, name, true);
  return d;
}

py::tuple PerplexityAffinities(py::object d_obj, double perplexity, double tolerance, int max_iter,
                               const std::string& device) {
  const Device dev = ParseDevice(device);
  Input d = TakeArray(d_obj, "sq_dist", nullptr);
  CheckSquare(d, "sq_dist");
  CheckAtLeastTwo(d.rows, "sq_dist", d);
  CheckPerplexity(perplexity, d.rows);
  CheckSearch(tolerance, max_iter);
  if (IsF32(d)) {
    CheckFinite<float>(d, "sq_dist", true);
    return PerplexityAffinitiesT<float>(d, perplexity, tolerance, max_iter, dev);
  }
  CheckFinite<double>(d, "sq_dist", true);
  return PerplexityAffinitiesT<double>(d, perplexity, tolerance, max_iter, dev);
}

template <typename T>
py::array SymmetrizeT(const Input& pc, Device device) {
  const int64_t batch = pc.batch, n = pc.rows;
  py::array_t<T> p = NewArray<T>(pc.batched, batch, {n, n});
  T* p_ptr = p.mutable_data();
  if (device == Device::kCpu) {
    const kn::ParallelFor pf = CpuFor();
    {
      py::gil_scoped_release release;  // the kernel holds no Python state
      kn::SymmetrizeAffinitiesCpu<T>(Data<T>(pc), batch, n, p_ptr, pf);
    }
    return p;
  }
#ifdef TSNE_OPS_WITH_CUDA
  {
    py::gil_scoped_release release;
    DeviceBuffer dpc = ToDevice<T>(pc);
    DeviceBuffer dp(static_cast<size_t>(batch * n * n) * sizeof(T));
    DeviceBuffer ws(kn::SymmetrizeAffinitiesWorkspaceBytes<T>(batch, n));
    Finish(kn::LaunchSymmetrizeAffinities<T>(nullptr, dpc.as<T>(), batch, n, dp.as<T>(), ws.get()),
           "symmetrize_affinities");
    dp.Download(p_ptr, static_cast<size_t>(batch * n * n) * sizeof(T));
  }
  return p;
#else
  NoCuda();
#endif
}

py::array SymmetrizeAffinities(py::object pc_obj, const std::string& device) {
  const Device dev = ParseDevice(device);
  Input pc = TakeSquareAffinityInput(pc_obj, "p_conditional");
  return IsF32(pc) ? SymmetrizeT<float>(pc, dev) : SymmetrizeT<double>(pc, dev);
}

template <typename T>
py::array JointT(const Input& d, double perplexity, double tolerance, int max_iter, Device device) {
  const int64_t batch = d.batch, n = d.rows;
  py::array_t<T> p = NewArray<T>(d.batched, batch, {n, n});
  T* p_ptr = p.mutable_data();
  if (device == Device::kCpu) {
    const kn::ParallelFor pf = CpuFor();
    {
      py::gil_scoped_release release;  // the kernel holds no Python state
      std::vector<T> pc(static_cast<size_t>(batch * n * n)), beta(static_cast<size_t>(batch * n));
      kn::PerplexityAffinitiesCpu<T>(Data<T>(d), batch, n, perplexity, tolerance, max_iter, pc.data(),
                                     beta.data(), pf);
      kn::SymmetrizeAffinitiesCpu<T>(pc.data(), batch, n, p_ptr, pf);
    }
    return p;
  }
#ifdef TSNE_OPS_WITH_CUDA
  {
    py::gil_scoped_release release;
    DeviceBuffer dd = ToDevice<T>(d);
    DeviceBuffer dpc(static_cast<size_t>(batch * n * n) * sizeof(T));
    DeviceBuffer dbeta(static_cast<size_t>(batch * n) * sizeof(T));
    DeviceBuffer ws1(kn::PerplexityAffinitiesWorkspaceBytes<T>(batch, n));
    CudaCheck(kn::LaunchPerplexityAffinities<T>(nullptr, dd.as<T>(), batch, n, perplexity, tolerance,
                                                max_iter, dpc.as<T>(), dbeta.as<T>(), nullptr, ws1.get()),
              "joint_probabilities (perplexity_affinities)");
    DeviceBuffer ws2(kn::SymmetrizeAffinitiesWorkspaceBytes<T>(batch, n));
    // dd is free to reuse as the output (same size).
    Finish(kn::LaunchSymmetrizeAffinities<T>(nullptr, dpc.as<T>(), batch, n, dd.as<T>(), ws2.get()),
           "joint_probabilities (symmetrize_affinities)");
    dd.Download(p_ptr, static_cast<size_t>(batch * n * n) * sizeof(T));
  }
  return p;
#else
  NoCuda();
#endif
}

py::array JointProbabilities(py::object d_obj, double perplexity, double tolerance, int max_iter,
                             const std::string& device) {
  const Device dev = ParseDevice(device);
  Input d = TakeArray(d_obj, "sq_dist", nullptr);
  CheckSquare(d, "sq_dist");
  CheckAtLeastTwo(d.rows, "sq_dist", d);
  CheckPerplexity(perplexity, d.rows);
  CheckSearch(tolerance, max_iter);
  if (IsF32(d)) {
    CheckFinite<float>(d, "sq_dist", true);
    return JointT<float>(d, perplexity, tolerance, max_iter, dev);
  }
  CheckFinite<double>(d, "sq_dist", true);
  return JointT<double>(d, perplexity, tolerance, max_iter, dev);
}

template <typename T>
py::tuple TsneGradientT(const Input& p, const Input& y, const kn::TsneGradientOptions& opt,
                        bool compute_kl, Device device) {
  const int64_t batch = y.batch, n = y.rows, d = y.cols;
  py::array_t<T> grad = NewArray<T>(y.batched, batch, {n, d});
  py::array_t<T> kl = NewArray<T>(y.batched, batch, {});
  T* g_ptr = grad.mutable_data();
  T* kl_ptr = compute_kl ? kl.mutable_data() : nullptr;
  if (device == Device::kCpu) {
    const kn::ParallelFor pf = CpuFor();
    py::gil_scoped_release release;
    kn::TsneGradientCpu<T>(Data<T>(p), Data<T>(y), batch, n, d, opt, g_ptr, kl_ptr, pf);
  } else {
#ifdef TSNE_OPS_WITH_CUDA
    py::gil_scoped_release release;
    DeviceBuffer dp = ToDevice<T>(p), dy = ToDevice<T>(y);
    DeviceBuffer dg(static_cast<size_t>(batch * n * d) * sizeof(T));
    DeviceBuffer dkl(compute_kl ? static_cast<size_t>(batch) * sizeof(T) : 0);
    DeviceBuffer ws(kn::TsneGradientWorkspaceBytes<T>(batch, n, d));
    Finish(kn::LaunchTsneGradient<T>(nullptr, dp.as<T>(), dy.as<T>(), batch, n, d, opt, dg.as<T>(),
                                     compute_kl ? dkl.as<T>() : nullptr, ws.get()),
           "tsne_gradient");
    dg.Download(g_ptr, static_cast<size_t>(batch * n * d) * sizeof(T));
    if (compute_kl) dkl.Download(kl_ptr, static_cast<size_t>(batch) * sizeof(T));
#else
    NoCuda();
#endif
  }
  py::object kl_out = py::none();
  if (compute_kl) kl_out = kl;
  return py::make_tuple(grad, kl_out);
}

py::tuple TsneGradient(py::object p_obj, py::object y_obj, double exaggeration, double dof,
                       bool compute_kl, bool scale_repulsion_by_p_sum, const std::string& device) {
  const Device dev = ParseDevice(device);
  Input y = TakeArray(y_obj, "y", nullptr);
  py::dtype yd = y.arr.dtype();
  Input p = TakeArray(p_obj, "p", &yd);
  CheckSameBatch(y, "y", p, "p");
  CheckSquare(p, "p");
  CheckAtLeastTwo(y.rows, "y", y);
  if (y.cols < 1) Fail("y must have at least one embedding dimension, got shape " + ShapeString(y.arr));
  if (p.rows != y.rows) {
    Fail("p must be [..., N, N] with N = y's number of points: p has shape " + ShapeString(p.arr) +
         ", y has shape " + ShapeString(y.arr));
  }
  CheckTsneOptions(exaggeration, dof);
  kn::TsneGradientOptions opt;
  opt.exaggeration = exaggeration;
  opt.dof = dof;
  opt.scale_repulsion_by_p_sum = scale_repulsion_by_p_sum;
  if (IsF32(y)) {
    CheckFinite<float>(p, "p", true);
    CheckFinite<float>(y, "y", false);
    return TsneGradientT<float>(p, y, opt, compute_kl, dev);
  }
  CheckFinite<double>(p, "p", true);
  CheckFinite<double>(y, "y", false);
  return TsneGradientT<double>(p, y, opt, compute_kl, dev);
}

// --------------------------------------------- raw device pointer API -----
// For CuPy / PyTorch: pointers are Python ints (0 or None = absent), the
// stream an int (cudaStream_t; 0 = legacy default stream). Launches are
// asynchronous on that stream; nothing is synchronised. If `workspace` is 0
// and the kernel needs scratch, it is allocated and freed stream-ordered
// (cudaMallocAsync / cudaFreeAsync). Input values are not checked here (they
// live on the device): callers validate, or use the numpy front end.

#ifdef TSNE_OPS_WITH_CUDA
uintptr_t Ptr(const py::object& o, const char* name, bool required) {
  if (o.is_none()) {
    if (required) Fail(std::string(name) + " must be a device pointer (int), got None");
    return 0;
  }
  const uintptr_t v = o.cast<uintptr_t>();
  if (required && v == 0) Fail(std::string(name) + " must be a non-null device pointer, got 0");
  return v;
}

template <typename T>
T* P(uintptr_t v) { return reinterpret_cast<T*>(v); }

cudaStream_t Stream(uintptr_t s) { return reinterpret_cast<cudaStream_t>(s); }

bool RawIsF32(const std::string& dtype) {
  if (dtype == "float32" || dtype == "float") return true;
  if (dtype == "float64" || dtype == "double") return false;
  Fail("dtype must be 'float32' or 'float64', got '" + dtype + "'");
}

void CheckPositive(int64_t v, const char* name) {
  if (v < 1) Fail(std::string(name) + " must be >= 1, got " + std::to_string(v));
}

// Runs launch(workspace) with the caller's workspace or a stream-ordered
// temporary one.
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

void RawDistance(py::object x, py::object y, py::object out, int64_t batch, int64_t n, int64_t m,
                 int64_t dim, const std::string& dtype, uintptr_t stream) {
  const bool f32 = RawIsF32(dtype);
  CheckPositive(batch, "batch"); CheckPositive(n, "n"); CheckPositive(dim, "dim");
  const uintptr_t px = Ptr(x, "x", true), py_ = Ptr(y, "y", false), po = Ptr(out, "out", true);
  if (py_ != 0) CheckPositive(m, "m");
  py::gil_scoped_release release;
  const cudaError_t err =
      f32 ? kn::LaunchPairwiseSquaredDistance<float>(Stream(stream), P<float>(px), P<float>(py_), batch, n, m, dim, P<float>(po))
          : kn::LaunchPairwiseSquaredDistance<double>(Stream(stream), P<double>(px), P<double>(py_), batch, n, m, dim, P<double>(po));
  CudaCheck(err, "cuda.pairwise_squared_distance");
}

size_t RawDistanceGradWs(int64_t batch, int64_t n, int64_t m, int64_t dim, const std::string& dtype) {
  return RawIsF32(dtype) ? kn::PairwiseSquaredDistanceGradWorkspaceBytes<float>(batch, n, m, dim)
                         : kn::PairwiseSquaredDistanceGradWorkspaceBytes<double>(batch, n, m, dim);
}

void RawDistanceGrad(py::object grad, py::object x, py::object y, py::object grad_x, py::object grad_y,
                     int64_t batch, int64_t n, int64_t m, int64_t dim, const std::string& dtype,
                     uintptr_t workspace, uintptr_t stream) {
  const bool f32 = RawIsF32(dtype);
  CheckPositive(batch, "batch"); CheckPositive(n, "n"); CheckPositive(dim, "dim");
  const uintptr_t pg = Ptr(grad, "grad", true), px = Ptr(x, "x", true), py_ = Ptr(y, "y", false);
  const uintptr_t pgx = Ptr(grad_x, "grad_x", false), pgy = Ptr(grad_y, "grad_y", false);
  if (py_ == 0) m = n;
  CheckPositive(m, "m");
  const size_t bytes = RawDistanceGradWs(batch, n, m, dim, dtype);
  py::gil_scoped_release release;
  WithWorkspace(bytes, workspace, Stream(stream), "cuda.pairwise_squared_distance_grad", [&](void* ws) {
    return f32 ? kn::LaunchPairwiseSquaredDistanceGrad<float>(Stream(stream), P<float>(pg), P<float>(px), P<float>(py_), batch, n, m, dim, P<float>(pgx), P<float>(pgy), ws)
               : kn::LaunchPairwiseSquaredDistanceGrad<double>(Stream(stream), P<double>(pg), P<double>(px), P<double>(py_), batch, n, m, dim, P<double>(pgx), P<double>(pgy), ws);
  });
}

size_t RawPerplexityWs(int64_t batch, int64_t n, const std::string& dtype) {
  return RawIsF32(dtype) ? kn::PerplexityAffinitiesWorkspaceBytes<float>(batch, n)
                         : kn::PerplexityAffinitiesWorkspaceBytes<double>(batch, n);
}

void RawPerplexity(py::object sq_dist, py::object p_conditional, py::object beta, int64_t batch,
                   int64_t n, double perplexity, double tolerance, int max_iter,
                   py::object unconverged, const std::string& dtype, uintptr_t workspace,
                   uintptr_t stream) {
  const bool f32 = RawIsF32(dtype);
  CheckPositive(batch, "batch");
  if (n < 2) Fail("n must be >= 2, got " + std::to_string(n));
  CheckPerplexity(perplexity, n);
  CheckSearch(tolerance, max_iter);
  const uintptr_t pd = Ptr(sq_dist, "sq_dist", true), ppc = Ptr(p_conditional, "p_conditional", true);
  const uintptr_t pb = Ptr(beta, "beta", true), pu = Ptr(unconverged, "unconverged", false);
  const size_t bytes = RawPerplexityWs(batch, n, dtype);
  py::gil_scoped_release release;
  WithWorkspace(bytes, workspace, Stream(stream), "cuda.perplexity_affinities", [&](void* ws) {
    return f32 ? kn::LaunchPerplexityAffinities<float>(Stream(stream), P<float>(pd), batch, n, perplexity, tolerance, max_iter, P<float>(ppc), P<float>(pb), P<int64_t>(pu), ws)
               : kn::LaunchPerplexityAffinities<double>(Stream(stream), P<double>(pd), batch, n, perplexity, tolerance, max_iter, P<double>(ppc), P<double>(pb), P<int64_t>(pu), ws);
  });
}

size_t RawSymWs(int64_t batch, int64_t n, const std::string& dtype) {
  return RawIsF32(dtype) ? kn::SymmetrizeAffinitiesWorkspaceBytes<float>(batch, n)
                         : kn::SymmetrizeAffinitiesWorkspaceBytes<double>(batch, n);
}

void RawSym(py::object p_conditional, py::object p, int64_t batch, int64_t n, const std::string& dtype,
            uintptr_t workspace, uintptr_t stream) {
  const bool f32 = RawIsF32(dtype);
  CheckPositive(batch, "batch");
  if (n < 2) Fail("n must be >= 2, got " + std::to_string(n));
  const uintptr_t ppc = Ptr(p_conditional, "p_conditional", true), pp = Ptr(p, "p", true);
  const size_t bytes = RawSymWs(batch, n, dtype);
  py::gil_scoped_release release;
  WithWorkspace(bytes, workspace, Stream(stream), "cuda.symmetrize_affinities", [&](void* ws) {
    return f32 ? kn::LaunchSymmetrizeAffinities<float>(Stream(stream), P<float>(ppc), batch, n, P<float>(pp), ws)
               : kn::LaunchSymmetrizeAffinities<double>(Stream(stream), P<double>(ppc), batch, n, P<double>(pp), ws);
  });
}

size_t RawTsneWs(int64_t batch, int64_t n, int64_t d, const std::string& dtype) {
  return RawIsF32(dtype) ? kn::TsneGradientWorkspaceBytes<float>(batch, n, d)
                         : kn::TsneGradientWorkspaceBytes<double>(batch, n, d);
}

void RawTsne(py::object p, py::object y, py::object grad, py::object kl, int64_t batch, int64_t n,
             int64_t d, const std::string& dtype, double exaggeration, double dof,
             bool scale_repulsion_by_p_sum, uintptr_t workspace, uintptr_t stream) {
  const bool f32 = RawIsF32(dtype);
  CheckPositive(batch, "batch");
  if (n < 2) Fail("n must be >= 2, got " + std::to_string(n));
  CheckPositive(d, "d");
  CheckTsneOptions(exaggeration, dof);
  const uintptr_t pp = Ptr(p, "p", true), py_ = Ptr(y, "y", true);
  const uintptr_t pg = Ptr(grad, "grad", false), pk = Ptr(kl, "kl", false);
  kn::TsneGradientOptions opt;
  opt.exaggeration = exaggeration;
  opt.dof = dof;
  opt.scale_repulsion_by_p_sum = scale_repulsion_by_p_sum;
  const size_t bytes = RawTsneWs(batch, n, d, dtype);
  py::gil_scoped_release release;
  WithWorkspace(bytes, workspace, Stream(stream), "cuda.tsne_gradient", [&](void* ws) {
    return f32 ? kn::LaunchTsneGradient<float>(Stream(stream), P<float>(pp), P<float>(py_), batch, n, d, opt, P<float>(pg), P<float>(pk), ws)
               : kn::LaunchTsneGradient<double>(Stream(stream), P<double>(pp), P<double>(py_), batch, n, d, opt, P<double>(pg), P<double>(pk), ws);
  });
}
#endif  // TSNE_OPS_WITH_CUDA

}  // namespace

void BindNearestNeighbors(py::module_& m, kn::ParallelFor (*cpu_for)());  // knn_bindings.cc

PYBIND11_MODULE(_tsne_kernels, m) {
  m.doc() =
      "tsne_ops kernels without TensorFlow: numpy arrays on the CPU (or device='cuda': copy, "
      "run, copy back) and, in submodule `cuda`, raw device pointers for CuPy / PyTorch.";

  m.def("has_cuda", [] { return CudaDeviceCount() > 0; },
        "True when the module was built with CUDA and a CUDA device is usable.");
  m.def("built_with_cuda", [] {
#ifdef TSNE_OPS_WITH_CUDA
    return true;
#else
    return false;
#endif
  }, "True when the CUDA kernels were compiled in.");
  m.def("cuda_device_count", &CudaDeviceCount, "Number of visible CUDA devices (0 without CUDA).");
  m.def("cpu_isa", [] { return std::string(kn::CpuIsaName()); },
        "Which CPU kernel build runs: 'avx2' or 'baseline'.");
  m.def("set_num_threads", [](int n) {
    if (n < 0) Fail("num_threads must be >= 0 (0: all cores), got " + std::to_string(n));
    g_num_threads = n;
  }, py::arg("num_threads"), "Threads for the CPU kernels (0: hardware concurrency).");
  m.def("get_num_threads", [] { return g_num_threads.load(); });

  m.def("pairwise_squared_distance", &PairwiseSquaredDistance, py::arg("x"), py::arg("y") = py::none(),
        py::arg("device") = "cpu",
        "out[b, i, j] = |x[b, i] - y[b, j]|^2; y=None: self-distances (exactly symmetric, zero "
        "diagonal).");
  m.def("pairwise_squared_distance_grad", &PairwiseSquaredDistanceGrad, py::arg("grad"), py::arg("x"),
        py::arg("y") = py::none(), py::arg("device") = "cpu",
        "Backward of pairwise_squared_distance: returns (grad_x, grad_y or None).");
  m.def("perplexity_affinities", &PerplexityAffinities, py::arg("sq_dist"), py::arg("perplexity"),
        py::arg("tolerance") = kn::kAffinityTolerance, py::arg("max_iter") = kn::kAffinityMaxIter,
        py::arg("device") = "cpu",
        "Per-row perplexity calibration: returns (p_conditional, beta, unconverged_row_count).");
  m.def("symmetrize_affinities", &SymmetrizeAffinities, py::arg("p_conditional"), py::arg("device") = "cpu",
        "Joint P = max((Pc + Pc^T) / sum, 2.2e-16) off the diagonal, 0 on it.");
  m.def("joint_probabilities", &JointProbabilities, py::arg("sq_dist"), py::arg("perplexity"),
        py::arg("tolerance") = kn::kAffinityTolerance, py::arg("max_iter") = kn::kAffinityMaxIter,
        py::arg("device") = "cpu", "perplexity_affinities followed by symmetrize_affinities.");
  m.def("tsne_gradient", &TsneGradient, py::arg("p"), py::arg("y"), py::arg("exaggeration") = 1.0,
        py::arg("dof") = 1.0, py::arg("compute_kl") = true, py::arg("scale_repulsion_by_p_sum") = false,
        py::arg("device") = "cpu",
        "Fused t-SNE gradient and KL(P || Q): returns (grad, kl or None).");

  py::module_ cuda = m.def_submodule(
      "cuda",
      "Raw device-pointer API (CuPy: arr.data.ptr, PyTorch: t.data_ptr()). Pointers are ints, 0 or "
      "None for an absent optional one; arrays are C-contiguous; `stream` is a cudaStream_t as int "
      "(torch.cuda.current_stream().cuda_stream, cupy.cuda.get_current_stream().ptr; 0 = legacy "
      "default). Launches are asynchronous; workspace=0 allocates scratch stream-ordered.");
#ifdef TSNE_OPS_WITH_CUDA
  cuda.attr("available") = true;
  cuda.def("pairwise_squared_distance", &RawDistance, py::arg("x"), py::arg("y"), py::arg("out"),
           py::arg("batch"), py::arg("n"), py::arg("m"), py::arg("dim"), py::arg("dtype") = "float32",
           py::arg("stream") = 0);
  cuda.def("pairwise_squared_distance_grad_workspace_bytes", &RawDistanceGradWs, py::arg("batch"),
           py::arg("n"), py::arg("m"), py::arg("dim"), py::arg("dtype") = "float32");
  cuda.def("pairwise_squared_distance_grad", &RawDistanceGrad, py::arg("grad"), py::arg("x"), py::arg("y"),
           py::arg("grad_x"), py::arg("grad_y"), py::arg("batch"), py::arg("n"), py::arg("m"),
           py::arg("dim"), py::arg("dtype") = "float32", py::arg("workspace") = 0, py::arg("stream") = 0);
  cuda.def("perplexity_affinities_workspace_bytes", &RawPerplexityWs, py::arg("batch"), py::arg("n"),
           py::arg("dtype") = "float32");
  cuda.def("perplexity_affinities", &RawPerplexity, py::arg("sq_dist"), py::arg("p_conditional"),
           py::arg("beta"), py::arg("batch"), py::arg("n"), py::arg("perplexity"),
           py::arg("tolerance") = kn::kAffinityTolerance, py::arg("max_iter") = kn::kAffinityMaxIter,
           py::arg("unconverged") = py::none(), py::arg("dtype") = "float32", py::arg("workspace") = 0,
           py::arg("stream") = 0);
  cuda.def("symmetrize_affinities_workspace_bytes", &RawSymWs, py::arg("batch"), py::arg("n"),
           py::arg("dtype") = "float32");
  cuda.def("symmetrize_affinities", &RawSym, py::arg("p_conditional"), py::arg("p"), py::arg("batch"),
           py::arg("n"), py::arg("dtype") = "float32", py::arg("workspace") = 0, py::arg("stream") = 0);
  cuda.def("tsne_gradient_workspace_bytes", &RawTsneWs, py::arg("batch"), py::arg("n"), py::arg("d"),
           py::arg("dtype") = "float32");
  cuda.def("tsne_gradient", &RawTsne, py::arg("p"), py::arg("y"), py::arg("grad"), py::arg("kl"),
           py::arg("batch"), py::arg("n"), py::arg("d"), py::arg("dtype") = "float32",
           py::arg("exaggeration") = 1.0, py::arg("dof") = 1.0,
           py::arg("scale_repulsion_by_p_sum") = false, py::arg("workspace") = 0, py::arg("stream") = 0);
  cuda.def("synchronize", [] {
    py::gil_scoped_release release;
    CudaCheck(cudaDeviceSynchronize(), "cuda.synchronize");
  });
#else
  cuda.attr("available") = false;
#endif
  BindNearestNeighbors(m, &CpuFor);
  BindSparse(m);
  BindBarnesHut(m);
  BindFft(m);
  BindOptimizer(m);
}
