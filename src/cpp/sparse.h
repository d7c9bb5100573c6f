// Inputs that are mostly zeros (MNIST's pixels are ~81% zeros), kept as their nonzeros so that the
// first Dense layer of a network trained on them costs in proportion to the nonzeros: its forward
// X W^T reads W^T (in x out) by rows, one row per nonzero input, and its weight gradient
// (dY^T X)^T = X^T dY is formed in that layout from X's nonzeros by columns. The engine chooses this
// path (engine.cpp); both products are the kernel table's csr_gemm.
#pragma once

#include <cstdint>
#include <vector>

#include "common.h"
#include "dispatch.h"

namespace nncore {

// A batch (rows x cols) kept as its nonzeros (every value that is not +-0, NaN included), both by
// rows and by columns.
template <class T>
struct SparseBatch {
    index_t rows = 0, cols = 0;
    // Row r: entries [row_begin[r], row_end[r]) of (col, row_val), columns ascending.
    std::vector<index_t> row_begin, row_end;
    std::vector<std::int32_t> col;
    std::vector<T> row_val;
    // Column p: entries [col_begin[p], col_end[p]) of (row, col_val), rows ascending.
    std::vector<index_t> col_begin, col_end;
    std::vector<std::int32_t> row;
    std::vector<T> col_val;
};

// Builds `out` from the rows row_data[0:rows) (each `cols` values) on up to n_threads threads.
template <class T>
void sparse_batch(const KernelTable<T>& kt, const T* const* row_data, index_t rows, index_t cols, SparseBatch<T>& out,
                  int n_threads);

// y (x.rows x n, by rows) = epilogue of X W^T, with wt = W^T (x.cols x n, by rows).
template <class T>
void sparse_forward(const KernelTable<T>& kt, const SparseBatch<T>& x, index_t n, const T* wt, T* y, const Epilogue<T>& ep,
                    int n_threads);

// dwt (x.cols x n, by rows) = X^T dy, dy (x.rows x n, by rows): the weight gradient in W^T's layout.
template <class T>
void sparse_weight_grad(const KernelTable<T>& kt, const SparseBatch<T>& x, index_t n, const T* dy, T* dwt, int n_threads);

// out (cols x rows) = in (rows x cols)^T, both contiguous.
template <class T>
void transpose_dense(const T* in, index_t rows, index_t cols, T* out);

}  // namespace nncore
