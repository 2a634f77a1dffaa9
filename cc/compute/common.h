// Shared pieces of the framework-free kernels: the parallel-for the caller
// supplies and the CPU instruction-set dispatch. Input validation is in
// validation.h.
#ifndef TSNE_OPS_CC_COMPUTE_COMMON_H_
#define TSNE_OPS_CC_COMPUTE_COMMON_H_

#include <atomic>
#include <cstdint>
#include <functional>

namespace tsne_ops {
namespace kernels {

// Runs work(begin, end) over disjoint ranges covering [0, total). The op
// library passes TensorFlow's intra-op thread pool, the pybind11 module a
// std::thread splitter. cost_per_unit is a rough cycle count per unit, used
// by TensorFlow to choose the shard size. Kernels must give the same result
// however the range is split (each unit writes its own outputs; reductions
// over units are done afterwards, serially, in a fixed order).
using ParallelFor = std::function<void(
    int64_t total, int64_t cost_per_unit,
    const std::function<void(int64_t begin, int64_t end)>& work)>;

// *target = min(*target, value), from any thread: the first bad entry of a
// parallel check, the same whatever the sharding.
inline void AtomicMin(std::atomic<int64_t>* target, int64_t value) {
  int64_t seen = target->load();
  while (value < seen && !target->compare_exchange_weak(seen, value)) {
  }
}

// A ParallelFor that runs everything on the calling thread.
ParallelFor SerialFor();

// A ParallelFor over `num_threads` std::threads (0: hardware concurrency).
ParallelFor ThreadFor(int num_threads = 0);

// The CPU kernels are compiled twice: once for the x86-64 baseline and once
// with AVX2 + FMA. The public entry points (namespace kernels) pick one at run
// time with __builtin_cpu_supports; the two builds live in these namespaces.
// Set TSNE_OPS_FORCE_BASELINE=1 in the environment to force the baseline.
bool CpuHasAvx2Fma();
const char* CpuIsaName();

}  // namespace kernels
}  // namespace tsne_ops

#endif  // TSNE_OPS_CC_COMPUTE_COMMON_H_
