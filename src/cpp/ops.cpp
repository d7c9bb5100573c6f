#include "ops.h"

#include <algorithm>
#include <atomic>
#include <cmath>

#include "gemm.h"
#include "thread_pool.h"
#include "workspace.h"

namespace nncore {

namespace {

// Elementwise work below this many values per thread is not worth a thread wake-up.
constexpr index_t kMinElementsPerThread = 1 << 15;
// The same for optimizer updates, which read and write 3 to 5 arrays per value (measured on Zen 4,
// 1 thread, 16K float32 values: Adam 0.43 ns, SGD with momentum 0.24 ns per value).
constexpr index_t kMinUpdateElementsPerThread = 1 << 13;

// Splits [0, n) into contiguous chunks over the pool; chunk boundaries are multiples of `align`
// values (64 by default, so that every chunk but the last runs full vectors).
template <class Body>
void parallel_chunks(index_t n, index_t min_per_thread, Body&& body, index_t align = 64) {
    const index_t parts = std::max<index_t>(1, std::min<index_t>(get_num_threads(), n / min_per_thread));
    if (parts == 1) {
        body(index_t(0), n);
        return;
    }
    parallel_for(static_cast<int>(parts), [&](int part) {
        const index_t begin = std::min(n, (n * part / parts) / align * align);
        const index_t end = part + 1 == parts ? n : std::min(n, (n * (part + 1) / parts) / align * align);
        if (end > begin) body(begin, end);
    });
}

// Splits `rows` rows of `cols` values over the pool, at least kMinElementsPerThread values a part.
template <class Body>
void parallel_rows(index_t rows, index_t cols, Body&& body) {
    const index_t min_rows = std::max<index_t>(1, kMinElementsPerThread / std::max<index_t>(cols, 1));
    parallel_ranges(rows, static_cast<int>(std::min<index_t>(get_num_threads(), rows / min_rows)), body);
}

// Scratch for per-block (per-row) partial sums, one per calling thread (a loss evaluated every
// training step must not allocate).
struct PartialSums;
double* partial_sums(index_t count) { return thread_buffer<double, PartialSums>(static_cast<std::size_t>(count)); }

// Block sums (from any split of the blocks over threads) added in one fixed order.
double ordered_sum(const double* partial, index_t count) {
    double total = 0.0;
    for (index_t i = 0; i < count; ++i) total += partial[i];
    return total;
}

// Coefficients of PyTorch's lerp_(end, w): fma(w, end - start, start) for |w| < 0.5, else
// fma(w - 1, end - start, end); w rounded to T first.
template <class T, class C>
void set_lerp(C& c, double weight) {
    const T w = static_cast<T>(weight);
    c.lerp_from_end = !(std::abs(w) < T(0.5));
    c.lerp_coefficient = c.lerp_from_end ? w - T(1) : w;
}

// With exactly two threads, linear_backward gives each of its two products (dX = dZ W and dW = dZ^T
// X, the same number of multiply-adds) to one thread whole, in one parallel region, instead of
// splitting each between both in a region of its own: one region's start and end fewer, and neither
// product cut into parts. (With more threads each product keeps its split: a task's own products
// cannot split further, as a region inside a task runs on that thread alone.) The values are the
// same (a product's path and sums do not depend on its thread count). From kPairMinMacs
// multiply-adds (where the unpacked kernels start to split, gemm.cpp), while W takes under
// kPairMaxWeightBytes: each thread then reads one of W and X whole. Measured on the 2-core Xeon (2
// MiB L2 per core), C++ loop, old and new alternated, medians of 15 rounds, float32: batch x in x
// out 32x256x128 22.1 -> 19.7 us, 64x256x128 38.4 -> 35.0, 256x256x128 136 -> 125, 256x128x10 12.0
// -> 10.5, 64x784x256 205 -> 194, 256x784x256 754 -> 737, 4096x784x256 14.9 -> 14.2 ms; float64
// 64x256x128 76.6 -> 64.2, 64x784x256 436 -> 411; with W of 2 MiB x0.98-1.01 (64x1024x512,
// 256x1024x512, float64 64x1024x256) and of 4 MiB x0.96-0.98 (64x1024x1024). Near kPairMinMacs
// mixed: 64x128x10 3.51 -> 2.91 us, 16x256x32 5.81 -> 3.35, 64x64x32 4.58 -> 4.81. MNIST-MLP epochs
// (batch 64, 2 threads, separate processes alternated, medians of 8 epochs, 3 processes each): SGD
// 0.226-0.239 -> 0.222-0.229 s, Adam within noise (0.278-0.284 against 0.278-0.283).
constexpr double kPairMinMacs = 1 << 16;
constexpr std::size_t kPairMaxWeightBytes = std::size_t(2) << 20;

}  // namespace

template <class T>
void linear_forward(const KernelTable<T>& kt, index_t batch, index_t in, index_t out, const T* x,
                    const T* w, const T* bias, Act act, T alpha, T* y, bool skip_zero_inputs) {
    Epilogue<T> ep;
    ep.bias = bias;
    ep.act = act;
    ep.alpha = alpha;
    gemm(kt, batch, out, in, ConstMatrix<T>{x, in, 1}, ConstMatrix<T>{w, 1, in}, y, out, ep,
         get_num_threads(), skip_zero_inputs);
}

template <class T>
void linear_backward(const KernelTable<T>& kt, index_t batch, index_t in, index_t out, const T* x,
                     const T* w, const T* dz, T* dx, T* dw, T* db) {
    const int threads = get_num_threads();
    const auto input_gradient = [&](int n) {
        gemm(kt, batch, in, out, ConstMatrix<T>{dz, out, 1}, ConstMatrix<T>{w, in, 1}, dx, in, Epilogue<T>{}, n);
    };
    const auto weight_gradient = [&](int n) {
        gemm(kt, out, in, batch, ConstMatrix<T>{dz, 1, out}, ConstMatrix<T>{x, in, 1}, dw, in, Epilogue<T>{}, n);
    };
    const double macs = static_cast<double>(batch) * static_cast<double>(in) * static_cast<double>(out);
    const bool pair = dx && threads == 2 && macs >= kPairMinMacs &&
                      static_cast<std::size_t>(in) * static_cast<std::size_t>(out) * sizeof(T) < kPairMaxWeightBytes;
    if (pair) {
        parallel_for(2, [&](int t) { t == 0 ? input_gradient(1) : weight_gradient(1); });
    } else {
        if (dx) input_gradient(threads);
        weight_gradient(threads);
    }
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
bool all_finite(const KernelTable<T>& kt, const T* x, index_t n) {
    std::atomic<bool> finite{true};
    parallel_chunks(n, kMinElementsPerThread, [&](index_t b, index_t e) {
        if (!kt.all_finite(x + b, e - b)) finite.store(false, std::memory_order_relaxed);
    });
    return finite.load(std::memory_order_relaxed);
}

template <class T>
void softmax_forward(const KernelTable<T>& kt, const T* x, T* y, index_t rows, index_t cols) {
    if (cols == 0) return;
    parallel_rows(rows, cols, [&](index_t r0, index_t r1) { kt.softmax_forward(x + r0 * cols, y + r0 * cols, r1 - r0, cols); });
}

template <class T>
void softmax_backward(const KernelTable<T>& kt, const T* y, const T* dy, T* dx, index_t rows,
                      index_t cols) {
    if (cols == 0) return;
    parallel_rows(rows, cols, [&](index_t r0, index_t r1) {
        kt.softmax_backward(y + r0 * cols, dy + r0 * cols, dx + r0 * cols, r1 - r0, cols);
    });
}

template <class T>
double loss(const KernelTable<T>& kt, LossKind kind, const T* y_true, const T* y_pred, T* grad, T scale, index_t n) {
    const index_t count = loss_block_count(n);
    double* blocks = partial_sums(count);
    parallel_chunks(n, kMinElementsPerThread, [&](index_t b, index_t e) {
        kt.loss(kind, y_true + b, y_pred + b, grad ? grad + b : nullptr, scale, e - b, blocks + b / kLossBlock);
    }, kLossBlock);
    return ordered_sum(blocks, count);
}

template <class T>
double softmax_cross_entropy(const KernelTable<T>& kt, const T* logits, const T* probabilities,
                             const std::int64_t* labels, T* grad, T scale, index_t rows, index_t cols) {
    if (cols == 0) return 0.0;
    double* row_losses = partial_sums(rows);
    parallel_rows(rows, cols, [&](index_t r0, index_t r1) {
        kt.softmax_cross_entropy(logits + r0 * cols, probabilities ? probabilities + r0 * cols : nullptr,
                                 labels ? labels + r0 : nullptr, grad ? grad + r0 * cols : nullptr, scale, r1 - r0, cols,
                                 row_losses + r0);
    });
    return ordered_sum(row_losses, rows);
}

template <class T>
double sum_of_squares(const KernelTable<T>& kt, const T* x, index_t n) {
    const index_t count = loss_block_count(n);
    double* blocks = partial_sums(count);
    parallel_chunks(n, kMinElementsPerThread, [&](index_t b, index_t e) {
        kt.sum_of_squares(x + b, e - b, blocks + b / kLossBlock);
    }, kLossBlock);
    return ordered_sum(blocks, count);
}

template <class T>
void scale(const KernelTable<T>& kt, T factor, T* x, index_t n) {
    parallel_chunks(n, kMinElementsPerThread, [&](index_t b, index_t e) { kt.scale(factor, x + b, e - b); });
}

// Calls body(param, begin, end) for each thread's piece [begin, end) of every parameter: part p of
// P takes the p-th P-th of each parameter (whole rows of a weight matrix where P divides its row
// count), as the Dense GEMMs split each layer's outputs between the threads. Split as one array of
// all the values laid end to end (before), the two halves of the MNIST MLP's update took 24-27 and
// 42-50 us (2 threads, batch 64, SGD with momentum; Adam 43 and 80 us) though each held half the
// values (the second held all of the 256 -> 128 layer, half of whose rows the other thread's GEMMs
// had just read and written: the likely cause). Now both take 35-37 us (Adam 61-63 us). Every
// piece starts at a multiple of 64 values from the parameter's start: the kernels' last, partial
// vector may round differently from a whole one (the compiler contracts the two code paths
// differently), so every piece must group the values into vectors as one call for the whole
// parameter does.
template <class T, class Body>
void parallel_parameters(const ParameterUpdate<T>* params, std::size_t count, Body&& body) {
    index_t total = 0;
    for (std::size_t i = 0; i < count; ++i) total += params[i].n;
    const index_t parts = std::max<index_t>(1, std::min<index_t>(get_num_threads(), total / kMinUpdateElementsPerThread));
    const auto run = [&](index_t part) {
        for (std::size_t i = 0; i < count; ++i) {
            const index_t n = params[i].n;
            const index_t lo = n * part / parts / 64 * 64;
            const index_t hi = part + 1 == parts ? n : n * (part + 1) / parts / 64 * 64;
            if (lo < hi) body(params[i], lo, hi);
        }
    };
    if (parts == 1) {
        run(0);
        return;
    }
    parallel_for(static_cast<int>(parts), [&](int part) { run(part); });
}

template <class T>
OptimizerStep<T> OptimizerStep<T>::sgd_step(const SgdOptions& o) {
    OptimizerStep<T> s;
    s.kind = Kind::sgd;
    s.sgd.lr = static_cast<T>(o.lr);
    s.sgd.momentum = static_cast<T>(o.momentum);
    s.sgd.weight_decay = static_cast<T>(o.weight_decay);
    s.sgd.nesterov = o.nesterov;
    return s;
}

template <class T>
OptimizerStep<T> OptimizerStep<T>::adam_step(const AdamOptions& o, long long step_count) {
    // As torch/optim/adam.py computes them, in Python floats (double).
    const double step = static_cast<double>(step_count);
    const double bias_correction1 = 1.0 - std::pow(o.beta1, step);
    const double bias_correction2 = 1.0 - std::pow(o.beta2, step);
    OptimizerStep<T> s;
    s.kind = Kind::adam;
    AdamCoefficients<T>& c = s.adam;
    if (o.weight_decay != 0.0) {
        if (o.decoupled) c.param_factor = static_cast<T>(1.0 - o.lr * o.weight_decay);
        else c.weight_decay = static_cast<T>(o.weight_decay);
    }
    set_lerp<T>(c, 1.0 - o.beta1);
    c.beta2 = static_cast<T>(o.beta2);
    c.one_minus_beta2 = static_cast<T>(1.0 - o.beta2);
    c.inv_bias_correction2_sqrt = static_cast<T>(1.0 / std::sqrt(bias_correction2));
    c.eps = static_cast<T>(o.eps);
    c.neg_step_size = static_cast<T>(-(o.lr / bias_correction1));
    return s;
}

template <class T>
OptimizerStep<T> OptimizerStep<T>::rmsprop_step(const RmspropOptions& o) {
    OptimizerStep<T> s;
    s.kind = Kind::rmsprop;
    RmspropCoefficients<T>& c = s.rmsprop;
    c.neg_lr = static_cast<T>(-o.lr);
    c.alpha = static_cast<T>(o.alpha);
    c.one_minus_alpha = static_cast<T>(1.0 - o.alpha);
    set_lerp<T>(c, 1.0 - o.alpha);
    c.eps = static_cast<T>(o.eps);
    c.weight_decay = static_cast<T>(o.weight_decay);
    c.momentum = static_cast<T>(o.momentum);
    c.use_momentum = o.momentum > 0.0;
    c.centered = o.centered;
    return s;
}

template <class T>
void OptimizerStep<T>::apply(const KernelTable<T>& kt, const ParameterUpdate<T>& p, index_t b, index_t e, const T* grad) const {
    const auto state = [&](int i) { return p.state[i] ? p.state[i] + b : nullptr; };
    switch (kind) {
        case Kind::sgd: kt.sgd_update(sgd, p.param + b, grad, state(0), e - b); break;
        case Kind::adam: kt.adam_update(adam, p.param + b, grad, state(0), state(1), e - b); break;
        case Kind::rmsprop: kt.rmsprop_update(rmsprop, p.param + b, grad, state(0), state(1), state(2), e - b); break;
    }
}

template <class T>
void sgd_update(const KernelTable<T>& kt, const SgdOptions& o, const ParameterUpdate<T>* params, std::size_t count) {
    const OptimizerStep<T> step = OptimizerStep<T>::sgd_step(o);
    parallel_parameters(params, count, [&](const ParameterUpdate<T>& p, index_t b, index_t e) { step.apply(kt, p, b, e, p.grad + b); });
}

template <class T>
void adam_update(const KernelTable<T>& kt, const AdamOptions& o, const ParameterUpdate<T>* params, std::size_t count) {
    parallel_parameters(params, count, [&](const ParameterUpdate<T>& p, index_t b, index_t e) {
        OptimizerStep<T>::adam_step(o, p.step).apply(kt, p, b, e, p.grad + b);
    });
}

template <class T>
void rmsprop_update(const KernelTable<T>& kt, const RmspropOptions& o, const ParameterUpdate<T>* params,
                    std::size_t count) {
    const OptimizerStep<T> step = OptimizerStep<T>::rmsprop_step(o);
    parallel_parameters(params, count, [&](const ParameterUpdate<T>& p, index_t b, index_t e) { step.apply(kt, p, b, e, p.grad + b); });
}

template <class T>
void sgd_update(const KernelTable<T>& kt, const SgdOptions& o, T* param, const T* grad, T* momentum_buffer, index_t n) {
    const ParameterUpdate<T> p{param, grad, {momentum_buffer, nullptr, nullptr}, n};
    sgd_update(kt, o, &p, 1);
}

template <class T>
void adam_update(const KernelTable<T>& kt, const AdamOptions& o, T* param, const T* grad, T* exp_avg, T* exp_avg_sq,
                 index_t n) {
    const ParameterUpdate<T> p{param, grad, {exp_avg, exp_avg_sq, nullptr}, n, o.step};
    adam_update(kt, o, &p, 1);
}

template <class T>
void rmsprop_update(const KernelTable<T>& kt, const RmspropOptions& o, T* param, const T* grad, T* square_avg,
                    T* momentum_buffer, T* grad_avg, index_t n) {
    const ParameterUpdate<T> p{param, grad, {square_avg, momentum_buffer, grad_avg}, n};
    rmsprop_update(kt, o, &p, 1);
}

#define NNCORE_INSTANTIATE_OPS(T)                                                                \
    template struct OptimizerStep<T>;                                                             \
    template void linear_forward<T>(const KernelTable<T>&, index_t, index_t, index_t, const T*,   \
                                    const T*, const T*, Act, T, T*, bool);                         \
    template void linear_backward<T>(const KernelTable<T>&, index_t, index_t, index_t, const T*,  \
                                     const T*, const T*, T*, T*, T*);                              \
    template void activation_forward<T>(const KernelTable<T>&, Act, T, const T*, T*, index_t);    \
    template void activation_backward<T>(const KernelTable<T>&, Act, T, const T*, const T*,       \
                                         const T*, T*, index_t);                                   \
    template void exp<T>(const KernelTable<T>&, const T*, T*, index_t);                           \
    template bool all_finite<T>(const KernelTable<T>&, const T*, index_t);                        \
    template void softmax_forward<T>(const KernelTable<T>&, const T*, T*, index_t, index_t);      \
    template void softmax_backward<T>(const KernelTable<T>&, const T*, const T*, T*, index_t,     \
                                      index_t);                                                    \
    template double loss<T>(const KernelTable<T>&, LossKind, const T*, const T*, T*, T, index_t);   \
    template double softmax_cross_entropy<T>(const KernelTable<T>&, const T*, const T*,            \
                                             const std::int64_t*, T*, T, index_t, index_t);        \
    template double sum_of_squares<T>(const KernelTable<T>&, const T*, index_t);                  \
    template void scale<T>(const KernelTable<T>&, T, T*, index_t);                                 \
    template void sgd_update<T>(const KernelTable<T>&, const SgdOptions&, T*, const T*, T*, index_t); \
    template void adam_update<T>(const KernelTable<T>&, const AdamOptions&, T*, const T*, T*, T*,  \
                                 index_t);                                                         \
    template void rmsprop_update<T>(const KernelTable<T>&, const RmspropOptions&, T*, const T*, T*, \
                                    T*, T*, index_t);                                              \
    template void sgd_update<T>(const KernelTable<T>&, const SgdOptions&, const ParameterUpdate<T>*, \
                                std::size_t);                                                      \
    template void adam_update<T>(const KernelTable<T>&, const AdamOptions&, const ParameterUpdate<T>*, \
                                 std::size_t);                                                     \
    template void rmsprop_update<T>(const KernelTable<T>&, const RmspropOptions&,                  \
                                    const ParameterUpdate<T>*, std::size_t);

NNCORE_INSTANTIATE_OPS(float)
NNCORE_INSTANTIATE_OPS(double)

}  // namespace nncore
