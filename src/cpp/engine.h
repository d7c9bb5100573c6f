// The native training engine: a stack of Dense layers (each optionally followed by a native
// activation) whose whole forward pass, loss, backward pass and optimizer step run in C++, one
// call per epoch (or per chunk of batches), with workspaces sized for the largest batch seen and
// then reused, so a training step in steady state allocates nothing.
//
// Every step is the same sequence of kernel calls, on the same values, as the layer-by-layer
// Python path (Dense.forward, the activation layer, Loss.value_and_gradient, backward, Optimizer
// .step), so both give bit-identical parameters. The only fusion is the activation in the GEMM
// epilogue, which applies the same per-element function as the separate activation kernel; the
// relu/leaky_relu backward then reads the output y instead of the input x, which selects the same
// branch (y > 0 exactly when x > 0, for negative_slope >= 0). gelu keeps its pre-activation.
// One exception, asked for by EpochArgs::sparse_input: the first layer then works from the
// inputs' nonzeros (sparse.h), whose sums run in another order, so its results agree to rounding.
#pragma once

#include <cstdint>
#include <mutex>
#include <vector>

#include "common.h"
#include "dispatch.h"
#include "ops.h"
#include "sparse.h"
#include "workspace.h"

namespace nncore {

// Losses the engine computes. The first five are the loss objects of nncore.losses (mean over
// the batch's elements, or rows for cross_entropy); classic_mse / classic_bce are the classic
// functions nncore.mse/mse_prime and binary_cross_entropy/_prime, which use their own kernels.
enum class EngineLoss : int {
    squared_error = 0,
    absolute_error = 1,
    binary_cross_entropy = 2,
    binary_cross_entropy_logits = 3,
    cross_entropy = 4,
    classic_mse = 5,
    classic_bce = 6,
};

// none: evaluation only (forward + loss, no NaN stop). sgd_step: the classic plain SGD that
// Dense.backward applies (param -= lr * grad through axpy, layer by layer). The others are the
// fused updates of nncore.optim, applied after the whole backward pass (and clipping).
enum class EngineUpdate : int { none = 0, sgd_step = 1, sgd = 2, adam = 3, rmsprop = 4 };

// The updates the sparse-input path takes (sgd, adam, rmsprop): the fused ones applied after the
// whole backward pass, where layer 0's parameters may be held in another layout.
constexpr bool fused_update(EngineUpdate u) {
    return u == EngineUpdate::sgd || u == EngineUpdate::adam || u == EngineUpdate::rmsprop;
}

template <class T>
struct EngineLayer {
    index_t in = 0, out = 0;
    T* weights = nullptr;  // (out x in), updated in place
    T* bias = nullptr;     // (out,)
    T* weights_gradient = nullptr;
    T* bias_gradient = nullptr;
    Act act = Act::identity;
    T alpha = T(0);
};

// Optimizer state of one parameter array (null where the optimizer keeps none).
template <class T>
struct EngineParamState {
    T* momentum_buffer = nullptr;
    T* exp_avg = nullptr;
    T* exp_avg_sq = nullptr;
    T* square_avg = nullptr;
    T* grad_avg = nullptr;
};

template <class T>
struct EpochArgs {
    const T* x = nullptr;  // (n x in) rows
    index_t n = 0;
    const T* targets = nullptr;             // (n x target_width), or null with labels
    const std::int64_t* labels = nullptr;   // (n,) class labels for cross_entropy
    index_t target_width = 0;
    const std::int64_t* order = nullptr;    // permutation of [0, n), or null for 0, 1, ...
    index_t batch_size = 1;
    index_t first_batch = 0, last_batch = 0;  // the batches [first, last) of the epoch to run
    EngineLoss loss = EngineLoss::squared_error;
    EngineUpdate update = EngineUpdate::none;
    double lr = 0.0;  // sgd_step
    SgdOptions sgd;
    AdamOptions adam;  // step is taken from steps[] per parameter
    RmspropOptions rmsprop;
    double clip_norm = 0.0;  // > 0: clip the global gradient norm first
    // One per parameter, in the order weights0, bias0, weights1, bias1, ...
    const EngineParamState<T>* states = nullptr;
    std::int64_t* steps = nullptr;  // per-parameter step counts, incremented in place (Adam)
    bool count_accuracy = false;
    // Train the first layer on the inputs' nonzeros (see sparse.h), for inputs that are mostly
    // zeros. Only with update sgd, adam or rmsprop (the binding checks); batches of more than 2^20
    // input values take the dense path (kMaxSparseBatchValues in engine.cpp).
    bool sparse_input = false;
    // Training runs with subnormal floats flushed to zero (fp_mode.h) on every thread of the run.
    bool flush_subnormals = false;
};

// Running totals; run_epoch continues from the values it is given, so an epoch may be run in
// chunks and still sums in the same order as one call (and as the Python loop).
struct EpochTotals {
    double loss_sum = 0.0;      // sum over batches of (mean batch loss) * (batch rows)
    long long correct = 0, counted = 0;
    long long batches_done = 0;
    long long failed_batch = -1;  // index of the batch whose loss was not finite (training stops)
    double failed_value = 0.0;
};

// Whether Engine::predict and evaluation runs may leave out the zeros of their inputs in layer 0's
// product (same values, see may_skip_zero_inputs): on by default;
// nncore.engine.set_sparse_input(False) turns it off with the sparse training path.
void set_skip_zero_inputs(bool on);
bool skip_zero_inputs();

template <class T>
class Engine {
public:
    explicit Engine(std::vector<EngineLayer<T>> layers);

    index_t input_size() const { return layers_.front().in; }
    index_t output_size() const { return layers_.back().out; }

