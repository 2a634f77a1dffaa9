// Small helpers shared by the CUDA kernel files (private to cc/compute/*.cu).
#ifndef TSNE_OPS_CC_COMPUTE_CUDA_UTILS_CUH_
#define TSNE_OPS_CC_COMPUTE_CUDA_UTILS_CUH_

#include <cuda_runtime.h>

#include <cstdint>

namespace tsne_ops {
namespace kernels {
namespace cuda_detail {

constexpr int kWarp = 32;

inline int64_t CeilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Butterfly (xor) warp sum. Every lane ends with the bitwise-same value:
// at each stage a lane adds its partner's value to its own and the partner
// does the reverse, and IEEE addition is commutative. So branches on the
// result are warp-uniform and the order of additions is fixed.
template <typename A>
__device__ __forceinline__ A WarpSum(A v) {
#pragma unroll
  for (int off = kWarp / 2; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
  return v;
}

template <typename A>
__device__ __forceinline__ A WarpMin(A v) {
#pragma unroll
  for (int off = kWarp / 2; off > 0; off >>= 1) v = min(v, __shfl_xor_sync(0xffffffffu, v, off));
  return v;
}

// Fixed-order block sum of one value per thread (blockDim.x a power of two,
// at most 1024); the result is returned to every thread. `scratch` holds
// blockDim.x values.
template <typename A>
__device__ A BlockSum(A v, A* scratch) {
  const int t = threadIdx.x;
  scratch[t] = v;
  __syncthreads();
  for (int s = blockDim.x / 2; s > 0; s >>= 1) {
    if (t < s) scratch[t] += scratch[t + s];
    __syncthreads();
  }
  const A r = scratch[0];
  __syncthreads();
  return r;
}

}  // namespace cuda_detail
}  // namespace kernels
}  // namespace tsne_ops

#endif  // TSNE_OPS_CC_COMPUTE_CUDA_UTILS_CUH_
