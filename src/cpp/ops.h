// Layer-level operations on raw contiguous buffers, ISA-agnostic: each takes the kernel table to
// use (so tests can run every ISA) and splits its work over the thread pool.
#pragma once

#include <cstdint>

#include "common.h"
#include "dispatch.h"

namespace nncore {

// y (batch x out) = act(x (batch x in) * w^T + bias), with w stored (out x in) as in PyTorch.
// skip_zero_inputs: the product may leave out the zeros of x (gemm.h's skip_zero_steps; w must be
// finite).
template <class T>
void linear_forward(const KernelTable<T>& kt, index_t batch, index_t in, index_t out, const T* x,
                    const T* w, const T* bias, Act act, T alpha, T* y, bool skip_zero_inputs = false);

// Given dz = dL/d(pre-activation) (batch x out): dx = dz * w (skipped when dx is null),
// dw = dz^T * x, db = column sums of dz (skipped when db is null).
template <class T>
void linear_backward(const KernelTable<T>& kt, index_t batch, index_t in, index_t out, const T* x,
                     const T* w, const T* dz, T* dx, T* dw, T* db);

template <class T>
void activation_forward(const KernelTable<T>& kt, Act act, T alpha, const T* x, T* y, index_t n);
template <class T>
void activation_backward(const KernelTable<T>& kt, Act act, T alpha, const T* x, const T* y,
                         const T* dy, T* dx, index_t n);
template <class T>
void exp(const KernelTable<T>& kt, const T* x, T* y, index_t n);
// True when x[0:n) holds no NaN or infinity (split over the pool).
template <class T>
bool all_finite(const KernelTable<T>& kt, const T* x, index_t n);
template <class T>
void softmax_forward(const KernelTable<T>& kt, const T* x, T* y, index_t rows, index_t cols);
template <class T>
void softmax_backward(const KernelTable<T>& kt, const T* y, const T* dy, T* dx, index_t rows,
                      index_t cols);

// Losses: the sum over all values (or rows) of the per-value (per-row) loss, accumulated in double
// in a fixed order; the gradient times scale is written when grad is not null. Work is split over
// threads at block (row) boundaries only, so the result is bit-identical for any thread count.
template <class T>
double loss(const KernelTable<T>& kt, LossKind kind, const T* y_true, const T* y_pred, T* grad, T scale, index_t n);
template <class T>
double softmax_cross_entropy(const KernelTable<T>& kt, const T* logits, const T* probabilities,
                             const std::int64_t* labels, T* grad, T scale, index_t rows, index_t cols);
template <class T>
double sum_of_squares(const KernelTable<T>& kt, const T* x, index_t n);
template <class T>
void scale(const KernelTable<T>& kt, T factor, T* x, index_t n);

// Hyper-parameters of one optimizer step as the user gives them (Python floats); the ops turn
// them into the per-step coefficients the kernels take, as PyTorch does.
struct SgdOptions {
    double lr = 0, momentum = 0, weight_decay = 0;
    bool nesterov = false;
};
struct AdamOptions {
    double lr = 0, beta1 = 0, beta2 = 0, eps = 0, weight_decay = 0;
    long long step = 1;  // the count after this update, >= 1
    bool decoupled = false;
};
struct RmspropOptions {
    double lr = 0, alpha = 0, eps = 0, weight_decay = 0, momentum = 0;
    bool centered = false;
};

template <class T>
void sgd_update(const KernelTable<T>& kt, const SgdOptions& o, T* param, const T* grad, T* momentum_buffer, index_t n);
template <class T>
void adam_update(const KernelTable<T>& kt, const AdamOptions& o, T* param, const T* grad, T* exp_avg, T* exp_avg_sq,
                 index_t n);
template <class T>
void rmsprop_update(const KernelTable<T>& kt, const RmspropOptions& o, T* param, const T* grad, T* square_avg,
                    T* momentum_buffer, T* grad_avg, index_t n);

// One parameter of a step over several (a network's weights and biases) and its optimizer state:
// SGD: state[0] = momentum buffer (or null); Adam: exp_avg, exp_avg_sq; RMSprop: square_avg,
// momentum buffer, grad_avg (null when unused).
template <class T>
struct ParameterUpdate {
    T* param = nullptr;
    const T* grad = nullptr;
    T* state[3] = {nullptr, nullptr, nullptr};
    index_t n = 0;
    long long step = 1;  // Adam: this parameter's count after the update (AdamOptions::step is ignored)
};

// One optimizer step's coefficients, formed once (as PyTorch forms them, in double), for updating
// parameters piece by piece: apply updates elements [b, e) of p (and its state) on the calling
// thread from their gradient grad[0, e - b) (p.grad + b, or a copy elsewhere). A piece's values
// group into vectors from b on, and a last partial vector may round differently from a whole one,
// so the same bits need the same piece boundaries.
template <class T>
struct OptimizerStep {
    enum class Kind { sgd, adam, rmsprop };
    Kind kind = Kind::sgd;
    SgdCoefficients<T> sgd{};
    AdamCoefficients<T> adam{};
    RmspropCoefficients<T> rmsprop{};

    static OptimizerStep sgd_step(const SgdOptions& o);
    static OptimizerStep adam_step(const AdamOptions& o, long long step);  // step: the count after it
    static OptimizerStep rmsprop_step(const RmspropOptions& o);
    void apply(const KernelTable<T>& kt, const ParameterUpdate<T>& p, index_t b, index_t e, const T* grad) const;
};

// The updates above for `count` parameters at once, in one parallel region where each thread
// updates its share of every parameter (see parallel_parameters in ops.cpp): the same values as one
// call per parameter, without a region per parameter (of which the small ones, each below the size
// worth a thread, ran on one thread).
template <class T>
void sgd_update(const KernelTable<T>& kt, const SgdOptions& o, const ParameterUpdate<T>* params, std::size_t count);
template <class T>
void adam_update(const KernelTable<T>& kt, const AdamOptions& o, const ParameterUpdate<T>* params, std::size_t count);
template <class T>
void rmsprop_update(const KernelTable<T>& kt, const RmspropOptions& o, const ParameterUpdate<T>* params,
                    std::size_t count);

}  // namespace nncore
