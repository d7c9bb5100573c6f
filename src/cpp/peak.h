// The machine's limit: floating-point throughput of the active ISA's fused multiply-add on
// registers only (no memory traffic), the ceiling every GEMM figure is compared with.
#pragma once

#include "dispatch.h"

namespace nncore {

// GFLOP/s of `threads` threads running the table's FMA loop at the same time (the sum of the
// threads' rates), each the best of many short runs spread over about `seconds`.
template <class T>
double fma_peak_gflops(const KernelTable<T>& kt, double seconds, int threads);

}  // namespace nncore
