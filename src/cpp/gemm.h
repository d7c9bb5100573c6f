// The BLIS-style GEMM driver: cache blocking, packing and the thread split, independent of the ISA.
#pragma once

#include "common.h"
#include "dispatch.h"

namespace nncore {

// A read-only matrix given by a pointer and element strides; a transpose is a swap of strides,
// and any strides (including negative ones) are read correctly by the packing routines.
template <class T>
struct ConstMatrix {
    const T* data;
    index_t row_stride;
    index_t col_stride;
};

// Steps of k that the direct kernel sums from zero before adding them to C (see gemm.cpp).
constexpr index_t kDirectSumBlock = 1024;

// The k block of the packed path for a product of m rows and a reduction of k: up to
// kShortKcMaxRows rows kt.kc_small, k split into the fewest blocks of equal length up to that (the
// last one at most a step per block shorter); else kt.kc (see gemm.cpp). The sums over k run in
// blocks of this length.
constexpr index_t kShortKcMaxRows = 64;
template <class T>
index_t gemm_kc(const KernelTable<T>& kt, index_t m, index_t k);

// C (m x n, row stride ldc, unit column stride) = act(beta * C + A (m x k) * B (k x n) + bias),
// where bias (length n) may be null. With beta == 0, C is never read. Threads split m or n,
// never k, so the result is bit-identical for any thread count. epilogue.transposed must be false
// (the driver sets it itself, gemm.cpp).
// skip_zero_steps lets the packed path leave out, per register tile of MR rows, the k steps at
// which those rows of A (stored by rows) are all zero: for inputs that are mostly zeros in shared
// places (MNIST's pixels: a 12-row tile of its images is nonzero at ~49% of the 784 steps). The
// caller must know B finite: a step left out would then only have added A's zero times B, so the
// values are the same as without it (up to the sign of a zero or NaN result; an infinite or NaN
// entry of B, which 0 * B would have spread, is not). Other paths and layouts ignore it. Measured
// (2-core Xeon, float32, MNIST's 10000 test images through 784 -> 256 + bias + ReLU in chunks of
// 1024 rows, medians of 9 alternated runs): 1 thread 50.4 -> 30.5 ms, 2 threads 25.4 -> 15.4 ms.
template <class T>
void gemm(const KernelTable<T>& kt, index_t m, index_t n, index_t k, ConstMatrix<T> a,
          ConstMatrix<T> b, T* c, index_t ldc, const Epilogue<T>& epilogue, int n_threads,
          bool skip_zero_steps = false);

}  // namespace nncore
