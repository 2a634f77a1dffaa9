// CUDA joint probabilities over a kNN graph (contract in sparse_affinities.h).
//
// Calibration: the same trick as the CPU kernel (sparse_affinities_cpu.cc).
// Each kNN row is laid out as a dense row of a (k + 1)-point problem with a
// placeholder on its diagonal, and LaunchPerplexityAffinities runs on it as
// is, in float64; the all-zero padding rows of the last block are taken off
// the unconverged count (their entropy is log(k) at every beta).
// Symmetrisation: every edge (i, j, P(j|i)) is emitted twice, as key
// (b, i, j) and as key (b, j, i); a radix sort by key (thrust, stable)
// followed by a reduce-by-key adds the at most two values of each key, which
// gives the canonical row-major order and the union of the graph and its
// transpose at once. Integer sort and a sum of two numbers: deterministic.
// The per-batch normaliser is a fixed-order block reduction. thrust takes
// its temporary sort storage from cudaMalloc (not from the caller's
// workspace).
#include <cuda_runtime.h>
#include <thrust/device_ptr.h>
#include <thrust/execution_policy.h>
#include <thrust/reduce.h>
#include <thrust/sort.h>

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "cc/compute/affinities.h"
#include "cc/compute/cuda_utils.cuh"
#include "cc/compute/sparse_affinities.h"

