// Small portable SIMD layer for the CPU kernels (GCC/Clang vector extensions).
//
// Included only by the *_cpu.cc sources, which are compiled once per
// instruction set (see cpu_isa.h); everything here lives in the per-ISA
// namespace and is `static inline`, so the baseline and AVX2 builds never share
// a symbol. The vector width follows the build: 32 bytes (8 float / 4 double)
// when __AVX2__ is defined, else 16 bytes (SSE2, the x86-64 baseline).
//
// Exp and Log are polynomial evaluations with range reduction (Cephes style),
// accurate to a few ulp in float and in double; they take no exceptional
// path: arguments are clamped, Exp flushes to exactly 0 below the smallest
// normal result, Log is meant for finite positive normal inputs (zero,
// negative, NaN or subnormal inputs give unspecified values: mask them).
#ifndef TSNE_OPS_CC_COMPUTE_SIMD_H_
#define TSNE_OPS_CC_COMPUTE_SIMD_H_

#include <cmath>
#include <cstdint>
#include <cstring>

#include "cc/compute/cpu_isa.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

#if defined(__AVX2__)
#define TSNE_SIMD_BYTES 32
#else
#define TSNE_SIMD_BYTES 16
#endif

namespace tsne_ops {
namespace kernels {
namespace TSNE_CPU_ISA {
namespace simd {

typedef float vf __attribute__((vector_size(TSNE_SIMD_BYTES)));
typedef double vd __attribute__((vector_size(TSNE_SIMD_BYTES)));
typedef int32_t vi32 __attribute__((vector_size(TSNE_SIMD_BYTES)));
typedef int64_t vi64 __attribute__((vector_size(TSNE_SIMD_BYTES)));

template <typename T>
struct Traits;
template <>
struct Traits<float> {
  using V = vf;
  using I = vi32;
  static constexpr int L = TSNE_SIMD_BYTES / 4;
};
template <>
struct Traits<double> {
  using V = vd;
  using I = vi64;
  static constexpr int L = TSNE_SIMD_BYTES / 8;
};

template <typename T>
using Vec = typename Traits<T>::V;

template <typename T>
static inline Vec<T> Load(const T* p) {
  Vec<T> v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}
template <typename T>
static inline void Store(T* p, Vec<T> v) {
  std::memcpy(p, &v, sizeof(v));
}
// Broadcast (0 + x would cost an add: it is not an identity for x = -0).
static inline vf Set1(float x) {
#if defined(__AVX2__)
  return (vf)_mm256_set1_ps(x);
#elif defined(__SSE__)
  return (vf)_mm_set1_ps(x);
#else
  vf v;
  for (int l = 0; l < TSNE_SIMD_BYTES / 4; ++l) v[l] = x;
  return v;
#endif
}
static inline vd Set1(double x) {
#if defined(__AVX2__)
  return (vd)_mm256_set1_pd(x);
#elif defined(__SSE2__)
  return (vd)_mm_set1_pd(x);
#else
  vd v;
  for (int l = 0; l < TSNE_SIMD_BYTES / 8; ++l) v[l] = x;
  return v;
#endif
}
// Horizontal sums in a fixed pairwise (tree) order that depends only on the
// lane count: ((v0 + v4) + (v2 + v6)) + ((v1 + v5) + (v3 + v7)) for 8 lanes.
static inline float HSum(vf v) {
#if defined(__AVX2__)
  __m128 a = _mm_add_ps(_mm256_castps256_ps128((__m256)v), _mm256_extractf128_ps((__m256)v, 1));
#elif defined(__SSE__)
  __m128 a = (__m128)v;
#endif
#if defined(__SSE__)
  a = _mm_add_ps(a, _mm_movehl_ps(a, a));
  a = _mm_add_ss(a, _mm_shuffle_ps(a, a, 1));
  return _mm_cvtss_f32(a);
#else
  float s = 0;
  for (int l = 0; l < TSNE_SIMD_BYTES / 4; ++l) s += v[l];
  return s;
#endif
}
static inline double HSum(vd v) {
#if defined(__AVX2__)
  __m128d a = _mm_add_pd(_mm256_castpd256_pd128((__m256d)v), _mm256_extractf128_pd((__m256d)v, 1));
#elif defined(__SSE2__)
  __m128d a = (__m128d)v;
#endif
#if defined(__SSE2__)
  a = _mm_add_sd(a, _mm_unpackhi_pd(a, a));
  return _mm_cvtsd_f64(a);
#else
  double s = 0;
  for (int l = 0; l < TSNE_SIMD_BYTES / 8; ++l) s += v[l];
  return s;
#endif
}

// ------------------------------------------------------- compare masks ----
// Bit l of the result is set when a[l] <= b[l] (false for NaN lanes): the
// movemask of the comparison, for scanning only the lanes that pass a filter.
static inline unsigned LessEqualMask(vf a, vf b) {
#if defined(__AVX2__)
  return static_cast<unsigned>(_mm256_movemask_ps(_mm256_cmp_ps((__m256)a, (__m256)b, _CMP_LE_OQ)));
#elif defined(__SSE__)
  return static_cast<unsigned>(_mm_movemask_ps(_mm_cmple_ps((__m128)a, (__m128)b)));
#else
  unsigned m = 0;
  for (int l = 0; l < TSNE_SIMD_BYTES / 4; ++l) m |= unsigned(a[l] <= b[l]) << l;
  return m;
#endif
}
static inline unsigned LessEqualMask(vd a, vd b) {
#if defined(__AVX2__)
  return static_cast<unsigned>(_mm256_movemask_pd(_mm256_cmp_pd((__m256d)a, (__m256d)b, _CMP_LE_OQ)));
#elif defined(__SSE2__)
  return static_cast<unsigned>(_mm_movemask_pd(_mm_cmple_pd((__m128d)a, (__m128d)b)));
#else
  unsigned m = 0;
  for (int l = 0; l < TSNE_SIMD_BYTES / 8; ++l) m |= unsigned(a[l] <= b[l]) << l;
  return m;
#endif
}

// ----------------------------------------------------------- reciprocal ----
// Float: hardware estimate (12 bits) + one Newton step (~23 bits, <= 2 ulp).
// Double: an exact division.
static inline vf Recip(vf a) {
#if defined(__AVX2__)
  vf r = (vf)_mm256_rcp_ps((__m256)a);
#elif defined(__SSE__)
  vf r = (vf)_mm_rcp_ps((__m128)a);
#else
  return 1.0f / a;
#endif
#if defined(__SSE__)
  return r * (2.0f - a * r);
#endif
}
static inline vd Recip(vd a) { return 1.0 / a; }

// ---------------------------------------------------------- square root ----
// Correctly rounded (IEEE sqrt), lane by lane the same as std::sqrt.
static inline vd Sqrt(vd a) {
#if defined(__AVX2__)
  return (vd)_mm256_sqrt_pd((__m256d)a);
#elif defined(__SSE2__)
  return (vd)_mm_sqrt_pd((__m128d)a);
#else
  vd r;
  for (int l = 0; l < TSNE_SIMD_BYTES / 8; ++l) r[l] = std::sqrt(a[l]);
  return r;
#endif
}
static inline double Sqrt(double a) { return std::sqrt(a); }
static inline float Recip(float a) { return 1.0f / a; }
static inline double Recip(double a) { return 1.0 / a; }

// ------------------------------------------------------------------ exp ----
static inline vf Exp(vf x) {
  const vf lo = Set1(-87.33654f), hi = Set1(88.72283f);
  const auto under = x < lo;
  x = x < lo ? lo : x;
  x = x > hi ? hi : x;
  const vf magic = Set1(12582912.0f);  // 1.5 * 2^23: round to nearest
  vf fx = x * 1.44269504088896341f + magic;
  fx = fx - magic;
  vf r = x - fx * 0.693359375f;
  r = r - fx * -2.12194440e-4f;
  vf p = Set1(1.9875691500e-4f);
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * (r * r) + r + 1.0f;
  const vi32 n = __builtin_convertvector(fx, vi32);
  vi32 bits = (vi32)p + (n << 23);
  vf res = (vf)bits;
  return under ? vf{} : res;
}

static inline vd Exp(vd x) {
  const vd lo = Set1(-708.3964185322641), hi = Set1(709.0);
  const auto under = x < lo;
  x = x < lo ? lo : x;
  x = x > hi ? hi : x;
  const vd magic = Set1(6755399441055744.0);  // 1.5 * 2^52
  vd fx = x * 1.4426950408889634074 + magic;
  // The integer sits in the low bits of fx + magic (ulp 1 there): no
  // double -> int64 conversion, which AVX2 lacks (it would go lane by lane).
  const vi64 n = (vi64)fx - (vi64)magic;
  fx = fx - magic;
  vd r = x - fx * 6.93145751953125e-1;
  r = r - fx * 1.42860682030941723212e-6;
  // Taylor series to r^13 / 13!  (|r| <= 0.347: truncation < 1e-17).
  vd p = Set1(1.0 / 6227020800.0);
  p = p * r + 1.0 / 479001600.0;
  p = p * r + 1.0 / 39916800.0;
  p = p * r + 1.0 / 3628800.0;
  p = p * r + 1.0 / 362880.0;
  p = p * r + 1.0 / 40320.0;
  p = p * r + 1.0 / 5040.0;
  p = p * r + 1.0 / 720.0;
  p = p * r + 1.0 / 120.0;
  p = p * r + 1.0 / 24.0;
  p = p * r + 1.0 / 6.0;
  p = p * r + 0.5;
  p = p * r + 1.0;
  p = p * r + 1.0;
  vi64 bits = (vi64)p + (n << 52);
  vd res = (vd)bits;
  return under ? vd{} : res;
}
static inline float Exp(float x) { return std::exp(x); }
static inline double Exp(double x) { return std::exp(x); }

// ------------------------------------------------------------------ log ----
// x = 2^e m, m in [sqrt(1/2), sqrt(2)); log m = 2 atanh(s), s = (m-1)/(m+1).
static inline vf Log(vf x) {
  // Cephes logf: a polynomial in f = m - 1 (no division, which would compete
  // with the kernels' own divisions for the divider).
  vi32 bits = (vi32)x;
  vi32 e = ((bits >> 23) & 0xff) - 127;
  vf m = (vf)((bits & 0x007fffff) | 0x3f800000);  // [1, 2)
  const auto big = m > 1.41421356f;
  m = big ? m * 0.5f : m;
  e = big ? e + 1 : e;
  const vf f = m - 1.0f;
  const vf z = f * f;
  vf p = Set1(7.0376836292e-2f);
  p = p * f - 1.1514610310e-1f;
  p = p * f + 1.1676998740e-1f;
  p = p * f - 1.2420140846e-1f;
  p = p * f + 1.4249322787e-1f;
  p = p * f - 1.6668057665e-1f;
  p = p * f + 2.0000714765e-1f;
  p = p * f - 2.4999993993e-1f;
  p = p * f + 3.3333331174e-1f;
  const vf fe = __builtin_convertvector(e, vf);
  vf y = p * f * z;
  y = y + fe * -2.12194440e-4f;
  y = y - 0.5f * z;
  return f + y + fe * 0.693359375f;
}

// Double: reduction to m in [sqrt(1/2), sqrt(2)), s = (m - 1) / (m + 1),
// log m = 2 atanh(s) = 2 s (1 + s^2/3 + ... + s^20/21).
struct LogParts {
  vd fe, f, den;  // exponent, m - 1, m + 1
};
static inline LogParts LogReduce(vd x) {
  vi64 bits = (vi64)x;
  vi64 e = ((bits >> 52) & 0x7ff) - 1023;
  vd m = (vd)((bits & 0x000fffffffffffffLL) | 0x3ff0000000000000LL);
  const auto big = m > 1.4142135623730951;
  m = big ? m * 0.5 : m;
  e = big ? e + 1 : e;
  // int64 -> double through 1.5 * 2^52 (exact for |e| < 2^51; AVX2 has no
  // such conversion and would go lane by lane).
  const vd magic = Set1(6755399441055744.0);
  const vd fe = (vd)(e + (vi64)magic) - magic;
  return {fe, m - 1.0, m + 1.0};
}
static inline vd LogFinish(const LogParts& r, vd s) {
  const vd s2 = s * s;
  vd p = Set1(1.0 / 21.0);
  p = p * s2 + 1.0 / 19.0;
  p = p * s2 + 1.0 / 17.0;
  p = p * s2 + 1.0 / 15.0;
  p = p * s2 + 1.0 / 13.0;
  p = p * s2 + 1.0 / 11.0;
  p = p * s2 + 1.0 / 9.0;
  p = p * s2 + 1.0 / 7.0;
  p = p * s2 + 1.0 / 5.0;
  p = p * s2 + 1.0 / 3.0;
  // log x = e ln2_hi + (2 s + 2 s s2 p + e ln2_lo)
  const vd two_s = 2.0 * s;
  return r.fe * 6.93147180369123816490e-1 +
         (two_s * s2 * p + r.fe * 1.90821492927058770002e-10 + two_s);
}
static inline vd Log(vd x) {
  const LogParts r = LogReduce(x);
  return LogFinish(r, r.f / r.den);
}
// Three logarithms for one division (the divider is the bottleneck of the
// double KL kernel): 1/(d1 d2 d3) is formed once; each d is in [1.7, 2.5].
static inline void Log3(vd x1, vd x2, vd x3, vd& l1, vd& l2, vd& l3) {
  const LogParts r1 = LogReduce(x1), r2 = LogReduce(x2), r3 = LogReduce(x3);
  const vd d12 = r1.den * r2.den;
  const vd inv = 1.0 / (d12 * r3.den);
  const vd i3 = d12 * inv;            // 1 / d3
  const vd i12 = r3.den * inv;        // 1 / (d1 d2)
  l1 = LogFinish(r1, r1.f * (r2.den * i12));
  l2 = LogFinish(r2, r2.f * (r1.den * i12));
  l3 = LogFinish(r3, r3.f * i3);
}
static inline void Log3(vf x1, vf x2, vf x3, vf& l1, vf& l2, vf& l3);

static inline void Log3(vf x1, vf x2, vf x3, vf& l1, vf& l2, vf& l3) {
  l1 = Log(x1);
  l2 = Log(x2);
  l3 = Log(x3);
}
static inline float Log(float x) { return std::log(x); }
static inline double Log(double x) { return std::log(x); }

// ------------------------------------------------------------ transpose ----
// dst[c * ldd + r] = src[r * lds + c] for r < rows, c < cols.
template <typename T>
static inline void Transpose(const T* __restrict src, int64_t lds, int64_t rows, int64_t cols,
               T* __restrict dst, int64_t ldd) {
  int64_t r = 0;
#if defined(__AVX2__)
  if constexpr (sizeof(T) == 4) {
    for (; r + 8 <= rows; r += 8) {
      int64_t c = 0;
      for (; c + 8 <= cols; c += 8) {
        const float* s = reinterpret_cast<const float*>(src) + r * lds + c;
        __m256 r0 = _mm256_loadu_ps(s), r1 = _mm256_loadu_ps(s + lds),
               r2 = _mm256_loadu_ps(s + 2 * lds), r3 = _mm256_loadu_ps(s + 3 * lds),
               r4 = _mm256_loadu_ps(s + 4 * lds), r5 = _mm256_loadu_ps(s + 5 * lds),
               r6 = _mm256_loadu_ps(s + 6 * lds), r7 = _mm256_loadu_ps(s + 7 * lds);
        __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1),
               t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3),
               t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5),
               t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
        __m256 u0 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(1, 0, 1, 0)),
               u1 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(3, 2, 3, 2)),
               u2 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(1, 0, 1, 0)),
               u3 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(3, 2, 3, 2)),
               u4 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(1, 0, 1, 0)),
               u5 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(3, 2, 3, 2)),
               u6 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(1, 0, 1, 0)),
               u7 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(3, 2, 3, 2));
        float* d = reinterpret_cast<float*>(dst) + c * ldd + r;
        _mm256_storeu_ps(d, _mm256_permute2f128_ps(u0, u4, 0x20));
        _mm256_storeu_ps(d + ldd, _mm256_permute2f128_ps(u1, u5, 0x20));
        _mm256_storeu_ps(d + 2 * ldd, _mm256_permute2f128_ps(u2, u6, 0x20));
        _mm256_storeu_ps(d + 3 * ldd, _mm256_permute2f128_ps(u3, u7, 0x20));
        _mm256_storeu_ps(d + 4 * ldd, _mm256_permute2f128_ps(u0, u4, 0x31));
        _mm256_storeu_ps(d + 5 * ldd, _mm256_permute2f128_ps(u1, u5, 0x31));
        _mm256_storeu_ps(d + 6 * ldd, _mm256_permute2f128_ps(u2, u6, 0x31));
        _mm256_storeu_ps(d + 7 * ldd, _mm256_permute2f128_ps(u3, u7, 0x31));
      }
      for (; c < cols; ++c)
        for (int64_t k = 0; k < 8; ++k) dst[c * ldd + r + k] = src[(r + k) * lds + c];
    }
  } else {
    for (; r + 4 <= rows; r += 4) {
      int64_t c = 0;
      for (; c + 4 <= cols; c += 4) {
        const double* s = reinterpret_cast<const double*>(src) + r * lds + c;
        __m256d r0 = _mm256_loadu_pd(s), r1 = _mm256_loadu_pd(s + lds),
                r2 = _mm256_loadu_pd(s + 2 * lds), r3 = _mm256_loadu_pd(s + 3 * lds);
        __m256d t0 = _mm256_unpacklo_pd(r0, r1), t1 = _mm256_unpackhi_pd(r0, r1),
                t2 = _mm256_unpacklo_pd(r2, r3), t3 = _mm256_unpackhi_pd(r2, r3);
        double* d = reinterpret_cast<double*>(dst) + c * ldd + r;
        _mm256_storeu_pd(d, _mm256_permute2f128_pd(t0, t2, 0x20));
        _mm256_storeu_pd(d + ldd, _mm256_permute2f128_pd(t1, t3, 0x20));
        _mm256_storeu_pd(d + 2 * ldd, _mm256_permute2f128_pd(t0, t2, 0x31));
        _mm256_storeu_pd(d + 3 * ldd, _mm256_permute2f128_pd(t1, t3, 0x31));
      }
      for (; c < cols; ++c)
        for (int64_t k = 0; k < 4; ++k) dst[c * ldd + r + k] = src[(r + k) * lds + c];
    }
  }
