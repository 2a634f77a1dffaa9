// CUDA fused t-SNE gradient, normaliser and KL (contract in tsne_gradient.h).
//
// The repulsion of row i is R_i / Z with R_i = sum_j w_ij u_ij (y_i - y_j), so
// Z is needed only as a final scale and P can be read exactly once:
//
//  1. TsneRowsKernel: one pass over P. A block owns 8 warps x RW rows and one
//     column range ("split"); each warp streams its RW rows of P along j
//     (coalesced, 32 consecutive columns per load) against a 256-column tile
//     of y staged in shared memory, and accumulates per row the attractive
//     sum A_i, the repulsive sum R_i, Z_i = sum_j w_ij, S_i = sum_j p_ij and
//     (when asked) sum_j p_ij log(p_ij / w_ij). Lanes accumulate in T over at
//     most 256 terms each; the warp sum and everything after it is in double.
//     Each (split, row) writes its own partial record: no atomics.
//  2. TsneTotalsKernel: one block per batch element adds Z, S and the KL terms
//     over all partial records in a fixed order and writes kl.
//  3. TsneGradFinishKernel: grad_i = c (ex A_i - s R_i / Z), adding the
//     splits of A_i and R_i in split order.
//
// Every sum has an order fixed by the shapes alone (the split count is a
// function of batch, n and d, not of the device), so results are bitwise
// reproducible from run to run. Extra memory: batch * splits * n * (2d + 4)
// doubles, splits <= ceil(n / 2048) + 1 -- O(batch * n * d) for fixed n, and
// never N x N.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "cc/compute/cuda_utils.cuh"
#include "cc/compute/tsne_gradient.h"

