// _tsne_kernels, sparse-P part: the kNN joint probabilities and the t-SNE
// gradient on a sparse P, for numpy (CPU, or device="cuda": copy in, run,
// copy out) and for raw device pointers (submodule `cuda`). Same conventions
// as the dense ops (python/dense_api.h): rank 2 input is a batch of one
// (outputs drop the batch axis too), bad input raises ValueError naming the
// argument and the value, CUDA failures raise RuntimeError, the GIL is
// released while kernels run.
//
// A sparse P is passed as COO: indices [nnz, 3] (b, i, j) int64, or [nnz, 2]
// (i, j) for a batch of one, in canonical row-major order; values [nnz];
// dense_shape (batch, n, n) or (n, n).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "cc/compute/affinities.h"
#include "cc/compute/common.h"
#include "cc/compute/sparse_affinities.h"
#include "cc/compute/sparse_tsne_gradient.h"
#include "python/binding_helpers.h"

#ifdef TSNE_OPS_WITH_CUDA
#include <cuda_runtime_api.h>
#endif

namespace py = pybind11;
namespace kn = tsne_ops::kernels;

namespace {

using namespace tsne_ops_py;  // NOLINT: the shared helpers (binding_helpers.h)

// ------------------------------------------------- knn_joint_probabilities --

template <typename T>
py::tuple KnnJointT(const py::array_t<int64_t, py::array::c_style>& idx, const py::array& d2,
                    bool batched, int64_t batch, int64_t n, int64_t k, double perplexity,
                    double tolerance, int max_iter, bool cuda, const py::module_& m) {
  std::vector<int64_t> out_idx;
  std::vector<T> out_val;
  int64_t unconverged = 0;
  const T* dp = static_cast<const T*>(d2.data());
  if (!cuda) {
    const kn::ParallelFor pf = CpuFor();
    py::gil_scoped_release release;
    kn::SparseAllocator<T> alloc = [&](int64_t nnz, int64_t** ip, T** vp) {
      out_idx.resize(3 * nnz);
      out_val.resize(nnz);
      *ip = out_idx.data();
      *vp = out_val.data();
      return true;
    };
    kn::KnnJointProbabilitiesCpu<T>(idx.data(), dp, batch, n, k, perplexity, tolerance, max_iter,
                                    alloc, &unconverged, pf);
  } else {
#ifdef TSNE_OPS_WITH_CUDA
    py::gil_scoped_release release;
    const size_t e = static_cast<size_t>(batch * n * k);
    Buf di(e * sizeof(int64_t)), dd(e * sizeof(T)), dc(sizeof(int64_t));
    Buf ws(kn::KnnJointWorkspaceBytes<T>(batch, n, k));
    Upload(di.p, idx.data(), e * sizeof(int64_t));
    Upload(dd.p, dp, e * sizeof(T));
    int64_t nnz = 0;
    CudaCheck(kn::LaunchKnnJointPrepare<T>(nullptr, di.as<int64_t>(), dd.as<T>(), batch, n, k,
                                           perplexity, tolerance, max_iter, dc.as<int64_t>(),
                                           ws.p, &nnz),
              "knn_joint_probabilities");
    Download(&unconverged, dc.p, sizeof(int64_t));
    Buf oi(3 * nnz * sizeof(int64_t)), ov(nnz * sizeof(T));
    CudaCheck(kn::LaunchKnnJointWrite<T>(nullptr, batch, n, k, ws.p, nnz, oi.as<int64_t>(),
                                         ov.as<T>()),
              "knn_joint_probabilities");
    CudaCheck(cudaDeviceSynchronize(), "knn_joint_probabilities");
    out_idx.resize(3 * nnz);
    out_val.resize(nnz);
    Download(out_idx.data(), oi.p, 3 * nnz * sizeof(int64_t));
    Download(out_val.data(), ov.p, nnz * sizeof(T));
#endif
  }
  const int64_t nnz = static_cast<int64_t>(out_val.size());
  const int64_t cols = batched ? 3 : 2;
  py::array_t<int64_t> pi({nnz, cols});
  int64_t* pip = pi.mutable_data();
  for (int64_t e = 0; e < nnz; ++e)
    for (int64_t c = 0; c < cols; ++c) pip[e * cols + c] = out_idx[3 * e + (3 - cols) + c];
  py::array_t<T> pv(nnz);
  std::copy(out_val.begin(), out_val.end(), pv.mutable_data());
  py::tuple shape = batched ? py::tuple(py::make_tuple(batch, n, n)) : py::tuple(py::make_tuple(n, n));
  return py::make_tuple(pi, pv, shape, unconverged);
}

py::tuple KnnJoint(py::object idx_obj, py::object d2_obj, double perplexity, double tolerance,
                   int max_iter, const std::string& device, const py::module_& m) {
  const bool cuda = UseCuda(device);
  auto idx = TakeIndices(idx_obj, "indices");
  py::array d2 = TakeFloat(d2_obj, "sq_distances", nullptr);
  CheckMessage(kn::CheckRank2Or3(Dims(idx), "indices", "[n, k]"));
  CheckMessage(kn::CheckKnnShapes(Dims(idx), Dims(d2)));
  const bool batched = idx.ndim() == 3;
  const int64_t batch = batched ? idx.shape(0) : 1;
  const int64_t n = idx.shape(idx.ndim() - 2), k = idx.shape(idx.ndim() - 1);
  CheckMessage(kn::CheckKnnPerplexity(perplexity, k));
  CheckMessage(kn::CheckPerplexitySearch(tolerance, max_iter));
  const kn::ParallelFor pf = CpuFor();
  CheckMessage(kn::CheckKnnIndices(idx.data(), batch, n, k, "indices", &pf));
  if (d2.dtype().is(py::dtype::of<float>())) {
    CheckMessage(kn::CheckNonNegativeFinite<float>(static_cast<const float*>(d2.data()), Dims(d2),
                                                   "sq_distances", &pf));
    return KnnJointT<float>(idx, d2, batched, batch, n, k, perplexity, tolerance, max_iter, cuda,
                            m);
  }
  CheckMessage(kn::CheckNonNegativeFinite<double>(static_cast<const double*>(d2.data()), Dims(d2),
                                                  "sq_distances", &pf));
  return KnnJointT<double>(idx, d2, batched, batch, n, k, perplexity, tolerance, max_iter, cuda, m);
}

// --------------------------------------------------- sparse_tsne_gradient --

// p's COO (rank 2 or 3 form, read as it is) as CSR over [batch, n, n];
// checks canonical order.
void PToCsr(const py::array_t<int64_t, py::array::c_style>& pi, int64_t nnz, bool batched,
            int64_t batch, int64_t n, std::vector<int64_t>* row_ptr, std::vector<int64_t>* cols) {
  row_ptr->resize(batch * n + 1);
  cols->resize(nnz);
  const kn::ParallelFor pf = CpuFor();
  CheckMessage(kn::CooToCsr(pi.data(), batched ? 3 : 2, nnz, batch, n, "p", row_ptr->data(),
                            cols->data(), &pf));
}

template <typename T>
py::tuple SparseGradT(const std::vector<int64_t>& row_ptr, const std::vector<int64_t>& cols,
                      const py::array& pv, const py::array& y, bool batched, int64_t batch,
                      int64_t n, int64_t d, const kn::TsneGradientOptions& opt, bool compute_kl,
                      bool cuda, const py::module_& m, const py::array* rep = nullptr,
                      const py::array* z = nullptr) {
  // rep and z given: the attraction only, with that repulsion (FFT, Barnes-Hut).
  const T* rp = rep ? static_cast<const T*>(rep->data()) : nullptr;
  const T* zp = z ? static_cast<const T*>(z->data()) : nullptr;
  std::vector<py::ssize_t> gshape, kshape;
  if (batched) {
    gshape = {batch, n, d};
    kshape = {batch};
  } else {
    gshape = {n, d};
  }
  py::array_t<T> grad(gshape), kl(kshape);
  T* gp = grad.mutable_data();
  T* kp = compute_kl ? kl.mutable_data() : nullptr;
  const T* pvp = static_cast<const T*>(pv.data());
  const T* yp = static_cast<const T*>(y.data());
  if (!cuda) {
    const kn::ParallelFor pf = CpuFor();
    py::gil_scoped_release release;
    if (rp != nullptr) {
      kn::SparseTsneGradientFromRepulsionCpu<T>(row_ptr.data(), cols.data(), pvp, yp, batch, n,
                                                d, opt, rp, zp, gp, kp, pf);
    } else {
      kn::SparseTsneGradientCpu<T>(row_ptr.data(), cols.data(), pvp, yp, batch, n, d, opt, gp,
                                   kp, pf);
    }
  } else {
#ifdef TSNE_OPS_WITH_CUDA
    py::gil_scoped_release release;
    const size_t nnz = cols.size(), rows = row_ptr.size(), ny = batch * n * d;
    Buf drp(rows * sizeof(int64_t)), dcols(nnz * sizeof(int64_t)), dpv(nnz * sizeof(T));
    Buf dy(ny * sizeof(T)), dg(ny * sizeof(T)), dkl(batch * sizeof(T));
    Buf ws(kn::SparseTsneGradientWorkspaceBytes<T>(batch, n, d));
    Upload(drp.p, row_ptr.data(), rows * sizeof(int64_t));
    Upload(dcols.p, cols.data(), nnz * sizeof(int64_t));
    Upload(dpv.p, pvp, nnz * sizeof(T));
    Upload(dy.p, yp, ny * sizeof(T));
    if (rp != nullptr) {
      Buf drep(ny * sizeof(T)), dz(batch * sizeof(T));
      Upload(drep.p, rp, ny * sizeof(T));
      Upload(dz.p, zp, batch * sizeof(T));
      CudaCheck(kn::LaunchSparseTsneGradientFromRepulsion<T>(
                    nullptr, drp.as<int64_t>(), dcols.as<int64_t>(), dpv.as<T>(), dy.as<T>(),
                    batch, n, d, opt, drep.as<T>(), dz.as<T>(), dg.as<T>(),
                    compute_kl ? dkl.as<T>() : nullptr, ws.p),
                "sparse_tsne_gradient_from_repulsion");
      CudaCheck(cudaDeviceSynchronize(), "sparse_tsne_gradient_from_repulsion");
    } else {
      CudaCheck(kn::LaunchSparseTsneGradient<T>(nullptr, drp.as<int64_t>(), dcols.as<int64_t>(),
                                                dpv.as<T>(), dy.as<T>(), batch, n, d, opt,
                                                dg.as<T>(), compute_kl ? dkl.as<T>() : nullptr,
                                                ws.p),
                "sparse_tsne_gradient");
    }
    CudaCheck(cudaDeviceSynchronize(), "sparse_tsne_gradient");
    Download(gp, dg.p, ny * sizeof(T));
    if (compute_kl) Download(kp, dkl.p, batch * sizeof(T));
#endif
  }
  py::object kl_out = py::none();
  if (compute_kl) kl_out = kl;
  return py::make_tuple(grad, kl_out);
}

py::tuple SparseGrad(py::object pi_obj, py::object pv_obj, py::object y_obj, double exaggeration,
                     double dof, bool compute_kl, bool scale_repulsion_by_p_sum,
                     const std::string& device, const py::module_& m,
                     py::object rep_obj = py::none(), py::object z_obj = py::none()) {
  const bool cuda = UseCuda(device);
  py::array y = TakeFloat(y_obj, "y", nullptr);
  py::dtype yd = y.dtype();
  py::array pv = TakeFloat(pv_obj, "p_values", &yd, "y");
  auto pi = TakeIndices(pi_obj, "p_indices");
  CheckMessage(kn::CheckRank2Or3(Dims(y), "y", "[n, d]"));
  CheckMessage(kn::CheckPoints(Dims(y), "y", 2));
  const bool batched = y.ndim() == 3;
  const int64_t batch = batched ? y.shape(0) : 1;
  const int64_t n = y.shape(y.ndim() - 2), d = y.shape(y.ndim() - 1);
  if (pi.ndim() != 2 || pi.shape(1) != (batched ? 3 : 2)) {
    Fail(std::string("p_indices must be [nnz, ") + (batched ? "3]" : "2]") + " for y of shape " +
         Shape(y) + ", got shape " + Shape(pi));
  }
  if (pv.ndim() != 1 || pv.shape(0) != pi.shape(0)) {
    Fail("p_values must be [nnz] = [" + std::to_string(pi.shape(0)) + "], got shape " + Shape(pv));
  }
  const kn::TsneGradientOptions opt =
      GradientOptions(exaggeration, dof, scale_repulsion_by_p_sum);
  std::vector<int64_t> row_ptr, cols;
  PToCsr(pi, pi.shape(0), batched, batch, n, &row_ptr, &cols);
  const kn::ParallelFor pf = CpuFor();
  py::array rep, z;
  const bool given = !rep_obj.is_none();
  if (given) {
    rep = TakeFloat(rep_obj, "repulsion", &yd, "y");
    z = TakeFloat(z_obj, "z", &yd, "y");
    if (Dims(rep) != Dims(y)) {
      Fail("repulsion must have the shape of y " + Shape(y) + ", got shape " + Shape(rep));
    }
    if (z.size() != batch || z.ndim() != (batched ? 1 : 0)) {
      Fail(std::string("z must be ") + (batched ? "[batch]" : "a scalar") + " for y of shape " +
           Shape(y) + ", got shape " + Shape(z));
    }
    for (int64_t b = 0; b < batch; ++b) {
      const double zb = yd.is(py::dtype::of<float>()) ? static_cast<const float*>(z.data())[b]
                                                      : static_cast<const double*>(z.data())[b];
      if (!(zb > 0) || !std::isfinite(zb)) {
        Fail("z must be finite and > 0, got z[" + std::to_string(b) + "] = " +
             std::to_string(zb));
      }
    }
  }
  if (yd.is(py::dtype::of<float>())) {
    CheckMessage(kn::CheckNonNegativeFinite<float>(static_cast<const float*>(pv.data()), Dims(pv),
                                                   "p_values", &pf));
    CheckMessage(kn::CheckAllFinite<float>(static_cast<const float*>(y.data()), Dims(y), "y", &pf));
    if (given) {
      CheckMessage(kn::CheckAllFinite<float>(static_cast<const float*>(rep.data()), Dims(rep),
                                             "repulsion", &pf));
      return SparseGradT<float>(row_ptr, cols, pv, y, batched, batch, n, d, opt, compute_kl,
                                cuda, m, &rep, &z);
    }
    return SparseGradT<float>(row_ptr, cols, pv, y, batched, batch, n, d, opt, compute_kl, cuda, m);
  }
  if (given) {
    CheckMessage(kn::CheckAllFinite<double>(static_cast<const double*>(rep.data()), Dims(rep),
                                            "repulsion", &pf));
  }
  CheckMessage(kn::CheckNonNegativeFinite<double>(static_cast<const double*>(pv.data()), Dims(pv),
                                                  "p_values", &pf));
  CheckMessage(kn::CheckAllFinite<double>(static_cast<const double*>(y.data()), Dims(y), "y", &pf));
  if (given) {
    return SparseGradT<double>(row_ptr, cols, pv, y, batched, batch, n, d, opt, compute_kl, cuda,
                               m, &rep, &z);
  }
  return SparseGradT<double>(row_ptr, cols, pv, y, batched, batch, n, d, opt, compute_kl, cuda, m);
}

py::tuple CooToCsrPy(py::object pi_obj, int64_t batch, int64_t n) {
  auto pi = TakeIndices(pi_obj, "p_indices");
  if (pi.ndim() != 2 || pi.shape(1) != 3) Fail("p_indices must be [nnz, 3], got " + Shape(pi));
  if (batch < 1 || n < 1) Fail("batch and n must be >= 1");
  std::vector<int64_t> row_ptr, cols;
  PToCsr(pi, pi.shape(0), true, batch, n, &row_ptr, &cols);
  py::array_t<int64_t> rp(static_cast<py::ssize_t>(row_ptr.size()));
  py::array_t<int64_t> cs(static_cast<py::ssize_t>(cols.size()));
  std::copy(row_ptr.begin(), row_ptr.end(), rp.mutable_data());
  std::copy(cols.begin(), cols.end(), cs.mutable_data());
  return py::make_tuple(rp, cs);
}

}  // namespace

