#include "cc/compute/common.h"

#include <algorithm>
#include <atomic>
#include <cstdlib>
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
