#include "sparse.h"

#include <algorithm>
#include <cstdint>

#include "thread_pool.h"
#include "workspace.h"

namespace nncore {

namespace {

// Below this many multiply-adds (or values read) per thread a second thread costs more than it
// saves (as for the unpacked GEMM kernels, gemm.cpp).
constexpr double kMinWorkPerThread = 1 << 16;
// Packing a batch splits over the threads from this many values per thread, as the engine's dense
// gather does: the rows come from all over the data set, and two threads wait on memory side by
// side (MNIST at batch 64, 50176 values, 2 threads: epochs 0.32 -> 0.305 s, medians of 18).
constexpr double kMinValuesPerThread = 1 << 13;
// Rows of the weight gradient formed between calls of its rows_done: 8 rows of 256 values, 8 KiB,
// stay in L1 for the optimizer step that follows.
constexpr index_t kRowsPerBlock = 8;
// Packing reads the batch's rows from all over the data set (the engine shuffles) one after another,
// each starting cold for the hardware prefetchers: it asks for the lines of the row this many
// places ahead (prefetch_lines) before it packs one, so that their wait on memory overlaps its
// work. MNIST batch 64 (60000 rows, 188 MB, shuffled), packing in a loop with the prefetch on and
// off batch by batch, medians of ~2800: 2 threads 39.0 -> 32.5 us, 1 thread 53.0 -> 40.9 us; 1, 4
// and 8 rows ahead were within 2% of 2. (The engine's dense gather gains nothing from it: memcpy
// keeps enough lines in flight itself, and the same prefetch took its copies from 13.6 to 15.6 us.)
constexpr index_t kRowsAhead = 2;

// A hint that x[0:n) will be read soon: a request for each of its cache lines (into L1). Never
// faults, whatever the address.
template <class T>
void prefetch_lines(const T* x, index_t n) {
    if (n <= 0) return;
    constexpr std::uintptr_t kLine = 64;
    const auto end = reinterpret_cast<std::uintptr_t>(x + n);
    for (auto line = reinterpret_cast<std::uintptr_t>(x) & ~(kLine - 1); line < end; line += kLine)
        __builtin_prefetch(reinterpret_cast<const void*>(line), 0, 3);
}

struct GradientBlocks;  // thread_buffer owner: blocks of the weight gradient that are not stored

// Threads for `work` over `units` indivisible pieces, at least min_per_thread of work each.
int parts_for(double work, index_t units, int n_threads, double min_per_thread) {
    const double parts = std::min({static_cast<double>(n_threads), static_cast<double>(units), work / min_per_thread});
    return std::max(1, static_cast<int>(parts));
}

// body(h) for both halves h = 0, 1 of the inputs, i.e. of W^T's rows (see sparse_split): on two
// threads when `work` is enough for two (min_per_thread each), else one after the other on the
// caller. More threads than two stay idle.
template <class Body>
void for_halves(double work, double min_per_thread, int n_threads, Body&& body) {
    parallel_ranges(2, parts_for(work, 2, n_threads, min_per_thread), [&](index_t h0, index_t h1) {
        for (index_t h = h0; h < h1; ++h) body(static_cast<int>(h));
    });
}

// Multiply-adds of a product of x's entries with n columns (each row's start counted as one entry).
template <class T>
double product_work(const SparseBatch<T>& x, index_t n) {
    double entries = static_cast<double>(x.rows);
    for (int h = 0; h < 2; ++h)
        for (index_t r = 0; r < x.rows; ++r) entries += static_cast<double>(x.row_end[h][r] - x.row_begin[h][r]);
    return entries * static_cast<double>(n);
}

}  // namespace

template <class T>
void sparse_batch(const KernelTable<T>& kt, const T* const* row_data, index_t rows, index_t cols, SparseBatch<T>& out,
                  int n_threads, const ColumnsReady* columns_ready) {
    out.rows = rows;
    out.cols = cols;
    const auto values = static_cast<std::size_t>(rows * cols);
    for (int h = 0; h < 2; ++h)
        if (out.row_begin[h].size() < static_cast<std::size_t>(rows)) {
            out.row_begin[h].resize(static_cast<std::size_t>(rows));
            out.row_end[h].resize(static_cast<std::size_t>(rows));
        }
    if (out.col.size() < values) {
        out.col.resize(values);
        out.row_val.resize(values);
        out.row.resize(values);
        out.col_val.resize(values);
    }
    out.col_begin.resize(static_cast<std::size_t>(cols));
    out.col_end.resize(static_cast<std::size_t>(cols));
    // Each half of the columns is packed by the thread that reads it in the products (for_halves):
    // its part of every row's entries (room from r cols + its first column on), then its columns'
    // lists, side by side from rows * its first column on. (Packed by rows on each thread and
    // regrouped by columns, half of the entries each thread read had been written by the other
    // core, and with each column's list at p rows, the regrouping's stores touched a cache line
    // each. Stand-alone, MNIST batch 64, 2 threads, us per batch: with the rows in cache 65-72 ->
    // 48-58; with them in memory, as in training, 73-80 either way: there the reads wait on memory.)
    const index_t split = sparse_split(cols);
    std::int32_t* col = out.col.data();
    T* row_val = out.row_val.data();
    for_halves(static_cast<double>(values), kMinValuesPerThread, n_threads, [&](int h) {
        const index_t p0 = h == 0 ? 0 : split, p1 = h == 0 ? split : cols;
        index_t* begin = out.row_begin[h].data();
        index_t* end = out.row_end[h].data();
        index_t* next = out.col_end.data();  // column p's count of entries, then where its next one goes
        std::fill(next + p0, next + p1, index_t(0));
        for (index_t r = 0; r < rows; ++r) {
            if (r + kRowsAhead < rows) prefetch_lines(row_data[r + kRowsAhead] + p0, p1 - p0);
            begin[r] = r * cols + p0;
            end[r] = begin[r] + kt.compress_nonzero(row_data[r] + p0, p1 - p0, p0, col + begin[r], row_val + begin[r]);
            for (index_t e = begin[r], stop = end[r]; e < stop; ++e) ++next[col[e]];
        }
        for (index_t p = p0, first = rows * p0; p < p1; ++p) {
            out.col_begin[p] = first;
            first += next[p];
            next[p] = out.col_begin[p];
        }
        std::int32_t* row = out.row.data();
        T* col_val = out.col_val.data();
        for (index_t r = 0; r < rows; ++r)
            for (index_t e = begin[r], stop = end[r]; e < stop; ++e) {
                const index_t slot = next[col[e]]++;
                row[slot] = static_cast<std::int32_t>(r);
                col_val[slot] = row_val[e];
            }
        if (columns_ready) (*columns_ready)(p0, p1);
    });
}

template <class T>
void sparse_forward(const KernelTable<T>& kt, const SparseBatch<T>& x, index_t n, const T* wt, T* y, T* partial,
                    const Epilogue<T>& ep, int n_threads) {
    for_halves(product_work(x, n), kMinWorkPerThread, n_threads, [&](int h) {
        kt.csr_gemm(x.rows, n, x.row_begin[h].data(), x.row_end[h].data(), x.col.data(), x.row_val.data(), wt, n,
                    h == 0 ? y : partial, n, Epilogue<T>{});
    });
    // y = act((y + partial) + bias): fma(1, a, b) is a + b exactly.
    const index_t values = x.rows * n;
    parallel_ranges(x.rows, parts_for(static_cast<double>(values), x.rows, n_threads, kMinValuesPerThread),
                    [&](index_t r0, index_t r1) {
                        T* rows = y + r0 * n;
                        kt.axpy(T(1), partial + r0 * n, rows, (r1 - r0) * n);
                        if (ep.bias)
                            for (index_t r = r0; r < r1; ++r) kt.axpy(T(1), ep.bias, y + r * n, n);
                        if (ep.act != Act::identity) kt.act_forward(ep.act, ep.alpha, rows, rows, (r1 - r0) * n);
                    });
}

template <class T>
void sparse_weight_grad(const KernelTable<T>& kt, const SparseBatch<T>& x, index_t n, const T* dy, T* dwt, int n_threads,
                        const RowsDone<T>* rows_done, bool store) {
    const index_t split = sparse_split(x.cols);
    if (!rows_done) store = true;
    for_halves(product_work(x, n), kMinWorkPerThread, n_threads, [&](int h) {
        const index_t i0 = h == 0 ? 0 : split, i1 = h == 0 ? split : x.cols;
        const index_t block = rows_done ? kRowsPerBlock : i1 - i0;
        T* scratch = store ? nullptr : thread_buffer<T, GradientBlocks>(static_cast<std::size_t>(block * n));
        for (index_t r0 = i0; r0 < i1; r0 += block) {
            const index_t r1 = std::min(i1, r0 + block);
            T* out = store ? dwt + r0 * n : scratch;
            kt.csr_gemm(r1 - r0, n, x.col_begin.data() + r0, x.col_end.data() + r0, x.row.data(), x.col_val.data(), dy, n, out, n,
                        Epilogue<T>{});
            if (rows_done) (*rows_done)(r0, r1, out);
        }
    });
}

template <class T>
void transpose_dense(const T* in, index_t rows, index_t cols, T* out) {
    constexpr index_t kBlock = 32;  // 32 x 32 tiles: each tile's rows and columns stay in L1
    for (index_t i0 = 0; i0 < rows; i0 += kBlock) {
        const index_t i1 = std::min(rows, i0 + kBlock);
        for (index_t j0 = 0; j0 < cols; j0 += kBlock) {
            const index_t j1 = std::min(cols, j0 + kBlock);
            for (index_t i = i0; i < i1; ++i)
                for (index_t j = j0; j < j1; ++j) out[j * rows + i] = in[i * cols + j];
        }
    }
}

#define NNCORE_INSTANTIATE_SPARSE(T)                                                                                     \
    template void sparse_batch<T>(const KernelTable<T>&, const T* const*, index_t, index_t, SparseBatch<T>&, int,        \
                                  const ColumnsReady*);                                                                  \
    template void sparse_forward<T>(const KernelTable<T>&, const SparseBatch<T>&, index_t, const T*, T*, T*,             \
                                    const Epilogue<T>&, int);                                                            \
    template void sparse_weight_grad<T>(const KernelTable<T>&, const SparseBatch<T>&, index_t, const T*, T*, int,        \
                                        const RowsDone<T>*, bool);                                                       \
    template void transpose_dense<T>(const T*, index_t, index_t, T*);

NNCORE_INSTANTIATE_SPARSE(float)
NNCORE_INSTANTIATE_SPARSE(double)

}  // namespace nncore
