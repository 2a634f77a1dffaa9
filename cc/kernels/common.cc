#include "cc/kernels/common.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <sstream>
#include <thread>
#include <vector>

namespace tsne_ops {
namespace kernels {

ParallelFor SerialFor() {
  return [](int64_t total, int64_t /*cost_per_unit*/,
            const std::function<void(int64_t, int64_t)>& work) {
    if (total > 0) work(0, total);
  };
}

ParallelFor ThreadFor(int num_threads) {
  if (num_threads <= 0) {
    num_threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  }
  return [num_threads](int64_t total, int64_t cost_per_unit,
                       const std::function<void(int64_t, int64_t)>& work) {
    if (total <= 0) return;
    // Below ~50k cycles of work a thread start costs more than it saves.
    const int64_t min_units = std::max<int64_t>(1, 50000 / std::max<int64_t>(1, cost_per_unit));
    const int64_t threads = std::min<int64_t>(num_threads, (total + min_units - 1) / min_units);
    if (threads <= 1) {
      work(0, total);
      return;
    }
    // Interleaved small chunks balance rows of uneven cost (triangular loops).
    const int64_t chunk = std::max<int64_t>(1, std::min<int64_t>(min_units, total / (threads * 8) + 1));
    std::atomic<int64_t> next{0};
    auto run = [&]() {
      for (;;) {
        const int64_t begin = next.fetch_add(chunk);
        if (begin >= total) break;
        work(begin, std::min(total, begin + chunk));
      }
    };
    std::vector<std::thread> pool;
    pool.reserve(threads - 1);
    for (int64_t t = 1; t < threads; ++t) pool.emplace_back(run);
    run();
    for (auto& th : pool) th.join();
  };
}

namespace {

std::string IndexString(int64_t flat, const std::vector<int64_t>& shape) {
  std::vector<int64_t> idx(shape.size(), 0);
  for (int64_t k = static_cast<int64_t>(shape.size()) - 1; k >= 0; --k) {
    const int64_t extent = std::max<int64_t>(1, shape[k]);
    idx[k] = flat % extent;
    flat /= extent;
  }
  std::ostringstream s;
  s << "[";
  for (size_t k = 0; k < idx.size(); ++k) s << (k ? ", " : "") << idx[k];
  s << "]";
  return s.str();
}

template <typename T>
std::string ValueString(T v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  std::ostringstream s;
  s.precision(17);
  s << static_cast<double>(v);
  return s.str();
}

// Index of the first element failing `ok`, or -1. Sharded scan; the answer
// is the smallest failing index whatever the sharding.
template <typename T, typename Ok>
int64_t FirstBad(const T* data, int64_t size, const ParallelFor* parallel_for, Ok ok) {
  const int64_t block = 1 << 16;
  const int64_t blocks = (size + block - 1) / block;
  std::vector<int64_t> first(blocks, -1);
  auto scan = [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t lo = b * block, hi = std::min(size, lo + block);
      bool all_ok = true;
      for (int64_t i = lo; i < hi; ++i) all_ok &= ok(data[i]);  // branch-free, vectorises
      if (all_ok) continue;
      for (int64_t i = lo; i < hi; ++i) {
        if (!ok(data[i])) { first[b] = i; break; }
      }
    }
  };
  if (parallel_for != nullptr) {
    (*parallel_for)(blocks, block * 2, scan);
  } else {
    scan(0, blocks);
  }
  for (int64_t b = 0; b < blocks; ++b) {
    if (first[b] >= 0) return first[b];
  }
  return -1;
}

int64_t Product(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t s : shape) n *= s;
  return n;
}

}  // namespace

template <typename T>
std::string CheckAllFinite(const T* data, const std::vector<int64_t>& shape,
                           const char* name, const ParallelFor* parallel_for) {
  const int64_t bad = FirstBad(data, Product(shape), parallel_for,
                               [](T v) { return (v - v) == T(0); });
  if (bad < 0) return "";
  return std::string(name) + " must be finite, but " + name +
         IndexString(bad, shape) + " = " + ValueString(data[bad]);
}

template <typename T>
std::string CheckNonNegativeFinite(const T* data, const std::vector<int64_t>& shape,
                                   const char* name, const ParallelFor* parallel_for) {
  const int64_t bad = FirstBad(data, Product(shape), parallel_for,
                               [](T v) { return (v - v) == T(0) && v >= T(0); });
  if (bad < 0) return "";
  return std::string(name) + " must be finite and non-negative, but " + name +
         IndexString(bad, shape) + " = " + ValueString(data[bad]);
}

template std::string CheckAllFinite<float>(const float*, const std::vector<int64_t>&, const char*, const ParallelFor*);
template std::string CheckAllFinite<double>(const double*, const std::vector<int64_t>&, const char*, const ParallelFor*);
template std::string CheckNonNegativeFinite<float>(const float*, const std::vector<int64_t>&, const char*, const ParallelFor*);
template std::string CheckNonNegativeFinite<double>(const double*, const std::vector<int64_t>&, const char*, const ParallelFor*);

bool CpuHasAvx2Fma() {
  static const bool has = [] {
    const char* force = std::getenv("TSNE_OPS_FORCE_BASELINE");
    if (force != nullptr && force[0] != '\0' && force[0] != '0') return false;
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
    return false;
#endif
  }();
  return has;
}

const char* CpuIsaName() { return CpuHasAvx2Fma() ? "avx2" : "baseline"; }

}  // namespace kernels
}  // namespace tsne_ops
