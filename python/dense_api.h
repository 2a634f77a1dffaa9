// The dense ops of _tsne_kernels (distances, affinities, the t-SNE gradient)
// in two front ends: numpy arrays (dense_numpy.cc) and raw device pointers
// (dense_cuda.cc, CUDA builds only). module.cc binds them.
#ifndef TSNE_OPS_PYTHON_DENSE_API_H_
#define TSNE_OPS_PYTHON_DENSE_API_H_

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstddef>
#include <cstdint>
#include <string>

namespace tsne_ops_py {

namespace py = pybind11;

// ------------------------------------------------------ numpy front end ---
// Arrays are float32 or float64, rank 2 (a batch of one; outputs drop the
// batch axis too) or rank 3 ([batch, ...]). device='cuda' copies in, runs and
// copies back. The GIL is released while kernels run.

py::array PairwiseSquaredDistance(py::object x, py::object y, const std::string& device);
py::tuple PairwiseSquaredDistanceGrad(py::object grad, py::object x, py::object y,
                                      const std::string& device);
py::tuple PerplexityAffinities(py::object sq_dist, double perplexity, double tolerance,
                               int max_iter, const std::string& device);
py::array SymmetrizeAffinities(py::object p_conditional, const std::string& device);
py::array JointProbabilities(py::object sq_dist, double perplexity, double tolerance,
                             int max_iter, const std::string& device);
py::tuple TsneGradient(py::object p, py::object y, double exaggeration, double dof,
                       bool compute_kl, bool scale_repulsion_by_p_sum, const std::string& device);

#ifdef TSNE_OPS_WITH_CUDA
// ------------------------------------------ raw device pointer front end --
// For CuPy / PyTorch: launches are asynchronous on `stream`; nothing is
// synchronised. If `workspace` is 0 and the kernel needs scratch, it is
// allocated and freed stream-ordered. Sizes and scalars are validated; the
// values behind the pointers are not (they live on the device).

void RawDistance(py::object x, py::object y, py::object out, int64_t batch, int64_t n, int64_t m,
                 int64_t dim, const std::string& dtype, uintptr_t stream);
size_t RawDistanceGradWs(int64_t batch, int64_t n, int64_t m, int64_t dim,
                         const std::string& dtype);
void RawDistanceGrad(py::object grad, py::object x, py::object y, py::object grad_x,
                     py::object grad_y, int64_t batch, int64_t n, int64_t m, int64_t dim,
                     const std::string& dtype, uintptr_t workspace, uintptr_t stream);
size_t RawPerplexityWs(int64_t batch, int64_t n, const std::string& dtype);
void RawPerplexity(py::object sq_dist, py::object p_conditional, py::object beta, int64_t batch,
                   int64_t n, double perplexity, double tolerance, int max_iter,
                   py::object unconverged, const std::string& dtype, uintptr_t workspace,
                   uintptr_t stream);
size_t RawSymWs(int64_t batch, int64_t n, const std::string& dtype);
void RawSym(py::object p_conditional, py::object p, int64_t batch, int64_t n,
            const std::string& dtype, uintptr_t workspace, uintptr_t stream);
size_t RawTsneWs(int64_t batch, int64_t n, int64_t d, const std::string& dtype);
void RawTsne(py::object p, py::object y, py::object grad, py::object kl, int64_t batch, int64_t n,
             int64_t d, const std::string& dtype, double exaggeration, double dof,
             bool scale_repulsion_by_p_sum, uintptr_t workspace, uintptr_t stream);
#endif

}  // namespace tsne_ops_py

#endif  // TSNE_OPS_PYTHON_DENSE_API_H_
