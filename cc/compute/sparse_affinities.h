// Joint probabilities over a k-nearest-neighbour graph (the large-N input
// side of t-SNE), as scikit-learn's _joint_probabilities_nn.
//
// indices [batch, n, k] (int64, each row's k distinct neighbours, none the
// row itself) and sq_dist [batch, n, k] (their squared distances). Each row's
// conditional P(j|i) over its k neighbours is calibrated to `perplexity` by
// the dense kernel's search (PerplexityAffinitiesCpu / LaunchPerplexity-
// Affinities, same tolerance, same handling of rows that cannot reach it:
// they keep their closest beta, which puts the mass on the nearest tied
// points, and are counted). Then per batch element
//   P = (P_cond + P_cond^T) / sum(P_cond + P_cond^T)
// over the union of the graph and its transpose, written as a COO list in
// canonical row-major order: indices [nnz, 3] = (b, i, j), values [nnz].
// Entries are stored for every edge of that union, even where the value
// underflows to 0 (the dense joint_probabilities floors at 2.2e-16 instead;
// sparse P has no floor). Deterministic whatever the thread count.
#ifndef TSNE_OPS_CC_COMPUTE_SPARSE_AFFINITIES_H_
#define TSNE_OPS_CC_COMPUTE_SPARSE_AFFINITIES_H_

#include <cstdint>
#include <functional>
#include <string>

#include "cc/compute/common.h"

#ifdef TSNE_OPS_WITH_CUDA
#include <cuda_runtime_api.h>
#endif

namespace tsne_ops {
namespace kernels {

// "" when every row of indices [batch, n, k] holds k distinct values in
// [0, n) other than the row's own index; else a message naming `name`, the
// first offending entry and its value.
std::string CheckKnnIndices(const int64_t* indices, int64_t batch, int64_t n, int64_t k,
                            const char* name, const ParallelFor* parallel_for = nullptr);

// Called once nnz is known; returns false when the output cannot be
// allocated (the kernel then stops). indices: [nnz, index_rank] int64,
// values: [nnz].
template <typename T>
using SparseAllocator = std::function<bool(int64_t nnz, int64_t** indices, T** values)>;

// Returns false when `allocate` failed. *unconverged (may be nullptr) gets
// the number of rows that did not reach the perplexity. index_rank: 3, each
// entry written (b, i, j); or 2 (batch must be 1), (i, j): the indices of a
// rank-2 tf.SparseTensor, written as such rather than copied from [nnz, 3].
template <typename T>
bool KnnJointProbabilitiesCpu(const int64_t* indices, const T* sq_dist, int64_t batch,
                              int64_t n, int64_t k, double perplexity, double tolerance,
                              int max_iter, const SparseAllocator<T>& allocate,
                              int64_t* unconverged, const ParallelFor& parallel_for,
                              int index_rank = 3);

#ifdef TSNE_OPS_WITH_CUDA
// Two steps, because nnz is known only after the first. Every pointer is
// device memory except *nnz. Workspace: KnnJointWorkspaceBytes.
//   1. LaunchKnnJointPrepare: calibration, symmetrisation into the
//      workspace; waits for the stream and writes *nnz (host).
//   2. LaunchKnnJointWrite: writes indices [nnz, index_rank] (as the CPU
//      kernel) and values [nnz].
template <typename T>
size_t KnnJointWorkspaceBytes(int64_t batch, int64_t n, int64_t k);
template <typename T>
cudaError_t LaunchKnnJointPrepare(cudaStream_t stream, const int64_t* indices,
                                  const T* sq_dist, int64_t batch, int64_t n, int64_t k,
                                  double perplexity, double tolerance, int max_iter,
                                  int64_t* unconverged, void* workspace, int64_t* nnz);
template <typename T>
cudaError_t LaunchKnnJointWrite(cudaStream_t stream, int64_t batch, int64_t n, int64_t k,
                                const void* workspace, int64_t nnz, int64_t* out_indices,
                                T* out_values, int index_rank = 3);
#endif

}  // namespace kernels
}  // namespace tsne_ops

#endif  // TSNE_OPS_CC_COMPUTE_SPARSE_AFFINITIES_H_
