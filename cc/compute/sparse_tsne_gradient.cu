// CUDA t-SNE gradient on a sparse P (contract in sparse_tsne_gradient.h).
//
// Three passes, each row owned by one thread, so nothing is accumulated with
// float atomics and the result is the same from run to run:
//   1. attraction: thread u walks row u's stored entries (CSR), writes A_u
//      and the row's p sums (double);
//   2. repulsion: a block of kThreads rows sweeps all n points through
//      shared-memory tiles of kThreads points (every pair, exact), writes R_u
//      and the row's share of Z (double; each tile summed in T first, as
//      the CPU kernel does);
//   3. a fixed-order block reduction per batch element gives Z, sum p and
//      the KL; an elementwise pass writes grad = c (ex A - s R / Z).
// d <= 3 keeps the row's sums in registers; larger d accumulates in the
// (row-private) global workspace.
#include <cuda_runtime.h>

#include <cstdint>

#include "cc/compute/cuda_utils.cuh"
#include "cc/compute/sparse_tsne_gradient.h"

namespace tsne_ops {
namespace kernels {
namespace {

using cuda_detail::CeilDiv;

constexpr int kThreads = 128;

// Workspace: att, rep [rows * d], row sums [4][rows] (z, p_sum, p_log_p,
// p_log_u), batch totals [4][batch]; all double.
struct Workspace {
  double *att, *rep, *rows4, *batch4;
};

Workspace Carve(void* ws, int64_t batch, int64_t n, int64_t d) {
  double* p = static_cast<double*>(ws);
  const int64_t rows = batch * n;
  Workspace w;
  w.att = p;
  w.rep = w.att + rows * d;
  w.rows4 = w.rep + rows * d;
  w.batch4 = w.rows4 + 4 * rows;
  return w;
}

template <typename T>
__global__ void AttractionKernel(const int64_t* __restrict__ row_ptr,
                                 const int64_t* __restrict__ cols, const T* __restrict__ pv,
                                 const T* __restrict__ y, int64_t batch, int64_t n, int64_t d,
                                 double inv_alpha, bool want_kl, Workspace w,
                                 const unsigned long long* __restrict__ guard) {
  const int64_t rows = batch * n;
  const int64_t u = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (u >= rows) return;
  // A CSR that failed LaunchCheckCsr is not read.
  if (guard != nullptr && (guard[0] != ~0ull || guard[1] != ~0ull)) return;
  const int64_t b = u / n, i = u % n;
  const T* yb = y + b * n * d;
  double* att = w.att + u * d;
  for (int64_t k = 0; k < d; ++k) att[k] = 0;
  double ps = 0, plp = 0, plu = 0;
  for (int64_t e = row_ptr[u]; e < row_ptr[u + 1]; ++e) {
    const int64_t j = cols[e];
    if (j == i) continue;
    const double p = static_cast<double>(pv[e]);
    double dist = 0;
    for (int64_t k = 0; k < d; ++k) {
      const double t = static_cast<double>(yb[i * d + k]) - static_cast<double>(yb[j * d + k]);
      dist += t * t;
    }
    const double a = dist * inv_alpha + 1.0;
    const double q = p / a;
    for (int64_t k = 0; k < d; ++k)
      att[k] += q * (static_cast<double>(yb[i * d + k]) - static_cast<double>(yb[j * d + k]));
    ps += p;
    if (want_kl) {
      if (p > 0) plp += p * log(p);
      plu -= p * log(a);
    }
  }
  w.rows4[rows + u] = ps;
  w.rows4[2 * rows + u] = plp;
  w.rows4[3 * rows + u] = plu;
}

// D > 0: compile-time d (<= 3); D == 0: runtime d, sums in the workspace.
template <typename T, int D, bool kUnitDof>
__global__ void __launch_bounds__(kThreads)
    RepulsionKernel(const T* __restrict__ y, int64_t n, int64_t d, T inv_alpha, T half_exp,
                    Workspace w, int64_t rows) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  T* tile = reinterpret_cast<T*>(smem_raw);  // [kThreads][d]
  const int64_t b = blockIdx.y;
  const int64_t i = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x;
  const bool active = i < n;
  const T* yb = y + b * n * d;
  const int64_t u = b * n + i;
  const int64_t dd = D > 0 ? D : d;
  T yi[D > 0 ? D : 1];
  double r[D > 0 ? D : 1];
  double* rg = w.rep + u * dd;  // D == 0 only
  if constexpr (D > 0) {
    for (int k = 0; k < D; ++k) {
      yi[k] = active ? yb[i * D + k] : T(0);
      r[k] = 0;
    }
  } else {
    if (active)
      for (int64_t k = 0; k < dd; ++k) rg[k] = 0;
  }
  double z = 0;
  for (int64_t j0 = 0; j0 < n; j0 += kThreads) {
    const int64_t cnt = min(static_cast<int64_t>(kThreads), n - j0);
    __syncthreads();
    for (int64_t e = threadIdx.x; e < cnt * dd; e += kThreads) tile[e] = yb[j0 * dd + e];
    __syncthreads();
    if (!active) continue;
    T tr[D > 0 ? D : 1] = {};
    T tz = 0;
    for (int64_t jj = 0; jj < cnt; ++jj) {
      if (j0 + jj == i) continue;
      T dist = 0;
      for (int64_t k = 0; k < dd; ++k) {
        const T t = (D > 0 ? yi[k] : yb[i * dd + k]) - tile[jj * dd + k];
        dist += t * t;
      }
      const T a = kUnitDof ? dist + T(1) : dist * inv_alpha + T(1);
      const T uu = T(1) / a;
      const T wgt = kUnitDof ? uu : exp(-log(a) * half_exp);
      const T wu = wgt * uu;
      if constexpr (D > 0) {
        for (int k = 0; k < D; ++k) tr[k] += wu * (yi[k] - tile[jj * D + k]);
      } else {
        for (int64_t k = 0; k < dd; ++k)
          rg[k] += static_cast<double>(wu * (yb[i * dd + k] - tile[jj * dd + k]));
      }
      tz += wgt;
    }
    if constexpr (D > 0) {
      for (int k = 0; k < D; ++k) r[k] += static_cast<double>(tr[k]);
    }
    z += static_cast<double>(tz);
  }
  if (!active) return;
  if constexpr (D > 0) {
    for (int k = 0; k < D; ++k) w.rep[u * D + k] = r[k];
  }
  w.rows4[u] = z;
}

// One block per batch element: totals in a fixed order, then kl.
constexpr int kReduceThreads = 256;
__global__ void __launch_bounds__(kReduceThreads)
    ReduceKernel(Workspace w, int64_t batch, int64_t n, double alpha, bool want_kl,
                 void* kl_out, bool is_float, const void* z_given) {
  __shared__ double scratch[kReduceThreads];
  const int64_t rows = batch * n;
  for (int64_t b = blockIdx.x; b < batch; b += gridDim.x) {
    double tot[4];
    for (int q = 0; q < 4; ++q) {
      double s = 0;
      for (int64_t i = threadIdx.x; i < n; i += blockDim.x) s += w.rows4[q * rows + b * n + i];
      tot[q] = cuda_detail::BlockSum(s, scratch);
    }
    if (threadIdx.x == 0) {
      // A repulsion computed elsewhere brings its own Z (rows4's z is unused).
      if (z_given != nullptr) {
        tot[0] = is_float ? static_cast<double>(static_cast<const float*>(z_given)[b])
                          : static_cast<const double*>(z_given)[b];
      }
      for (int q = 0; q < 4; ++q) w.batch4[4 * b + q] = tot[q];
      if (want_kl) {
        const double kl = tot[2] - 0.5 * (alpha + 1.0) * tot[3] + tot[1] * log(tot[0]);
        if (is_float) static_cast<float*>(kl_out)[b] = static_cast<float>(kl);
        else static_cast<double*>(kl_out)[b] = kl;
      }
    }
  }
}

template <typename T>
__global__ void FinishKernel(Workspace w, int64_t batch, int64_t n, int64_t d, double c,
                             double exaggeration, bool scale_by_p_sum,
                             const T* __restrict__ rep_given, T* __restrict__ grad) {
  const int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (e >= batch * n * d) return;
  const int64_t b = e / (n * d);
  const double z = w.batch4[4 * b], s = w.batch4[4 * b + 1];
  const double rep_scale = (scale_by_p_sum ? s : 1.0) / z;
  const double r = rep_given != nullptr ? static_cast<double>(rep_given[e]) : w.rep[e];
  grad[e] = static_cast<T>(c * exaggeration * w.att[e] - c * rep_scale * r);
}

template <typename T, int D>
cudaError_t Repulsion(cudaStream_t stream, bool one, const T* y, int64_t batch, int64_t n,
                      int64_t d, T inv_alpha, T half_exp, const Workspace& w) {
  const dim3 grid(static_cast<unsigned>(CeilDiv(n, kThreads)), static_cast<unsigned>(batch));
  const size_t smem = sizeof(T) * kThreads * d;
  if (one) {
    RepulsionKernel<T, D, true><<<grid, kThreads, smem, stream>>>(y, n, d, inv_alpha, half_exp,
                                                                  w, batch * n);
  } else {
    RepulsionKernel<T, D, false><<<grid, kThreads, smem, stream>>>(y, n, d, inv_alpha, half_exp,
                                                                   w, batch * n);
  }
  return cudaGetLastError();
}

}  // namespace

template <typename T>
size_t SparseTsneGradientWorkspaceBytes(int64_t batch, int64_t n, int64_t d) {
  return sizeof(double) * (2 * batch * n * d + 4 * batch * n + 4 * batch);
}

template <typename T>
cudaError_t LaunchSparseTsneGradient(cudaStream_t stream, const int64_t* row_ptr,
                                     const int64_t* cols, const T* p_values, const T* y,
                                     int64_t batch, int64_t n, int64_t d,
                                     const TsneGradientOptions& options, T* grad, T* kl,
                                     void* workspace) {
  if (batch <= 0 || n <= 0) return cudaSuccess;
  if (batch > 65535 || CeilDiv(n, kThreads) > 0x7fffffff) return cudaErrorInvalidValue;
  // Shared tile of kThreads points: d up to 48 KB / (kThreads sizeof(T)).
  if (sizeof(T) * kThreads * d > 48 * 1024) return cudaErrorInvalidValue;
  const double alpha = options.dof;
  const bool one = (alpha == 1.0);
  const bool want_kl = (kl != nullptr);
  Workspace w = Carve(workspace, batch, n, d);
  const int64_t rows = batch * n;
  AttractionKernel<T><<<static_cast<unsigned>(CeilDiv(rows, kThreads)), kThreads, 0, stream>>>(
      row_ptr, cols, p_values, y, batch, n, d, 1.0 / alpha, want_kl, w, nullptr);
  cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) return err;
  const T inv_alpha = static_cast<T>(1.0 / alpha);
  const T half_exp = static_cast<T>((alpha + 1.0) / 2.0);
  switch (d) {
    case 1: err = Repulsion<T, 1>(stream, one, y, batch, n, d, inv_alpha, half_exp, w); break;
    case 2: err = Repulsion<T, 2>(stream, one, y, batch, n, d, inv_alpha, half_exp, w); break;
    case 3: err = Repulsion<T, 3>(stream, one, y, batch, n, d, inv_alpha, half_exp, w); break;
    default: err = Repulsion<T, 0>(stream, one, y, batch, n, d, inv_alpha, half_exp, w); break;
  }
  if (err != cudaSuccess) return err;
  ReduceKernel<<<static_cast<unsigned>(batch), kReduceThreads, 0, stream>>>(
      w, batch, n, alpha, want_kl, kl, sizeof(T) == 4, nullptr);
  err = cudaGetLastError();
  if (err != cudaSuccess || grad == nullptr) return err;
  FinishKernel<T><<<static_cast<unsigned>(CeilDiv(rows * d, 256)), 256, 0, stream>>>(
      w, batch, n, d, 2.0 * (alpha + 1.0) / alpha, options.exaggeration,
      options.scale_repulsion_by_p_sum, nullptr, grad);
  return cudaGetLastError();
}

