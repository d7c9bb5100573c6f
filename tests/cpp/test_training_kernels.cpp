// The training kernels of the KernelTable (fused losses, softmax + cross-entropy, sum of squares,
// scale, SGD / Adam / RMSprop updates) against naive long double references, on every ISA this
// CPU supports, at sizes 0, 1, 2, around every vector width, odd primes, 1000 and around the loss
// block. Written outputs are poisoned with NaN and surrounded by guard values; in-place state has
// guards too. The ops.h wrappers that split work over threads must give bit-identical results for
// 1, 2 and 3 threads.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "harness.h"
#include "ops.h"
#include "thread_pool.h"

namespace {

using nncore::KernelTable;
using nncore::LossKind;
using nntest::Guarded;
using nntest::index_t;
using nntest::Rng;
using nntest::Scope;

const index_t kSizes[] = {0, 1, 2, 3, 7, 8, 9, 13, 15, 16, 17, 31, 32, 33, 61, 127, 1000, 1023, 1024, 1025, 3001};

using nntest::ElementCheck;
using nntest::eps;
using nntest::random_guarded;
using nntest::tiny;

const char* loss_name(LossKind k) {
    switch (k) {
        case LossKind::squared_error: return "squared_error";
        case LossKind::absolute_error: return "absolute_error";
        case LossKind::binary_cross_entropy: return "binary_cross_entropy";
        case LossKind::binary_cross_entropy_logits: return "binary_cross_entropy_logits";
    }
    return "?";
}

// Reference loss and gradient (unscaled) of one element, and the magnitude the loss's rounding
// is relative to.
struct LossRef {
    long double loss, grad, magnitude;
};

LossRef loss_ref(LossKind k, long double t, long double p, long double bce_clamp) {
    const long double d = p - t;
    switch (k) {
        case LossKind::squared_error: return {d * d, 2 * d, d * d};
        case LossKind::absolute_error: return {std::fabs(d), static_cast<long double>((d > 0) - (d < 0)), std::fabs(d)};
        case LossKind::binary_cross_entropy: {
            const long double log_p = std::max(std::log(p), -100.0L), log_q = std::max(std::log1p(-p), -100.0L);
            return {-(t * log_p + (1 - t) * log_q), d / std::max(p * (1 - p), bce_clamp),
                    std::fabs(t * log_p) + std::fabs((1 - t) * log_q)};
        }
        case LossKind::binary_cross_entropy_logits: {
            const long double soft = std::log1p(std::exp(-std::fabs(p)));
            const long double sigmoid = 1 / (1 + std::exp(-p));
            return {std::max(p, 0.0L) - p * t + soft, sigmoid - t, std::fabs(std::max(p, 0.0L)) + std::fabs(p * t) + soft};
        }
    }
    return {0, 0, 0};
}

template <class T>
void fill_loss_inputs(LossKind k, Rng& rng, Guarded<T>& yt, Guarded<T>& yp) {
    for (index_t i = 0; i < yt.size(); ++i) {
        switch (k) {
            case LossKind::squared_error:
            case LossKind::absolute_error:
                yt[i] = static_cast<T>(rng.uniform(-2, 2));
                yp[i] = i % 5 == 2 ? yt[i] : static_cast<T>(rng.uniform(-2, 2));  // some exact zeros of p - t
                break;
            case LossKind::binary_cross_entropy: {
                const auto label = rng.below(3);
                yt[i] = label == 0 ? T(0) : label == 1 ? T(1) : static_cast<T>(rng.uniform());
                yp[i] = static_cast<T>(rng.uniform(1e-6, 1 - 1e-6));
                if (i % 7 == 3) yp[i] = T(0);  // log clamped at -100, gradient denominator at 1e-12
                if (i % 11 == 5) yp[i] = T(1);
                break;
            }
            case LossKind::binary_cross_entropy_logits:
                yt[i] = rng.coin() ? T(1) : static_cast<T>(rng.uniform());
                yp[i] = static_cast<T>(rng.uniform(-30, 30));
                if (i % 13 == 4) yp[i] = static_cast<T>(i % 2 ? 200 : -200);  // exp(-|z|) underflows
                break;
        }
    }
}

template <class T>
void test_losses(const KernelTable<T>& kt, Rng& rng) {
    for (LossKind k : {LossKind::squared_error, LossKind::absolute_error, LossKind::binary_cross_entropy,
                       LossKind::binary_cross_entropy_logits})
        for (index_t n : kSizes)
            for (bool with_grad : {true, false}) {
                Scope scope(std::string("loss ") + loss_name(k) + " n=" + std::to_string(n) + (with_grad ? " grad" : " value only"));
                Guarded<T> yt(n, T(0)), yp(n, T(0));
                fill_loss_inputs(k, rng, yt, yp);
                const T scale = T(-0.75);
                Guarded<T> grad(n, nntest::quiet_nan<T>());
                const index_t blocks = nncore::loss_block_count(n);
                std::vector<double> sums(static_cast<std::size_t>(blocks + 1), nntest::quiet_nan<double>());
                sums[blocks] = 12345.0;  // a guard after the last block
                kt.loss(k, yt.data(), yp.data(), with_grad ? grad.data() : nullptr, scale, n, sums.data());
                CHECK_MSG(sums[blocks] == 12345.0, "wrote past the last block sum");
                const long double clamp = static_cast<T>(1e-12);
                const bool double_sum = k == LossKind::binary_cross_entropy || k == LossKind::binary_cross_entropy_logits;
                ElementCheck block_check("block sums");
                ElementCheck grad_check("gradient");
                for (index_t b = 0; b < blocks; ++b) {
                    long double ref = 0, magnitude = 0;
                    const index_t end = std::min(n, (b + 1) * nncore::kLossBlock);
                    for (index_t i = b * nncore::kLossBlock; i < end; ++i) {
                        const LossRef r = loss_ref(k, yt[i], yp[i], clamp);
                        ref += r.loss;
                        magnitude += r.magnitude;
                        if (!with_grad) continue;
                        const long double g = r.grad * scale;
                        long double tol;
                        switch (k) {
                            case LossKind::absolute_error: tol = 0; break;  // +-scale or 0, exactly
                            case LossKind::binary_cross_entropy_logits:
                                tol = 6 * eps<T>() * (std::fabs(r.grad) + std::fabs(static_cast<long double>(yt[i])) + 1) *
                                      std::fabs(static_cast<long double>(scale));
                                break;
                            default: tol = 4 * eps<T>() * std::fabs(g); break;
                        }
                        grad_check.add(std::fabs(grad[i] - g) <= tol + tiny<T>(), i, grad[i], g);
                    }
                    // Block sums: in T within the block (squared/absolute error) or in double.
                    const long double unit = double_sum ? std::numeric_limits<double>::epsilon() : eps<T>();
                    const long double tol = unit * (end - b * nncore::kLossBlock + 4) * magnitude;
                    block_check.add(std::fabs(sums[b] - ref) <= tol, b, sums[b], ref);
                }
                if (with_grad) CHECK(grad.guards_intact());
                else for (index_t i = 0; i < n; ++i) CHECK(std::isnan(grad[i]));  // not written
                CHECK(yt.guards_intact() && yp.guards_intact());
            }
}

// ---------------------------------------------------------------------------------------------
// Softmax + cross-entropy. Reference rows in long double.
struct CeRef {
    long double loss, magnitude;
    std::vector<long double> grad;  // unscaled
};

CeRef ce_ref(const std::vector<long double>& z, const std::vector<long double>& t) {
    long double m = -INFINITY, s = 0, sum_t = 0;
    for (long double v : z) m = std::max(m, v);
    for (long double v : z) s += std::exp(v - m);
    const long double lse = m + std::log(s);
    CeRef r{0, 0, std::vector<long double>(z.size())};
    for (long double v : t) sum_t += v;
    for (std::size_t j = 0; j < z.size(); ++j) {
        if (t[j] != 0) r.loss += t[j] * (lse - z[j]);
        r.magnitude += std::fabs(t[j]) * (std::fabs(m - z[j]) + std::log(s));
        r.grad[j] = std::exp(z[j] - lse) * sum_t - t[j];
    }
    return r;
}

template <class T>
void test_softmax_cross_entropy(const KernelTable<T>& kt, Rng& rng) {
    for (bool labels : {true, false})
        for (bool huge : {false, true})
            for (index_t rows : {1, 3})
                for (index_t cols : kSizes) {
                    if (cols == 0 || cols > 1100) continue;
                    Scope scope(std::string("softmax_cross_entropy ") + (labels ? "labels" : "probabilities") +
                                (huge ? " logits ~1e4" : "") + " rows=" + std::to_string(rows) + " cols=" + std::to_string(cols));
                    Guarded<T> z = random_guarded<T>(rows * cols, rng, -8, 8);
                    if (huge)  // exp(z) and logsumexp(z) - z would overflow or cancel without care
                        for (index_t i = 0; i < rows * cols; ++i) z[i] = static_cast<T>(rng.coin() ? 1e4 : -1e4) + z[i];
                    std::vector<std::int64_t> label(static_cast<std::size_t>(rows));
                    Guarded<T> t(rows * cols, T(0));
                    for (index_t r = 0; r < rows; ++r) {
                        label[r] = static_cast<std::int64_t>(rng.below(static_cast<std::uint64_t>(cols)));
                        for (index_t j = 0; j < cols; ++j)
                            t[r * cols + j] = labels ? T(j == label[r]) : (rng.below(4) == 0 ? T(0) : static_cast<T>(rng.uniform()));
                    }
                    const T scale = T(0.5);
                    Guarded<T> grad(rows * cols, nntest::quiet_nan<T>());
                    std::vector<double> row_losses(static_cast<std::size_t>(rows + 1), nntest::quiet_nan<double>());
                    row_losses[rows] = 777.0;
                    kt.softmax_cross_entropy(z.data(), labels ? nullptr : t.data(), labels ? label.data() : nullptr, grad.data(),
                                             scale, rows, cols, row_losses.data());
                    CHECK(row_losses[rows] == 777.0);
                    ElementCheck loss_check("row losses"), grad_check("gradient");
                    for (index_t r = 0; r < rows; ++r) {
                        std::vector<long double> zr(z.data() + r * cols, z.data() + (r + 1) * cols);
                        std::vector<long double> tr(t.data() + r * cols, t.data() + (r + 1) * cols);
                        const CeRef ref = ce_ref(zr, tr);
                        const long double tol = eps<T>() * (8 + 2 * cols) * (ref.magnitude + 1);
                        loss_check.add(std::fabs(row_losses[r] - ref.loss) <= tol, r, row_losses[r], ref.loss);
                        long double sum_t = 0;
                        for (long double v : tr) sum_t += v;
                        for (index_t j = 0; j < cols; ++j) {
                            const long double g = ref.grad[j] * scale;
                            const long double gtol = eps<T>() * (8 + cols) * (std::fabs(ref.grad[j] + tr[j]) + std::fabs(tr[j])) *
                                                         std::fabs(static_cast<long double>(scale)) + tiny<T>();
                            grad_check.add(std::fabs(grad[r * cols + j] - g) <= gtol, r * cols + j, grad[r * cols + j], g);
                        }
                    }
                    CHECK(grad.guards_intact());
                    // Value only: the same losses, the gradient untouched.
                    Guarded<T> untouched(rows * cols, nntest::quiet_nan<T>());
                    std::vector<double> again(static_cast<std::size_t>(rows));
                    kt.softmax_cross_entropy(z.data(), labels ? nullptr : t.data(), labels ? label.data() : nullptr, nullptr,
                                             scale, rows, cols, again.data());
                    for (index_t r = 0; r < rows; ++r) CHECK(nntest::same_bits(again[r], row_losses[r]));
                }
    // A known value: logits (1e4, -1e4, 0) with label 1 cost exactly 2e4 (+ log(1 + ...) ~ 0).
    {
        Scope scope("softmax_cross_entropy huge logits, known value");
        const T z[6] = {T(1e4), T(-1e4), T(0), T(5e3), T(5e3), T(-1e4)};
        const std::int64_t label[2] = {1, 0};
        T grad[6];
        double losses[2];
        kt.softmax_cross_entropy(z, nullptr, label, grad, T(1), 2, 3, losses);
        CHECK_MSG(losses[0] == 2e4, "got " << losses[0]);
        CHECK_MSG(std::fabs(losses[1] - std::log(2.0)) <= 4 * eps<T>(), "got " << losses[1]);
        CHECK(grad[0] == T(1) && grad[1] == T(-1) && grad[2] == T(0));
        CHECK(grad[3] == T(-0.5) && grad[4] == T(0.5) && grad[5] == T(0));
    }
}

// ---------------------------------------------------------------------------------------------
template <class T>
void test_sum_of_squares_and_scale(const KernelTable<T>& kt, Rng& rng) {
    for (index_t n : kSizes) {
        Scope scope("sum_of_squares/scale n=" + std::to_string(n));
        Guarded<T> x = random_guarded<T>(n, rng, -3, 3);
        const index_t blocks = nncore::loss_block_count(n);
        std::vector<double> sums(static_cast<std::size_t>(blocks + 1), nntest::quiet_nan<double>());
        sums[blocks] = 5.0;
        kt.sum_of_squares(x.data(), n, sums.data());
        CHECK(sums[blocks] == 5.0);
        for (index_t b = 0; b < blocks; ++b) {
            long double ref = 0;
            const index_t end = std::min(n, (b + 1) * nncore::kLossBlock);
            for (index_t i = b * nncore::kLossBlock; i < end; ++i) ref += static_cast<long double>(x[i]) * x[i];
            CHECK_MSG(std::fabs(sums[b] - ref) <= eps<T>() * (end - b * nncore::kLossBlock + 4) * ref,
                      "block " << b << ": got " << sums[b] << ", expected " << ref);
        }
        const Guarded<T> x0 = x;
        kt.scale(T(-0.3), x.data(), n);
        ElementCheck check("scale");
        for (index_t i = 0; i < n; ++i) check.add(x[i] == x0[i] * T(-0.3), i, x[i], x0[i] * T(-0.3));  // one rounding
        CHECK(x.guards_intact());
    }
}

// ---------------------------------------------------------------------------------------------
// Optimizers: three steps against the same formulas in long double. The tolerance is relative to
// the sizes of the values and updates involved (each step adds a few roundings).
enum class Opt { sgd, sgd_momentum, sgd_nesterov_wd, adam, adam_l2, adamw, rmsprop, rmsprop_centered_momentum };

const char* opt_name(Opt o) {
    switch (o) {
        case Opt::sgd: return "sgd";
        case Opt::sgd_momentum: return "sgd momentum";
        case Opt::sgd_nesterov_wd: return "sgd nesterov weight_decay";
        case Opt::adam: return "adam";
        case Opt::adam_l2: return "adam weight_decay";
        case Opt::adamw: return "adamw";
        case Opt::rmsprop: return "rmsprop";
        case Opt::rmsprop_centered_momentum: return "rmsprop centered momentum weight_decay";
    }
    return "?";
}

nncore::SgdOptions sgd_options(Opt o) {
    if (o == Opt::sgd) return {0.1, 0, 0, false};
    if (o == Opt::sgd_momentum) return {0.1, 0.9, 0, false};
    return {0.1, 0.8, 0.01, true};
}

nncore::AdamOptions adam_options(Opt o, int step) {
    nncore::AdamOptions a;
    a.lr = 0.01, a.beta1 = 0.9, a.beta2 = 0.999, a.eps = 1e-8, a.step = step;
    a.weight_decay = o == Opt::adam ? 0.0 : 0.1;
    a.decoupled = o == Opt::adamw;
    return a;
}

nncore::RmspropOptions rmsprop_options(Opt o) {
    nncore::RmspropOptions r;
    r.lr = 0.01, r.alpha = 0.99, r.eps = 1e-8;
    const bool full = o == Opt::rmsprop_centered_momentum;
    r.weight_decay = full ? 0.05 : 0.0;
    r.momentum = full ? 0.9 : 0.0;
    r.centered = full;
    return r;
}

bool is_sgd(Opt o) { return o == Opt::sgd || o == Opt::sgd_momentum || o == Opt::sgd_nesterov_wd; }
bool is_adam(Opt o) { return o == Opt::adam || o == Opt::adam_l2 || o == Opt::adamw; }

// Runs one step of `o` through the ops.h wrapper (which computes the per-step coefficients).
template <class T>
void run_opt(const KernelTable<T>& kt, Opt o, int step, T* p, const T* g, T* s1, T* s2, T* s3, index_t n) {
    if (is_sgd(o)) {
        nncore::sgd_update<T>(kt, sgd_options(o), p, g, o == Opt::sgd ? nullptr : s1, n);
    } else if (is_adam(o)) {
        nncore::adam_update(kt, adam_options(o, step), p, g, s1, s2, n);
    } else {
        const bool full = o == Opt::rmsprop_centered_momentum;
        nncore::rmsprop_update(kt, rmsprop_options(o), p, g, s1, full ? s2 : nullptr, full ? s3 : nullptr, n);
    }
}

// The same step in long double; returns the size of the update for the tolerance.
long double ref_opt(Opt o, int step, long double& p, long double g, long double& s1, long double& s2, long double& s3) {
    const long double p0 = p;
    switch (o) {
        case Opt::sgd: p -= 0.1L * g; break;
        case Opt::sgd_momentum: s1 = 0.9L * s1 + g; p -= 0.1L * s1; break;
        case Opt::sgd_nesterov_wd:
            g += 0.01L * p;
            s1 = 0.8L * s1 + g;
            p -= 0.1L * (g + 0.8L * s1);
            break;
        case Opt::adam:
        case Opt::adam_l2:
        case Opt::adamw: {
            const long double wd = o == Opt::adam ? 0 : 0.1L;
            if (o == Opt::adamw) p *= 1 - 0.01L * wd; else g += wd * p;
            s1 = 0.9L * s1 + 0.1L * g;
            s2 = 0.999L * s2 + 0.001L * g * g;
            const long double bc1 = 1 - std::pow(0.9L, step), bc2 = 1 - std::pow(0.999L, step);
            p -= 0.01L / bc1 * s1 / (std::sqrt(s2) / std::sqrt(bc2) + 1e-8L);
            break;
        }
        case Opt::rmsprop: s1 = 0.99L * s1 + 0.01L * g * g; p -= 0.01L * g / (std::sqrt(s1) + 1e-8L); break;
        case Opt::rmsprop_centered_momentum: {
            g += 0.05L * p;
            s1 = 0.99L * s1 + 0.01L * g * g;
            s3 = 0.99L * s3 + 0.01L * g;
            const long double avg = std::sqrt(s1 - s3 * s3) + 1e-8L;
            s2 = 0.9L * s2 + g / avg;
            p -= 0.01L * s2;
            break;
        }
    }
    return std::fabs(p - p0);
}

template <class T>
void test_optimizers(const KernelTable<T>& kt, Rng& rng) {
    for (Opt o : {Opt::sgd, Opt::sgd_momentum, Opt::sgd_nesterov_wd, Opt::adam, Opt::adam_l2, Opt::adamw, Opt::rmsprop,
                  Opt::rmsprop_centered_momentum})
        for (index_t n : kSizes) {
            Scope scope(std::string("optimizer ") + opt_name(o) + " n=" + std::to_string(n));
            Guarded<T> p = random_guarded<T>(n, rng, -2, 2);
            Guarded<T> s1(n, T(0)), s2(n, T(0)), s3(n, T(0));
            std::vector<long double> rp(p.data(), p.data() + n), r1(n, 0), r2(n, 0), r3(n, 0), moved(n, 0);
            for (int step = 1; step <= 3; ++step) {
                const Guarded<T> g = random_guarded<T>(n, rng, -1, 1);
                run_opt(kt, o, step, p.data(), g.data(), s1.data(), s2.data(), s3.data(), n);
                for (index_t i = 0; i < n; ++i) moved[i] += ref_opt(o, step, rp[i], g[i], r1[i], r2[i], r3[i]);
            }
            ElementCheck check("param after 3 steps");
            for (index_t i = 0; i < n; ++i) {
                // Adam-type updates divide by sqrt(v) + eps: each rounding is relative to the update.
                const long double tol = 64 * eps<T>() * (std::fabs(rp[i]) + moved[i]) + tiny<T>();
                check.add(std::fabs(p[i] - rp[i]) <= tol, i, p[i], rp[i]);
            }
            ElementCheck state("first state array");
            for (index_t i = 0; i < n; ++i) {
                const long double tol = 64 * eps<T>() * (std::fabs(r1[i]) + 1) ;
                state.add(std::fabs(s1[i] - r1[i]) <= tol, i, s1[i], r1[i]);
            }
            CHECK(p.guards_intact() && s1.guards_intact() && s2.guards_intact() && s3.guards_intact());
        }
}

// sgd_zero_steps: `steps` sgd_updates from a gradient of +0, bit for bit, with signed zeros, tiny
// and subnormal values among the parameters and buffers.
template <class T>
void test_sgd_zero_steps(const KernelTable<T>& kt, Rng& rng) {
    for (Opt o : {Opt::sgd, Opt::sgd_momentum, Opt::sgd_nesterov_wd})
        for (index_t n : kSizes)
            for (long long steps : {0LL, 1LL, 2LL, 5LL, 37LL}) {
                Scope scope(std::string("sgd_zero_steps ") + opt_name(o) + " n=" + std::to_string(n) + " steps=" +
                            std::to_string(steps));
                const nncore::OptimizerStep<T> step = nncore::OptimizerStep<T>::sgd_step(sgd_options(o));
                Guarded<T> p = random_guarded<T>(n, rng, -2, 2), b = random_guarded<T>(n, rng, -1, 1);
                const T specials[] = {T(0), -T(0), std::numeric_limits<T>::denorm_min(), -std::numeric_limits<T>::min(),
                                      T(1e-30)};
                for (index_t i = 0; i < n; i += 3) p[i] = specials[(i / 3) % 5];
                for (index_t i = 1; i < n; i += 4) b[i] = specials[(i / 4) % 5];
                Guarded<T> want_p = p, want_b = b;
                const Guarded<T> zeros(n, T(0));
                T* buffer = o == Opt::sgd ? nullptr : b.data();
                for (long long s = 0; s < steps; ++s)
                    kt.sgd_update(step.sgd, want_p.data(), zeros.data(), o == Opt::sgd ? nullptr : want_b.data(), n);
                kt.sgd_zero_steps(step.sgd, p.data(), buffer, n, steps);
                bool same = true;
                for (index_t i = 0; same && i < n; ++i) same = nntest::same_bits(p[i], want_p[i]) && nntest::same_bits(b[i], want_b[i]);
                CHECK(same);
                CHECK(p.guards_intact() && b.guards_intact());
            }
}

// ---------------------------------------------------------------------------------------------
// Threads: the wrappers split at block / row / 64-value boundaries; results must not change.
template <class T>
void test_threads(const KernelTable<T>& kt, Rng& rng) {
    const index_t n = 200003;
    const Guarded<T> a = random_guarded<T>(n, rng, -3, 3), b = random_guarded<T>(n, rng, 0.01, 0.99);
    const Guarded<T> g = random_guarded<T>(n, rng, -1, 1);
    const index_t rows = 301, cols = 331;
    std::vector<std::int64_t> labels(rows);
    for (auto& l : labels) l = static_cast<std::int64_t>(rng.below(cols));

    struct Result {
        std::vector<double> sums;
        std::vector<Guarded<T>> arrays;
    };
    auto run_all = [&]() {
        Result r;
        for (LossKind k : {LossKind::squared_error, LossKind::absolute_error, LossKind::binary_cross_entropy,
                           LossKind::binary_cross_entropy_logits}) {
            Guarded<T> grad(n, nntest::quiet_nan<T>());
            r.sums.push_back(nncore::loss(kt, k, b.data(), k == LossKind::binary_cross_entropy ? b.data() : a.data(), grad.data(),
                                          T(0.25), n));
            r.arrays.push_back(grad);
        }
        r.sums.push_back(nncore::sum_of_squares(kt, a.data(), n));
        for (bool with_labels : {true, false}) {
            Guarded<T> grad(rows * cols, nntest::quiet_nan<T>());
            r.sums.push_back(nncore::softmax_cross_entropy(kt, a.data(), with_labels ? nullptr : b.data(),
                                                           with_labels ? labels.data() : nullptr, grad.data(), T(0.1), rows, cols));
            r.arrays.push_back(grad);
        }
        Guarded<T> x = a;
        nncore::scale(kt, T(0.7), x.data(), n);
        r.arrays.push_back(x);
        for (Opt o : {Opt::sgd_nesterov_wd, Opt::adamw, Opt::adam_l2, Opt::rmsprop_centered_momentum}) {
            Guarded<T> p = a, s1(n, T(0)), s2(n, T(0)), s3(n, T(0));
            for (int step = 1; step <= 2; ++step) run_opt(kt, o, step, p.data(), g.data(), s1.data(), s2.data(), s3.data(), n);
            r.arrays.push_back(p);
            r.arrays.push_back(s1);
        }
        return r;
    };
    nncore::set_num_threads(1);
    const Result one = run_all();
    for (int threads : {2, 3}) {
        Scope scope("threads=" + std::to_string(threads));
        nncore::set_num_threads(threads);
        const Result many = run_all();
        for (std::size_t i = 0; i < one.sums.size(); ++i)
            CHECK_MSG(nntest::same_bits(one.sums[i], many.sums[i]), "sum " << i << ": " << one.sums[i] << " vs " << many.sums[i]);
        for (std::size_t i = 0; i < one.arrays.size(); ++i) {
            bool same = one.arrays[i].guards_intact() && many.arrays[i].guards_intact();
            for (index_t j = 0; same && j < one.arrays[i].size(); ++j) same = nntest::same_bits(one.arrays[i][j], many.arrays[i][j]);
            CHECK_MSG(same, "array " << i << " differs from the 1-thread result");
        }
    }
    nncore::set_num_threads(1);
}

// The updates of several parameters in one call (the engine's step): every parameter gets the
// bits of its own call, whatever the thread count, with sizes around the 64-value split
// boundaries and larger than a thread's share, and Adam step counts differing per parameter.
template <class T>
void test_parameter_lists(const KernelTable<T>& kt, Rng& rng) {
    const index_t sizes[] = {0, 1, 63, 65, 8191, 8193, 20011, 3};
    constexpr std::size_t count = sizeof(sizes) / sizeof(sizes[0]);
    for (Opt o : {Opt::sgd, Opt::sgd_momentum, Opt::sgd_nesterov_wd, Opt::adam, Opt::adam_l2, Opt::adamw, Opt::rmsprop,
                  Opt::rmsprop_centered_momentum}) {
        Scope scope(std::string("parameter list ") + opt_name(o));
        std::vector<Guarded<T>> params, grads, states;
        for (index_t n : sizes) {
            params.push_back(random_guarded<T>(n, rng, -2, 2));
            grads.push_back(random_guarded<T>(n, rng, -1, 1));
            for (int k = 0; k < 3; ++k) states.push_back(random_guarded<T>(n, rng, 0.01, 0.5));
        }
        const auto step_of = [](std::size_t i) { return 1 + static_cast<int>(i % 3); };
        // One call per parameter, one thread.
        nncore::set_num_threads(1);
        std::vector<Guarded<T>> want_p = params, want_s = states;
        for (std::size_t i = 0; i < count; ++i)
            run_opt(kt, o, step_of(i), want_p[i].data(), grads[i].data(), want_s[3 * i].data(), want_s[3 * i + 1].data(),
                    want_s[3 * i + 2].data(), sizes[i]);
        for (int threads : {1, 2, 3}) {
            Scope thread_scope("threads=" + std::to_string(threads));
            nncore::set_num_threads(threads);
            std::vector<Guarded<T>> got_p = params, got_s = states;
            std::vector<nncore::ParameterUpdate<T>> list(count);
            for (std::size_t i = 0; i < count; ++i) {
                list[i].param = got_p[i].data();
                list[i].grad = grads[i].data();
                list[i].state[0] = o == Opt::sgd ? nullptr : got_s[3 * i].data();
                list[i].state[1] = is_adam(o) || o == Opt::rmsprop_centered_momentum ? got_s[3 * i + 1].data() : nullptr;
                list[i].state[2] = o == Opt::rmsprop_centered_momentum ? got_s[3 * i + 2].data() : nullptr;
                list[i].n = sizes[i];
                list[i].step = step_of(i);
            }
            if (is_sgd(o)) nncore::sgd_update(kt, sgd_options(o), list.data(), count);
            else if (is_adam(o)) nncore::adam_update(kt, adam_options(o, 1000), list.data(), count);  // step unused
            else nncore::rmsprop_update(kt, rmsprop_options(o), list.data(), count);
            for (std::size_t i = 0; i < count; ++i) {
                bool same = got_p[i].guards_intact();
                for (index_t j = 0; same && j < sizes[i]; ++j) same = nntest::same_bits(got_p[i][j], want_p[i][j]);
                for (int k = 0; k < 3; ++k) {
                    const Guarded<T>& a = got_s[3 * i + k];
                    const Guarded<T>& b = want_s[3 * i + k];
                    same = same && a.guards_intact();
                    for (index_t j = 0; same && j < sizes[i]; ++j) same = nntest::same_bits(a[j], b[j]);
                }
                CHECK_MSG(same, "parameter " << i << " (n=" << sizes[i] << ") differs from its own call");
            }
        }
    }
    nncore::set_num_threads(1);
}

template <class T>
void test_all(const KernelTable<T>& kt, Rng& rng) {
    Scope scope(nntest::dtype_name<T>());
    test_losses(kt, rng);
    test_softmax_cross_entropy(kt, rng);
    test_sum_of_squares_and_scale(kt, rng);
    test_optimizers(kt, rng);
    test_sgd_zero_steps(kt, rng);
    test_parameter_lists(kt, rng);
    test_threads(kt, rng);
}

}  // namespace

int main() {
    nntest::for_each_isa([](nncore::Isa, const nncore::Tables& tables) {
        Rng rng(2718);
        test_all(tables.f32, rng);
        test_all(tables.f64, rng);
    });
    return nntest::finish("test_training_kernels");
}
