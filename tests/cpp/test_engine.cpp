// The training engine on every ISA: one forward/backward/SGD step of a tiny network against a
// naive double-precision reference, predict against the reference forward, accuracy counting,
// the NaN stop, and no heap allocation per training step in steady state (a counting global
// operator new: std::vector and every other C++ allocation goes through it).
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <new>
#include <vector>

#include "engine.h"
#include "harness.h"
#include "thread_pool.h"

namespace {
std::atomic<long long> allocations{0};
}

void* operator new(std::size_t size) {
    allocations.fetch_add(1, std::memory_order_relaxed);
    if (void* p = std::malloc(size ? size : 1)) return p;
    throw std::bad_alloc();
}
// These replace the global operators, so free() here pairs with the malloc() above; GCC, inlining
// them into the callers, reports every delete as a mismatch.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
#pragma GCC diagnostic pop
// The engine's workspaces are cache-line aligned (engine.h): counted too.
void* operator new(std::size_t size, std::align_val_t align) {
    allocations.fetch_add(1, std::memory_order_relaxed);
    const auto a = static_cast<std::size_t>(align);
    if (void* p = std::aligned_alloc(a, (size + a - 1) / a * a + (size ? 0 : a))) return p;
    throw std::bad_alloc();
}
void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }

using nncore::Act;
using nncore::index_t;
using nntest::Rng;