void BindSparse(py::module_& m) {
  m.def(
      "knn_joint_probabilities",
      [m](py::object indices, py::object sq_distances, double perplexity, double tolerance,
          int max_iter, const std::string& device) {
        return KnnJoint(indices, sq_distances, perplexity, tolerance, max_iter, device, m);
      },
      py::arg("indices"), py::arg("sq_distances"), py::arg("perplexity"),
      py::arg("tolerance") = kn::kAffinityTolerance, py::arg("max_iter") = kn::kAffinityMaxIter,
      py::arg("device") = "cpu",
      "Sparse joint P over a kNN graph (int64 indices [.., n, k], squared distances): returns "
      "(indices [nnz, 3] or [nnz, 2], values [nnz], dense_shape, unconverged_row_count), "
      "canonical row-major order.");
  m.def(
      "sparse_tsne_gradient",
      [m](py::object p_indices, py::object p_values, py::object y, double exaggeration,
          double dof, bool compute_kl, bool scale_repulsion_by_p_sum, const std::string& device) {
        return SparseGrad(p_indices, p_values, y, exaggeration, dof, compute_kl,
                          scale_repulsion_by_p_sum, device, m);
      },
      py::arg("p_indices"), py::arg("p_values"), py::arg("y"), py::arg("exaggeration") = 1.0,
      py::arg("dof") = 1.0, py::arg("compute_kl") = true,
      py::arg("scale_repulsion_by_p_sum") = false, py::arg("device") = "cpu",
      "t-SNE gradient and KL for a sparse P in canonical COO form (exact repulsion): returns "
      "(grad, kl or None).");
  m.def(
      "sparse_tsne_gradient_from_repulsion",
      [m](py::object p_indices, py::object p_values, py::object y, py::object repulsion,
          py::object z, double exaggeration, double dof, bool compute_kl,
          bool scale_repulsion_by_p_sum, const std::string& device) {
        return SparseGrad(p_indices, p_values, y, exaggeration, dof, compute_kl,
                          scale_repulsion_by_p_sum, device, m, repulsion, z);
      },
      py::arg("p_indices"), py::arg("p_values"), py::arg("y"), py::arg("repulsion"),
      py::arg("z"), py::arg("exaggeration") = 1.0, py::arg("dof") = 1.0,
      py::arg("compute_kl") = true, py::arg("scale_repulsion_by_p_sum") = false,
      py::arg("device") = "cpu",
      "sparse_tsne_gradient with the repulsion R (shaped like y) and Z ([batch] or a scalar) "
      "given, e.g. by fft_repulsion: only the attraction runs. Returns (grad, kl or None).");
  m.def("coo_to_csr", &CooToCsrPy, py::arg("p_indices"), py::arg("batch"), py::arg("n"),
        "Canonical COO indices [nnz, 3] -> (row_ptr [batch * n + 1], cols [nnz]), the form the "
        "raw cuda.sparse_tsne_gradient takes.");
#ifdef TSNE_OPS_WITH_CUDA
  py::module_ cuda = m.attr("cuda").cast<py::module_>();
  cuda.def("knn_joint_workspace_bytes",
           [](int64_t batch, int64_t n, int64_t k, const std::string& dtype) {
             return RawIsF32(dtype) ? kn::KnnJointWorkspaceBytes<float>(batch, n, k)
                               : kn::KnnJointWorkspaceBytes<double>(batch, n, k);
           },
           py::arg("batch"), py::arg("n"), py::arg("k"), py::arg("dtype") = "float32");
  cuda.def(
      "knn_joint_prepare",
      [](uintptr_t indices, uintptr_t sq_distances, int64_t batch, int64_t n, int64_t k,
         double perplexity, double tolerance, int max_iter, uintptr_t unconverged,
         const std::string& dtype, uintptr_t workspace, uintptr_t stream) {
        CheckNonNull(indices, "indices");
        CheckNonNull(sq_distances, "sq_distances");
        CheckNonNull(workspace, "workspace");
        CheckMessage(kn::CheckAtLeast(batch, 1, "batch"));
        CheckMessage(kn::CheckKnnShapes({batch, n, k}, {batch, n, k}));
        CheckMessage(kn::CheckKnnPerplexity(perplexity, k));
        CheckMessage(kn::CheckPerplexitySearch(tolerance, max_iter));
        const bool f32 = RawIsF32(dtype);
        int64_t nnz = 0;
        py::gil_scoped_release release;
        const cudaError_t err =
            f32 ? kn::LaunchKnnJointPrepare<float>(Stream(stream), As<int64_t>(indices),
                                                   As<float>(sq_distances), batch, n, k, perplexity,
                                                   tolerance, max_iter, As<int64_t>(unconverged),
                                                   As<void>(workspace), &nnz)
                : kn::LaunchKnnJointPrepare<double>(Stream(stream), As<int64_t>(indices),
                                                    As<double>(sq_distances), batch, n, k,
                                                    perplexity, tolerance, max_iter,
                                                    As<int64_t>(unconverged), As<void>(workspace),
                                                    &nnz);
        CudaCheck(err, "cuda.knn_joint_prepare");
        return nnz;
      },
      py::arg("indices"), py::arg("sq_distances"), py::arg("batch"), py::arg("n"), py::arg("k"),
      py::arg("perplexity"), py::arg("tolerance") = kn::kAffinityTolerance,
      py::arg("max_iter") = kn::kAffinityMaxIter, py::arg("unconverged") = 0,
      py::arg("dtype") = "float32", py::arg("workspace") = 0, py::arg("stream") = 0,
      "Step 1 of 2 (indices are not checked here: validate on the host). Synchronises the "
      "stream and returns nnz; then allocate [nnz, 3] int64 and [nnz] outputs.");
  cuda.def(
      "knn_joint_write",
      [](uintptr_t workspace, int64_t batch, int64_t n, int64_t k, int64_t nnz,
         uintptr_t out_indices, uintptr_t out_values, const std::string& dtype,
         uintptr_t stream) {
        CheckNonNull(workspace, "workspace");
        const bool f32 = RawIsF32(dtype);
        py::gil_scoped_release release;
        const cudaError_t err =
            f32 ? kn::LaunchKnnJointWrite<float>(Stream(stream), batch, n, k, As<void>(workspace), nnz,
                                                 As<int64_t>(out_indices), As<float>(out_values))
                : kn::LaunchKnnJointWrite<double>(Stream(stream), batch, n, k, As<void>(workspace),
                                                  nnz, As<int64_t>(out_indices),
                                                  As<double>(out_values));
        CudaCheck(err, "cuda.knn_joint_write");
      },
      py::arg("workspace"), py::arg("batch"), py::arg("n"), py::arg("k"), py::arg("nnz"),
      py::arg("out_indices"), py::arg("out_values"), py::arg("dtype") = "float32",
      py::arg("stream") = 0, "Step 2 of 2: writes indices [nnz, 3] (b, i, j) and values [nnz].");
  cuda.def("sparse_tsne_gradient_workspace_bytes",
           [](int64_t batch, int64_t n, int64_t d, const std::string& dtype) {
             return RawIsF32(dtype) ? kn::SparseTsneGradientWorkspaceBytes<float>(batch, n, d)
                               : kn::SparseTsneGradientWorkspaceBytes<double>(batch, n, d);
           },
           py::arg("batch"), py::arg("n"), py::arg("d"), py::arg("dtype") = "float32");
  cuda.def(
      "sparse_tsne_gradient",
      [](uintptr_t row_ptr, uintptr_t cols, uintptr_t p_values, uintptr_t y, uintptr_t grad,
         uintptr_t kl, int64_t batch, int64_t n, int64_t d, const std::string& dtype,
         double exaggeration, double dof, bool scale_repulsion_by_p_sum, uintptr_t workspace,
         uintptr_t stream) {
        CheckNonNull(row_ptr, "row_ptr");
        CheckNonNull(y, "y");
        CheckNonNull(workspace, "workspace");
        CheckMessage(kn::CheckAtLeast(batch, 1, "batch"));
        CheckMessage(kn::CheckPoints({batch, n, d}, "y", 2));
        const kn::TsneGradientOptions opt =
            GradientOptions(exaggeration, dof, scale_repulsion_by_p_sum);
        const bool f32 = RawIsF32(dtype);
        py::gil_scoped_release release;
        const cudaError_t err =
            f32 ? kn::LaunchSparseTsneGradient<float>(Stream(stream), As<int64_t>(row_ptr),
                                                      As<int64_t>(cols), As<float>(p_values),
                                                      As<float>(y), batch, n, d, opt,
                                                      As<float>(grad), As<float>(kl),
                                                      As<void>(workspace))
                : kn::LaunchSparseTsneGradient<double>(Stream(stream), As<int64_t>(row_ptr),
                                                       As<int64_t>(cols), As<double>(p_values),
                                                       As<double>(y), batch, n, d, opt,
                                                       As<double>(grad), As<double>(kl),
                                                       As<void>(workspace));
        CudaCheck(err, "cuda.sparse_tsne_gradient");
      },
      py::arg("row_ptr"), py::arg("cols"), py::arg("p_values"), py::arg("y"), py::arg("grad"),
      py::arg("kl"), py::arg("batch"), py::arg("n"), py::arg("d"), py::arg("dtype") = "float32",
      py::arg("exaggeration") = 1.0, py::arg("dof") = 1.0,
      py::arg("scale_repulsion_by_p_sum") = false, py::arg("workspace") = 0,
      py::arg("stream") = 0,
      "CSR (row_ptr [batch * n + 1] absolute offsets, cols [nnz], from coo_to_csr) on the "
      "device; workspace of sparse_tsne_gradient_workspace_bytes bytes is required.");
  cuda.def(
      "check_csr",
      [](uintptr_t row_ptr, uintptr_t cols, int64_t rows, int64_t nnz, int64_t n,
         uintptr_t first_bad, uintptr_t stream) {
        CheckNonNull(row_ptr, "row_ptr");
        CheckNonNull(first_bad, "first_bad");
        py::gil_scoped_release release;
        CudaCheck(kn::LaunchCheckCsr(Stream(stream), As<int64_t>(row_ptr), rows,
                                     As<int64_t>(cols), nnz, n,
                                     reinterpret_cast<unsigned long long*>(first_bad)),
                  "cuda.check_csr");
      },
      py::arg("row_ptr"), py::arg("cols"), py::arg("rows"), py::arg("nnz"), py::arg("n"),
      py::arg("first_bad"), py::arg("stream") = 0,
      "The op library's CSR check on the device: writes first_bad (2 x uint64 on the device) "
      "= the first bad entry of row_ptr [rows + 1] and of cols [nnz], 2^64 - 1 when fine.");
#endif
}
