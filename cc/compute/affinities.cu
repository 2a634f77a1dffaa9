// CUDA perplexity calibration and symmetrisation (contracts in affinities.h).
//
// Calibration: one row per warp. The search is the CPU kernel's, step for
// step (affinities_cpu.cc): the row is shifted by its smallest off-diagonal
// distance (in T, as the CPU does), beta starts at 1 / mean(shifted row), and
// a safeguarded Newton iteration on the entropy (dH/dbeta = -beta Var) falls
// back to bisection, or doubling while no upper bound is known, whenever the
// step leaves the bracket. Sums are in double. The only difference from the
// CPU is the order in which a row's terms are added (lane-strided, then a
// fixed butterfly), so betas agree to rounding, and the result is the same
// from run to run. Rows that cannot reach the perplexity (ties) stop at the
// same BetaLimit as the CPU's and are written as the same limit.
//
// Symmetrisation: per-row sums (one warp per row), a fixed-order per-batch
// total, then an elementwise pass: p_ij = max((pc_ij + pc_ji) / total, eps).
// (pc_ij + pc_ji) and (pc_ji + pc_ij) are the same IEEE sum, so the output is
// exactly symmetric without a transposing pass.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "cc/compute/affinities.h"
#include "cc/compute/cuda_utils.cuh"

