// The packed dot-product micro-kernel behind every N x M x dim product of the
// CPU kernels (pairwise distances, exact nearest neighbours): dots = X Y^T
// through packed panels and a register-blocked micro-kernel, kMr rows of X
// (broadcast) times kNr = 2 vectors of Y columns, kMr * 2 vector accumulators
// (12 of the 16 AVX2 registers). X is packed into kMr-row panels and Y into
// kNr-row panels, both depth-major (k outer), zero-padded to a whole panel,
// so the micro-kernel runs without edge cases.
//
// Included only by *_cpu.cc sources (compiled once per instruction set, see
// cpu_isa.h), so it lives in the per-ISA namespace. Each dot product adds its
// products in the same order (k = 0, 1, ...) whatever the caller, so a value
// depends only on the two rows and the depth blocking.
#ifndef TSNE_OPS_CC_COMPUTE_GEMM_CPU_H_
#define TSNE_OPS_CC_COMPUTE_GEMM_CPU_H_

#include <algorithm>
#include <cstdint>

#include "cc/compute/cpu_isa.h"
#include "cc/compute/simd.h"

namespace tsne_ops {
namespace kernels {
namespace TSNE_CPU_ISA {
// Internal linkage: the including files are built with different
// floating-point contraction flags (nearest_neighbors_cpu.cc has
// -ffp-contract=off), so each keeps its own copy; the micro-kernel's fused
// multiply-adds are explicit (MulAdd) and therefore the same in both.
namespace {

// a * b + c, one rounding where the build has FMA (as contraction would give).
static inline __attribute__((always_inline)) simd::vf MulAdd(simd::vf a, simd::vf b, simd::vf c) {
#if defined(__FMA__) && defined(__AVX2__)
  return (simd::vf)_mm256_fmadd_ps((__m256)a, (__m256)b, (__m256)c);
#else
  return a * b + c;
#endif
}
static inline __attribute__((always_inline)) simd::vd MulAdd(simd::vd a, simd::vd b, simd::vd c) {
#if defined(__FMA__) && defined(__AVX2__)
  return (simd::vd)_mm256_fmadd_pd((__m256d)a, (__m256d)b, (__m256d)c);
#else
  return a * b + c;
#endif
}

constexpr int kMr = 6;
constexpr int64_t kTileR = 96;   // tile rows: a multiple of kMr and of kNr
constexpr int64_t kTileC = 96;   // tile columns
constexpr int64_t kDepthBlock = 256;  // depth per pass (a kNr panel stays in L1)

template <typename T>
struct Gemm {
  using V = simd::Vec<T>;
  static constexpr int L = simd::Traits<T>::L;
  static constexpr int kNr = 2 * L;
  static_assert(kTileR % kMr == 0 && kTileC % (2 * L) == 0, "tile shape");

  // Packs rows [0, rows) of x - c (row stride dim) into panels of `w` rows:
  // out[(r / w) * w * dim + k * w + r % w]; rows up to rows_pad are zero.
  static void Pack(const T* x, const T* c, int64_t rows, int64_t rows_pad, int64_t dim, int w,
                   T* out, int64_t p_begin, int64_t p_end) {
    for (int64_t p = p_begin; p < p_end; ++p) {
      T* o = out + p * w * dim;
      for (int r = 0; r < w; ++r) {
        const int64_t row = p * w + r;
        if (row < rows) {
          const T* src = x + row * dim;
          for (int64_t k = 0; k < dim; ++k) o[k * w + r] = src[k] - c[k];
        } else {
          for (int64_t k = 0; k < dim; ++k) o[k * w + r] = T(0);
        }
      }
    }
    (void)rows_pad;
  }

  // The kMr x kNr block sum_k a[k * kMr + r] * b[k * kNr + c] into registers:
  // c0[r] holds columns [0, L), c1[r] columns [L, 2L). Callers with their own
  // epilogue (the nearest-neighbour filter) use this directly.
  static inline __attribute__((always_inline)) void Accumulate(
      const T* __restrict a, const T* __restrict b, int64_t kc, V* c0, V* c1) {
    for (int r = 0; r < kMr; ++r) c0[r] = c1[r] = V{};
    for (int64_t k = 0; k < kc; ++k) {
      const V b0 = simd::Load(b + k * kNr), b1 = simd::Load(b + k * kNr + L);
      const T* ak = a + k * kMr;
#pragma GCC unroll 6
      for (int r = 0; r < kMr; ++r) {
        const V av = simd::Set1(ak[r]);
        c0[r] = MulAdd(av, b0, c0[r]);
        c1[r] = MulAdd(av, b1, c1[r]);
      }
    }
  }

  // c[r * ldc + c] (+)= sum_k a[k * kMr + r] * b[k * kNr + c], r < kMr, c < kNr.
  static inline void Micro(const T* __restrict a, const T* __restrict b, int64_t kc,
                           T* __restrict c, int64_t ldc, bool accumulate) {
    V c0[kMr], c1[kMr];
    Accumulate(a, b, kc, c0, c1);
    for (int r = 0; r < kMr; ++r) {
      T* cr = c + r * ldc;
      if (accumulate) {
        simd::Store(cr, simd::Load(cr) + c0[r]);
        simd::Store(cr + L, simd::Load(cr + L) + c1[r]);
      } else {
        simd::Store(cr, c0[r]);
        simd::Store(cr + L, c1[r]);
      }
    }
  }

  // dots[kTileR][kTileC] for the tile of rows i0.. of the X panels xp and
  // columns j0.. of the Y panels yp.
  static void Tile(const T* xp, const T* yp, int64_t dim, int64_t i0, int64_t j0, T* dots) {
    for (int64_t k0 = 0; k0 < dim; k0 += kDepthBlock) {
      const int64_t kc = std::min(kDepthBlock, dim - k0);
      for (int64_t jc = 0; jc < kTileC; jc += kNr) {
        const T* b = yp + ((j0 + jc) / kNr) * kNr * dim + k0 * kNr;
        for (int64_t ir = 0; ir < kTileR; ir += kMr) {
          const T* a = xp + ((i0 + ir) / kMr) * kMr * dim + k0 * kMr;
          Micro(a, b, kc, dots + ir * kTileC + jc, kTileC, k0 > 0);
        }
      }
    }
  }
};

}  // namespace
}  // namespace TSNE_CPU_ISA
}  // namespace kernels
}  // namespace tsne_ops

#endif  // TSNE_OPS_CC_COMPUTE_GEMM_CPU_H_
