#include "sparse.h"

#include <algorithm>

#include "thread_pool.h"

namespace nncore {

namespace {

// Below this many multiply-adds (or values read) per thread a second thread costs more than it
// saves (as for the unpacked GEMM kernels, gemm.cpp).
constexpr double kMinWorkPerThread = 1 << 16;
// Packing a batch splits over the threads from this many values per thread, as the engine's dense
// gather does: the rows come from all over the data set, and two threads wait on memory side by
// side (MNIST at batch 64, 50176 values, 2 threads: epochs 0.32 -> 0.305 s, medians of 18).
constexpr double kMinValuesPerThread = 1 << 13;
// The forward splits columns in multiples of this many: of csr_gemm's block of 4 vectors (at most
// 64 values) on every ISA, so each part runs whole blocks.
constexpr index_t kColumnUnit = 64;

// Threads for `work` over `units` indivisible pieces, at least min_per_thread of work each.
int parts_for(double work, index_t units, int n_threads, double min_per_thread = kMinWorkPerThread) {
    const double parts = std::min({static_cast<double>(n_threads), static_cast<double>(units), work / min_per_thread});
    return std::max(1, static_cast<int>(parts));
}

// Rows [0, m) of C = epilogue of A B with A's rows from (begin, end, col, val), split over threads
// by whole rows with about equal numbers of entries (a row costs its entries plus one store).
template <class T>
void csr_rows(const KernelTable<T>& kt, index_t m, index_t n, const index_t* begin, const index_t* end, const std::int32_t* col,
              const T* val, const T* b, T* c, const Epilogue<T>& ep, int n_threads) {
    double work = 0;
    for (index_t i = 0; i < m; ++i) work += static_cast<double>(end[i] - begin[i] + 1);
    const int parts = parts_for(work * static_cast<double>(n), m, n_threads);
    const auto run = [&](index_t i0, index_t i1) { kt.csr_gemm(i1 - i0, n, begin + i0, end + i0, col, val, b, n, c + i0 * n, n, ep); };
    if (parts == 1) {
        run(0, m);
        return;
    }
    parallel_for(parts, [&](int part) {
        const auto boundary = [&](int p) {  // the first row past p / parts of the work
            if (p == parts) return m;
            double done = 0;
            index_t i = 0;
            while (i < m && done < work * p / parts) done += static_cast<double>(end[i] - begin[i] + 1), ++i;
            return i;
        };
        const index_t i0 = boundary(part), i1 = boundary(part + 1);
        if (i1 > i0) run(i0, i1);
    });
}

}  // namespace

template <class T>
void sparse_batch(const KernelTable<T>& kt, const T* const* row_data, index_t rows, index_t cols, SparseBatch<T>& out,
                  int n_threads) {
    out.rows = rows;
    out.cols = cols;
    const auto values = static_cast<std::size_t>(rows * cols);
    if (out.row_begin.size() < static_cast<std::size_t>(rows)) {
        out.row_begin.resize(static_cast<std::size_t>(rows));
        out.row_end.resize(static_cast<std::size_t>(rows));
    }
    if (out.col.size() < values) {
        out.col.resize(values);
        out.row_val.resize(values);
        out.row.resize(values);
        out.col_val.resize(values);
    }
    out.col_begin.resize(static_cast<std::size_t>(cols));
    out.col_end.resize(static_cast<std::size_t>(cols));
    const int parts = parts_for(static_cast<double>(values), std::min(rows, cols), n_threads, kMinValuesPerThread);
    // By rows: row r's entries from r cols on.
    parallel_ranges(rows, parts, [&](index_t r0, index_t r1) {
        for (index_t r = r0; r < r1; ++r) {
            out.row_begin[r] = r * cols;
            out.row_end[r] = r * cols + kt.compress_nonzero(row_data[r], cols, out.col.data() + r * cols, out.row_val.data() + r * cols);
        }
    });
    // By columns: column p's entries from p rows on, each thread taking a range of columns (the
    // part of every row's sorted entries that falls in it).
    parallel_ranges(cols, parts, [&](index_t p0, index_t p1) {
        index_t* next = out.col_end.data();
        std::int32_t* row = out.row.data();
        T* col_val = out.col_val.data();
        const std::int32_t* col = out.col.data();
        const T* row_val = out.row_val.data();
        for (index_t p = p0; p < p1; ++p) out.col_begin[p] = next[p] = p * rows;
        for (index_t r = 0; r < rows; ++r) {
            const std::int32_t* first = col + out.row_begin[r];
            const std::int32_t* last = col + out.row_end[r];
            const std::int32_t* lo = p0 == 0 ? first : std::lower_bound(first, last, static_cast<std::int32_t>(p0));
            const std::int32_t* hi = p1 == cols ? last : std::lower_bound(lo, last, static_cast<std::int32_t>(p1));
            for (const std::int32_t* e = lo; e < hi; ++e) {
                const index_t slot = next[*e]++;
                row[slot] = static_cast<std::int32_t>(r);
                col_val[slot] = row_val[e - col];
            }
        }
    });
}

template <class T>
void sparse_forward(const KernelTable<T>& kt, const SparseBatch<T>& x, index_t n, const T* wt, T* y, const Epilogue<T>& ep,
                    int n_threads) {
    // Columns of y split over the threads: each reads its columns of W^T only.
    double entries = 0;
    for (index_t r = 0; r < x.rows; ++r) entries += static_cast<double>(x.row_end[r] - x.row_begin[r] + 1);
    const index_t units = (n + kColumnUnit - 1) / kColumnUnit;
    parallel_ranges(units, parts_for(entries * static_cast<double>(n), units, n_threads), [&](index_t u0, index_t u1) {
        const index_t j0 = u0 * kColumnUnit, j1 = std::min(n, u1 * kColumnUnit);
        Epilogue<T> e = ep;
        if (e.bias) e.bias += j0;
        kt.csr_gemm(x.rows, j1 - j0, x.row_begin.data(), x.row_end.data(), x.col.data(), x.row_val.data(), wt + j0, n, y + j0, n,
                    e);
    });
}

template <class T>
void sparse_weight_grad(const KernelTable<T>& kt, const SparseBatch<T>& x, index_t n, const T* dy, T* dwt, int n_threads) {
    csr_rows(kt, x.cols, n, x.col_begin.data(), x.col_end.data(), x.row.data(), x.col_val.data(), dy, dwt, Epilogue<T>{},
             n_threads);
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
    template void sparse_batch<T>(const KernelTable<T>&, const T* const*, index_t, index_t, SparseBatch<T>&, int);      \
    template void sparse_forward<T>(const KernelTable<T>&, const SparseBatch<T>&, index_t, const T*, T*, const Epilogue<T>&, \
                                    int);                                                                                \
    template void sparse_weight_grad<T>(const KernelTable<T>&, const SparseBatch<T>&, index_t, const T*, T*, int);       \
    template void transpose_dense<T>(const T*, index_t, index_t, T*);

NNCORE_INSTANTIATE_SPARSE(float)
NNCORE_INSTANTIATE_SPARSE(double)

}  // namespace nncore