namespace tsne_ops {
namespace kernels {
namespace {

using cuda_detail::CeilDiv;
using cuda_detail::kWarp;
using cuda_detail::WarpMin;
using cuda_detail::WarpSum;

constexpr double kMachineEpsilon = 2.220446049250313e-16;  // float64, as scikit-learn
constexpr int kWarpsPerBlock = 8;

struct RowStats {
  double entropy, variance, sum;
};

// The row's distances shifted by dmin, as the CPU computes them (in T).
template <typename T>
__device__ __forceinline__ double Shifted(const T* row, int64_t j, T dmin) {
  return static_cast<double>(static_cast<T>(row[j] - dmin));
}

template <typename T>
__device__ RowStats Evaluate(const T* row, int64_t n, int64_t i, T dmin, double beta, int lane) {
  double s0 = 0, s1 = 0, s2 = 0;
  for (int64_t j = lane; j < n; j += kWarp) {
    if (j == i) continue;
    const double dj = Shifted(row, j, dmin);
    const double ej = exp(-beta * dj);
    s0 += ej;
    s1 += ej * dj;
    s2 += ej * dj * dj;
  }
  s0 = WarpSum(s0);
  s1 = WarpSum(s1);
  s2 = WarpSum(s2);
  const double mean = s1 / s0;
  RowStats r;
  r.sum = s0;
  r.entropy = log(s0) + beta * mean;
  r.variance = fmax(0.0, s2 / s0 - mean * mean);
  return r;
}

__device__ __forceinline__ double Miss(const RowStats& r, double target) {
  const double a = fabs(r.entropy - target);
  return isnan(a) ? INFINITY : a;
}

template <typename T>
__global__ void __launch_bounds__(kWarpsPerBlock* kWarp)
    PerplexityKernel(const T* __restrict__ sq_dist, int64_t rows, int64_t n, double target,
                     double tolerance, int max_iter, T* __restrict__ p_conditional,
                     T* __restrict__ beta_out, unsigned long long* __restrict__ unconverged) {
  const int lane = threadIdx.x % kWarp;
  const int64_t u = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / kWarp;
  if (u >= rows) return;  // whole warps leave together
  const int64_t i = u % n;
  const T* row = sq_dist + u * n;
  T* out = p_conditional + u * n;
  if (n < 2) {  // no off-diagonal entry (front ends reject n < 2)
    for (int64_t j = lane; j < n; j += kWarp) out[j] = T(0);
    if (lane == 0) beta_out[u] = T(1);
    return;
  }
  // Smallest off-diagonal distance (a min is exact in any order).
  T dmin = row[i == 0 ? 1 : 0];
  for (int64_t j = lane; j < n; j += kWarp) {
    if (j != i) dmin = min(dmin, row[j]);
  }
  dmin = WarpMin(dmin);
  double dsum = 0, gap = INFINITY;  // gap: the smallest positive shifted distance
  for (int64_t j = lane; j < n; j += kWarp) {
    if (j != i) {
      const double v = Shifted(row, j, dmin);
      dsum += v;
      if (v > 0) gap = fmin(gap, v);
    }
  }
  dsum = WarpSum(dsum);
  gap = WarpMin(gap);
  const double dmean = dsum / static_cast<double>(n - 1);
  const double start = dmean > 0 ? 1.0 / dmean : 1.0;
  // The CPU's cap (affinities.h): every beta tried stays <= beta_max.
  const double beta_max = BetaLimit<T>(isinf(gap) ? 0.0 : gap, start);
  double beta = fmin(start, beta_max);
  double lo = 0, hi = INFINITY;
  RowStats st = Evaluate(row, n, i, dmin, beta, lane);
  // Miss() is +inf for a NaN entropy: a NaN is never converged, nor the best.
  double best_beta = beta, best_err = Miss(st, target);
  bool at_limit = false;  // stopped at beta_max with the entropy above target
  // Every branch below depends only on warp-uniform values (WarpSum gives all
  // lanes the same bits), so the warp never diverges here.
  for (int it = 0; it < max_iter && !(Miss(st, target) <= tolerance); ++it) {
    const double err = st.entropy - target;
    if (isnan(err)) break;
    if (err > 0) lo = beta; else hi = beta;  // entropy falls as beta grows
    double next = beta * st.variance > 0 ? beta + err / (beta * st.variance) : -1;
    if (!(next > lo && next < hi)) next = isinf(hi) ? beta * 2 : 0.5 * (lo + hi);
    next = fmin(next, beta_max);
    if (next == beta) {  // at beta_max (the row is its limit), or no double left between
      at_limit = (beta == beta_max && err > 0);
      break;
    }
    beta = next;
    st = Evaluate(row, n, i, dmin, beta, lane);
    if (Miss(st, target) < best_err) {
      best_err = Miss(st, target);
      best_beta = beta;
    }
  }
  if (!(Miss(st, target) <= tolerance)) {
    if (lane == 0 && unconverged != nullptr) atomicAdd(unconverged, 1ull);  // integer: exact
    if (!at_limit && beta != best_beta) {  // a row at its limit keeps beta_max, as on the CPU
      beta = best_beta;
      st = Evaluate(row, n, i, dmin, beta, lane);
    }
  }
  // The CPU stores exp() as T and then scales in double; so do we.
  const double inv = 1.0 / st.sum;
  for (int64_t j = lane; j < n; j += kWarp) {
    T v = T(0);
    if (j != i) {
      const T e = static_cast<T>(exp(-beta * Shifted(row, j, dmin)));
      v = static_cast<T>(static_cast<double>(e) * inv);
    }
    out[j] = v;
  }
  if (lane == 0) beta_out[u] = static_cast<T>(beta);
}

// row_sum[u] = sum_{j != i} pc[u, j], one warp per row.
template <typename T>
__global__ void __launch_bounds__(kWarpsPerBlock* kWarp)
    RowSumKernel(const T* __restrict__ pc, int64_t rows, int64_t n, double* __restrict__ row_sum) {
  const int lane = threadIdx.x % kWarp;
  const int64_t u = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / kWarp;
  if (u >= rows) return;
  const int64_t i = u % n;
  const T* r = pc + u * n;
  double s = 0;
  for (int64_t j = lane; j < n; j += kWarp) {
    if (j != i) s += static_cast<double>(r[j]);
  }
  s = WarpSum(s);
  if (lane == 0) row_sum[u] = s;
}

// scale[b] = 1 / (2 sum_i row_sum[b, i]) (0 for an all-zero input); one
// block per batch element, fixed-order reduction.
constexpr int kTotalThreads = 256;
__global__ void __launch_bounds__(kTotalThreads)
    BatchScaleKernel(const double* __restrict__ row_sum, int64_t batch, int64_t n,
                     double* __restrict__ scale) {
  __shared__ double scratch[kTotalThreads];
  for (int64_t b = blockIdx.x; b < batch; b += gridDim.x) {
    double s = 0;
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) s += row_sum[b * n + i];
    s = cuda_detail::BlockSum(s, scratch);
    if (threadIdx.x == 0) {
      const double total = 2 * s;  // sum of P + P^T
      scale[b] = total > 0 ? 1.0 / total : 0.0;
    }
  }
}

// Elementwise; a 32 x 8 thread tile reads pc[i, j] along j (coalesced) and
// pc[j, i] through a transposed shared tile, so both reads are coalesced.
constexpr int kSymTile = 32;
template <typename T>
__global__ void __launch_bounds__(kSymTile * 8)
    SymmetrizeKernel(const T* __restrict__ pc, int64_t batch, int64_t n,
                     const double* __restrict__ scale, T* __restrict__ p) {
  __shared__ T tile[kSymTile][kSymTile + 1];
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int64_t i0 = static_cast<int64_t>(blockIdx.y) * kSymTile;
  const int64_t j0 = static_cast<int64_t>(blockIdx.x) * kSymTile;
  for (int64_t b = blockIdx.z; b < batch; b += gridDim.z) {
    const T* pcb = pc + b * n * n;
    T* pb = p + b * n * n;
    // tile[c][r] = pc[j0 + r, i0 + c] (transposed block, read along its rows)
    for (int r = ty; r < kSymTile; r += 8) {
      const int64_t j = j0 + r, i = i0 + tx;
      tile[tx][r] = (j < n && i < n) ? pcb[j * n + i] : T(0);
    }
    __syncthreads();
    const double s = scale[b];
    for (int r = ty; r < kSymTile; r += 8) {
      const int64_t i = i0 + r, j = j0 + tx;
      if (i < n && j < n) {
        T v = T(0);
        if (i != j) {
          const double q = (static_cast<double>(pcb[i * n + j]) + static_cast<double>(tile[r][tx])) * s;
          v = static_cast<T>(fmax(q, kMachineEpsilon));
        }
        pb[i * n + j] = v;
      }
    }
    __syncthreads();
  }
}

}  // namespace

template <typename T>
size_t PerplexityAffinitiesWorkspaceBytes(int64_t /*batch*/, int64_t /*n*/) {
  return 0;  // the unconverged count is accumulated with integer atomics
}

template <typename T>
cudaError_t LaunchPerplexityAffinities(cudaStream_t stream, const T* sq_dist, int64_t batch,
                                       int64_t n, double perplexity, double tolerance,
                                       int max_iter, T* p_conditional, T* beta,
                                       int64_t* unconverged, void* /*workspace*/) {
  unsigned long long* count = reinterpret_cast<unsigned long long*>(unconverged);
  if (count != nullptr) {
    cudaError_t err = cudaMemsetAsync(count, 0, sizeof(*count), stream);
    if (err != cudaSuccess) return err;
  }
  const int64_t rows = batch * n;
  if (rows <= 0) return cudaSuccess;
  const int64_t blocks = CeilDiv(rows, kWarpsPerBlock);
  if (blocks > 0x7fffffff) return cudaErrorInvalidValue;
  PerplexityKernel<T><<<static_cast<unsigned>(blocks), kWarpsPerBlock * kWarp, 0, stream>>>(
      sq_dist, rows, n, std::log(perplexity), tolerance, max_iter, p_conditional, beta, count);
  return cudaGetLastError();
}

template <typename T>
size_t SymmetrizeAffinitiesWorkspaceBytes(int64_t batch, int64_t n) {
  if (batch <= 0 || n <= 0) return 0;
  return static_cast<size_t>(batch * n + batch) * sizeof(double);  // row sums + scales
}

template <typename T>
cudaError_t LaunchSymmetrizeAffinities(cudaStream_t stream, const T* p_conditional,
                                       int64_t batch, int64_t n, T* p, void* workspace) {
  const int64_t rows = batch * n;
  if (rows <= 0) return cudaSuccess;
  double* row_sum = static_cast<double*>(workspace);
  double* scale = row_sum + rows;
  const int64_t blocks = CeilDiv(rows, kWarpsPerBlock);
  if (blocks > 0x7fffffff) return cudaErrorInvalidValue;
  RowSumKernel<T><<<static_cast<unsigned>(blocks), kWarpsPerBlock * kWarp, 0, stream>>>(
      p_conditional, rows, n, row_sum);
  cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) return err;
  BatchScaleKernel<<<static_cast<unsigned>(std::min<int64_t>(batch, 65535)), kTotalThreads, 0,
                     stream>>>(row_sum, batch, n, scale);
  err = cudaGetLastError();
  if (err != cudaSuccess) return err;
  const int64_t tiles = CeilDiv(n, kSymTile);
  if (tiles > 65535) return cudaErrorInvalidValue;
  dim3 grid(static_cast<unsigned>(tiles), static_cast<unsigned>(tiles),
            static_cast<unsigned>(std::min<int64_t>(batch, 65535)));
  SymmetrizeKernel<T><<<grid, dim3(kSymTile, 8), 0, stream>>>(p_conditional, batch, n, scale, p);
  return cudaGetLastError();
}

#define TSNE_OPS_INSTANTIATE(T)                                                               \
  template size_t PerplexityAffinitiesWorkspaceBytes<T>(int64_t, int64_t);                    \
  template cudaError_t LaunchPerplexityAffinities<T>(cudaStream_t, const T*, int64_t, int64_t, \
                                                     double, double, int, T*, T*, int64_t*,   \
                                                     void*);                                  \
  template size_t SymmetrizeAffinitiesWorkspaceBytes<T>(int64_t, int64_t);                    \
  template cudaError_t LaunchSymmetrizeAffinities<T>(cudaStream_t, const T*, int64_t, int64_t, \
                                                     T*, void*);
TSNE_OPS_INSTANTIATE(float)
TSNE_OPS_INSTANTIATE(double)
#undef TSNE_OPS_INSTANTIATE

}  // namespace kernels
}  // namespace tsne_ops
