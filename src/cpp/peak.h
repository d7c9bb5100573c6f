// The machine's limit: floating-point throughput of the active ISA's fused multiply-add on
// registers only (no memory traffic), the ceiling every GEMM figure is compared with.
#pragma once

#include "dispatch.h"

namespace nncore {

// GFLOP/s of `threads` threads running the table's FMA loop at the same time (the sum of the
// threads' rates), each the best of many short runs spread over about `seconds`.
template <class T>
double fma_peak_gflops(const KernelTable<T>& kt, double seconds, int threads);

// GFLOP/s of the table's GEMM register tile alone (KernelTable::tile, one thread), its packed A
// and B panels and its tile of C in L1: the most any packed product can reach, with its loads of
// A and B but none of the driver's packing, edges or cache misses. Measured as fma_peak_gflops.
template <class T>
double tile_peak_gflops(const KernelTable<T>& kt, double seconds);

}  // namespace nncore