namespace {

double act_value(Act act, double z) {
    return act == Act::relu ? (z < 0 ? 0.0 : z) : act == Act::tanh ? std::tanh(z) : z;
}
double act_slope(Act act, double z) {
    return act == Act::relu ? (z > 0 ? 1.0 : 0.0) : act == Act::tanh ? 1.0 - std::tanh(z) * std::tanh(z) : 1.0;
}

template <class T>
double tolerance() { return sizeof(T) == 4 ? 2e-5 : 1e-12; }

template <class T>
void check_close(const std::vector<T>& got, const std::vector<double>& want, const char* what) {
    double norm = 1e-30;
    for (double v : want) norm = std::max(norm, std::fabs(v));
    double worst = 0;
    for (std::size_t i = 0; i < want.size(); ++i) worst = std::max(worst, std::fabs(static_cast<double>(got[i]) - want[i]) / norm);
    CHECK_MSG(worst <= tolerance<T>(), what << ": max relative error " << worst);
}

// want = (w, b) - lr * (g^T input, column sums of g) for a Dense(fan_in, fan_out) layer.
template <class T>
void reference_sgd(const std::vector<double>& g, const std::vector<double>& input, const std::vector<T>& w,
                   const std::vector<T>& b, index_t rows, index_t fan_in, index_t fan_out, double lr,
                   std::vector<double>& want_w, std::vector<double>& want_b) {
    want_w.assign(w.size(), 0.0);
    want_b.assign(b.size(), 0.0);
    for (index_t j = 0; j < fan_out; ++j) {
        double sb = 0;
        for (index_t r = 0; r < rows; ++r) sb += g[r * fan_out + j];
        want_b[j] = b[j] - lr * sb;
        for (index_t k = 0; k < fan_in; ++k) {
            double s = 0;
            for (index_t r = 0; r < rows; ++r) s += g[r * fan_out + j] * input[r * fan_in + k];
            want_w[j * fan_in + k] = w[j * fan_in + k] - lr * s;
        }
    }
}

// One SGD step of x (rows x 5) -> Dense(5, 7) + act -> Dense(7, 3), mean squared error.
template <class T>
void test_one_step(const nncore::KernelTable<T>& kt, Act act, Rng& rng) {
    nntest::Scope scope(std::string(nntest::dtype_name<T>()) + " act=" + nntest::act_name(act));
    const index_t rows = 4, in = 5, hidden = 7, out = 3;
    auto w1 = nntest::random_vector<T>(hidden * in, rng), b1 = nntest::random_vector<T>(hidden, rng);
    auto w2 = nntest::random_vector<T>(out * hidden, rng), b2 = nntest::random_vector<T>(out, rng);
    auto x = nntest::random_vector<T>(rows * in, rng), t = nntest::random_vector<T>(rows * out, rng);
    std::vector<T> dw1(w1.size(), nntest::quiet_nan<T>()), db1(b1.size(), nntest::quiet_nan<T>());
    std::vector<T> dw2(w2.size(), nntest::quiet_nan<T>()), db2(b2.size(), nntest::quiet_nan<T>());
    const double lr = 0.1;

    // Reference in double.
    std::vector<double> z1(rows * hidden), h(rows * hidden), z2(rows * out), g2(rows * out), g1(rows * hidden, 0.0);
    double loss = 0;
    for (index_t r = 0; r < rows; ++r) {
        for (index_t j = 0; j < hidden; ++j) {
            double s = b1[j];
            for (index_t k = 0; k < in; ++k) s += double(x[r * in + k]) * w1[j * in + k];
            z1[r * hidden + j] = s;
            h[r * hidden + j] = act_value(act, s);
        }
        for (index_t j = 0; j < out; ++j) {
            double s = b2[j];
            for (index_t k = 0; k < hidden; ++k) s += h[r * hidden + k] * w2[j * hidden + k];
            z2[r * out + j] = s;
            const double d = s - t[r * out + j];
            loss += d * d;
            g2[r * out + j] = 2.0 * d / double(rows * out);
        }
    }
    loss /= double(rows * out);
    std::vector<double> want_w2, want_b2, want_w1, want_b1;
    reference_sgd(g2, h, w2, b2, rows, hidden, out, lr, want_w2, want_b2);
    for (index_t r = 0; r < rows; ++r)
        for (index_t k = 0; k < hidden; ++k) {
            double s = 0;
            for (index_t j = 0; j < out; ++j) s += g2[r * out + j] * w2[j * hidden + k];
            g1[r * hidden + k] = s * act_slope(act, z1[r * hidden + k]);
        }
    const std::vector<double> x64(x.begin(), x.end());
    reference_sgd(g1, x64, w1, b1, rows, in, hidden, lr, want_w1, want_b1);

    std::vector<nncore::EngineLayer<T>> layers = {
        {in, hidden, w1.data(), b1.data(), dw1.data(), db1.data(), act, T(0)},
        {hidden, out, w2.data(), b2.data(), dw2.data(), db2.data(), Act::identity, T(0)}};
    nncore::Engine<T> engine(layers);

    std::vector<T> predicted(rows * out, nntest::quiet_nan<T>());
    engine.predict(kt, x.data(), rows, predicted.data());
    check_close(predicted, z2, "predict");

    for (auto update : {nncore::EngineUpdate::sgd_step, nncore::EngineUpdate::sgd}) {
        nntest::Scope inner(update == nncore::EngineUpdate::sgd ? "fused sgd" : "classic sgd_step");
        auto w1c = w1, b1c = b1, w2c = w2, b2c = b2;
        std::vector<nncore::EngineLayer<T>> copy = {
            {in, hidden, w1c.data(), b1c.data(), dw1.data(), db1.data(), act, T(0)},
            {hidden, out, w2c.data(), b2c.data(), dw2.data(), db2.data(), Act::identity, T(0)}};
        nncore::Engine<T> e(copy);
        std::vector<nncore::EngineParamState<T>> states(4);
        std::vector<std::int64_t> steps(4, 0);
        nncore::EpochArgs<T> a;
        a.x = x.data(), a.n = rows, a.targets = t.data(), a.target_width = out, a.batch_size = rows;
        a.first_batch = 0, a.last_batch = 1, a.loss = nncore::EngineLoss::squared_error, a.update = update;
        a.lr = lr, a.sgd.lr = lr, a.states = states.data(), a.steps = steps.data();
        nncore::EpochTotals totals;
        e.run_epoch(kt, a, totals);
        CHECK(totals.batches_done == 1 && totals.failed_batch == -1);
        CHECK_MSG(std::fabs(totals.loss_sum / rows - loss) <= tolerance<T>() * (1 + loss), "loss " << totals.loss_sum / rows << " want " << loss);
        check_close(w1c, want_w1, "weights 1");
        check_close(b1c, want_b1, "bias 1");
        check_close(w2c, want_w2, "weights 2");
        check_close(b2c, want_b2, "bias 2");
        CHECK(update == nncore::EngineUpdate::sgd_step || steps[0] == 1);
    }
}

// Cross-entropy with labels: accuracy counted with argmax; a NaN input stops at its batch.
template <class T>
void test_accuracy_and_nan_stop(const nncore::KernelTable<T>& kt, Rng& rng) {
    nntest::Scope scope(std::string(nntest::dtype_name<T>()) + " accuracy/nan");
    const index_t rows = 9, in = 4, out = 3;
    auto w = nntest::random_vector<T>(out * in, rng), b = nntest::random_vector<T>(out, rng);
    std::vector<T> dw(w.size()), db(b.size());
    auto x = nntest::random_vector<T>(rows * in, rng);
    std::vector<std::int64_t> labels(rows);
    for (auto& l : labels) l = static_cast<std::int64_t>(rng.below(out));
    nncore::Engine<T> engine({{in, out, w.data(), b.data(), dw.data(), db.data(), Act::identity, T(0)}});
    std::vector<T> logits(rows * out);
    engine.predict(kt, x.data(), rows, logits.data());
    long long want = 0;
    for (index_t r = 0; r < rows; ++r) {
        index_t best = 0;
        for (index_t j = 1; j < out; ++j) if (logits[r * out + j] > logits[r * out + best]) best = j;
        want += best == labels[r];
    }
    nncore::EpochArgs<T> a;
    a.x = x.data(), a.n = rows, a.labels = labels.data(), a.target_width = out, a.batch_size = 4;
    a.first_batch = 0, a.last_batch = 3, a.loss = nncore::EngineLoss::cross_entropy, a.count_accuracy = true;
    nncore::EpochTotals totals;
    engine.run_epoch(kt, a, totals);
    CHECK(totals.correct == want && totals.counted == rows && totals.batches_done == 3);

    x[5 * in] = std::numeric_limits<T>::quiet_NaN();  // sample 5: batch 1
    std::vector<nncore::EngineParamState<T>> states(2);
    std::vector<std::int64_t> steps(2, 0);
    a.update = nncore::EngineUpdate::sgd, a.sgd.lr = 0.01, a.states = states.data(), a.steps = steps.data();
    nncore::EpochTotals stopped;
    engine.run_epoch(kt, a, stopped);
    CHECK(stopped.failed_batch == 1 && stopped.batches_done == 1 && std::isnan(stopped.failed_value) && steps[0] == 1);
}

// The classic per-sample path (sgd_step, batch 1, a classic loss) sweeps each layer's weights once
// per sample with the previous sample's update folded in; it must leave weights, biases and both
// gradients bit-identical to the layer-by-layer kernel sequence (forward, loss, then per layer
// from the last: activation backward, dx = dz W, dW = dz^T x, db, W += (-lr dz) x^T, b += -lr db), with
// and without a sample order, and at a NaN stop (the gradients then are the last finished sample's).
// (The layer-by-layer batch-1 step is the rank-1 update sgd_rank1, as Dense.backward applies it.)
template <class T>
void test_per_sample_sgd(const nncore::KernelTable<T>& kt, Rng& rng) {
    for (int variant = 0; variant < 3; ++variant) {
        const bool shuffled = variant >= 1, nan_stop = variant == 2;
        nntest::Scope scope(std::string(nntest::dtype_name<T>()) + " per-sample sgd" + (shuffled ? " shuffled" : "") +
                            (nan_stop ? " nan stop" : ""));
        const index_t n = 11, in = 37, hidden = 13, out = 3;  // odd sizes: vector tails and a partial 4-row block
        const auto w1 = nntest::random_vector<T>(hidden * in, rng), b1 = nntest::random_vector<T>(hidden, rng);
        const auto w2 = nntest::random_vector<T>(out * hidden, rng), b2 = nntest::random_vector<T>(out, rng);
        auto x = nntest::random_vector<T>(n * in, rng);
        const auto t = nntest::random_vector<T>(n * out, rng);
        const index_t bad = 7;
        if (nan_stop) x[bad * in + 2] = nntest::quiet_nan<T>();
        std::vector<std::int64_t> order(n);
        index_t bad_sample = -1;  // where the bad row comes in this order
        for (index_t i = 0; i < n; ++i) {
            order[i] = shuffled ? (i * 5 + 3) % n : i;
            if (order[i] == bad) bad_sample = i;
        }
        const T neg_lr = T(-0.05);

        // The layer-by-layer sequence.
        auto rw1 = w1, rb1 = b1, rw2 = w2, rb2 = b2;
        std::vector<T> rdw1(w1.size()), rdb1(b1.size()), rdw2(w2.size()), rdb2(b2.size());
        std::vector<T> h(hidden), y(out), g2(out), g1(hidden);
        double loss_sum = 0;
        index_t stopped_at = -1;
        for (index_t s = 0; s < n; ++s) {
            const T* xs = x.data() + order[s] * in;
            const T* ts = t.data() + order[s] * out;
            nncore::linear_forward(kt, 1, in, hidden, xs, rw1.data(), rb1.data(), Act::tanh, T(0), h.data());
            nncore::linear_forward(kt, 1, hidden, out, h.data(), rw2.data(), rb2.data(), Act::identity, T(0), y.data());
            const double value = kt.squared_error_sum(ts, y.data(), out) / double(out);
            if (!std::isfinite(value)) {
                stopped_at = s;
                break;
            }
            kt.squared_error_grad(ts, y.data(), g2.data(), out, static_cast<T>(2.0 / double(out)));
            loss_sum += value;
            nncore::linear_backward(kt, 1, hidden, out, h.data(), rw2.data(), g2.data(), g1.data(), rdw2.data(), rdb2.data());
            kt.sgd_rank1(hidden, out, g2.data(), h.data(), neg_lr, rw2.data(), nullptr, hidden);
            kt.axpy(neg_lr, rdb2.data(), rb2.data(), out);
            nncore::activation_backward(kt, Act::tanh, T(0), h.data(), h.data(), g1.data(), g1.data(), hidden);
            nncore::linear_backward(kt, 1, in, hidden, xs, rw1.data(), g1.data(), static_cast<T*>(nullptr), rdw1.data(),
                                    rdb1.data());
            kt.sgd_rank1(in, hidden, g1.data(), xs, neg_lr, rw1.data(), nullptr, in);
            kt.axpy(neg_lr, rdb1.data(), rb1.data(), hidden);
        }
        CHECK(nan_stop == (stopped_at == bad_sample));

        auto ew1 = w1, eb1 = b1, ew2 = w2, eb2 = b2;
        std::vector<T> dw1(w1.size()), db1(b1.size()), dw2(w2.size()), db2(b2.size());
        nncore::Engine<T> engine({{in, hidden, ew1.data(), eb1.data(), dw1.data(), db1.data(), Act::tanh, T(0)},
                                  {hidden, out, ew2.data(), eb2.data(), dw2.data(), db2.data(), Act::identity, T(0)}});
        nncore::EpochArgs<T> a;
        a.x = x.data(), a.n = n, a.targets = t.data(), a.target_width = out, a.batch_size = 1;
        a.order = shuffled ? order.data() : nullptr;
        a.first_batch = 0, a.last_batch = n, a.loss = nncore::EngineLoss::classic_mse;
        a.update = nncore::EngineUpdate::sgd_step, a.lr = 0.05;
        nncore::EpochTotals totals;
        engine.run_epoch(kt, a, totals);
        CHECK(totals.failed_batch == stopped_at && totals.batches_done == (nan_stop ? bad_sample : n));
        CHECK_MSG(totals.loss_sum == loss_sum, "loss sum " << totals.loss_sum << " want " << loss_sum);
        CHECK_MSG(nntest::same_bits(ew1, rw1) && nntest::same_bits(eb1, rb1), "layer 1 parameters differ");
        CHECK_MSG(nntest::same_bits(ew2, rw2) && nntest::same_bits(eb2, rb2), "layer 2 parameters differ");
        CHECK_MSG(nntest::same_bits(dw1, rdw1) && nntest::same_bits(db1, rdb1), "layer 1 gradients differ");
        CHECK_MSG(nntest::same_bits(dw2, rdw2) && nntest::same_bits(db2, rdb2), "layer 2 gradients differ");
    }
}

// Steady state: after a warm-up epoch, more epochs allocate nothing (1 and 2 threads).
void test_no_allocation_per_step(const nncore::KernelTable<float>& kt, Rng& rng) {
    const index_t n = 512, in = 200, hidden = 300, out = 10, batch = 128;
    auto w1 = nntest::random_vector<float>(hidden * in, rng, -0.05, 0.05), b1 = nntest::random_vector<float>(hidden, rng);
    auto w2 = nntest::random_vector<float>(out * hidden, rng, -0.05, 0.05), b2 = nntest::random_vector<float>(out, rng);
    std::vector<float> dw1(w1.size()), db1(b1.size()), dw2(w2.size()), db2(b2.size());
    std::vector<std::vector<float>> moments;
    for (std::size_t size : {w1.size(), b1.size(), w2.size(), b2.size()})
        for (int k = 0; k < 2; ++k) moments.emplace_back(size, 0.0f);
    std::vector<nncore::EngineParamState<float>> states(4);
    for (int j = 0; j < 4; ++j) states[j].exp_avg = moments[2 * j].data(), states[j].exp_avg_sq = moments[2 * j + 1].data();
    std::vector<std::int64_t> steps(4, 0), labels(n), order(n);
    for (index_t i = 0; i < n; ++i) labels[i] = static_cast<std::int64_t>(rng.below(out)), order[i] = (i * 37) % n;
    auto x = nntest::random_vector<float>(n * in, rng);
    nncore::Engine<float> engine({{in, hidden, w1.data(), b1.data(), dw1.data(), db1.data(), Act::relu, 0.0f},
                                  {hidden, out, w2.data(), b2.data(), dw2.data(), db2.data(), Act::identity, 0.0f}});
    nncore::EpochArgs<float> a;
    a.x = x.data(), a.n = n, a.labels = labels.data(), a.order = order.data(), a.target_width = out, a.batch_size = batch;
    a.first_batch = 0, a.last_batch = (n + batch - 1) / batch, a.loss = nncore::EngineLoss::cross_entropy;
    a.update = nncore::EngineUpdate::adam, a.adam.lr = 1e-3, a.adam.beta1 = 0.9, a.adam.beta2 = 0.999, a.adam.eps = 1e-8;
    a.clip_norm = 1.0, a.states = states.data(), a.steps = steps.data(), a.count_accuracy = true;
    for (int threads : {1, 2}) {
        nntest::Scope scope("allocations threads=" + std::to_string(threads));
        nncore::set_num_threads(threads);
        nncore::EpochTotals warm;
        engine.run_epoch(kt, a, warm);  // sizes the workspaces, starts the pool
        const long long before = allocations.load();
        for (int epoch = 0; epoch < 5; ++epoch) {
            nncore::EpochTotals totals;
            engine.run_epoch(kt, a, totals);
            CHECK(totals.failed_batch == -1);
        }
        CHECK_MSG(allocations.load() == before, allocations.load() - before << " allocations in 20 steady-state steps");

        // The classic per-sample path (its alternate buffers are sized by the warm-up run).
        std::vector<float> targets(n * out, 0.5f);
        nncore::EpochArgs<float> c;
        c.x = x.data(), c.n = n, c.targets = targets.data(), c.order = order.data(), c.target_width = out;
        c.batch_size = 1, c.first_batch = 0, c.last_batch = n, c.loss = nncore::EngineLoss::classic_mse;
        c.update = nncore::EngineUpdate::sgd_step, c.lr = 1e-3;
        nncore::EpochTotals warm_classic;
        engine.run_epoch(kt, c, warm_classic);
        const long long before_classic = allocations.load();
        for (int epoch = 0; epoch < 3; ++epoch) {
            nncore::EpochTotals totals;
            engine.run_epoch(kt, c, totals);
            CHECK(totals.failed_batch == -1);
        }
        CHECK_MSG(allocations.load() == before_classic,
                  allocations.load() - before_classic << " allocations in per-sample steady-state steps");
    }
    nncore::set_num_threads(1);
}

}  // namespace

int main() {
    nntest::for_each_isa([](nncore::Isa, const nncore::Tables& tables) {
        Rng rng(1618);
        for (Act act : {Act::identity, Act::relu, Act::tanh}) {
            test_one_step(tables.f32, act, rng);
            test_one_step(tables.f64, act, rng);
        }
        test_accuracy_and_nan_stop(tables.f32, rng);
        test_accuracy_and_nan_stop(tables.f64, rng);
        test_per_sample_sgd(tables.f32, rng);
        test_per_sample_sgd(tables.f64, rng);
        test_no_allocation_per_step(tables.f32, rng);
    });
    return nntest::finish("test_engine");
}
