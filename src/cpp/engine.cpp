// The training engine (see engine.h). Built with -ffp-contract=off: the running loss sum and the
// clipping factor must round exactly as the Python float arithmetic they replace.
#include "engine.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <stdexcept>

#include "fp_mode.h"
#include "gemm.h"
#include "thread_pool.h"

namespace nncore {

namespace {

// Where a kernel's backward reads its "x": the pre-activation for gelu, the output otherwise
// (relu/leaky_relu select the same branch from y as from x; tanh/sigmoid read only y).
constexpr bool needs_pre_activation(Act act) { return act == Act::gelu || act == Act::gelu_tanh; }

// numpy's argmax: the first maximum, or the first NaN if there is one.
template <class T>
index_t argmax(const T* v, index_t n) {
    index_t best = 0;
    for (index_t j = 0; j < n; ++j) {
        if (std::isnan(v[j])) return j;
        if (v[j] > v[best]) best = j;
    }
    return best;
}

std::atomic<bool> skip_zero_inputs_flag{true};

}  // namespace

void set_skip_zero_inputs(bool on) { skip_zero_inputs_flag.store(on, std::memory_order_relaxed); }
bool skip_zero_inputs() { return skip_zero_inputs_flag.load(std::memory_order_relaxed); }

template <class T>
Engine<T>::Engine(std::vector<EngineLayer<T>> layers) : layers_(std::move(layers)) {
    if (layers_.empty()) throw std::invalid_argument("Engine: no layers");
    for (std::size_t i = 1; i < layers_.size(); ++i)
        if (layers_[i].in != layers_[i - 1].out) throw std::invalid_argument("Engine: layer sizes do not chain");
    outputs_.resize(layers_.size());
    pre_activations_.resize(layers_.size());
    gradients_.resize(layers_.size());
    updates_.resize(2 * layers_.size());
}

template <class T>
void Engine<T>::reserve(index_t rows) {
    if (rows <= capacity_rows_) return;
    for (std::size_t i = 0; i < layers_.size(); ++i) {
        const auto size = static_cast<std::size_t>(rows * layers_[i].out);
        outputs_[i].resize(size);
        gradients_[i].resize(size);
        if (needs_pre_activation(layers_[i].act)) pre_activations_[i].resize(size);
    }
    x_batch_.resize(static_cast<std::size_t>(rows * layers_.front().in));
    capacity_rows_ = rows;
}

template <class T>
std::size_t Engine<T>::workspace_bytes() const {
    std::size_t values = x_batch_.capacity() + t_batch_.capacity();
    for (std::size_t i = 0; i < layers_.size(); ++i)
        values += outputs_[i].capacity() + gradients_[i].capacity() + pre_activations_[i].capacity();
    for (const auto& v : outputs_alt_) values += v.capacity();
    values += wt_.capacity() + dwt_.capacity() + y_half_.capacity() + xs_.row_val.capacity() + xs_.col_val.capacity();
    for (const auto& v : state_t_) values += v.capacity();
    const std::size_t indices = xs_.col.capacity() + xs_.row.capacity();
    std::size_t offsets = xs_.col_begin.capacity() + xs_.col_end.capacity();
    for (int h = 0; h < 2; ++h) offsets += xs_.row_begin[h].capacity() + xs_.row_end[h].capacity();
    return values * sizeof(T) + label_batch_.capacity() * sizeof(std::int64_t) + indices * sizeof(std::int32_t) +
           offsets * sizeof(index_t) + batch_rows_.capacity() * sizeof(const T*);
}

template <class T>
void Engine<T>::forward(const KernelTable<T>& kt, const T* x, index_t rows, T* last_out, bool skip_zero_inputs) {
    const T* input = x;
    for (std::size_t i = 0; i < layers_.size(); ++i) {
        const EngineLayer<T>& l = layers_[i];
        T* y = (i + 1 == layers_.size() && last_out) ? last_out : outputs_[i].data();
        const bool pre = needs_pre_activation(l.act);
        T* z = pre ? pre_activations_[i].data() : y;
        if (i == 0 && sparse_) {
            Epilogue<T> ep;
            ep.bias = l.bias;
            ep.act = pre ? Act::identity : l.act;
            ep.alpha = l.alpha;
            sparse_forward(kt, xs_, l.out, wt_.data(), z, y_half_.data(), ep, get_num_threads());
        } else {
            linear_forward(kt, rows, l.in, l.out, input, l.weights, l.bias, pre ? Act::identity : l.act, l.alpha, z,
                           i == 0 && skip_zero_inputs && rows >= kSkipZeroInputsMinRows);
        }
        if (pre) activation_forward(kt, l.act, l.alpha, z, y, rows * l.out);
        input = y;
    }
}

template <class T>
void Engine<T>::predict(const KernelTable<T>& kt, const T* x, index_t n, T* y) {
    std::lock_guard<std::mutex> lock(mutex_);
    predict_locked(kt, x, n, y);
}

template <class T>
bool Engine<T>::try_predict(const KernelTable<T>& kt, const T* x, index_t n, T* y) {
    std::unique_lock<std::mutex> lock(mutex_, std::try_to_lock);
    if (!lock) return false;
    predict_locked(kt, x, n, y);
    return true;
}

template <class T>
void Engine<T>::predict_locked(const KernelTable<T>& kt, const T* x, index_t n, T* y) {
    // Rows are independent (no reduction runs across rows), so chunks give the same values as
    // one pass while bounding the workspace.
    constexpr index_t kChunk = 1024;
    reserve(std::min(n, kChunk));
    const bool skip = n >= kSkipZeroInputsMinRows && may_skip_zero_inputs(kt);
    for (index_t start = 0; start < n; start += kChunk) {
        const index_t rows = std::min(kChunk, n - start);
        forward(kt, x + start * input_size(), rows, y + start * output_size(), skip);
    }
}

// Inputs that are mostly zeros in the same places (MNIST's pixels) are skipped in layer 0's product
// by predict and evaluate, with the same values when its weights are finite (gemm.h's
// skip_zero_steps: ~49% of MNIST's 784 steps per 12-row tile, batch 10000 through 784 -> 256 on 2
// threads 25 -> 15 ms). Checking the weights costs ~1% of a product of kSkipZeroInputsMinRows
// rows, so the callers ask only when their products have that many (forward skips in those
// alone); smaller products mostly take the unpacked kernels, which do not skip.
template <class T>
bool Engine<T>::may_skip_zero_inputs(const KernelTable<T>& kt) const {
    const EngineLayer<T>& first = layers_.front();
    return skip_zero_inputs() && all_finite(kt, first.weights, first.in * first.out);
}

template <class T>
double Engine<T>::loss_and_gradient(const KernelTable<T>& kt, const EpochArgs<T>& a, const T* p, const T* targets,
                                    const std::int64_t* labels, index_t rows, bool need_gradient) {
    const index_t cols = output_size();
    T* g = need_gradient ? gradients_.back().data() : nullptr;
    const index_t n = rows * cols;
    // Each value and scale is formed exactly as the Python loss does (a double, rounded to T once).
    switch (a.loss) {
        case EngineLoss::cross_entropy:
            return softmax_cross_entropy(kt, p, targets, labels, g, static_cast<T>(1.0 / static_cast<double>(rows)), rows,
                                         cols) /
                   static_cast<double>(rows);
        case EngineLoss::classic_mse: {
            const double value = kt.squared_error_sum(targets, p, n) / static_cast<double>(n);
            if (g && std::isfinite(value)) kt.squared_error_grad(targets, p, g, n, static_cast<T>(2.0 / static_cast<double>(n)));
            return value;
        }
        case EngineLoss::classic_bce: {
            const double value = kt.binary_cross_entropy_sum(targets, p, n) / static_cast<double>(n);
            if (g && std::isfinite(value))
                kt.binary_cross_entropy_grad(targets, p, g, n, static_cast<T>(1.0 / static_cast<double>(n)));
            return value;
        }
        default: {
            const auto kind = static_cast<LossKind>(static_cast<int>(a.loss));
            return loss(kt, kind, targets, p, g, static_cast<T>(1.0 / static_cast<double>(n)), n) / static_cast<double>(n);
        }
    }
}

template <class T>
void Engine<T>::count_correct(const EpochArgs<T>& a, const T* p, const T* targets, const std::int64_t* labels,
                              index_t rows, EpochTotals& totals) const {
    const index_t cols = output_size();
    if (a.loss == EngineLoss::cross_entropy) {
        for (index_t r = 0; r < rows; ++r) {
            const index_t want = labels ? static_cast<index_t>(labels[r]) : argmax(targets + r * cols, cols);
            totals.correct += argmax(p + r * cols, cols) == want;
        }
        totals.counted += rows;
    } else if (a.loss == EngineLoss::binary_cross_entropy || a.loss == EngineLoss::binary_cross_entropy_logits) {
        const T threshold = a.loss == EngineLoss::binary_cross_entropy_logits ? T(0) : T(0.5);
        const index_t n = rows * cols;
        for (index_t i = 0; i < n; ++i) totals.correct += (p[i] > threshold) == (targets[i] > T(0.5));
        totals.counted += n;
    }
}

template <class T>
ParameterUpdate<T> Engine<T>::parameter_update(const EpochArgs<T>& a, std::size_t j, T* param, T* grad, index_t n) const {
    const EngineParamState<T>& s = j == 0 && sparse_ ? state0_ : a.states[j];
    ParameterUpdate<T> u{param, grad, {s.momentum_buffer, nullptr, nullptr}, n, a.steps[j]};
    if (a.update == EngineUpdate::adam) {
        u.state[0] = s.exp_avg;
        u.state[1] = s.exp_avg_sq;
    } else if (a.update == EngineUpdate::rmsprop) {
        u.state[0] = s.square_avg;
        u.state[1] = s.momentum_buffer;
        u.state[2] = s.grad_avg;
    }
    return u;
}

template <class T>
void Engine<T>::backward_and_update(const KernelTable<T>& kt, const EpochArgs<T>& a, const T* x, index_t rows,
                                    bool store_gradient0) {
    const std::size_t count = layers_.size();
    // On the sparse path layer 0's weights take their optimizer step inside their gradient's
    // kernel, each block of W^T's rows right after its gradient rows (still in L1), on the thread
    // that owns those rows in every product (see sparse_split); not with clipping, which needs the
    // whole gradient first. Each row is one piece (see OptimizerStep), so the values do not depend
    // on the thread count. The gradient goes to dwt_ only where the run may end with it there
    // (store_gradient0); otherwise run_epoch forms it again if a NaN stop needs it.
    const bool step_in_gradient = layer0_step_in_gradient(a);
    for (std::size_t k = count; k-- > 0;) {
        const EngineLayer<T>& l = layers_[k];
        T* g = gradients_[k].data();
        const index_t n = rows * l.out;
        if (l.act != Act::identity) {
            const T* y = outputs_[k].data();
            const T* xa = needs_pre_activation(l.act) ? pre_activations_[k].data() : y;
            activation_backward(kt, l.act, l.alpha, xa, y, g, g, n);  // in place: elementwise
        }
        const T* input = k == 0 ? x : outputs_[k - 1].data();
        if (k == 0 && sparse_) {  // dW^T = X^T dz from the nonzeros; db as linear_backward forms it
            if (step_in_gradient) {
                a.steps[0] += 1;
                const ParameterUpdate<T> p = parameter_update(a, 0, wt_.data(), dwt_.data(), l.in * l.out);
                const OptimizerStep<T> step = a.update == EngineUpdate::adam      ? OptimizerStep<T>::adam_step(a.adam, p.step)
                                              : a.update == EngineUpdate::rmsprop ? OptimizerStep<T>::rmsprop_step(a.rmsprop)
                                                                                  : OptimizerStep<T>::sgd_step(a.sgd);
                const auto step_rows = [&](index_t r0, index_t r1, const T* block) {
                    for (index_t r = r0; r < r1; ++r) {
                        if (lazy_sgd_ && xs_.col_begin[r] == xs_.col_end[r]) ++pending0_[r];  // a zero gradient
                        else step.apply(kt, p, r * l.out, (r + 1) * l.out, block + (r - r0) * l.out);
                    }
                };
                const RowsDone<T> rows_done(step_rows);
                sparse_weight_grad(kt, xs_, l.out, g, dwt_.data(), get_num_threads(), &rows_done, store_gradient0);
            } else {
                sparse_weight_grad(kt, xs_, l.out, g, dwt_.data(), get_num_threads());
            }
            kt.column_sums(g, rows, l.out, l.out, l.bias_gradient);
        } else {
            linear_backward(kt, rows, l.in, l.out, input, l.weights, g, k == 0 ? nullptr : gradients_[k - 1].data(),
                            l.weights_gradient, l.bias_gradient);
        }
        if (a.update == EngineUpdate::sgd_step) {  // Dense.backward(gradient, learning_rate)
            // One sample: the rank-1 step from dz and the input (as Dense.backward takes it).
            if (rows == 1) kt.sgd_rank1(l.in, l.out, g, input, static_cast<T>(-a.lr), l.weights, nullptr, l.in);
            else kt.axpy(static_cast<T>(-a.lr), l.weights_gradient, l.weights, l.in * l.out);
            kt.axpy(static_cast<T>(-a.lr), l.bias_gradient, l.bias, l.out);
        }
    }
    if (a.update == EngineUpdate::sgd_step) return;

    auto for_each_parameter = [&](auto&& body) {
        for (std::size_t k = 0; k < count; ++k) {
            const EngineLayer<T>& l = layers_[k];
            if (k == 0 && sparse_) body(0, wt_.data(), dwt_.data(), l.in * l.out);
            else body(2 * k, l.weights, l.weights_gradient, l.in * l.out);
            body(2 * k + 1, l.bias, l.bias_gradient, l.out);
        }
    };
    if (a.clip_norm > 0.0) {  // nncore.optim.clip_grad_norm
        double sum = 0.0;
        for_each_parameter([&](std::size_t, T*, T* grad, index_t n) { sum += sum_of_squares(kt, grad, n); });
        const double total = std::sqrt(sum);
        const double factor = a.clip_norm / (total + 1e-6);
        if (factor < 1.0) for_each_parameter([&](std::size_t, T*, T* grad, index_t n) { scale(kt, static_cast<T>(factor), grad, n); });
    }
    // All parameters in one parallel region (the same values as one update per parameter). Taking
    // each layer's step in the epilogue of the GEMM that forms its dW instead (which spares
    // re-reading the gradient) was built and measured slower: MNIST MLP epochs at batch 64, 2
    // threads, SGD with momentum ~0.41 -> 0.43-0.47 s, Adam ~0.41 -> 0.45-0.48 s. Under perf
    // (Adam) the dW kernel's samples went from 4219 to 8493 while the update's 1312 went away: the
    // step cost three times as much inside the FMA-bound kernel, likely because its loads of the
    // parameters and state miss the cache there and its square roots and divisions take the
    // pipes the FMAs need.
    std::size_t used = 0;
    for_each_parameter([&](std::size_t j, T* param, T* grad, index_t n) {
        if (j == 0 && step_in_gradient) return;  // taken above
        a.steps[j] += 1;
        updates_[used++] = parameter_update(a, j, param, grad, n);
    });
    switch (a.update) {
        case EngineUpdate::sgd: sgd_update(kt, a.sgd, updates_.data(), used); break;
        case EngineUpdate::adam: adam_update(kt, a.adam, updates_.data(), used); break;
        case EngineUpdate::rmsprop: rmsprop_update(kt, a.rmsprop, updates_.data(), used); break;
        default: break;
    }
}

// Below this many values per thread, a batch's gather runs on one thread (MNIST at batch 32,
// 25088 values, runs on two: an Adam epoch took ~0.52 s against ~0.53 s with the gather on one).
constexpr index_t kMinGatherValuesPerThread = index_t(1) << 13;

// The sparse-input path's lists hold room for every value of a batch, by rows and by columns
// (16 bytes per float32 value): batches of up to this many values take it (MNIST: 1337 rows, 16
// MB), larger ones the dense path.
constexpr double kMaxSparseBatchValues = 1 << 20;

bool sparse_batch_fits(index_t rows, index_t width) {
    return static_cast<double>(rows) * static_cast<double>(width) <= kMaxSparseBatchValues;
}

template <class T>
void Engine<T>::gather_sparse(const KernelTable<T>& kt, const EpochArgs<T>& a, index_t start, index_t rows) {
    const index_t in = input_size();
    batch_rows_.resize(static_cast<std::size_t>(rows));
    for (index_t r = 0; r < rows; ++r)
        batch_rows_[static_cast<std::size_t>(r)] = a.x + (a.order ? static_cast<index_t>(a.order[start + r]) : start + r) * in;
    // The rows of W^T that this batch's forward reads, up to date (see lazy_sgd_).
    const auto rows_read = [&](index_t p0, index_t p1) {
        for (index_t p = p0; p < p1; ++p)
            if (xs_.col_begin[p] != xs_.col_end[p]) catch_up(kt, p);
    };
    const ColumnsReady columns_ready(rows_read);
    sparse_batch(kt, batch_rows_.data(), rows, in, xs_, get_num_threads(), lazy_sgd_ ? &columns_ready : nullptr);
}

template <class T>
void Engine<T>::catch_up(const KernelTable<T>& kt, index_t p) {
    if (pending0_[p] == 0) return;
    const index_t n = layers_.front().out;
    T* buffer = state0_.momentum_buffer;
    kt.sgd_zero_steps(sgd0_, wt_.data() + p * n, buffer ? buffer + p * n : nullptr, n, pending0_[p]);
    pending0_[p] = 0;
}

template <class T>
void Engine<T>::enter_sparse(const EpochArgs<T>& a) {
    const EngineLayer<T>& l = layers_.front();
    const auto size = static_cast<std::size_t>(l.in * l.out);
    wt_.resize(size);
    dwt_.resize(size);
    y_half_.resize(static_cast<std::size_t>(capacity_rows_ * l.out));
    transpose_dense(l.weights, l.out, l.in, wt_.data());
    state0_ = a.states[0];
    state_user_.clear();
    for (T** slot : {&state0_.momentum_buffer, &state0_.exp_avg, &state0_.exp_avg_sq, &state0_.square_avg, &state0_.grad_avg}) {
        if (*slot == nullptr) continue;
        if (state_t_.size() <= state_user_.size()) state_t_.emplace_back();
        Workspace<T>& buffer = state_t_[state_user_.size()];
        buffer.resize(size);
        transpose_dense(*slot, l.out, l.in, buffer.data());
        state_user_.push_back(*slot);
        *slot = buffer.data();
    }
    sparse_ = true;
    lazy_sgd_ = a.update == EngineUpdate::sgd && layer0_step_in_gradient(a);
    if (lazy_sgd_) {
        sgd0_ = OptimizerStep<T>::sgd_step(a.sgd).sgd;
        pending0_.assign(static_cast<std::size_t>(l.in), 0);
    }
}

template <class T>
void Engine<T>::leave_sparse(const KernelTable<T>& kt, bool gradient_written) {
    const EngineLayer<T>& l = layers_.front();
    if (lazy_sgd_) {
        parallel_ranges(l.in, std::min(get_num_threads(), 2), [&](index_t p0, index_t p1) {
            for (index_t p = p0; p < p1; ++p) catch_up(kt, p);
        });
        lazy_sgd_ = false;
    }
    transpose_dense(wt_.data(), l.in, l.out, l.weights);
    for (std::size_t i = 0; i < state_user_.size(); ++i) transpose_dense(state_t_[i].data(), l.in, l.out, state_user_[i]);
    if (gradient_written) transpose_dense(dwt_.data(), l.in, l.out, l.weights_gradient);
    sparse_ = false;
}

template <class T>
void Engine<T>::run_epoch(const KernelTable<T>& kt, const EpochArgs<T>& a, EpochTotals& totals) {
    std::lock_guard<std::mutex> lock(mutex_);
    run_batches(kt, a, totals);
    // The kernels' per-thread buffers that this run grew, grown on every thread: so that the next
    // run allocates nothing even where another thread runs a task (see workspace.h).
    share_thread_buffers();
}

template <class T>
void Engine<T>::run_batches(const KernelTable<T>& kt, const EpochArgs<T>& a, EpochTotals& totals) {
    const index_t in = input_size(), width = a.target_width;
    reserve(std::min(a.batch_size, a.n));
    if (per_sample_path(a)) {
        run_per_sample(kt, a, totals);
        return;
    }
    if (a.order) {
        if (a.labels) label_batch_.resize(std::max(label_batch_.size(), static_cast<std::size_t>(capacity_rows_)));
        else t_batch_.resize(std::max(t_batch_.size(), static_cast<std::size_t>(capacity_rows_ * width)));
    }
    const bool train = a.update != EngineUpdate::none;
    // Subnormals flushed for the run (the caller's mode back on every way out). Momentum buffers of
    // weights whose gradient is zero (MNIST's border pixels) decay into that range within an epoch,
    // as do Adam's second moments and the softmax of confident outputs; on an Intel core each
    // operation on one takes a microcode assist. Measured on a 2-core Xeon, MNIST batch 64, 2
    // threads, s per epoch, IEEE vs flushed: sparse path SGD with momentum 0.336 vs 0.273, Adam
    // 0.58 vs 0.30; dense path SGD 0.51 vs 0.37 (the same test accuracies). (PyTorch, whose epoch
    // is mostly per-operation overhead, gains 2-4% from torch.set_flush_denormal(True).)
    const FlushSubnormals flush(train && a.flush_subnormals);
    // The sparse-input path: layer 0 reads each batch's nonzeros and keeps its weights, gradient
    // and optimizer state in (in x out) layout for the run (see sparse.h), given back to the
    // layer's arrays on every way out. Its products sum in another order than the dense kernels'.
    struct SparseRun {
        Engine* engine;
        const KernelTable<T>& kt;
        bool backward_done = false;
        ~SparseRun() {
            if (engine) engine->leave_sparse(kt, backward_done);
        }
    } sparse_run{nullptr, kt};
    // Layer 0's gradient when its step runs inside the gradient kernel is kept for the last batch
    // of the run only (and for a single layer, whose dz the next batch's loss overwrites).
    const auto gradient0_stored = [&](index_t b) {
        return !layer0_step_in_gradient(a) || b + 1 == a.last_batch || layers_.size() == 1;
    };
    if (a.sparse_input && fused_update(a.update) && sparse_batch_fits(std::min(a.batch_size, a.n), in)) {
        enter_sparse(a);
        sparse_run.engine = this;
    }
    const bool skip = !train && std::min(a.batch_size, a.n) >= kSkipZeroInputsMinRows && may_skip_zero_inputs(kt);
    for (index_t batch = a.first_batch; batch < a.last_batch; ++batch) {
        const index_t start = batch * a.batch_size, stop = std::min(start + a.batch_size, a.n);
        const index_t rows = stop - start;
        const T* x = a.x + start * in;
        const T* targets = a.targets ? a.targets + start * width : nullptr;
        const std::int64_t* labels = a.labels ? a.labels + start : nullptr;
        if (sparse_) gather_sparse(kt, a, start, rows);
        if (a.order) {  // gather the batch in this epoch's order (np.take in the Python loop)
            const std::int64_t* idx = a.order + start;
            T* xb = x_batch_.data();
            // Rows scattered over the whole dataset wait on memory one after another; two threads
            // copying half each cut MNIST's gather at batch 64 from ~36 to ~20 us per step.
            const auto copy_rows = [&](index_t r0, index_t r1) {
                for (index_t r = r0; r < r1; ++r)
                    std::memcpy(xb + r * in, a.x + idx[r] * in, static_cast<std::size_t>(in) * sizeof(T));
            };
            if (!sparse_) {
                parallel_ranges(rows, static_cast<int>(std::min<index_t>(get_num_threads(), rows * in / kMinGatherValuesPerThread)),
                                copy_rows);
                x = xb;
            }
            if (a.labels) {
                for (index_t r = 0; r < rows; ++r) label_batch_[static_cast<std::size_t>(r)] = a.labels[idx[r]];
                labels = label_batch_.data();
            } else {
                T* tb = t_batch_.data();
                for (index_t r = 0; r < rows; ++r)
                    std::memcpy(tb + r * width, a.targets + idx[r] * width, static_cast<std::size_t>(width) * sizeof(T));
                targets = tb;
            }
        }
        forward(kt, x, rows, nullptr, skip);
        const double value = loss_and_gradient(kt, a, outputs_.back().data(), targets, labels, rows, train);
        if (train && !std::isfinite(value)) {
            if (batch > a.first_batch && !gradient0_stored(batch - 1)) {
                // The previous batch's dW^T, from its inputs and dz (still in gradients_[0]).
                const index_t previous = start - a.batch_size;
                gather_sparse(kt, a, previous, a.batch_size);
                sparse_weight_grad(kt, xs_, layers_.front().out, gradients_.front().data(), dwt_.data(), get_num_threads());
            }
            totals.failed_batch = batch;
            totals.failed_value = value;
            return;
        }
        if (train) backward_and_update(kt, a, x, rows, gradient0_stored(batch));
        sparse_run.backward_done = sparse_run.backward_done || train;
        totals.loss_sum += value * static_cast<double>(rows);
        if (a.count_accuracy) count_correct(a, outputs_.back().data(), targets, labels, rows, totals);
        ++totals.batches_done;
    }
}

// The classic per-sample loop (train(..., batch_size=1): plain SGD applied by every layer at once)
// with each layer's weights swept once per sample instead of three times. The layer-by-layer step
// forms dW = dz x^T, applies the rank-1 step W += (-lr dz) x^T, and the next sample's forward reads
// W again; here the
// step of sample s stays pending (its dz in gradients_, its layer inputs in the buffers of sample
// s) and is applied by kt.dense_forward_sgd while sample s + 1's forward streams the weights, with
// the same rounding per element. Nothing reads a layer's weights between its update and the next
// forward except the backward dx = dz W of the same sample, which must see the weights before the
// update anyway. The sweeps alternate direction (rows last to first every other sample), so each
// starts on the rows its predecessor ended with, still in L1: for the 784x40 layer (125 KB, L1 48
// KB) about a third less traffic to L2. Biases are updated at once (they are small). At the end of the run (and before a
// NaN stop returns) the pending step is applied and dW written, so the layers' weights and
// gradients are bit-identical to the layer-by-layer path's whenever control returns to Python.
template <class T>
bool Engine<T>::per_sample_path(const EpochArgs<T>& a) const {
    if (a.update != EngineUpdate::sgd_step || a.batch_size != 1) return false;
    // The classic losses leave the gradient untouched when the loss is not finite, which the NaN
    // stop relies on (the previous sample's dz must survive until its dW is written).
    if (a.loss != EngineLoss::classic_mse && a.loss != EngineLoss::classic_bce) return false;
    for (const EngineLayer<T>& l : layers_)
        if (needs_pre_activation(l.act)) return false;
    return true;
}

template <class T>
void Engine<T>::run_per_sample(const KernelTable<T>& kt, const EpochArgs<T>& a, EpochTotals& totals) {
    const std::size_t count = layers_.size();
    const index_t in = input_size(), width = a.target_width;
    outputs_alt_.resize(count);
    for (std::size_t i = 0; i < count; ++i)
        if (outputs_alt_[i].size() < static_cast<std::size_t>(layers_[i].out)) outputs_alt_[i].resize(static_cast<std::size_t>(layers_[i].out));
    if (a.order) {
        if (x_batch_.size() < static_cast<std::size_t>(2 * in)) x_batch_.resize(static_cast<std::size_t>(2 * in));
        if (t_batch_.size() < static_cast<std::size_t>(width)) t_batch_.resize(static_cast<std::size_t>(width));
    }
    const T neg_lr = static_cast<T>(-a.lr);
    const int threads = get_num_threads();
    // The pending sample: its input row (prev_x) and which buffer set (outputs_ or outputs_alt_)
    // holds its layer outputs, i.e. the inputs of layers 1, 2, ...; each sample uses the other set.
    const T* prev_x = nullptr;
    int prev_set = 0;
    bool pending = false;
    auto output_of = [&](int set, std::size_t k) -> T* { return (set ? outputs_alt_[k] : outputs_[k]).data(); };
    auto input_of = [&](int set, std::size_t k, const T* x) -> const T* { return k == 0 ? x : output_of(set, k - 1); };
    // Writes the pending step's dW into every layer's weights_gradient, and applies the step to the
    // weights too when `update` (at the end of a run; at a NaN stop the sweep has applied it).
    auto finish_pending = [&](bool update) {
        if (!pending) return;
        for (std::size_t k = 0; k < count; ++k) {
            const EngineLayer<T>& l = layers_[k];
            kt.sgd_rank1(l.in, l.out, gradients_[k].data(), input_of(prev_set, k, prev_x), neg_lr,
                         update ? l.weights : nullptr, l.weights_gradient, l.in);
        }
        pending = false;
    };
    for (index_t sample = a.first_batch; sample < a.last_batch; ++sample) {
        const int set = prev_set ^ 1;
        const T* x = a.x + sample * in;
        const T* targets = a.targets + sample * width;
        if (a.order) {
            const std::int64_t row = a.order[sample];
            T* xb = x_batch_.data() + set * in;
            std::memcpy(xb, a.x + row * in, static_cast<std::size_t>(in) * sizeof(T));
            std::memcpy(t_batch_.data(), a.targets + row * width, static_cast<std::size_t>(width) * sizeof(T));
            x = xb;
            targets = t_batch_.data();
        }
        for (std::size_t k = 0; k < count; ++k) {
            const EngineLayer<T>& l = layers_[k];
            kt.dense_forward_sgd(l.in, l.out, input_of(set, k, x), l.weights, l.in, l.bias,
                                 pending ? gradients_[k].data() : nullptr, pending ? input_of(prev_set, k, prev_x) : nullptr,
                                 neg_lr, l.act, l.alpha, output_of(set, k), set == 1);
        }
        pending = false;  // applied by the sweep above
        const T* p = output_of(set, count - 1);
        const double value = loss_and_gradient(kt, a, p, targets, nullptr, 1, true);
        if (!std::isfinite(value)) {
            // The layer-by-layer path stops before this sample's backward: its gradients are the
            // previous sample's, whose update the sweep above has just applied.
            pending = sample > a.first_batch;
            finish_pending(false);
            totals.failed_batch = sample;
            totals.failed_value = value;
            return;
        }
        for (std::size_t k = count; k-- > 0;) {
            const EngineLayer<T>& l = layers_[k];
            T* g = gradients_[k].data();
            if (l.act != Act::identity) activation_backward(kt, l.act, l.alpha, output_of(set, k), output_of(set, k), g, g, l.out);
            kt.column_sums(g, 1, l.out, l.out, l.bias_gradient);
            kt.axpy(neg_lr, l.bias_gradient, l.bias, l.out);
            if (k > 0)
                gemm(kt, 1, l.in, l.out, ConstMatrix<T>{g, l.out, 1}, ConstMatrix<T>{l.weights, l.in, 1},
                     gradients_[k - 1].data(), l.in, Epilogue<T>{}, threads);
        }
        pending = true;
        prev_set = set;
        prev_x = x;
        totals.loss_sum += value;
        if (a.count_accuracy) count_correct(a, p, targets, nullptr, 1, totals);
        ++totals.batches_done;
    }
    finish_pending(true);
}

template class Engine<float>;
template class Engine<double>;

}  // namespace nncore
