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
#include "thread_pool.h"

namespace nncore {

// The two halves of W^T's rows (the inputs) that the two threads own in both products and in layer
// 0's optimizer step, whatever the thread count: [0, split) and [split, cols). Each core then
// reads and writes the same half of W^T, of its gradient and of its state every step, and they
// stay in its L2. With parts that differed between the products (the forward split W^T by
// columns, the gradient by rows with equal entry counts, the step by rows again), each core fetched
// lines the other had just written. Measured on a 2-core Xeon (2 MiB L2 each), MNIST batch 64,
// SGD with momentum, subnormals not yet flushed: the step over W^T and its momentum took ~130 us
// of a ~420 us training step (part of it subnormal arithmetic, see engine.cpp), and an epoch
// 0.39 s; with fixed halves (and the step inside the gradient kernel, engine.cpp) 0.34-0.35 s.
// The same step in a loop alone, on normal values: ~18 us with each core on its own half, ~90 us when
// the other core reads half of every row in between (splitting W^T by columns does not help: the
// L2 prefetchers then fetch the neighbour's half of each row, ~130 us).
// The forward's sum over the inputs thus runs in two halves added in a fixed order, for any
// thread count; threads beyond two stay idle in these products.
inline index_t sparse_split(index_t cols) { return cols / 2; }

// A batch (rows x cols) kept as its nonzeros (every value that is not +-0, NaN included), both by
// rows and by columns, each half of the columns (see sparse_split) apart.
template <class T>
struct SparseBatch {
    index_t rows = 0, cols = 0;
    // Row r's nonzeros in half h of the columns: entries [row_begin[h][r], row_end[h][r]) of
    // (col, row_val), columns ascending.
    std::vector<index_t> row_begin[2], row_end[2];
    std::vector<std::int32_t> col;
    std::vector<T> row_val;
    // Column p: entries [col_begin[p], col_end[p]) of (row, col_val), rows ascending.
    std::vector<index_t> col_begin, col_end;
    std::vector<std::int32_t> row;
    std::vector<T> col_val;
};

// Builds `out` from the rows row_data[0:rows) (each `cols` values), each half of the columns on a
// thread of its own when n_threads > 1 (and there is work enough for two). With columns_ready, that
// thread then calls columns_ready(p0, p1) with its half [p0, p1) of the columns, whose lists are
// complete (the engine brings those columns' rows of W^T up to date there, engine.cpp).
using ColumnsReady = FunctionRef<void(index_t, index_t)>;
template <class T>
void sparse_batch(const KernelTable<T>& kt, const T* const* row_data, index_t rows, index_t cols, SparseBatch<T>& out,
                  int n_threads, const ColumnsReady* columns_ready = nullptr);

// y (x.rows x n, by rows) = epilogue of X W^T, with wt = W^T (x.cols x n, by rows): the sum over
// each half of W^T's rows (one per thread), then y = act((half 0 + half 1) + bias); partial
// (x.rows x n) holds half 1's sums. The same values for any thread count.
template <class T>
void sparse_forward(const KernelTable<T>& kt, const SparseBatch<T>& x, index_t n, const T* wt, T* y, T* partial,
                    const Epilogue<T>& ep, int n_threads);

// dwt (x.cols x n, by rows) = X^T dy, dy (x.rows x n, by rows): the weight gradient in W^T's layout,
// each half of its rows on its own thread. With rows_done, the thread calls
// rows_done(r0, r1, block) on every block of rows [r0, r1) it has just formed, while it is in its L1
// (the engine takes layer 0's optimizer step there): block (r1 - r0 rows of n) is dwt's rows when
// store is true, else a buffer of the thread, and dwt is not written: the step then touches a
// quarter (Adam) to a third (SGD with momentum) less memory, and W^T and its state stay in each
// core's L2. MNIST batch 64, 2 threads, on a 2-core Xeon with subnormals flushed (engine.cpp), s
// per epoch stored vs not: SGD with momentum 0.275 vs 0.254, Adam 0.316 vs 0.292.
template <class T>
using RowsDone = FunctionRef<void(index_t, index_t, const T*)>;
template <class T>
void sparse_weight_grad(const KernelTable<T>& kt, const SparseBatch<T>& x, index_t n, const T* dy, T* dwt, int n_threads,
                        const RowsDone<T>* rows_done = nullptr, bool store = true);

// out (cols x rows) = in (rows x cols)^T, both contiguous.
template <class T>
void transpose_dense(const T* in, index_t rows, index_t cols, T* out);

}  // namespace nncore
