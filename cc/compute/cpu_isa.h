// Included by the CPU kernel sources, which CMake compiles twice: with
// TSNE_CPU_ISA=baseline (x86-64) and TSNE_CPU_ISA=avx2 (-mavx2 -mfma). Code in
// namespace TSNE_CPU_ISA is therefore built once per instruction set; the
// dispatcher in cpu_dispatch.cc picks one at run time.
#ifndef TSNE_OPS_CC_COMPUTE_CPU_ISA_H_
#define TSNE_OPS_CC_COMPUTE_CPU_ISA_H_

#ifndef TSNE_CPU_ISA
#define TSNE_CPU_ISA baseline
#endif

// Reduction loops are marked `#pragma omp simd reduction(...)` so they may be
// reassociated and vectorised without -ffast-math; CMake passes -fopenmp-simd.

#endif  // TSNE_OPS_CC_COMPUTE_CPU_ISA_H_