namespace tsne_ops {
namespace kernels {
namespace {

using cuda_detail::CeilDiv;
using cuda_detail::kWarp;
using cuda_detail::WarpSum;

constexpr int kRowWarps = 8;
constexpr int kRowThreads = kRowWarps * kWarp;
constexpr int kColTile = 256;                 // columns of y staged per step
constexpr int kPerLane = kColTile / kWarp;    // P loads per lane per row per step
constexpr int kGenericChunk = 4;              // dims per pass when d > 4
constexpr int kMaxGridZ = 65535;

// Rows per warp: more rows reuse each y_j (and keep more loads of P in
// flight) but cost registers; d > 4 takes the generic path, one row per warp.
__host__ __device__ constexpr int RowsPerWarp(int D) { return D == 0 ? 1 : (D <= 2 ? 4 : 2); }
int RowsPerWarpRuntime(int64_t d) { return d > 4 ? 1 : (d <= 2 ? 4 : 2); }

// Record layout per (batch, split, row): att[d], rep[d], z, p_sum,
// sum p log(p / w), and a slot for sum p log u that this kernel leaves 0.
__host__ __device__ inline int64_t RecordSize(int64_t d) { return 2 * d + 4; }

struct Plan {
  int64_t row_tiles, splits, split_len;
};

Plan MakePlan(int64_t batch, int64_t n, int64_t d) {
  Plan plan;
  plan.row_tiles = CeilDiv(n, kRowWarps * RowsPerWarpRuntime(d));
  const int64_t blocks = std::max<int64_t>(1, plan.row_tiles * std::min<int64_t>(batch, kMaxGridZ));
  // ~4096 blocks keep every SM of a large GPU busy with a short tail; a
  // split is at least 2048 columns (the per-split records stay ~1% of the
  // traffic) and at most 8192 (each lane sums at most 256 terms in T).
  const int64_t want = std::min(CeilDiv(4096, blocks), std::max<int64_t>(1, n / 2048));
  int64_t splits = std::max(want, CeilDiv(n, 8192));
  splits = std::max<int64_t>(1, std::min<int64_t>(splits, 65535));
  plan.split_len = CeilDiv(CeilDiv(n, splits), kColTile) * kColTile;
  plan.splits = CeilDiv(n, plan.split_len);
  return plan;
}

template <typename T, int DC>
struct RowAcc {
  T att[DC], rep[DC], z, ps, plp, plu;
  __device__ void Clear() {
#pragma unroll
    for (int k = 0; k < DC; ++k) att[k] = rep[k] = T(0);
    z = ps = plp = plu = T(0);
  }
};

// One pair (i, j). dist is computed by the caller; diff holds y_i - y_j for
// the dims this pass accumulates. On the diagonal p and w are masked to zero
// (diff is exactly zero there, so att and rep are unaffected anyway).
template <typename T, int DC, bool kUnitDof, bool kComputeKl>
__device__ __forceinline__ void AccumulatePair(RowAcc<T, DC>& acc, const T (&diff)[DC], int kc,
                                               T dist, T pj, bool diag, T inv_alpha,
                                               T half_exp) {
  const T u = T(1) / (T(1) + dist * inv_alpha);
  const T log_w = kUnitDof ? T(0) : half_exp * log(u);  // unused when kUnitDof
  T w = kUnitDof ? u : exp(log_w);
  if (diag) {
    pj = T(0);
    w = T(0);
  }
  const T pu = pj * u, wu = w * u;
#pragma unroll
  for (int k = 0; k < DC; ++k) {
    if (k < kc) {
      acc.att[k] = fma(pu, diff[k], acc.att[k]);
      acc.rep[k] = fma(wu, diff[k], acc.rep[k]);
    }
  }
  acc.z += w;
  acc.ps += pj;
  if (kComputeKl) {
    // p log p - p log w. With dof = 1 (w = u >= 1/(1 + dist), no underflow)
    // as one logarithm p log(p / u): the logarithms are the costliest part
    // of a pair. Otherwise log w is already known. (The record's p log u
    // slot stays 0; the totals kernel combines the two slots.)
    if (kUnitDof) {
      acc.plp += pj > T(0) ? pj * log(pj / u) : T(0);
    } else {
      acc.plp += pj > T(0) ? pj * (log(pj) - log_w) : T(0);
    }
  }
}

// D > 0: d == D. D == 0: generic d, this pass accumulates dims [k0, k0 + 4).
template <typename T, int D, bool kUnitDof, bool kComputeKl>
__global__ void __launch_bounds__(kRowThreads)
    TsneRowsKernel(const T* __restrict__ p, const T* __restrict__ y, int64_t batch, int64_t n,
                   int64_t d, int64_t k0, T inv_alpha, T half_exp, int64_t splits,
                   int64_t split_len, double* __restrict__ partial) {
  constexpr int RW = RowsPerWarp(D);
  constexpr int DC = D > 0 ? D : kGenericChunk;
  __shared__ T sy[D > 0 ? D : 1][kColTile];  // y tile, dims-major: lane reads are conflict-free
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
  const int64_t row0 = (static_cast<int64_t>(blockIdx.x) * kRowWarps + warp) * RW;
  const int64_t split = blockIdx.y;
  const int64_t c_begin = split * split_len;
  const int64_t c_end = n < c_begin + split_len ? n : c_begin + split_len;
  const int kc = D > 0 ? D : static_cast<int>(d - k0 < DC ? d - k0 : DC);
  const int64_t rec = 2 * d + 4;

  for (int64_t b = blockIdx.z; b < batch; b += gridDim.z) {
    const T* pb = p + b * n * n;
    const T* yb = y + b * n * d;
    int64_t ri[RW];
    bool valid[RW];
    T yi[RW][DC];
    RowAcc<T, DC> acc[RW];
#pragma unroll
    for (int r = 0; r < RW; ++r) {
      valid[r] = row0 + r < n;
      ri[r] = valid[r] ? row0 + r : n - 1;  // keep addresses in range; results dropped
#pragma unroll
      for (int k = 0; k < DC; ++k) yi[r][k] = k < kc ? yb[ri[r] * d + (D > 0 ? k : k0 + k)] : T(0);
      acc[r].Clear();
    }

    // Squared distance of row r to column j, and the chunk's differences.
    auto pair_terms = [&](int r, int64_t j, int jj, T (&diff)[DC]) -> T {
      T dist = T(0);
      if (D > 0) {
#pragma unroll
        for (int k = 0; k < DC; ++k) {
          diff[k] = yi[r][k] - sy[k][jj];
          dist = fma(diff[k], diff[k], dist);
        }
      } else {
        const T* yrow_i = yb + ri[r] * d;
        const T* yrow_j = yb + j * d;
        for (int64_t k = 0; k < d; ++k) {
          const T t = yrow_i[k] - yrow_j[k];
          dist = fma(t, t, dist);
        }
#pragma unroll
        for (int k = 0; k < DC; ++k) diff[k] = k < kc ? yi[r][k] - yrow_j[k0 + k] : T(0);
      }
      return dist;
    };

    for (int64_t t0 = c_begin; t0 < c_end; t0 += kColTile) {
      if (D > 0) {
        __syncthreads();  // previous tile fully consumed
        const int64_t cols = c_end - t0 < kColTile ? c_end - t0 : kColTile;
        for (int e = threadIdx.x; e < kColTile * DC; e += kRowThreads) {
          const int jj = e / DC, k = e % DC;  // contiguous in y
          sy[k][jj] = jj < cols ? yb[(t0 + jj) * d + k] : T(0);
        }
        __syncthreads();
      }
      if (t0 + kColTile <= c_end) {
        // Full tile: issue all loads of P first (RW * 8 independent coalesced
        // loads per lane in flight), then compute.
        T pv[kPerLane][RW];
#pragma unroll
        for (int q = 0; q < kPerLane; ++q)
#pragma unroll
          for (int r = 0; r < RW; ++r) pv[q][r] = pb[ri[r] * n + t0 + q * kWarp + lane];
#pragma unroll
        for (int q = 0; q < kPerLane; ++q) {
          const int jj = q * kWarp + lane;
          const int64_t j = t0 + jj;
#pragma unroll
          for (int r = 0; r < RW; ++r) {
            T diff[DC];
            const T dist = pair_terms(r, j, jj, diff);
            AccumulatePair<T, DC, kUnitDof, kComputeKl>(acc[r], diff, kc, dist, pv[q][r], j == ri[r],
                                                 inv_alpha, half_exp);
          }
        }
      } else {
        for (int q = 0; q < kPerLane; ++q) {
          const int jj = q * kWarp + lane;
          const int64_t j = t0 + jj;
          if (j >= c_end) break;
#pragma unroll
          for (int r = 0; r < RW; ++r) {
            T diff[DC];
            const T dist = pair_terms(r, j, jj, diff);
            AccumulatePair<T, DC, kUnitDof, kComputeKl>(acc[r], diff, kc, dist, pb[ri[r] * n + j],
                                                 j == ri[r], inv_alpha, half_exp);
          }
        }
      }
    }

    // Warp sums in double (fixed butterfly order), one record per row.
#pragma unroll
    for (int r = 0; r < RW; ++r) {
      double* out = partial + ((b * splits + split) * n + ri[r]) * rec;
#pragma unroll
      for (int k = 0; k < DC; ++k) {
        if (k < kc) {
          const double a = WarpSum(static_cast<double>(acc[r].att[k]));
          const double e = WarpSum(static_cast<double>(acc[r].rep[k]));
          if (lane == 0 && valid[r]) {
            out[(D > 0 ? 0 : k0) + k] = a;
            out[d + (D > 0 ? 0 : k0) + k] = e;
          }
        }
      }
      if (D > 0 || k0 == 0) {
        const double z = WarpSum(static_cast<double>(acc[r].z));
        const double ps = WarpSum(static_cast<double>(acc[r].ps));
        double plp = 0;
        const double plu = 0;  // folded into plp (see AccumulatePair)
        if (kComputeKl) plp = WarpSum(static_cast<double>(acc[r].plp));
        if (lane == 0 && valid[r]) {
          out[2 * d] = z;
          out[2 * d + 1] = ps;
          out[2 * d + 2] = plp;
          out[2 * d + 3] = plu;
        }
      }
    }
  }
}

// totals[b] = {Z, S, sum p log(p / w), 0}; kl[b] when asked.
constexpr int kTotalThreads = 256;
template <typename T>
__global__ void __launch_bounds__(kTotalThreads)
    TsneTotalsKernel(const double* __restrict__ partial, int64_t batch, int64_t n, int64_t d,
                     int64_t splits, double half_exp, bool want_kl, double* __restrict__ totals,
                     T* __restrict__ kl) {
  __shared__ double scratch[kTotalThreads];
  const int64_t rec = RecordSize(d);
  const int64_t records = splits * n;
  for (int64_t b = blockIdx.x; b < batch; b += gridDim.x) {
    const double* pb = partial + b * records * rec + 2 * d;
    double v[4] = {0, 0, 0, 0};
    for (int64_t e = threadIdx.x; e < records; e += blockDim.x) {
#pragma unroll
      for (int q = 0; q < 4; ++q) v[q] += pb[e * rec + q];
    }
    double t[4];
#pragma unroll
    for (int q = 0; q < 4; ++q) t[q] = cuda_detail::BlockSum(v[q], scratch);
    if (threadIdx.x == 0) {
#pragma unroll
      for (int q = 0; q < 4; ++q) totals[b * 4 + q] = t[q];
      // KL = sum p log p - sum p log w + S log Z, log w = ((alpha+1)/2) log u.
      if (want_kl) kl[b] = static_cast<T>(t[2] - half_exp * t[3] + t[1] * log(t[0]));
    }
  }
}

template <typename T>
__global__ void TsneGradFinishKernel(const double* __restrict__ partial,
                                     const double* __restrict__ totals, int64_t batch, int64_t n,
                                     int64_t d, int64_t splits, double c, double exaggeration,
                                     bool scale_by_p_sum, T* __restrict__ grad) {
  const int64_t rec = RecordSize(d);
  const int64_t per = n * d;
  const int64_t total = batch * per;
  for (int64_t t = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; t < total;
       t += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t b = t / per, i = (t % per) / d, k = t % d;
    double a = 0, r = 0;
    for (int64_t s = 0; s < splits; ++s) {
      const double* rp = partial + ((b * splits + s) * n + i) * rec;
      a += rp[k];
      r += rp[d + k];
    }
    const double z = totals[b * 4 + 0], ps = totals[b * 4 + 1];
    const double rep_scale = (scale_by_p_sum ? ps : 1.0) / z;
    grad[t] = static_cast<T>(c * (exaggeration * a - rep_scale * r));
  }
}

template <typename T, int D, bool kUnitDof, bool kComputeKl>
cudaError_t LaunchRows(cudaStream_t stream, const Plan& plan, const T* p, const T* y,
                       int64_t batch, int64_t n, int64_t d, T inv_alpha, T half_exp,
                       double* partial) {
  dim3 grid(static_cast<unsigned>(plan.row_tiles), static_cast<unsigned>(plan.splits),
            static_cast<unsigned>(std::min<int64_t>(batch, kMaxGridZ)));
  if (D > 0) {
    TsneRowsKernel<T, D, kUnitDof, kComputeKl><<<grid, kRowThreads, 0, stream>>>(
        p, y, batch, n, d, 0, inv_alpha, half_exp, plan.splits, plan.split_len, partial);
  } else {
    // d > 4: one pass per chunk of 4 dims (re-reading P); Z and the KL terms
    // come from the first pass.
    for (int64_t k0 = 0; k0 < d; k0 += kGenericChunk) {
      TsneRowsKernel<T, D, kUnitDof, kComputeKl><<<grid, kRowThreads, 0, stream>>>(
          p, y, batch, n, d, k0, inv_alpha, half_exp, plan.splits, plan.split_len, partial);
    }
  }
  return cudaGetLastError();
}

template <typename T, int D>
cudaError_t DispatchRows(cudaStream_t stream, const Plan& plan, bool unit_dof, bool want_kl,
                         const T* p, const T* y, int64_t batch, int64_t n, int64_t d,
                         T inv_alpha, T half_exp, double* partial) {
  if (unit_dof) {
    return want_kl ? LaunchRows<T, D, true, true>(stream, plan, p, y, batch, n, d, inv_alpha, half_exp, partial)
                   : LaunchRows<T, D, true, false>(stream, plan, p, y, batch, n, d, inv_alpha, half_exp, partial);
  }
  return want_kl ? LaunchRows<T, D, false, true>(stream, plan, p, y, batch, n, d, inv_alpha, half_exp, partial)
                 : LaunchRows<T, D, false, false>(stream, plan, p, y, batch, n, d, inv_alpha, half_exp, partial);
}

}  // namespace

template <typename T>
size_t TsneGradientWorkspaceBytes(int64_t batch, int64_t n, int64_t d) {
  if (batch <= 0 || n <= 0 || d <= 0) return 0;
  const Plan plan = MakePlan(batch, n, d);
  return static_cast<size_t>(batch * plan.splits * n * RecordSize(d) + batch * 4) * sizeof(double);
}

template <typename T>
cudaError_t LaunchTsneGradient(cudaStream_t stream, const T* p, const T* y, int64_t batch,
                               int64_t n, int64_t d, const TsneGradientOptions& options, T* grad,
                               T* kl, void* workspace) {
  if (grad == nullptr && kl == nullptr) return cudaSuccess;
  if (batch <= 0 || n <= 0) return cudaSuccess;
  if (d <= 0) {
    // No embedding dims: every distance is 0, u = w = 1 (CPU contract).
    // Rare enough to not merit a kernel; fall through the generic machinery
    // would index dims, so reject.
    return cudaErrorInvalidValue;
  }
  const Plan plan = MakePlan(batch, n, d);
  if (plan.row_tiles > 0x7fffffff) return cudaErrorInvalidValue;
  double* partial = static_cast<double*>(workspace);
  double* totals = partial + batch * plan.splits * n * RecordSize(d);
  const double alpha = options.dof;
  const bool unit_dof = (alpha == 1.0);
  const bool want_kl = (kl != nullptr);
  const T inv_alpha = static_cast<T>(1.0 / alpha);
  const T half_exp = static_cast<T>((alpha + 1.0) / 2.0);
  cudaError_t err;
  switch (d) {
    case 1: err = DispatchRows<T, 1>(stream, plan, unit_dof, want_kl, p, y, batch, n, d, inv_alpha, half_exp, partial); break;
    case 2: err = DispatchRows<T, 2>(stream, plan, unit_dof, want_kl, p, y, batch, n, d, inv_alpha, half_exp, partial); break;
    case 3: err = DispatchRows<T, 3>(stream, plan, unit_dof, want_kl, p, y, batch, n, d, inv_alpha, half_exp, partial); break;
    case 4: err = DispatchRows<T, 4>(stream, plan, unit_dof, want_kl, p, y, batch, n, d, inv_alpha, half_exp, partial); break;
    default: err = DispatchRows<T, 0>(stream, plan, unit_dof, want_kl, p, y, batch, n, d, inv_alpha, half_exp, partial); break;
  }
  if (err != cudaSuccess) return err;
  TsneTotalsKernel<T><<<static_cast<unsigned>(std::min<int64_t>(batch, 65535)), kTotalThreads, 0,
                        stream>>>(partial, batch, n, d, plan.splits, 0.5 * (alpha + 1.0), want_kl,
                                  totals, kl);
  err = cudaGetLastError();
  if (err != cudaSuccess || grad == nullptr) return err;
  const int64_t total = batch * n * d;
  const int threads = 256;
  const int64_t blocks = std::min<int64_t>(CeilDiv(total, threads), 65535);
  TsneGradFinishKernel<T><<<static_cast<unsigned>(blocks), threads, 0, stream>>>(
      partial, totals, batch, n, d, plan.splits, 2.0 * (alpha + 1.0) / alpha,
      options.exaggeration, options.scale_repulsion_by_p_sum, grad);
  return cudaGetLastError();
}

#define TSNE_OPS_INSTANTIATE(T)                                                          \
  template size_t TsneGradientWorkspaceBytes<T>(int64_t, int64_t, int64_t);              \
  template cudaError_t LaunchTsneGradient<T>(cudaStream_t, const T*, const T*, int64_t,  \
                                             int64_t, int64_t, const TsneGradientOptions&, \
                                             T*, T*, void*);
TSNE_OPS_INSTANTIATE(float)
TSNE_OPS_INSTANTIATE(double)
#undef TSNE_OPS_INSTANTIATE

}  // namespace kernels
}  // namespace tsne_ops