    // y (n x output_size) = the network applied to x (n x input_size).
    void predict(const KernelTable<T>& kt, const T* x, index_t n, T* y);
    // The same, unless another call holds the engine: then false, at once.
    bool try_predict(const KernelTable<T>& kt, const T* x, index_t n, T* y);
    // Multiply-adds of one row through all layers.
    double macs_per_row() const {
        double macs = 0;
        for (const EngineLayer<T>& l : layers_) macs += static_cast<double>(l.in) * l.out;
        return macs;
    }
    // Runs batches [first_batch, last_batch) of an epoch: train (update != none) or evaluate.
    void run_epoch(const KernelTable<T>& kt, const EpochArgs<T>& args, EpochTotals& totals);

    // Bytes of workspace held (grows with the largest batch, then stays).
    std::size_t workspace_bytes() const;

private:
    void predict_locked(const KernelTable<T>& kt, const T* x, index_t n, T* y);  // mutex_ held
    // Whether layer 0's product may skip zero inputs (see engine.cpp), for products of at least
    // kSkipZeroInputsMinRows rows.
    bool may_skip_zero_inputs(const KernelTable<T>& kt) const;
    static constexpr index_t kSkipZeroInputsMinRows = 256;
    void run_batches(const KernelTable<T>& kt, const EpochArgs<T>& a, EpochTotals& totals);  // mutex_ held
    void reserve(index_t rows);
    // Forward of `rows` rows of x; the last layer writes to `last_out` (its own buffer if null).
    // skip_zero_inputs: layer 0's product leaves out x's zeros when rows >= kSkipZeroInputsMinRows
    // (linear_forward; its weights finite, see may_skip_zero_inputs).
    void forward(const KernelTable<T>& kt, const T* x, index_t rows, T* last_out, bool skip_zero_inputs = false);
    // Loss of the network's outputs p (rows x output_size); the gradient goes to gradients_.back().
    double loss_and_gradient(const KernelTable<T>& kt, const EpochArgs<T>& a, const T* p, const T* targets,
                             const std::int64_t* labels, index_t rows, bool need_gradient);
    void count_correct(const EpochArgs<T>& a, const T* p, const T* targets, const std::int64_t* labels, index_t rows,
                       EpochTotals& totals) const;
    // store_gradient0: on the sparse path, whether layer 0's dW^T must reach dwt_ (see engine.cpp).
    void backward_and_update(const KernelTable<T>& kt, const EpochArgs<T>& a, const T* x, index_t rows, bool store_gradient0);
    // Whether layer 0's optimizer step runs inside its weight gradient (the sparse path, no clipping).
    bool layer0_step_in_gradient(const EpochArgs<T>& a) const { return sparse_ && a.clip_norm <= 0.0; }
    // Parameter j's update (weights of layer j / 2 for even j, else its bias) with its state.
    ParameterUpdate<T> parameter_update(const EpochArgs<T>& a, std::size_t j, T* param, T* grad, index_t n) const;
    // The sparse-input path: the batch's nonzeros into xs_, read from the data set's rows.
    void gather_sparse(const KernelTable<T>& kt, const EpochArgs<T>& a, index_t start, index_t rows);
    // Layer 0's weights and their optimizer state to (in x out) layout in the engine's buffers
    // (enter), and back to the layer's arrays, with the last gradient (leave; pending steps first).
    void enter_sparse(const EpochArgs<T>& a);
    void leave_sparse(const KernelTable<T>& kt, bool gradient_written);
    // Row p of W^T (and of its momentum buffer) after its pending zero-gradient steps, if any (lazy_sgd_).
    void catch_up(const KernelTable<T>& kt, index_t p);
    // The classic per-sample loop (sgd_step, batch 1): see run_per_sample in engine.cpp.
    bool per_sample_path(const EpochArgs<T>& a) const;
    void run_per_sample(const KernelTable<T>& kt, const EpochArgs<T>& a, EpochTotals& totals);

    std::vector<EngineLayer<T>> layers_;
    index_t capacity_rows_ = 0;
    std::vector<Workspace<T>> outputs_, pre_activations_, gradients_;
    // run_per_sample alternates between outputs_ and these (one row each), so that the previous
    // sample's layer inputs survive the next sample's forward pass.
    std::vector<Workspace<T>> outputs_alt_;
    Workspace<T> x_batch_, t_batch_;
    std::vector<std::int64_t> label_batch_;
    std::vector<ParameterUpdate<T>> updates_;  // the optimizer step's parameters: weights, bias of each layer
    // The sparse-input path: the batch's nonzeros by rows and by columns; layer 0's weights W^T,
    // gradient dW^T and optimizer state in (in x out) layout while a run holds them (sparse_).
    bool sparse_ = false;
    SparseBatch<T> xs_;
    std::vector<const T*> batch_rows_;  // the batch's rows in the data set
    Workspace<T> wt_, dwt_;
    Workspace<T> y_half_;  // layer 0's forward: the sums over the second half of W^T's rows
    // SGD on the sparse path with layer 0's step in its gradient kernel: a row of W^T whose input
    // is zero in every row of a batch has a zero gradient, and its step (the momentum's decay, and
    // weight decay) waits in pending0_[row] until the row is next read, when kt.sgd_zero_steps
    // applies them all with the row in registers (the same bits as a step per batch).
    bool lazy_sgd_ = false;
    SgdCoefficients<T> sgd0_{};
    std::vector<long long> pending0_;
    std::vector<Workspace<T>> state_t_;  // one per state array of layer 0's weights
    std::vector<T*> state_user_;         // the layer's own arrays they came from
    EngineParamState<T> state0_;         // layer 0's weights' state as the update sees it
    std::mutex mutex_;  // one run at a time: the workspaces are shared
};

}  // namespace nncore
