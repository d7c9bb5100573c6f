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

// C (m x n, row stride ldc, unit column stride) = act(beta * C + A (m x k) * B (k x n) + bias),
// where bias (length n) may be null. With beta == 0, C is never read. Threads split m or n,
// never k, so the result is bit-identical for any thread count.
template <class T>
void gemm(const KernelTable<T>& kt, index_t m, index_t n, index_t k, ConstMatrix<T> a,
          ConstMatrix<T> b, T* c, index_t ldc, const Epilogue<T>& epilogue, int n_threads);

}  // namespace nncore
