// CUDA spreading and gathering for the FFT interpolation repulsion (contract
// in fft_interpolation.h).
//
// Spread without float atomics: each point gets the key (batch, stencil
// cell), the cell being its stencil's first node per dimension; a stable
// radix sort (CUB) orders the points by key, and a binary search gives each
// cell its range of sorted points. Then one thread per (batch, node) adds
// the contributions of the points of the p^d cells whose stencils cover the
// node, cell by cell and in sorted order within a cell, so each node's sum
// has one fixed order from run to run. Gather: one thread per point over the
// p^d nodes of its stencil.
#include <cub/device/device_radix_sort.cuh>
#include <cuda_runtime.h>

#include <cstdint>

#include "cc/compute/cuda_utils.cuh"
#include "cc/compute/fft_interpolation.h"

namespace tsne_ops {
namespace kernels {
namespace {

using cuda_detail::CeilDiv;

constexpr int kThreads = 256;

struct SpreadWorkspace {
  uint32_t *keys_in, *keys_out;
  int64_t *vals_in, *vals_out;
  int64_t* box_start;  // [batch * cells + 1]
  void* cub_temp;
  size_t cub_bytes;
};

// Stencil cells per batch element: first nodes 0..m-p per dimension.
__host__ __device__ int64_t CellsPer(int64_t d, int64_t n_boxes, int p) {
  const int64_t rows = n_boxes * p - p + 1;
  return d == 2 ? rows * rows : rows;
}

size_t Align(size_t x) { return (x + 255) / 256 * 256; }

// Key bits: keys are (batch, cell) < total_cells.
int KeyBits(int64_t total_boxes) {
  int end_bit = 1;
  while (end_bit < 32 && (int64_t{1} << end_bit) <= total_boxes) ++end_bit;
  return end_bit;
}

// CUB's scratch, queried with the arguments of the real sort.
size_t CubBytes(int64_t items, int end_bit) {
  size_t bytes = 0;
  cub::DeviceRadixSort::SortPairs(nullptr, bytes, static_cast<const uint32_t*>(nullptr),
                                  static_cast<uint32_t*>(nullptr),
                                  static_cast<const int64_t*>(nullptr),
                                  static_cast<int64_t*>(nullptr), static_cast<int>(items), 0,
                                  end_bit);
  return bytes;
}

SpreadWorkspace Carve(void* ws, int64_t batch, int64_t n, int64_t d, int64_t n_boxes, int pn) {
  const int64_t items = batch * n;
  char* q = static_cast<char*>(ws);
  SpreadWorkspace w;
  w.keys_in = reinterpret_cast<uint32_t*>(q);
  q += Align(sizeof(uint32_t) * items);
  w.keys_out = reinterpret_cast<uint32_t*>(q);
  q += Align(sizeof(uint32_t) * items);
  w.vals_in = reinterpret_cast<int64_t*>(q);
  q += Align(sizeof(int64_t) * items);
  w.vals_out = reinterpret_cast<int64_t*>(q);
  q += Align(sizeof(int64_t) * items);
  w.box_start = reinterpret_cast<int64_t*>(q);
  q += Align(sizeof(int64_t) * (batch * CellsPer(d, n_boxes, pn) + 1));
  w.cub_temp = q;
  w.cub_bytes = CubBytes(items, KeyBits(batch * CellsPer(d, n_boxes, pn)));
  return w;
}

// A point's stencil cell within its batch element, and its weights.
template <typename T>
__device__ int64_t CellIndex(const T* y, const T* origin, const T* box_width, int64_t b,
                             int64_t pt, int64_t d, int64_t n_boxes, int p, double* wx,
                             double* wy) {
  const int64_t m = n_boxes * p;
  const double spacing = static_cast<double>(box_width[b]) / p;
  const int64_t cx = FftStencil(
      (static_cast<double>(y[pt * d]) - static_cast<double>(origin[b * d])) / spacing, m, p, wx);
  if (d == 1) return cx;
  const int64_t cy = FftStencil(
      (static_cast<double>(y[pt * d + 1]) - static_cast<double>(origin[b * d + 1])) / spacing, m,
      p, wy);
  return cx * (m - p + 1) + cy;
}

template <typename T>
__global__ void KeyKernel(const T* __restrict__ y, const T* __restrict__ origin,
                          const T* __restrict__ box_width, int64_t batch, int64_t n, int64_t d,
                          int64_t n_boxes, int p, SpreadWorkspace w) {
  const int64_t u = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (u >= batch * n) return;
  const int64_t b = u / n;
  double wx[kFftMaxNodes], wy[kFftMaxNodes];
  const int64_t cell = CellIndex(y, origin, box_width, b, u, d, n_boxes, p, wx, wy);
  w.keys_in[u] = static_cast<uint32_t>(b * CellsPer(d, n_boxes, p) + cell);
  w.vals_in[u] = u;
}

// box_start[k] = the first sorted position with key >= k (lower bound).
__global__ void BoxStartKernel(int64_t items, int64_t total_boxes, SpreadWorkspace w) {
  const int64_t k = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (k > total_boxes) return;
  int64_t lo = 0, hi = items;
  while (lo < hi) {
    const int64_t mid = (lo + hi) / 2;
    if (static_cast<int64_t>(w.keys_out[mid]) < k) lo = mid + 1;
    else hi = mid;
  }
  w.box_start[k] = lo;
}

template <typename T>
__global__ void SpreadKernel(const T* __restrict__ y, const T* __restrict__ charges,
                             const T* __restrict__ origin, const T* __restrict__ box_width,
                             int64_t batch, int64_t n, int64_t d, int64_t n_charges,
                             int64_t n_boxes, int p, SpreadWorkspace w, T* __restrict__ grid) {
  const int64_t m = n_boxes * p;
  const int64_t rows = m - p + 1;
  const int64_t plane = d == 2 ? m * m : m;
  const int64_t u = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (u >= batch * plane) return;
  const int64_t b = u / plane, node = u % plane;
  const int64_t gx = d == 2 ? node / m : node, gy = d == 2 ? node % m : 0;
  // The cells whose stencils cover the node: first node within p - 1 below.
  const int64_t x0 = gx - p + 1 > 0 ? gx - p + 1 : 0, x1 = gx < rows - 1 ? gx : rows - 1;
  const int64_t y0 = d == 2 ? (gy - p + 1 > 0 ? gy - p + 1 : 0) : 0;
  const int64_t y1 = d == 2 ? (gy < rows - 1 ? gy : rows - 1) : 0;
  double acc[kFftMaxCharges] = {};
  double wx[kFftMaxNodes], wy[kFftMaxNodes];
  for (int64_t cx = x0; cx <= x1; ++cx) {
    for (int64_t cy = y0; cy <= y1; ++cy) {
      const int64_t key = b * CellsPer(d, n_boxes, p) + (d == 2 ? cx * rows + cy : cx);
      for (int64_t e = w.box_start[key]; e < w.box_start[key + 1]; ++e) {
        const int64_t pt = w.vals_out[e];
        wy[0] = 1.0;
        CellIndex(y, origin, box_width, b, pt, d, n_boxes, p, wx, wy);
        const double wgt = wx[gx - cx] * (d == 2 ? wy[gy - cy] : 1.0);
        for (int64_t c = 0; c < n_charges; ++c)
          acc[c] += wgt * static_cast<double>(charges[pt * n_charges + c]);
      }
    }
  }
  for (int64_t c = 0; c < n_charges; ++c)
    grid[(b * n_charges + c) * plane + node] = static_cast<T>(acc[c]);
}

template <typename T>
__global__ void GatherKernel(const T* __restrict__ y, const T* __restrict__ potentials,
                             const T* __restrict__ origin, const T* __restrict__ box_width,
                             int64_t batch, int64_t n, int64_t d, int64_t n_charges,
                             int64_t n_boxes, int p, T* __restrict__ phi) {
  const int64_t u = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (u >= batch * n) return;
  const int64_t m = n_boxes * p;
  const int64_t row_nodes = d == 2 ? m : 1;
  const int64_t plane = row_nodes * m;
  const int64_t b = u / n;
  double wx[kFftMaxNodes], wy[kFftMaxNodes];
  wy[0] = 1.0;
  const int64_t cell = CellIndex(y, origin, box_width, b, u, d, n_boxes, p, wx, wy);
  const int64_t cx = d == 2 ? cell / (m - p + 1) : cell, cy = d == 2 ? cell % (m - p + 1) : 0;
  const int py = d == 2 ? p : 1;
  for (int64_t c = 0; c < n_charges; ++c) {
    const T* v = potentials + (b * n_charges + c) * plane;
    double s = 0;
    for (int lx = 0; lx < p; ++lx) {
      const T* row = v + (cx + lx) * row_nodes + cy;
      double r = 0;
      for (int ly = 0; ly < py; ++ly) r += wy[ly] * static_cast<double>(row[ly]);
      s += wx[lx] * r;
    }
    phi[u * n_charges + c] = static_cast<T>(s);
  }
}

}  // namespace

size_t FftSpreadWorkspaceBytes(int64_t batch, int64_t n, int64_t d, int64_t n_boxes, int p) {
  const int64_t items = batch * n;
  return 2 * Align(sizeof(uint32_t) * items) + 2 * Align(sizeof(int64_t) * items) +
         Align(sizeof(int64_t) * (batch * CellsPer(d, n_boxes, p) + 1)) +
         Align(CubBytes(items, KeyBits(batch * CellsPer(d, n_boxes, p))));
}

template <typename T>
cudaError_t LaunchFftSpread(cudaStream_t stream, const T* y, const T* charges, const T* origin,
                            const T* box_width, int64_t batch, int64_t n, int64_t d,
                            int64_t n_charges, int64_t n_boxes, int p, T* grid, void* workspace) {
  if (batch <= 0 || n <= 0) return cudaSuccess;
  if ((d != 1 && d != 2) || p < 1 || p > kFftMaxNodes || n_charges < 1 ||
      n_charges > kFftMaxCharges || batch * n > 0x7fffffff) {
    return cudaErrorInvalidValue;
  }
  const int64_t total_boxes = batch * CellsPer(d, n_boxes, p);
  if (total_boxes >= (int64_t{1} << 32) - 1) return cudaErrorInvalidValue;
  SpreadWorkspace w = Carve(workspace, batch, n, d, n_boxes, p);
  const int64_t items = batch * n;
  KeyKernel<T><<<static_cast<unsigned>(CeilDiv(items, kThreads)), kThreads, 0, stream>>>(
      y, origin, box_width, batch, n, d, n_boxes, p, w);
  cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) return err;
  const int end_bit = KeyBits(total_boxes);
  size_t bytes = w.cub_bytes;
  err = cub::DeviceRadixSort::SortPairs(w.cub_temp, bytes, w.keys_in, w.keys_out, w.vals_in,
                                        w.vals_out, static_cast<int>(items), 0, end_bit, stream);
  if (err != cudaSuccess) return err;
  BoxStartKernel<<<static_cast<unsigned>(CeilDiv(total_boxes + 1, kThreads)), kThreads, 0,
                   stream>>>(items, total_boxes, w);
  err = cudaGetLastError();
  if (err != cudaSuccess) return err;
  const int64_t m = n_boxes * p;
  const int64_t nodes = batch * (d == 2 ? m * m : m);
  SpreadKernel<T><<<static_cast<unsigned>(CeilDiv(nodes, kThreads)), kThreads, 0, stream>>>(
      y, charges, origin, box_width, batch, n, d, n_charges, n_boxes, p, w, grid);
  return cudaGetLastError();
}

template <typename T>
cudaError_t LaunchFftGather(cudaStream_t stream, const T* y, const T* potentials,
                            const T* origin, const T* box_width, int64_t batch, int64_t n,
                            int64_t d, int64_t n_charges, int64_t n_boxes, int p, T* phi) {
  if (batch <= 0 || n <= 0) return cudaSuccess;
  if ((d != 1 && d != 2) || p < 1 || p > kFftMaxNodes || n_charges < 1 ||
      n_charges > kFftMaxCharges) {
    return cudaErrorInvalidValue;
  }
  GatherKernel<T><<<static_cast<unsigned>(CeilDiv(batch * n, kThreads)), kThreads, 0, stream>>>(
      y, potentials, origin, box_width, batch, n, d, n_charges, n_boxes, p, phi);
  return cudaGetLastError();
}

#define TSNE_OPS_INSTANTIATE(T)                                                             \
  template cudaError_t LaunchFftSpread<T>(cudaStream_t, const T*, const T*, const T*,       \
                                          const T*, int64_t, int64_t, int64_t, int64_t,     \
                                          int64_t, int, T*, void*);                         \
  template cudaError_t LaunchFftGather<T>(cudaStream_t, const T*, const T*, const T*,       \
                                          const T*, int64_t, int64_t, int64_t, int64_t,     \
                                          int64_t, int, T*);
TSNE_OPS_INSTANTIATE(float)
TSNE_OPS_INSTANTIATE(double)
#undef TSNE_OPS_INSTANTIATE

}  // namespace kernels
}  // namespace tsne_ops