template <typename T>
cudaError_t LaunchSparseTsneGradientFromRepulsion(
    cudaStream_t stream, const int64_t* row_ptr, const int64_t* cols, const T* p_values,
    const T* y, int64_t batch, int64_t n, int64_t d, const TsneGradientOptions& options,
    const T* repulsion, const T* z, T* grad, T* kl, void* workspace,
    const unsigned long long* csr_guard) {
  if (batch <= 0 || n <= 0) return cudaSuccess;
  if (batch > 65535) return cudaErrorInvalidValue;
  const double alpha = options.dof;
  const bool want_kl = (kl != nullptr);
  Workspace w = Carve(workspace, batch, n, d);
  const int64_t rows = batch * n;
  // The attraction pass of the exact kernel, then the same reduction and
  // finish with the given R and Z in place of the tiled repulsion.
  AttractionKernel<T><<<static_cast<unsigned>(CeilDiv(rows, kThreads)), kThreads, 0, stream>>>(
      row_ptr, cols, p_values, y, batch, n, d, 1.0 / alpha, want_kl, w, csr_guard);
  cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) return err;
  ReduceKernel<<<static_cast<unsigned>(batch), kReduceThreads, 0, stream>>>(
      w, batch, n, alpha, want_kl, kl, sizeof(T) == 4, z);
  err = cudaGetLastError();
  if (err != cudaSuccess || grad == nullptr) return err;
  FinishKernel<T><<<static_cast<unsigned>(CeilDiv(rows * d, 256)), 256, 0, stream>>>(
      w, batch, n, d, 2.0 * (alpha + 1.0) / alpha, options.exaggeration,
      options.scale_repulsion_by_p_sum, repulsion, grad);
  return cudaGetLastError();
}

