// CUDA exact k nearest neighbours (contract in nearest_neighbors.h).
//
// One thread per query row, kThreads rows per block. The block stages
// kTileM rows of y and its own kThreads rows of x, kChunk dimensions at a
// time, in shared memory; each thread accumulates its kTileM distances in
// registers, in double, with __dsub_rn / __dmul_rn / __dadd_rn (never fused
// into an FMA) in increasing dimension order: the same sequence of roundings
// as the CPU kernel's exact step, so both return the same bits. The direct
// sum needs no centring and has no cancellation.
//
// Each thread keeps its row's running top-k as a sorted list in its own rows
// of the outputs (no scratch), with the current k-th distance in a register
// so that most candidates are rejected by one comparison. Candidates arrive
// in increasing index order and an equal distance is inserted after the
// equal ones, so ties go to the smaller index. Deterministic: no atomics,
// fixed order.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "cc/compute/cuda_utils.cuh"
#include "cc/compute/nearest_neighbors.h"

namespace tsne_ops {
namespace kernels {
namespace {

using cuda_detail::CeilDiv;

constexpr int kThreads = 128;  // query rows per block
constexpr int kTileM = 32;     // y rows staged per step
constexpr int kChunk = 32;     // dimensions staged per step
constexpr int kMaxGridY = 65535;

template <typename T>
__device__ __forceinline__ void Insert(T d, int64_t j, int64_t k, int64_t* count, T* worst,
                                       T* dr, int64_t* ir) {
  int64_t pos;
  if (*count < k) {
    pos = (*count)++;
  } else {
    if (!(d < *worst)) return;
    pos = k - 1;
  }
  while (pos > 0 && dr[pos - 1] > d) {
    dr[pos] = dr[pos - 1];
    ir[pos] = ir[pos - 1];
    --pos;
  }
  dr[pos] = d;
  ir[pos] = j;
  if (*count == k) *worst = dr[k - 1];
}

template <typename T>
__global__ void __launch_bounds__(kThreads)
    NearestNeighborsKernel(const T* __restrict__ x, const T* __restrict__ y, bool self,
                           int64_t batch, int64_t n, int64_t m, int64_t dim, int64_t k,
                           int64_t* __restrict__ indices, T* __restrict__ sq_distances) {
  __shared__ T ys[kTileM][kChunk + 1];
  __shared__ T xs[kThreads][kChunk + 1];
  const int t = threadIdx.x;
  const int64_t i0 = static_cast<int64_t>(blockIdx.x) * kThreads;
  const int64_t i = i0 + t;
  const bool active = i < n;
  for (int64_t b = blockIdx.y; b < batch; b += gridDim.y) {
    const T* xb = x + b * n * dim;
    const T* yb = self ? xb : y + b * m * dim;
    int64_t* ir = indices + (b * n + (active ? i : 0)) * k;
    T* dr = sq_distances + (b * n + (active ? i : 0)) * k;
    int64_t count = 0;
    T worst = T(0);
    for (int64_t j0 = 0; j0 < m; j0 += kTileM) {
      double acc[kTileM];
#pragma unroll
      for (int c = 0; c < kTileM; ++c) acc[c] = 0.0;
      for (int64_t k0 = 0; k0 < dim; k0 += kChunk) {
        const int w = static_cast<int>(dim - k0 < kChunk ? dim - k0 : kChunk);
        for (int e = t; e < kTileM * kChunk; e += kThreads) {
          const int r = e / kChunk, q = e % kChunk;
          const int64_t j = j0 + r;
          ys[r][q] = (j < m && q < w) ? yb[j * dim + k0 + q] : T(0);
        }
        for (int e = t; e < kThreads * kChunk; e += kThreads) {
          const int r = e / kChunk, q = e % kChunk;
          const int64_t row = i0 + r;
          xs[r][q] = (row < n && q < w) ? xb[row * dim + k0 + q] : T(0);
        }
        __syncthreads();
        if (active) {
          for (int q = 0; q < w; ++q) {
            const double xv = static_cast<double>(xs[t][q]);
#pragma unroll
            for (int c = 0; c < kTileM; ++c) {
              const double diff = __dsub_rn(xv, static_cast<double>(ys[c][q]));
              acc[c] = __dadd_rn(acc[c], __dmul_rn(diff, diff));
            }
          }
        }
        __syncthreads();
      }
      if (active) {
#pragma unroll
        for (int c = 0; c < kTileM; ++c) {
          const int64_t j = j0 + c;
          if (j < m && !(self && j == i)) Insert(static_cast<T>(acc[c]), j, k, &count, &worst, dr, ir);
        }
      }
    }
  }
}

}  // namespace

template <typename T>
cudaError_t LaunchNearestNeighbors(cudaStream_t stream, const T* x, const T* y, int64_t batch,
                                   int64_t n, int64_t m, int64_t dim, int64_t k,
                                   int64_t* indices, T* sq_distances) {
  const bool self = (y == nullptr);
  if (self) m = n;
  if (batch <= 0 || n <= 0 || k <= 0) return cudaSuccess;
  const dim3 grid(static_cast<unsigned>(CeilDiv(n, kThreads)),
                  static_cast<unsigned>(std::min<int64_t>(batch, kMaxGridY)));
  NearestNeighborsKernel<T><<<grid, kThreads, 0, stream>>>(x, y, self, batch, n, m, dim, k,
                                                           indices, sq_distances);
  return cudaGetLastError();
}

template cudaError_t LaunchNearestNeighbors<float>(cudaStream_t, const float*, const float*,
                                                   int64_t, int64_t, int64_t, int64_t, int64_t,
                                                   int64_t*, float*);
template cudaError_t LaunchNearestNeighbors<double>(cudaStream_t, const double*, const double*,
                                                    int64_t, int64_t, int64_t, int64_t, int64_t,
                                                    int64_t*, double*);

}  // namespace kernels
}  // namespace tsne_ops
