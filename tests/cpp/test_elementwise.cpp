// Elementwise, row-wise and loss kernels of the KernelTable against naive long double references,
// on every ISA this CPU supports, at sizes around every vector width (full vectors, partial tails
// and n = 0). Outputs are poisoned with NaN and surrounded by guard values first, so an unwritten
// element or a write past the end fails. The ops.h wrappers that split work over threads are
// checked to give bit-identical results to one direct kernel call.
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "harness.h"
#include "ops.h"
#include "thread_pool.h"

namespace {

using nncore::Act;
using nncore::KernelTable;
using nntest::act_name;
using nntest::act_ref;
using nntest::Guarded;
using nntest::index_t;
using nntest::kActs;
using nntest::Rng;
using nntest::Scope;

// 0, around every vector width (1, 4, 8, 16 lanes) and a size with many full vectors.
const index_t kSizes[] = {0, 1, 2, 3, 7, 8, 9, 15, 16, 17, 31, 33, 127, 1000};
// The transcendental maps take blocks of 4 registers (lanes.h), then single registers, then a
// masked tail: sizes around one and two blocks of every width (4, 16, 32 and 64 values), and
// between (an odd prime), on top of kSizes.
const index_t kBlockSizes[] = {4, 5, 32, 63, 64, 65, 97, 128, 131};

std::vector<index_t> map_sizes() {
    std::vector<index_t> sizes(std::begin(kSizes), std::end(kSizes));
    sizes.insert(sizes.end(), std::begin(kBlockSizes), std::end(kBlockSizes));
    return sizes;
}

// Every element of y (n values computed in one call) has the bits of the same element computed
// alone (a call for n = 1, one masked register): the result does not depend on whether an element
// fell into a block of registers, a single register or the tail, which the thread splits of ops.h
// and the bit-identity of 1 and 2 threads rely on.
template <class T, class F>
void check_position_free(const Guarded<T>& x, const Guarded<T>& y, F one) {
    index_t first = -1;
    for (index_t i = 0; i < x.size() && first < 0; ++i) {
        T alone = T(0);
        one(&x[i], &alone);
        if (!nntest::same_bits(alone, y[i])) first = i;
    }
    CHECK_MSG(first < 0, "element " << first << " differs from the same value computed alone");
}

using nntest::ElementCheck;
using nntest::eps;
using nntest::random_guarded;
using nntest::tiny;

std::string size_text(index_t n) { return "n=" + std::to_string(n); }

double ulp_bound(Act act) { return act == Act::tanh ? nntest::kTanhMaxUlp : nntest::kSigmoidMaxUlp; }

// ---------------------------------------------------------------------------------------------
template <class T>
void test_act_forward(const KernelTable<T>& kt, Rng& rng) {
    const T alpha = T(nntest::kLeakyAlpha);
    for (Act act : kActs)
        for (index_t n : map_sizes()) {
            Scope scope(std::string("act_forward ") + act_name(act) + " " + size_text(n));
            Guarded<T> x = random_guarded<T>(n, rng, -8, 8);
            if (n > 2) x[1] = T(0), x[2] = -T(0);
            Guarded<T> y(n, nntest::quiet_nan<T>());
            kt.act_forward(act, alpha, x.data(), y.data(), n);
            {
                ElementCheck check("y");
                for (index_t i = 0; i < n; ++i) {
                    const T xi = x[i], yi = y[i];
                    switch (act) {
                        case Act::identity: check.add(nntest::same_bits(yi, xi), i, yi, xi, xi); break;
                        case Act::relu: check.add(yi == (xi < 0 ? T(0) : xi), i, yi, xi < 0 ? T(0) : xi, xi); break;
                        case Act::leaky_relu: {
                            const T expected = xi < 0 ? xi * alpha : xi;  // one rounding, as in the kernel
                            check.add(yi == expected, i, yi, expected, xi);
                            break;
                        }
                        case Act::tanh:
                        case Act::sigmoid: {
                            const long double ref = act_ref(act, alpha, xi);
                            check.add(nntest::ulp_error(yi, ref) <= ulp_bound(act), i, yi, ref, xi);
                            break;
                        }
                        case Act::gelu:
                        case Act::gelu_tanh: {  // accuracy measured in test_erf_gelu
                            const long double ref = act_ref(act, alpha, xi);
                            check.add(std::fabs(yi - ref) <= 16 * eps<T>() * (std::fabs(ref) + std::fabs(xi)) + tiny<T>(), i,
                                      yi, ref, xi);
                            break;
                        }
                    }
                }
            }
            CHECK(y.guards_intact());
            check_position_free(x, y, [&](const T* xi, T* yi) { kt.act_forward(act, alpha, xi, yi, 1); });
            // In place (x == y) gives the same bits.
            Guarded<T> z = x;
            kt.act_forward(act, alpha, z.data(), z.data(), n);
            bool same = true;
            for (index_t i = 0; i < n; ++i) same = same && nntest::same_bits(z[i], y[i]);
            CHECK_MSG(same, "in-place result differs");
            CHECK(z.guards_intact());
        }
}

template <class T>
void test_act_backward(const KernelTable<T>& kt, Rng& rng) {
    const T alpha = T(nntest::kLeakyAlpha);
    for (Act act : kActs)
        for (index_t n : kSizes) {
            Scope scope(std::string("act_backward ") + act_name(act) + " " + size_text(n));
            Guarded<T> x = random_guarded<T>(n, rng, -4, 4);
            if (n > 2) x[1] = T(0);  // the derivative of relu at 0 is taken as 0
            Guarded<T> y(n, T(0));
            for (index_t i = 0; i < n; ++i) y[i] = static_cast<T>(act_ref(act, alpha, x[i]));
            const Guarded<T> dy = random_guarded<T>(n, rng, -2, 2);
            Guarded<T> dx(n, nntest::quiet_nan<T>());
            // The kernel reads only the operand the derivative needs (x for relu and leaky_relu,
            // y for tanh and sigmoid); the other is passed as null, as ops.cpp may do.
            const bool uses_x = nncore::act_backward_reads_input(act);
            const bool uses_y = nncore::act_backward_reads_output(act);
            kt.act_backward(act, alpha, uses_x ? x.data() : nullptr, uses_y ? y.data() : nullptr, dy.data(), dx.data(), n);
            {
                ElementCheck check("dx");
                for (index_t i = 0; i < n; ++i) {
                    const T xi = x[i], yi = y[i], dyi = dy[i], got = dx[i];
                    switch (act) {
                        case Act::identity: check.add(nntest::same_bits(got, dyi), i, got, dyi, xi); break;
                        case Act::relu: check.add(got == (xi > 0 ? dyi : T(0)), i, got, xi > 0 ? dyi : T(0), xi); break;
                        case Act::leaky_relu: {
                            const T expected = xi > 0 ? dyi : dyi * alpha;
                            check.add(got == expected, i, got, expected, xi);
                            break;
                        }
                        case Act::tanh: {
                            // 1 - y^2 cancels near |y| = 1; without a fused multiply-add the rounding
                            // of y^2 is what is left, hence the y^2 term in the tolerance.
                            const long double yl = yi, ref = dyi * (1 - yl * yl);
                            const long double tol = 4 * eps<T>() * std::fabs(static_cast<long double>(dyi)) *
                                                        (std::fabs(1 - yl * yl) + yl * yl) + tiny<T>();
                            check.add(std::fabs(got - ref) <= tol, i, got, ref, xi);
                            break;
                        }
                        case Act::sigmoid: {
                            const long double yl = yi, ref = dyi * yl * (1 - yl);
                            check.add(std::fabs(got - ref) <= 4 * eps<T>() * std::fabs(ref) + tiny<T>(), i, got, ref, xi);
                            break;
                        }
                        case Act::gelu:
                        case Act::gelu_tanh: {  // d/dx by a long double central difference of act_ref
                            const long double h = 1e-7L * (1 + std::fabs(static_cast<long double>(xi)));
                            const long double slope = (act_ref(act, alpha, xi + h) - act_ref(act, alpha, xi - h)) / (2 * h);
                            const long double ref = dyi * slope;
                            check.add(std::fabs(got - ref) <= 64 * eps<T>() * std::fabs(static_cast<long double>(dyi)) * (1 + std::fabs(static_cast<long double>(xi))) + 1e-9L * std::fabs(static_cast<long double>(dyi)), i, got, ref, xi);
                            break;
                        }
                    }
                }
            }
            CHECK(dx.guards_intact());
        }
}

template <class T>
void test_exp(const KernelTable<T>& kt, Rng& rng) {
    // Moderate arguments; the whole range and special values are in test_math_accuracy.
    const double range = sizeof(T) == 4 ? 80.0 : 700.0;
    for (index_t n : map_sizes()) {
        Scope scope("exp " + size_text(n));
        const Guarded<T> x = random_guarded<T>(n, rng, -range, range);
        Guarded<T> y(n, nntest::quiet_nan<T>());
        kt.exp(x.data(), y.data(), n);
        {
            ElementCheck check("y");
            for (index_t i = 0; i < n; ++i) {
                const long double ref = std::exp(static_cast<long double>(x[i]));
                check.add(nntest::ulp_error(y[i], ref) <= nntest::kExpMaxUlp, i, y[i], ref, x[i]);
            }
        }
        CHECK(y.guards_intact());
        check_position_free(x, y, [&](const T* xi, T* yi) { kt.exp(xi, yi, 1); });
    }
}

// all_finite against std::isfinite: random finite bit patterns (subnormals, -0, the largest
// values) give true, and one NaN, +inf or -inf anywhere (first, middle, last: every position of
// the small sizes) gives false. The guards around the data are NaN, so a read past either end
// would answer false for finite data.
template <class T>
void test_all_finite(const KernelTable<T>& kt, Rng& rng) {
    std::vector<index_t> sizes(std::begin(kSizes), std::end(kSizes));
    for (index_t n : {63, 64, 65, 129}) sizes.push_back(n);  // around 4 AVX-512 vectors per step
    const T specials[] = {nntest::quiet_nan<T>(), std::numeric_limits<T>::infinity(),
                          -std::numeric_limits<T>::infinity()};
    for (index_t n : sizes) {
        Scope scope("all_finite " + size_text(n));
        Guarded<T> x(n, T(0));
        for (index_t i = 0; i < n; ++i) x[i] = nntest::random_finite<T>(rng);
        if (n > 2) x[1] = -T(0), x[2] = -std::numeric_limits<T>::max();
        CHECK(kt.all_finite(x.data(), n));
        for (index_t i = 0; i < n; ++i) {
            if (n > 40 && i != 0 && i != n / 2 && i != n - 1) continue;
            for (T special : specials) {
                const T kept = x[i];
                x[i] = special;
                CHECK_MSG(!kt.all_finite(x.data(), n), "missed " << special << " at " << i);
                x[i] = kept;
            }
        }
    }
}

template <class T>
void test_axpy(const KernelTable<T>& kt, Rng& rng) {
    const T a = T(-0.37);
    for (index_t n : kSizes) {
        Scope scope("axpy " + size_text(n));
        const Guarded<T> x = random_guarded<T>(n, rng, -3, 3);
        Guarded<T> y = random_guarded<T>(n, rng, -3, 3);
        const Guarded<T> y0 = y;
        kt.axpy(a, x.data(), y.data(), n);
        {
            ElementCheck check("y");
            for (index_t i = 0; i < n; ++i) {
                const long double ax = static_cast<long double>(a) * x[i], ref = y0[i] + ax;
                // A fused multiply-add rounds once, a separate multiply and add twice.
                const long double tol = eps<T>() * (std::fabs(ref) + std::fabs(ax)) + tiny<T>();
                check.add(std::fabs(y[i] - ref) <= tol, i, y[i], ref, x[i]);
            }
        }
        CHECK(y.guards_intact());
    }
}

// ---------------------------------------------------------------------------------------------
// Reference softmax of one row; -inf inputs give exactly 0.
std::vector<long double> softmax_ref(const std::vector<long double>& x) {
    long double mx = -INFINITY, sum = 0;
    for (long double v : x) mx = std::max(mx, v);
    std::vector<long double> y(x.size());
    for (std::size_t j = 0; j < x.size(); ++j) sum += y[j] = std::exp(x[j] - mx);
    for (auto& v : y) v /= sum;
    return y;
}

enum class RowKind { random, huge_offset, with_neg_inf, with_nan };

const char* row_kind_name(RowKind k) {
    switch (k) {
        case RowKind::random: return "random";
        case RowKind::huge_offset: return "logits around 1e4";
        case RowKind::with_neg_inf: return "some -inf";
        case RowKind::with_nan: return "one NaN";
    }
    return "?";
}

template <class T>
void test_softmax_forward(const KernelTable<T>& kt, Rng& rng) {
    const T inf = std::numeric_limits<T>::infinity();
    for (RowKind kind : {RowKind::random, RowKind::huge_offset, RowKind::with_neg_inf, RowKind::with_nan})
        for (index_t rows : {0, 1, 3})
            for (index_t cols : kSizes) {
                if ((kind == RowKind::with_neg_inf || kind == RowKind::with_nan) && cols < 2) continue;
                Scope scope(std::string("softmax_forward ") + row_kind_name(kind) + " rows=" + std::to_string(rows) +
                            " cols=" + std::to_string(cols));
                Guarded<T> x = random_guarded<T>(rows * cols, rng, -10, 10);
                // The special row is the middle one (or the only one), so the others show that a
                // special value stays within its row.
                const index_t special = rows / 2;
                for (index_t r = 0; r < rows; ++r)
                    for (index_t j = 0; j < cols; ++j) {
                        T& v = x[r * cols + j];
                        if (kind == RowKind::huge_offset) v += T(1e4);  // exp(x) would overflow
                        if (kind == RowKind::with_neg_inf && r == special && j % 3 == 1) v = -inf;
                    }
                if (kind == RowKind::with_nan && rows > 0) x[special * cols + cols - 2] = nntest::quiet_nan<T>();
                Guarded<T> y(rows * cols, nntest::quiet_nan<T>());
                kt.softmax_forward(x.data(), y.data(), rows, cols);
                {
                    ElementCheck check("y");
                    for (index_t r = 0; r < rows && cols > 0; ++r) {
                        std::vector<long double> xr(x.data() + r * cols, x.data() + (r + 1) * cols);
                        const bool nan_row = kind == RowKind::with_nan && r == special;
                        const std::vector<long double> ref = softmax_ref(xr);
                        const long double mx = *std::max_element(xr.begin(), xr.end());
                        for (index_t j = 0; j < cols; ++j) {
                            const T got = y[r * cols + j];
                            if (nan_row) {  // a NaN logit makes its whole row NaN
                                check.add(std::isnan(got), r * cols + j, got, NAN, xr[j]);
                                continue;
                            }
                            // exp error, the rounding of x - max (relative error |x - max| eps), and
                            // the rounding of the row sum (grows like sqrt(cols) for random data).
                            const long double d = std::isinf(xr[j]) ? 0 : std::fabs(xr[j] - mx);
                            const long double rel = eps<T>() * (8 + 2 * d + 4 * std::sqrt(static_cast<long double>(cols)));
                            check.add(std::fabs(got - ref[j]) <= rel * ref[j] + 4 * tiny<T>(), r * cols + j, got,
                                      ref[j], xr[j]);
                        }
                    }
                }
                CHECK(y.guards_intact());
            }
}

template <class T>
void test_softmax_backward(const KernelTable<T>& kt, Rng& rng) {
    for (index_t rows : {0, 1, 3})
        for (index_t cols : kSizes) {
            Scope scope("softmax_backward rows=" + std::to_string(rows) + " cols=" + std::to_string(cols));
            Guarded<T> y(rows * cols, T(0));
            for (index_t r = 0; r < rows; ++r) {
                std::vector<long double> logits(cols);
                for (auto& v : logits) v = rng.uniform(-5, 5);
                const std::vector<long double> p = softmax_ref(logits);
                for (index_t j = 0; j < cols; ++j) y[r * cols + j] = static_cast<T>(p[j]);
            }
            const Guarded<T> dy = random_guarded<T>(rows * cols, rng, -2, 2);
            Guarded<T> dx(rows * cols, nntest::quiet_nan<T>());
            kt.softmax_backward(y.data(), dy.data(), dx.data(), rows, cols);
            {
                ElementCheck check("dx");
                for (index_t r = 0; r < rows; ++r) {
                    long double dot = 0, abs_dot = 0;
                    for (index_t j = 0; j < cols; ++j) {
                        dot += static_cast<long double>(y[r * cols + j]) * dy[r * cols + j];
                        abs_dot += std::fabs(static_cast<long double>(y[r * cols + j]) * dy[r * cols + j]);
                    }
                    for (index_t j = 0; j < cols; ++j) {
                        const index_t i = r * cols + j;
                        const long double yl = y[i], ref = yl * (dy[i] - dot);
                        const long double tol = eps<T>() * (4 + 2 * std::sqrt(static_cast<long double>(cols))) * yl *
                                                    (std::fabs(static_cast<long double>(dy[i])) + abs_dot) +
                                                tiny<T>();
                        check.add(std::fabs(dx[i] - ref) <= tol, i, dx[i], ref, yl);
                    }
                }
            }
            CHECK(dx.guards_intact());
        }
}

template <class T>
void test_column_sums(const KernelTable<T>& kt, Rng& rng) {
    for (index_t rows : {0, 1, 2, 3, 17, 100})
        for (index_t cols : kSizes)
            for (index_t pad : {0, 3}) {
                if (rows * cols > 20000) continue;
                Scope scope("column_sums rows=" + std::to_string(rows) + " cols=" + std::to_string(cols) +
                            " ld=cols+" + std::to_string(pad));
                // Row padding is NaN: reading it would poison a sum.
                const index_t ld = cols + pad;
                Guarded<T> x(rows * ld, nntest::quiet_nan<T>());
                for (index_t r = 0; r < rows; ++r)
                    for (index_t j = 0; j < cols; ++j) x[r * ld + j] = static_cast<T>(rng.uniform(-1, 1));
                Guarded<T> out(cols, nntest::quiet_nan<T>());
                kt.column_sums(x.data(), rows, cols, ld, out.data());
                {
                    ElementCheck check("out");
                    for (index_t j = 0; j < cols; ++j) {
                        long double ref = 0, abs_sum = 0;
                        for (index_t r = 0; r < rows; ++r) {
                            ref += x[r * ld + j];
                            abs_sum += std::fabs(static_cast<long double>(x[r * ld + j]));
                        }
                        // Rows are added one after another: the classic bound for rows terms.
                        check.add(std::fabs(out[j] - ref) <= eps<T>() * (rows + 1) * abs_sum, j, out[j], ref);
                    }
                }
                CHECK(out.guards_intact());
            }
}

// ---------------------------------------------------------------------------------------------
template <class T>
void test_losses(const KernelTable<T>& kt, Rng& rng) {
    std::vector<index_t> sizes(std::begin(kSizes), std::end(kSizes));
    for (index_t n : {1023, 1024, 1025, 3001}) sizes.push_back(n);  // around the loss block of 1024
    for (index_t n : sizes) {
        Scope scope("losses " + size_text(n));
        // --- squared error: random data, within the bound of a blocked sum ---
        {
            const Guarded<T> yt = random_guarded<T>(n, rng, -2, 2), yp = random_guarded<T>(n, rng, -2, 2);
            long double ref = 0;
            for (index_t i = 0; i < n; ++i) ref += (static_cast<long double>(yp[i]) - yt[i]) * (yp[i] - yt[i]);
            const double got = kt.squared_error_sum(yt.data(), yp.data(), n);
            // Sums run in T within blocks of 1024 and in double across them: at most about
            // 1024 + n / 1024 roundings, each relative to the (non-negative) total.
            const long double bound = eps<T>() * (std::min<index_t>(n, 1024) + n / 1024 + 4) * ref;
            CHECK_MSG(std::fabs(got - ref) <= bound, "squared_error_sum: got " << got << ", expected " << ref);
            // Small integers make every partial sum exact, so a dropped or doubled element shows.
            Guarded<T> it(n, T(0)), ip(n, T(0));
            long long exact = 0;
            for (index_t i = 0; i < n; ++i) {
                it[i] = T(static_cast<int>(rng.below(9)) - 4);
                ip[i] = T(static_cast<int>(rng.below(9)) - 4);
                exact += static_cast<long long>((ip[i] - it[i]) * (ip[i] - it[i]));
            }
            const double got_exact = kt.squared_error_sum(it.data(), ip.data(), n);
            CHECK_MSG(got_exact == static_cast<double>(exact), "squared_error_sum on integers: got "
                                                                   << got_exact << ", expected " << exact);

            const T scale = T(2.0 / 3.0);
            Guarded<T> grad(n, nntest::quiet_nan<T>());
            kt.squared_error_grad(yt.data(), yp.data(), grad.data(), n, scale);
            {
                ElementCheck check("squared_error_grad");
                for (index_t i = 0; i < n; ++i) {
                    const long double r = static_cast<long double>(scale) * (static_cast<long double>(yp[i]) - yt[i]);
                    check.add(std::fabs(grad[i] - r) <= 2 * eps<T>() * std::fabs(r) + tiny<T>(), i, grad[i], r);
                }
            }
            CHECK(grad.guards_intact());
        }
        // --- binary cross-entropy: labels 0, 1 and soft; predictions inside (0, 1) and exactly
        //     0 and 1, where the log is clamped at -100 and the gradient's denominator at 1e-12 ---
        {
            Guarded<T> yt(n, T(0)), yp(n, T(0));
            for (index_t i = 0; i < n; ++i) {
                const auto label = rng.below(3);
                yt[i] = label == 0 ? T(0) : label == 1 ? T(1) : static_cast<T>(rng.uniform());
                yp[i] = static_cast<T>(rng.uniform(1e-6, 1 - 1e-6));
                if (i % 7 == 3) yp[i] = T(0);
                if (i % 11 == 5) yp[i] = T(1);
            }
            long double ref = 0, abs_sum = 0;
            for (index_t i = 0; i < n; ++i) {
                const long double p = yp[i], y = yt[i];
                const long double log_p = std::max(std::log(p), -100.0L), log_q = std::max(std::log1p(-p), -100.0L);
                const long double term = -(y * log_p + (1 - y) * log_q);
                ref += term;
                abs_sum += std::fabs(y * log_p) + std::fabs((1 - y) * log_q);
            }
            const double got = kt.binary_cross_entropy_sum(yt.data(), yp.data(), n);
            // Computed in double whatever T is.
            const long double bound = std::numeric_limits<double>::epsilon() * (n + 4) * abs_sum;
            CHECK_MSG(std::fabs(got - ref) <= bound, "binary_cross_entropy_sum: got " << got << ", expected " << ref);

            const T scale = T(0.25);
            Guarded<T> grad(n, nntest::quiet_nan<T>());
            kt.binary_cross_entropy_grad(yt.data(), yp.data(), grad.data(), n, scale);
            {
                ElementCheck check("binary_cross_entropy_grad");
                const long double clamp = static_cast<T>(1e-12);  // the clamp, as the kernel holds it in T
                for (index_t i = 0; i < n; ++i) {
                    const long double p = yp[i];
                    const long double r = static_cast<long double>(scale) * (p - yt[i]) / std::max(p * (1 - p), clamp);
                    check.add(std::fabs(grad[i] - r) <= 4 * eps<T>() * std::fabs(r) + tiny<T>(), i, grad[i], r, p);
                }
            }
            CHECK(grad.guards_intact());
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The ops.h wrappers split elementwise work into chunks (multiples of 64 values) and softmax into
// row ranges over the thread pool: the result must equal one direct kernel call, bit for bit.
template <class T>
void test_threaded_ops(const KernelTable<T>& kt, Rng& rng) {
    const index_t n = 200003;  // several chunks per thread, and a partial vector at the end
    const T alpha = T(nntest::kLeakyAlpha);
    const Guarded<T> x = random_guarded<T>(n, rng, -6, 6), dy = random_guarded<T>(n, rng, -1, 1);
    auto same = [](const Guarded<T>& a, const Guarded<T>& b) {
        for (index_t i = 0; i < a.size(); ++i)
            if (!nntest::same_bits(a[i], b[i])) return false;
        return a.guards_intact() && b.guards_intact();
    };
    for (int threads : {1, 2, 3}) {
        Scope scope("ops threads=" + std::to_string(threads));
        nncore::set_num_threads(threads);
        for (Act act : kActs) {
            Scope act_scope(act_name(act));
            Guarded<T> direct(n, nntest::quiet_nan<T>()), pooled(n, nntest::quiet_nan<T>());
            kt.act_forward(act, alpha, x.data(), direct.data(), n);
            nncore::activation_forward(kt, act, alpha, x.data(), pooled.data(), n);
            CHECK_MSG(same(direct, pooled), "activation_forward differs from the direct kernel call");
            Guarded<T> dx_direct(n, nntest::quiet_nan<T>()), dx_pooled(n, nntest::quiet_nan<T>());
            kt.act_backward(act, alpha, x.data(), direct.data(), dy.data(), dx_direct.data(), n);
            nncore::activation_backward(kt, act, alpha, x.data(), direct.data(), dy.data(), dx_pooled.data(), n);
            CHECK_MSG(same(dx_direct, dx_pooled), "activation_backward differs from the direct kernel call");
        }
        {
            Guarded<T> direct(n, nntest::quiet_nan<T>()), pooled(n, nntest::quiet_nan<T>());
            kt.exp(x.data(), direct.data(), n);
            nncore::exp(kt, x.data(), pooled.data(), n);
            CHECK_MSG(same(direct, pooled), "exp differs from the direct kernel call");
        }
        {
            // A non-finite value in any thread's chunk (at its ends too) is found.
            Guarded<T> data = x;
            CHECK(nncore::all_finite(kt, data.data(), n));
            for (index_t i : {index_t(0), n / 3 - 1, n / 3, n / 2, n - 1}) {
                const T kept = data[i];
                data[i] = std::numeric_limits<T>::infinity();
                CHECK_MSG(!nncore::all_finite(kt, data.data(), n), "all_finite missed inf at " << i);
                data[i] = kept;
            }
        }
        {
            const index_t rows = 301, cols = 331;  // enough rows per thread to split
            Guarded<T> direct(rows * cols, nntest::quiet_nan<T>()), pooled(rows * cols, nntest::quiet_nan<T>());
            kt.softmax_forward(x.data(), direct.data(), rows, cols);
            nncore::softmax_forward(kt, x.data(), pooled.data(), rows, cols);
            CHECK_MSG(same(direct, pooled), "softmax_forward differs from the direct kernel call");
            Guarded<T> dx_direct(rows * cols, nntest::quiet_nan<T>()), dx_pooled(rows * cols, nntest::quiet_nan<T>());
            kt.softmax_backward(direct.data(), dy.data(), dx_direct.data(), rows, cols);
            nncore::softmax_backward(kt, direct.data(), dy.data(), dx_pooled.data(), rows, cols);
            CHECK_MSG(same(dx_direct, dx_pooled), "softmax_backward differs from the direct kernel call");
        }
    }
    nncore::set_num_threads(1);
}

template <class T>
void test_all(const KernelTable<T>& kt, Rng& rng) {
    Scope scope(nntest::dtype_name<T>());
    test_act_forward(kt, rng);
    test_act_backward(kt, rng);
    test_exp(kt, rng);
    test_all_finite(kt, rng);
    test_axpy(kt, rng);
    test_softmax_forward(kt, rng);
    test_softmax_backward(kt, rng);
    test_column_sums(kt, rng);
    test_losses(kt, rng);
    test_threaded_ops(kt, rng);
}

}  // namespace

int main() {
    nntest::for_each_isa([](nncore::Isa, const nncore::Tables& tables) {
        Rng rng(77);
        test_all(tables.f32, rng);
        test_all(tables.f64, rng);
    });
    return nntest::finish("test_elementwise");
}