namespace {

// One thread per index t: row_ptr entry t (t <= rows) and column t (t < nnz);
// the smallest bad index of each wins (atomicMin), as the CPU checks report it.
__global__ void CheckCsrKernel(const int64_t* __restrict__ row_ptr, int64_t rows,
                               const int64_t* __restrict__ cols, int64_t nnz, int64_t n,
                               unsigned long long* first_bad) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t last = rows + 1 > nnz ? rows + 1 : nnz;
  for (int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; t < last;
       t += stride) {
    if (t <= rows && CsrRowPtrBad(row_ptr, t, rows, nnz))
      atomicMin(&first_bad[0], static_cast<unsigned long long>(t));
    if (t < nnz && CsrColumnBad(cols[t], n))
      atomicMin(&first_bad[1], static_cast<unsigned long long>(t));
  }
}

}  // namespace

cudaError_t LaunchCheckCsr(cudaStream_t stream, const int64_t* row_ptr, int64_t rows,
                           const int64_t* cols, int64_t nnz, int64_t n,
                           unsigned long long* first_bad) {
  cudaError_t err = cudaMemsetAsync(first_bad, 0xff, 2 * sizeof(unsigned long long), stream);
  if (err != cudaSuccess) return err;
  const int64_t last = rows + 1 > nnz ? rows + 1 : nnz;
  const int64_t blocks = CeilDiv(last, 256) < 4096 ? CeilDiv(last, 256) : 4096;
  CheckCsrKernel<<<static_cast<unsigned>(blocks), 256, 0, stream>>>(row_ptr, rows, cols, nnz, n,
                                                                     first_bad);
  return cudaGetLastError();
}

#define TSNE_OPS_INSTANTIATE(T)                                                              \
  template size_t SparseTsneGradientWorkspaceBytes<T>(int64_t, int64_t, int64_t);            \
  template cudaError_t LaunchSparseTsneGradient<T>(cudaStream_t, const int64_t*,             \
                                                   const int64_t*, const T*, const T*,       \
                                                   int64_t, int64_t, int64_t,                \
                                                   const TsneGradientOptions&, T*, T*, void*); \
  template cudaError_t LaunchSparseTsneGradientFromRepulsion<T>(                             \
      cudaStream_t, const int64_t*, const int64_t*, const T*, const T*, int64_t, int64_t,     \
      int64_t, const TsneGradientOptions&, const T*, const T*, T*, T*, void*,                \
      const unsigned long long*);
TSNE_OPS_INSTANTIATE(float)
TSNE_OPS_INSTANTIATE(double)
#undef TSNE_OPS_INSTANTIATE

}  // namespace kernels
}  // namespace tsne_ops
