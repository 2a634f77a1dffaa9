// CUDA pairwise squared distances and their gradient (contracts in
// distances.h).
//
// Forward: the direct sum of squared differences, tiled like a GEMM (64 x 64
// output tile per block, 4 x 4 outputs per thread, the depth in chunks of 16
// staged in shared memory). The direct form costs one extra subtraction per
// term over the norm expansion but needs no clamping, and for self-distances
// it is exactly symmetric with an exactly-zero diagonal by construction:
// entries (i, j) and (j, i) add the same squares (x_i - x_j)^2 = (x_j - x_i)^2
// in the same order.
//
// Backward: grad_x[i] = 2 sum_j a_ij (x_i - s_j), a GEMM-shaped reduction over
// j in which a_ij is g_ij (cross, for x), g_ji (cross, for y) or g_ij + g_ji
// (self). The j range is split across blocks to fill the GPU when the output
// is small (an embedding of dim 2); each split writes its own partial sums
// and a second kernel adds them in split order, so the result is
// deterministic. The split count depends only on the shapes.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "cc/compute/cuda_utils.cuh"
#include "cc/compute/distances.h"

namespace tsne_ops {
namespace kernels {
namespace {

using cuda_detail::CeilDiv;

constexpr int kMaxGridZ = 65535;

// ------------------------------------------------------------- forward ----

constexpr int kTile = 64;    // output rows and columns per block
constexpr int kDepth = 16;   // dim entries staged per step
constexpr int kSub = 4;      // outputs per thread along each axis
constexpr int kSide = kTile / kSub;  // 16 x 16 threads

template <typename T>
__global__ void __launch_bounds__(kSide* kSide)
    SquaredDistanceKernel(const T* __restrict__ x, const T* __restrict__ y, int64_t batch,
                          int64_t n, int64_t m, int64_t dim, T* __restrict__ out) {
  // Transposed tiles ([depth][row]); +1 padding keeps the transposing stores
  // free of bank conflicts.
  __shared__ T xs[kDepth][kTile + 1];
  __shared__ T ys[kDepth][kTile + 1];
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int tid = ty * kSide + tx;
  const int64_t i0 = static_cast<int64_t>(blockIdx.y) * kTile;
  const int64_t j0 = static_cast<int64_t>(blockIdx.x) * kTile;
  for (int64_t b = blockIdx.z; b < batch; b += gridDim.z) {
    const T* xb = x + b * n * dim;
    const T* yb = y + b * m * dim;
    T acc[kSub][kSub];
#pragma unroll
    for (int a = 0; a < kSub; ++a)
#pragma unroll
      for (int c = 0; c < kSub; ++c) acc[a][c] = T(0);
    for (int64_t k0 = 0; k0 < dim; k0 += kDepth) {
      // 64 rows x 16 depth per tile, 4 elements per thread; consecutive
      // threads read consecutive k of one row (coalesced). Out-of-range
      // entries are zero in both tiles, so they add exactly 0.
#pragma unroll
      for (int q = 0; q < kTile * kDepth / (kSide * kSide); ++q) {
        const int e = tid + q * kSide * kSide;
        const int r = e / kDepth, kk = e % kDepth;
        const int64_t k = k0 + kk;
        const int64_t i = i0 + r, j = j0 + r;
        xs[kk][r] = (i < n && k < dim) ? xb[i * dim + k] : T(0);
        ys[kk][r] = (j < m && k < dim) ? yb[j * dim + k] : T(0);
      }
      __syncthreads();
#pragma unroll
      for (int kk = 0; kk < kDepth; ++kk) {
        T xv[kSub], yv[kSub];
#pragma unroll
        for (int a = 0; a < kSub; ++a) xv[a] = xs[kk][ty + a * kSide];
#pragma unroll
        for (int c = 0; c < kSub; ++c) yv[c] = ys[kk][tx + c * kSide];
#pragma unroll
        for (int a = 0; a < kSub; ++a)
#pragma unroll
          for (int c = 0; c < kSub; ++c) {
            const T t = xv[a] - yv[c];
            acc[a][c] = fma(t, t, acc[a][c]);
          }
      }
      __syncthreads();
    }
    // Thread (tx, ty) owns rows ty + 16a and columns tx + 16c: a half-warp
    // writes 16 consecutive columns.
#pragma unroll
    for (int a = 0; a < kSub; ++a) {
      const int64_t i = i0 + ty + a * kSide;
      if (i >= n) continue;
      T* orow = out + (b * n + i) * m;
#pragma unroll
      for (int c = 0; c < kSub; ++c) {
        const int64_t j = j0 + tx + c * kSide;
        if (j < m) orow[j] = acc[a][c];
      }
    }
  }
}

// ------------------------------------------------------------ backward ----

enum GradMode : int {
  kRowsOfG = 0,  // out row r = i (over n), a_rc = g[r, c],       c over m
  kColsOfG = 1,  // out row r = j (over m), a_rc = g[c, r],       c over n
  kSymG = 2,     // out row r = i (over n), a_rc = g[r,c]+g[c,r], c over n
};

constexpr int kGradThreads = 256;
constexpr int kGradDepth = 16;  // reduction (j) entries staged per step

// Launch geometry for one backward reduction; a pure function of the shapes
// so the summation order (and so the result) never depends on the device.
struct GradPlan {
  int tk;              // output columns (dim) per block: 2..32
  int ti;              // output rows per block: 256 / tk
  int64_t row_tiles, dim_tiles, splits, split_len;
  size_t partial_bytes;
};

GradPlan MakeGradPlan(int64_t batch, int64_t rows, int64_t klen, int64_t dim) {
  GradPlan p;
  p.tk = 2;
  while (p.tk < 32 && p.tk < dim) p.tk *= 2;
  p.ti = kGradThreads / p.tk;
  p.row_tiles = CeilDiv(rows, p.ti);
  p.dim_tiles = CeilDiv(dim, p.tk);
  const int64_t blocks = std::max<int64_t>(1, p.row_tiles * p.dim_tiles * std::min<int64_t>(batch, kMaxGridZ));
  // Enough blocks to fill a large GPU (~1000), but at least 512 reduction
  // entries per split so the partial sums stay a small fraction of the work.
  const int64_t want = CeilDiv(1024, blocks);
  const int64_t most = std::max<int64_t>(1, klen / 512);
  p.splits = std::max<int64_t>(1, std::min<int64_t>({want, most, 64}));
  p.split_len = CeilDiv(CeilDiv(klen, p.splits), kGradDepth) * kGradDepth;
  p.splits = std::max<int64_t>(1, CeilDiv(klen, p.split_len));
  p.partial_bytes = static_cast<size_t>(batch * p.splits * rows * dim) * sizeof(double);
  return p;
}

// partial[b, s, r, k] = sum_{c in split s} a_rc (xo[r, k] - src[c, k]).
// Float inputs sum each 16-entry step in float and the steps in double.
template <typename T, int TK, int Mode>
__global__ void __launch_bounds__(kGradThreads)
    DistanceGradPartialKernel(const T* __restrict__ g, const T* __restrict__ xo,
                              const T* __restrict__ src, int64_t batch, int64_t n, int64_t m,
                              int64_t dim, int64_t rows, int64_t klen, int64_t splits,
                              int64_t split_len, int64_t dim_tiles, double* __restrict__ partial) {
  constexpr int TI = kGradThreads / TK;
  __shared__ T as[TI][kGradDepth + 1];
  __shared__ T bs[kGradDepth][TK];
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int tid = ty * TK + tx;
  const int64_t r0 = static_cast<int64_t>(blockIdx.x) * TI;
  const int64_t split = blockIdx.y / dim_tiles;
  const int64_t k0 = (blockIdx.y % dim_tiles) * TK;
  const int64_t c_begin = split * split_len;
  const int64_t c_end = klen < c_begin + split_len ? klen : c_begin + split_len;
  const int64_t r = r0 + ty, k = k0 + tx;
  const int64_t src_rows = (Mode == kColsOfG) ? n : (Mode == kRowsOfG ? m : n);
  const int64_t xo_rows = rows;
  for (int64_t b = blockIdx.z; b < batch; b += gridDim.z) {
    const T* gb = g + b * n * m;
    const T* xb = xo + b * xo_rows * dim;
    const T* sb = src + b * src_rows * dim;
    const T xv = (r < rows && k < dim) ? xb[r * dim + k] : T(0);
    double acc = 0;
    for (int64_t c0 = c_begin; c0 < c_end; c0 += kGradDepth) {
      // a tile [TI rows][16 c]: read along whichever index is contiguous in g.
      for (int e = tid; e < TI * kGradDepth; e += kGradThreads) {
        int rr, cc;
        if (Mode == kColsOfG) {
          rr = e % TI;  // g[c, r]: r contiguous
          cc = e / TI;
        } else {
          rr = e / kGradDepth;  // g[r, c]: c contiguous
          cc = e % kGradDepth;
        }
        const int64_t R = r0 + rr, C = c0 + cc;
        T v = T(0);
        if (R < rows && C < c_end) {
          if (Mode == kColsOfG) v = gb[C * m + R];
          else v = gb[R * m + C];
        }
        as[rr][cc] = v;
      }
      if (Mode == kSymG) {
        __syncthreads();
        for (int e = tid; e < TI * kGradDepth; e += kGradThreads) {
          const int rr = e % TI, cc = e / TI;  // g[c, r]: r contiguous
          const int64_t R = r0 + rr, C = c0 + cc;
          if (R < rows && C < c_end) as[rr][cc] += gb[C * m + R];
        }
      }
      for (int e = tid; e < kGradDepth * TK; e += kGradThreads) {
        const int cc = e / TK, kk = e % TK;
        const int64_t C = c0 + cc, K = k0 + kk;
        bs[cc][kk] = (C < c_end && K < dim) ? sb[C * dim + K] : T(0);
      }
      __syncthreads();
      T step = T(0);
#pragma unroll
      for (int cc = 0; cc < kGradDepth; ++cc) step = fma(as[ty][cc], xv - bs[cc][tx], step);
      acc += static_cast<double>(step);
      __syncthreads();
    }
    if (r < rows && k < dim) partial[((b * splits + split) * rows + r) * dim + k] = acc;
  }
}

// out[b, r, k] = 2 * sum_s partial[b, s, r, k], splits added in order.
template <typename T>
__global__ void DistanceGradFinishKernel(const double* __restrict__ partial, int64_t batch,
                                         int64_t splits, int64_t rows, int64_t dim,
                                         T* __restrict__ out) {
  const int64_t per = rows * dim;
  const int64_t total = batch * per;
  for (int64_t t = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; t < total;
       t += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t b = t / per, e = t % per;
    double s = 0;
    for (int64_t q = 0; q < splits; ++q) s += partial[(b * splits + q) * per + e];
    out[t] = static_cast<T>(2.0 * s);
  }
}

template <typename T, int TK, int Mode>
void LaunchPartial(cudaStream_t stream, const GradPlan& p, const T* g, const T* xo, const T* src,
                   int64_t batch, int64_t n, int64_t m, int64_t dim, int64_t rows, int64_t klen,
                   double* partial) {
  dim3 block(TK, kGradThreads / TK);
  dim3 grid(static_cast<unsigned>(p.row_tiles), static_cast<unsigned>(p.splits * p.dim_tiles),
            static_cast<unsigned>(std::min<int64_t>(batch, kMaxGridZ)));
  DistanceGradPartialKernel<T, TK, Mode><<<grid, block, 0, stream>>>(
      g, xo, src, batch, n, m, dim, rows, klen, p.splits, p.split_len, p.dim_tiles, partial);
}

template <typename T, int Mode>
cudaError_t RunGrad(cudaStream_t stream, const T* g, const T* xo, const T* src, int64_t batch,
                    int64_t n, int64_t m, int64_t dim, int64_t rows, int64_t klen, T* out,
                    double* partial) {
  const GradPlan p = MakeGradPlan(batch, rows, klen, dim);
  if (p.row_tiles > 0x7fffffff || p.splits * p.dim_tiles > 65535) return cudaErrorInvalidValue;
  switch (p.tk) {
    case 2: LaunchPartial<T, 2, Mode>(stream, p, g, xo, src, batch, n, m, dim, rows, klen, partial); break;
    case 4: LaunchPartial<T, 4, Mode>(stream, p, g, xo, src, batch, n, m, dim, rows, klen, partial); break;
    case 8: LaunchPartial<T, 8, Mode>(stream, p, g, xo, src, batch, n, m, dim, rows, klen, partial); break;
    case 16: LaunchPartial<T, 16, Mode>(stream, p, g, xo, src, batch, n, m, dim, rows, klen, partial); break;
    default: LaunchPartial<T, 32, Mode>(stream, p, g, xo, src, batch, n, m, dim, rows, klen, partial); break;
  }
  cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) return err;
  const int64_t total = batch * rows * dim;
  const int threads = 256;
  const int64_t blocks = std::min<int64_t>(CeilDiv(total, threads), 65535);
  DistanceGradFinishKernel<T><<<static_cast<unsigned>(blocks), threads, 0, stream>>>(
      partial, batch, p.splits, rows, dim, out);
  return cudaGetLastError();
}

}  // namespace

template <typename T>
cudaError_t LaunchPairwiseSquaredDistance(cudaStream_t stream, const T* x, const T* y,
                                          int64_t batch, int64_t n, int64_t m, int64_t dim,
                                          T* out) {
  if (y == nullptr) {
    y = x;
    m = n;
  }
  if (batch <= 0 || n <= 0 || m <= 0) return cudaSuccess;
  if (dim <= 0) {
    return cudaMemsetAsync(out, 0, static_cast<size_t>(batch * n * m) * sizeof(T), stream);
  }
  const int64_t gx = CeilDiv(m, kTile), gy = CeilDiv(n, kTile);
  if (gx > 0x7fffffff || gy > 65535) return cudaErrorInvalidValue;
  dim3 grid(static_cast<unsigned>(gx), static_cast<unsigned>(gy),
            static_cast<unsigned>(std::min<int64_t>(batch, kMaxGridZ)));
  SquaredDistanceKernel<T><<<grid, dim3(kSide, kSide), 0, stream>>>(x, y, batch, n, m, dim, out);
  return cudaGetLastError();
}

template <typename T>
size_t PairwiseSquaredDistanceGradWorkspaceBytes(int64_t batch, int64_t n, int64_t m,
                                                 int64_t dim) {
  if (batch <= 0 || n <= 0 || m <= 0 || dim <= 0) return 0;
  // Self (m == n) and the two cross reductions run one after the other on the
  // stream and reuse the same partial buffer: the larger of the two.
  return std::max(MakeGradPlan(batch, n, m, dim).partial_bytes,
                  MakeGradPlan(batch, m, n, dim).partial_bytes);
}

template <typename T>
cudaError_t LaunchPairwiseSquaredDistanceGrad(cudaStream_t stream, const T* grad, const T* x,
                                              const T* y, int64_t batch, int64_t n, int64_t m,
                                              int64_t dim, T* grad_x, T* grad_y,
                                              void* workspace) {
  if (batch <= 0 || dim <= 0) return cudaSuccess;
  double* partial = static_cast<double*>(workspace);
  if (y == nullptr) {
    if (grad_x == nullptr || n <= 0) return cudaSuccess;
    return RunGrad<T, kSymG>(stream, grad, x, x, batch, n, n, dim, n, n, grad_x, partial);
  }
  if (n <= 0 || m <= 0) {
    // Empty reduction (no columns for grad_x, no rows for grad_y): the other
    // output is still [batch, *, dim] and must be zero, as on the CPU.
    cudaError_t err = cudaSuccess;
    if (grad_x != nullptr && n > 0)
      err = cudaMemsetAsync(grad_x, 0, static_cast<size_t>(batch * n * dim) * sizeof(T), stream);
    if (err == cudaSuccess && grad_y != nullptr && m > 0)
      err = cudaMemsetAsync(grad_y, 0, static_cast<size_t>(batch * m * dim) * sizeof(T), stream);
    return err;
  }
  if (grad_x != nullptr) {
    cudaError_t err =
        RunGrad<T, kRowsOfG>(stream, grad, x, y, batch, n, m, dim, n, m, grad_x, partial);
    if (err != cudaSuccess) return err;
  }
  if (grad_y != nullptr) {
    return RunGrad<T, kColsOfG>(stream, grad, y, x, batch, n, m, dim, m, n, grad_y, partial);
  }
  return cudaSuccess;
}

#define TSNE_OPS_INSTANTIATE(T)                                                                 \
  template cudaError_t LaunchPairwiseSquaredDistance<T>(cudaStream_t, const T*, const T*,       \
                                                        int64_t, int64_t, int64_t, int64_t, T*); \
  template size_t PairwiseSquaredDistanceGradWorkspaceBytes<T>(int64_t, int64_t, int64_t,      \
                                                               int64_t);                        \
  template cudaError_t LaunchPairwiseSquaredDistanceGrad<T>(cudaStream_t, const T*, const T*,   \
                                                            const T*, int64_t, int64_t, int64_t, \
                                                            int64_t, T*, T*, void*);
TSNE_OPS_INSTANTIATE(float)
TSNE_OPS_INSTANTIATE(double)
#undef TSNE_OPS_INSTANTIATE

}  // namespace kernels
}  // namespace tsne_ops
