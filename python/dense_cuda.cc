// The raw device-pointer front end of the dense ops (submodule `cuda`), for
// CuPy / PyTorch memory: sizes and scalars are checked with the op library's
// checks (cc/compute/validation.h), then the kernel is launched on the
// caller's stream. Compiled in CUDA builds only.
#ifdef TSNE_OPS_WITH_CUDA

#include <cstdint>
#include <string>

#include "cc/compute/affinities.h"
#include "cc/compute/distances.h"
#include "cc/compute/tsne_gradient.h"
#include "cc/compute/validation.h"
#include "python/binding_helpers.h"
#include "python/dense_api.h"

namespace tsne_ops_py {

void RawDistance(py::object x, py::object y, py::object out, int64_t batch, int64_t n, int64_t m,
                 int64_t dim, const std::string& dtype, uintptr_t stream) {
  const bool f32 = RawIsF32(dtype);
  CheckMessage(kn::CheckAtLeast(batch, 1, "batch"));
  CheckMessage(kn::CheckAtLeast(n, 1, "n"));
  CheckMessage(kn::CheckAtLeast(dim, 1, "dim"));
  const uintptr_t px = Ptr(x, "x", true), py_ = Ptr(y, "y", false), po = Ptr(out, "out", true);
  if (py_ != 0) CheckMessage(kn::CheckAtLeast(m, 1, "m"));
  py::gil_scoped_release release;
  const cudaError_t err =
      f32 ? kn::LaunchPairwiseSquaredDistance<float>(Stream(stream), As<float>(px), As<float>(py_),
                                                     batch, n, m, dim, As<float>(po))
          : kn::LaunchPairwiseSquaredDistance<double>(Stream(stream), As<double>(px),
                                                      As<double>(py_), batch, n, m, dim,
                                                      As<double>(po));
  CudaCheck(err, "cuda.pairwise_squared_distance");
}

size_t RawDistanceGradWs(int64_t batch, int64_t n, int64_t m, int64_t dim,
                         const std::string& dtype) {
  return RawIsF32(dtype) ? kn::PairwiseSquaredDistanceGradWorkspaceBytes<float>(batch, n, m, dim)
                         : kn::PairwiseSquaredDistanceGradWorkspaceBytes<double>(batch, n, m, dim);
}

void RawDistanceGrad(py::object grad, py::object x, py::object y, py::object grad_x,
                     py::object grad_y, int64_t batch, int64_t n, int64_t m, int64_t dim,
                     const std::string& dtype, uintptr_t workspace, uintptr_t stream) {
  const bool f32 = RawIsF32(dtype);
  CheckMessage(kn::CheckAtLeast(batch, 1, "batch"));
  CheckMessage(kn::CheckAtLeast(n, 1, "n"));
  CheckMessage(kn::CheckAtLeast(dim, 1, "dim"));
  const uintptr_t pg = Ptr(grad, "grad", true), px = Ptr(x, "x", true), py_ = Ptr(y, "y", false);
  const uintptr_t pgx = Ptr(grad_x, "grad_x", false), pgy = Ptr(grad_y, "grad_y", false);
  if (py_ == 0) m = n;
  CheckMessage(kn::CheckAtLeast(m, 1, "m"));
  const size_t bytes = RawDistanceGradWs(batch, n, m, dim, dtype);
  py::gil_scoped_release release;
  WithWorkspace(bytes, workspace, Stream(stream), "cuda.pairwise_squared_distance_grad",
                [&](void* ws) {
                  return f32 ? kn::LaunchPairwiseSquaredDistanceGrad<float>(
                                   Stream(stream), As<float>(pg), As<float>(px), As<float>(py_),
                                   batch, n, m, dim, As<float>(pgx), As<float>(pgy), ws)
                             : kn::LaunchPairwiseSquaredDistanceGrad<double>(
                                   Stream(stream), As<double>(pg), As<double>(px),
                                   As<double>(py_), batch, n, m, dim, As<double>(pgx),
                                   As<double>(pgy), ws);
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
  CheckMessage(kn::CheckAtLeast(batch, 1, "batch"));
  CheckMessage(kn::CheckAtLeast(n, 2, "n"));
  CheckMessage(kn::CheckPerplexity(perplexity, n));
  CheckMessage(kn::CheckPerplexitySearch(tolerance, max_iter));
  const uintptr_t pd = Ptr(sq_dist, "sq_dist", true);
  const uintptr_t ppc = Ptr(p_conditional, "p_conditional", true);
  const uintptr_t pb = Ptr(beta, "beta", true), pu = Ptr(unconverged, "unconverged", false);
  const size_t bytes = RawPerplexityWs(batch, n, dtype);
  py::gil_scoped_release release;
  WithWorkspace(bytes, workspace, Stream(stream), "cuda.perplexity_affinities", [&](void* ws) {
    return f32 ? kn::LaunchPerplexityAffinities<float>(Stream(stream), As<float>(pd), batch, n,
                                                       perplexity, tolerance, max_iter,
                                                       As<float>(ppc), As<float>(pb),
                                                       As<int64_t>(pu), ws)
               : kn::LaunchPerplexityAffinities<double>(Stream(stream), As<double>(pd), batch, n,
                                                        perplexity, tolerance, max_iter,
                                                        As<double>(ppc), As<double>(pb),
                                                        As<int64_t>(pu), ws);
  });
}

size_t RawSymWs(int64_t batch, int64_t n, const std::string& dtype) {
  return RawIsF32(dtype) ? kn::SymmetrizeAffinitiesWorkspaceBytes<float>(batch, n)
                         : kn::SymmetrizeAffinitiesWorkspaceBytes<double>(batch, n);
}

void RawSym(py::object p_conditional, py::object p, int64_t batch, int64_t n,
            const std::string& dtype, uintptr_t workspace, uintptr_t stream) {
  const bool f32 = RawIsF32(dtype);
  CheckMessage(kn::CheckAtLeast(batch, 1, "batch"));
  CheckMessage(kn::CheckAtLeast(n, 2, "n"));
  const uintptr_t ppc = Ptr(p_conditional, "p_conditional", true), pp = Ptr(p, "p", true);
  const size_t bytes = RawSymWs(batch, n, dtype);
  py::gil_scoped_release release;
  WithWorkspace(bytes, workspace, Stream(stream), "cuda.symmetrize_affinities", [&](void* ws) {
    return f32 ? kn::LaunchSymmetrizeAffinities<float>(Stream(stream), As<float>(ppc), batch, n,
                                                       As<float>(pp), ws)
               : kn::LaunchSymmetrizeAffinities<double>(Stream(stream), As<double>(ppc), batch,
                                                        n, As<double>(pp), ws);
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
  CheckMessage(kn::CheckAtLeast(batch, 1, "batch"));
  CheckMessage(kn::CheckAtLeast(n, 2, "n"));
  CheckMessage(kn::CheckAtLeast(d, 1, "d"));
  const kn::TsneGradientOptions opt =
      GradientOptions(exaggeration, dof, scale_repulsion_by_p_sum);
  const uintptr_t pp = Ptr(p, "p", true), py_ = Ptr(y, "y", true);
  const uintptr_t pg = Ptr(grad, "grad", false), pk = Ptr(kl, "kl", false);
  const size_t bytes = RawTsneWs(batch, n, d, dtype);
  py::gil_scoped_release release;
  WithWorkspace(bytes, workspace, Stream(stream), "cuda.tsne_gradient", [&](void* ws) {
    return f32 ? kn::LaunchTsneGradient<float>(Stream(stream), As<float>(pp), As<float>(py_),
                                               batch, n, d, opt, As<float>(pg), As<float>(pk), ws)
               : kn::LaunchTsneGradient<double>(Stream(stream), As<double>(pp), As<double>(py_),
                                                batch, n, d, opt, As<double>(pg), As<double>(pk),
                                                ws);
  });
}

}  // namespace tsne_ops_py

#endif  // TSNE_OPS_WITH_CUDA
