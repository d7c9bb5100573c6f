#include "ops.h"

#include <algorithm>

#include "gemm.h"
#include "thread_pool.h"

namespace nncore {

namespace {

// Elementwise work below this many values per thread is not worth a thread wake-up.
constexpr index_t kMinElementsPerThread = 1 << 15;

// Splits [0, n) into contiguous chunks over the pool; chunk boundaries are multiples of 64 values
// so that every chunk but the last runs full vectors.
template <class Body>
void parallel_chunks(index_t n, index_t min_per_thread, Body&& body) {
    const index_t parts = std::max<index_t>(1, std::min<index_t>(get_num_threads(), n / min_per_thread));
    if (parts == 1) {
        body(index_t(0), n);
        return;
    }
    parallel_for(static_cast<int>(parts), [&](int part) {
        const index_t begin = std::min(n, (n * part / parts) / 64 * 64);
        const index_t end = part + 1 == parts ? n : std::min(n, (n * (part + 1) / parts) / 64 * 64);
        if (end > begin) body(begin, end);
    });
}

}  // namespace

template <class T>
void linear_forward(const KernelTable<T>& kt, index_t batch, index_t in, index_t out, const T* x,
                    const T* w, const T* bias, Act act, T alpha, T* y) {
    Epilogue<T> ep;
    ep.bias = bias;
    ep.act = act;
    ep.alpha = alpha;
    gemm(kt, batch, out, in, ConstMatrix<T>{x, in, 1}, ConstMatrix<T>{w, 1, in}, y, out, ep,
         get_num_threads());
}

template <class T>
void linear_backward(const KernelTable<T>& kt, index_t batch, index_t in, index_t out, const T* x,
                     const T* w, const T* dz, T* dx, T* dw, T* db) {
    const int threads = get_num_threads();
    if (dx) gemm(kt, batch, in, out, ConstMatrix<T>{dz, out, 1}, ConstMatrix<T>{w, in, 1}, dx, in, Epilogue<T>{}, threads);
    gemm(kt, out, in, batch, ConstMatrix<T>{dz, 1, out}, ConstMatrix<T>{x, in, 1}, dw, in, Epilogue<T>{}, threads);
    if (db) kt.column_sums(dz, batch, out, out, db);
}

template <class T>
void activation_forward(const KernelTable<T>& kt, Act act, T alpha, const T* x, T* y, index_t n) {
    parallel_chunks(n, kMinElementsPerThread, [&](index_t b, index_t e) { kt.act_forward(act, alpha, x + b, y + b, e - b); });
}

template <class T>
void activation_backward(const KernelTable<T>& kt, Act act, T alpha, const T* x, const T* y,
                         const T* dy, T* dx, index_t n) {
    parallel_chunks(n, kMinElementsPerThread, [&](index_t b, index_t e) {
        kt.act_backward(act, alpha, x ? x + b : nullptr, y ? y + b : nullptr, dy + b, dx + b, e - b);
    });
}

template <class T>
void exp(const KernelTable<T>& kt, const T* x, T* y, index_t n) {
    parallel_chunks(n, kMinElementsPerThread, [&](index_t b, index_t e) { kt.exp(x + b, y + b, e - b); });
}

template <class T>
void softmax_forward(const KernelTable<T>& kt, const T* x, T* y, index_t rows, index_t cols) {
    if (cols == 0) return;
    const index_t min_rows = std::max<index_t>(1, kMinElementsPerThread / cols);
    const index_t parts = std::max<index_t>(1, std::min<index_t>(get_num_threads(), rows / min_rows));
    parallel_for(static_cast<int>(parts), [&](int part) {
        const index_t r0 = rows * part / parts, r1 = rows * (part + 1) / parts;
        kt.softmax_forward(x + r0 * cols, y + r0 * cols, r1 - r0, cols);
    });
}

template <class T>
void softmax_backward(const KernelTable<T>& kt, const T* y, const T* dy, T* dx, index_t rows,
                      index_t cols) {
    if (cols == 0) return;
    const index_t min_rows = std::max<index_t>(1, kMinElementsPerThread / cols);
    const index_t parts = std::max<index_t>(1, std::min<index_t>(get_num_threads(), rows / min_rows));
    parallel_for(static_cast<int>(parts), [&](int part) {
        const index_t r0 = rows * part / parts, r1 = rows * (part + 1) / parts;
        kt.softmax_backward(y + r0 * cols, dy + r0 * cols, dx + r0 * cols, r1 - r0, cols);
    });
}

#define NNCORE_INSTANTIATE_OPS(T)                                                                \
    template void linear_forward<T>(const KernelTable<T>&, index_t, index_t, index_t, const T*,   \
                                    const T*, const T*, Act, T, T*);                               \
    template void linear_backward<T>(const KernelTable<T>&, index_t, index_t, index_t, const T*,  \
                                     const T*, const T*, T*, T*, T*);                              \
    template void activation_forward<T>(const KernelTable<T>&, Act, T, const T*, T*, index_t);    \
    template void activation_backward<T>(const KernelTable<T>&, Act, T, const T*, const T*,       \
                                         const T*, T*, index_t);                                   \
    template void exp<T>(const KernelTable<T>&, const T*, T*, index_t);                           \
    template void softmax_forward<T>(const KernelTable<T>&, const T*, T*, index_t, index_t);      \
    template void softmax_backward<T>(const KernelTable<T>&, const T*, const T*, T*, index_t,     \
                                      index_t);

NNCORE_INSTANTIATE_OPS(float)
NNCORE_INSTANTIATE_OPS(double)

}  // namespace nncore