namespace tsne_ops {
namespace kernels {
namespace {

using cuda_detail::CeilDiv;

constexpr int kThreads = 256;

struct Layout {
  int64_t rows, w, blocks, padded, edges;
  double *dist, *pc, *beta, *row_sum, *scale, *vals, *vals_out;
  int64_t *keys, *keys_out;
};

size_t Align(size_t x) { return (x + 255) / 256 * 256; }

// Carves the workspace; with base == nullptr only computes the size.
Layout Carve(void* base, int64_t batch, int64_t n, int64_t k, size_t* bytes) {
  Layout l;
  l.rows = batch * n;
  l.w = k + 1;
  l.blocks = CeilDiv(l.rows, l.w);
  l.padded = l.blocks * l.w;
  l.edges = 2 * l.rows * k;
  char* p = static_cast<char*>(base);
  size_t off = 0;
  auto take = [&](size_t count, size_t elem) {
    char* r = p == nullptr ? nullptr : p + off;
    off += Align(count * elem);
    return r;
  };
  l.dist = reinterpret_cast<double*>(take(l.padded * l.w, sizeof(double)));
  l.pc = reinterpret_cast<double*>(take(l.padded * l.w, sizeof(double)));
  l.beta = reinterpret_cast<double*>(take(l.padded, sizeof(double)));
  l.row_sum = reinterpret_cast<double*>(take(l.rows, sizeof(double)));
  l.scale = reinterpret_cast<double*>(take(batch, sizeof(double)));
  l.vals = reinterpret_cast<double*>(take(l.edges, sizeof(double)));
  l.vals_out = reinterpret_cast<double*>(take(l.edges, sizeof(double)));
  l.keys = reinterpret_cast<int64_t*>(take(l.edges, sizeof(int64_t)));
  l.keys_out = reinterpret_cast<int64_t*>(take(l.edges, sizeof(int64_t)));
  if (bytes != nullptr) *bytes = off;
  return l;
}

__device__ __forceinline__ int64_t ColOf(int64_t u, int64_t t, int64_t w) {
  return t + (t >= u % w ? 1 : 0);
}

template <typename T>
__global__ void GatherKernel(const T* __restrict__ sq_dist, int64_t rows, int64_t k, int64_t w,
                             double* __restrict__ dist) {
  const int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (e >= rows * k) return;
  const int64_t u = e / k, t = e % k;
  dist[u * w + ColOf(u, t, w)] = static_cast<double>(sq_dist[e]);
}

__global__ void AdjustCountKernel(int64_t* count, int64_t pads) {
  if (count != nullptr) *count -= pads;
}

// Row sums of P(j|i) (k terms, in order) and both keys of every edge.
__global__ void EmitKernel(const int64_t* __restrict__ indices, const double* __restrict__ pc,
                           int64_t rows, int64_t n, int64_t k, int64_t w,
                           double* __restrict__ row_sum, int64_t* __restrict__ keys,
                           double* __restrict__ vals) {
  const int64_t u = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (u >= rows) return;
  const int64_t b = u / n, i = u % n;
  double s = 0;
  for (int64_t t = 0; t < k; ++t) {
    const double v = pc[u * w + ColOf(u, t, w)];
    const int64_t j = indices[u * k + t];
    const int64_t e = 2 * (u * k + t);
    keys[e] = (b * n + i) * n + j;
    vals[e] = v;
    keys[e + 1] = (b * n + j) * n + i;
    vals[e + 1] = v;
    s += v;
  }
  row_sum[u] = s;
}

__global__ void __launch_bounds__(kThreads)
    ScaleKernel(const double* __restrict__ row_sum, int64_t batch, int64_t n,
                double* __restrict__ scale) {
  __shared__ double scratch[kThreads];
  for (int64_t b = blockIdx.x; b < batch; b += gridDim.x) {
    double s = 0;
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) s += row_sum[b * n + i];
    s = cuda_detail::BlockSum(s, scratch);
    if (threadIdx.x == 0) {
      const double total = 2 * s;  // sum of P_cond + P_cond^T
      scale[b] = total > 0 ? 1.0 / total : 0.0;
    }
  }
}

template <typename T>
__global__ void WriteKernel(const int64_t* __restrict__ keys, const double* __restrict__ vals,
                            const double* __restrict__ scale, int64_t nnz, int64_t n,
                            int index_rank, int64_t* __restrict__ out_indices,
                            T* __restrict__ out_values) {
  const int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (e >= nnz) return;
  const int64_t key = keys[e];
  const int64_t b = key / (n * n), r = key % (n * n);
  int64_t* out = out_indices + index_rank * e;
  if (index_rank == 3) *out++ = b;
  out[0] = r / n;
  out[1] = r % n;
  out_values[e] = static_cast<T>(vals[e] * scale[b]);
}

}  // namespace

template <typename T>
size_t KnnJointWorkspaceBytes(int64_t batch, int64_t n, int64_t k) {
  size_t bytes = 0;
  Carve(nullptr, batch, n, k, &bytes);
  return bytes;
}

template <typename T>
cudaError_t LaunchKnnJointPrepare(cudaStream_t stream, const int64_t* indices, const T* sq_dist,
                                  int64_t batch, int64_t n, int64_t k, double perplexity,
                                  double tolerance, int max_iter, int64_t* unconverged,
                                  void* workspace, int64_t* nnz) {
  *nnz = 0;
  Layout l = Carve(workspace, batch, n, k, nullptr);
  if (l.rows <= 0 || k <= 0) {
    return unconverged ? cudaMemsetAsync(unconverged, 0, sizeof(int64_t), stream) : cudaSuccess;
  }
  cudaError_t err = cudaMemsetAsync(l.dist, 0, sizeof(double) * l.padded * l.w, stream);
  if (err != cudaSuccess) return err;
  GatherKernel<T><<<static_cast<unsigned>(CeilDiv(l.rows * k, kThreads)), kThreads, 0, stream>>>(
      sq_dist, l.rows, k, l.w, l.dist);
  if ((err = cudaGetLastError()) != cudaSuccess) return err;
  err = LaunchPerplexityAffinities<double>(stream, l.dist, l.blocks, l.w, perplexity, tolerance,
                                           max_iter, l.pc, l.beta, unconverged, nullptr);
  if (err != cudaSuccess) return err;
  if (std::abs(std::log(static_cast<double>(k)) - std::log(perplexity)) > tolerance &&
      l.padded > l.rows) {
    AdjustCountKernel<<<1, 1, 0, stream>>>(unconverged, l.padded - l.rows);
    if ((err = cudaGetLastError()) != cudaSuccess) return err;
  }
  EmitKernel<<<static_cast<unsigned>(CeilDiv(l.rows, kThreads)), kThreads, 0, stream>>>(
      indices, l.pc, l.rows, n, k, l.w, l.row_sum, l.keys, l.vals);
  if ((err = cudaGetLastError()) != cudaSuccess) return err;
  ScaleKernel<<<static_cast<unsigned>(std::min<int64_t>(batch, 65535)), kThreads, 0, stream>>>(
      l.row_sum, batch, n, l.scale);
  if ((err = cudaGetLastError()) != cudaSuccess) return err;
  try {
    auto policy = thrust::cuda::par.on(stream);
    thrust::device_ptr<int64_t> keys(l.keys), keys_out(l.keys_out);
    thrust::device_ptr<double> vals(l.vals), vals_out(l.vals_out);
    thrust::stable_sort_by_key(policy, keys, keys + l.edges, vals);
    auto ends = thrust::reduce_by_key(policy, keys, keys + l.edges, vals, keys_out, vals_out);
    *nnz = static_cast<int64_t>(ends.first - keys_out);
  } catch (...) {
    return cudaErrorUnknown;
  }
  return cudaStreamSynchronize(stream);
}

template <typename T>
cudaError_t LaunchKnnJointWrite(cudaStream_t stream, int64_t batch, int64_t n, int64_t k,
                                const void* workspace, int64_t nnz, int64_t* out_indices,
                                T* out_values, int index_rank) {
  if (nnz <= 0) return cudaSuccess;
  Layout l = Carve(const_cast<void*>(workspace), batch, n, k, nullptr);
  WriteKernel<T><<<static_cast<unsigned>(CeilDiv(nnz, kThreads)), kThreads, 0, stream>>>(
      l.keys_out, l.vals_out, l.scale, nnz, n, index_rank, out_indices, out_values);
  return cudaGetLastError();
}

#define TSNE_OPS_INSTANTIATE(T)                                                               \
  template size_t KnnJointWorkspaceBytes<T>(int64_t, int64_t, int64_t);                       \
  template cudaError_t LaunchKnnJointPrepare<T>(cudaStream_t, const int64_t*, const T*,       \
                                                int64_t, int64_t, int64_t, double, double,    \
                                                int, int64_t*, void*, int64_t*);               \
  template cudaError_t LaunchKnnJointWrite<T>(cudaStream_t, int64_t, int64_t, int64_t,        \
                                              const void*, int64_t, int64_t*, T*, int);
TSNE_OPS_INSTANTIATE(float)
TSNE_OPS_INSTANTIATE(double)
#undef TSNE_OPS_INSTANTIATE

}  // namespace kernels
}  // namespace tsne_ops