#elif defined(__SSE2__)
  if constexpr (sizeof(T) == 4) {
    for (; r + 4 <= rows; r += 4) {
      int64_t c = 0;
      for (; c + 4 <= cols; c += 4) {
        const float* s = reinterpret_cast<const float*>(src) + r * lds + c;
        __m128 r0 = _mm_loadu_ps(s), r1 = _mm_loadu_ps(s + lds), r2 = _mm_loadu_ps(s + 2 * lds),
               r3 = _mm_loadu_ps(s + 3 * lds);
        _MM_TRANSPOSE4_PS(r0, r1, r2, r3);
        float* d = reinterpret_cast<float*>(dst) + c * ldd + r;
        _mm_storeu_ps(d, r0);
        _mm_storeu_ps(d + ldd, r1);
        _mm_storeu_ps(d + 2 * ldd, r2);
        _mm_storeu_ps(d + 3 * ldd, r3);
      }
      for (; c < cols; ++c)
        for (int64_t k = 0; k < 4; ++k) dst[c * ldd + r + k] = src[(r + k) * lds + c];
    }
  }
#endif
  for (; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) dst[c * ldd + r] = src[r * lds + c];
}

}  // namespace simd
}  // namespace TSNE_CPU_ISA
}  // namespace kernels
}  // namespace tsne_ops

#endif  // TSNE_OPS_CC_COMPUTE_SIMD_H_
