// Accuracy of the vectorised transcendental functions (kernels/math.h) on every ISA this CPU
// supports: exp through the table's exp entry, tanh and sigmoid through act_forward. The error is
// measured in ulp against a long double reference over more than 1e6 inputs per function and
// dtype, spanning the whole range:
//   - a dense random sweep of the interesting range,
//   - a second sweep (near zero, or the full finite-result range),
//   - random bit patterns of every finite value (log-uniform magnitudes, subnormal to huge),
//   - decades 10^e for every e the type reaches, and a few thousand values next to each
//     boundary the implementation has (overflow, underflow, the tanh branch point),
//   - +-0, +-inf, NaN, +-denorm_min, +-min, +-max.
// The maximum per function / dtype / ISA is printed and asserted against the bounds stated in
// math.h. Results in the subnormal range are measured in units of the subnormal spacing (the
// precision the type really has there). Special values are checked exactly, at every lane position.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "harness.h"

namespace {

using nncore::Act;
using nncore::KernelTable;
using nntest::index_t;
using nntest::Rng;
using nntest::Scope;

enum class Fn { exp, tanh, sigmoid };

const char* fn_name(Fn f) {
    switch (f) {
        case Fn::exp: return "exp";
        case Fn::tanh: return "tanh";
        case Fn::sigmoid: return "sigmoid";
    }
    return "?";
}

double fn_bound(Fn f) {
    switch (f) {
        case Fn::exp: return nntest::kExpMaxUlp;
        case Fn::tanh: return nntest::kTanhMaxUlp;
        case Fn::sigmoid: return nntest::kSigmoidMaxUlp;
    }
    return 0;
}

long double fn_ref(Fn f, long double x) {
    switch (f) {
        case Fn::exp: return std::exp(x);
        case Fn::tanh: return std::tanh(x);
        case Fn::sigmoid: return 1.0L / (1.0L + std::exp(-x));
    }
    return 0;
}

template <class T>
void run_fn(const KernelTable<T>& kt, Fn f, const T* x, T* y, index_t n) {
    switch (f) {
        case Fn::exp: kt.exp(x, y, n); return;
        case Fn::tanh: kt.act_forward(Act::tanh, T(0), x, y, n); return;
        case Fn::sigmoid: kt.act_forward(Act::sigmoid, T(0), x, y, n); return;
    }
}

// vtanh reduces -2|x| log2(e) to n + f with n = round(.): n changes at |x| = (k + 1/2) ln(2) / 2,
// k = 0 .. top (up to the clamp). Both signs.
void add_tanh_cut_overs(std::vector<double>& b, int top) {
    for (int k = 0; k <= top; ++k) {
        const double c = (k + 0.5) * 0.34657359027997265471;  // ln(2) / 2
        b.push_back(c);
        b.push_back(-c);
    }
}

// Ranges per dtype: the dense sweep, the second sweep, and boundary points of the implementation.
template <class T>
struct Domain;

template <>
struct Domain<float> {
    static constexpr double exp_dense[2] = {-110, 95};     // past underflow (-103.97) and overflow (88.72)
    static constexpr double exp_second[2] = {-1, 1};
    static constexpr double act_dense[2] = {-20, 20};
    static constexpr double sigmoid_second[2] = {-110, 110};  // sigmoid(x) is subnormal down to -103.3
    static constexpr double tanh_second[2] = {-1, 1};        // where u / (u + 2) has the smallest u
    static std::vector<double> boundaries() {
        std::vector<double> b = {88.72283935546875, 88.72283172607422, -87.33654022216797, -103.27892303466797,
                                 -103.97208404541016, 89.0, -104.0, 0.35, -0.35,
                                 9.01091289520263671875 /* tanh rounds to 1 */, 9.1, -9.1 /* tanh clamp */};
        add_tanh_cut_overs(b, 26);
        return b;
    }
};

template <>
struct Domain<double> {
    static constexpr double exp_dense[2] = {-750, 715};  // past underflow (-745.13) and overflow (709.78)
    static constexpr double exp_second[2] = {-1, 1};
    static constexpr double act_dense[2] = {-20, 20};
    static constexpr double sigmoid_second[2] = {-750, 750};
    static constexpr double tanh_second[2] = {-1, 1};
    static std::vector<double> boundaries() {
        std::vector<double> b = {709.782712893384, -708.3964185322641, -744.4400719213812, -745.1332191019411,
                                 710.0, -746.0, 0.35, -0.35, 19.061547465398498 /* tanh rounds to 1 */, 19.1,
                                 -19.1 /* tanh clamp */};
        add_tanh_cut_overs(b, 55);
        return b;
    }
};

using nntest::random_finite;

template <class T>
std::vector<T> make_inputs(Fn f, Rng& rng) {
    using L = std::numeric_limits<T>;
    using D = Domain<T>;
    std::vector<T> x;
    x.reserve(1700000);
    const double* dense = f == Fn::exp ? D::exp_dense : D::act_dense;
    const double* second = f == Fn::exp ? D::exp_second : f == Fn::tanh ? D::tanh_second : D::sigmoid_second;
    for (int i = 0; i < 1000000; ++i) x.push_back(static_cast<T>(rng.uniform(dense[0], dense[1])));
    for (int i = 0; i < 250000; ++i) x.push_back(static_cast<T>(rng.uniform(second[0], second[1])));
    for (int i = 0; i < 250000; ++i) x.push_back(random_finite<T>(rng));
    // Every decade, with a few mantissas each, both signs: 1e-45 (a subnormal float) ... 1e38, or
    // 1e-323 ... 1e308 for double.
    const int lo = sizeof(T) == 4 ? -45 : -323, hi = sizeof(T) == 4 ? 38 : 308;
    for (int e = lo; e <= hi; ++e)
        for (double m : {1.0, 1.5, 2.0, 3.3, 5.0, 7.7}) {
            const T v = static_cast<T>(m * std::pow(10.0L, e));
            if (std::isfinite(v)) {
                x.push_back(v);
                x.push_back(-v);
            }
        }
    // A few thousand consecutive values next to each boundary of the implementation.
    for (double b : D::boundaries()) {
        T v = static_cast<T>(b);
        for (int i = 0; i < 1000; ++i) v = std::nextafter(v, -L::infinity());
        for (int i = 0; i < 2000; ++i, v = std::nextafter(v, L::infinity())) x.push_back(v);
    }
    for (T v : {T(0), -T(0), L::infinity(), -L::infinity(), L::quiet_NaN(), L::denorm_min(), -L::denorm_min(),
                L::min(), -L::min(), L::max(), -L::max(), T(1), T(-1), T(1e-30), T(-1e-30), T(1e30), T(-1e30)})
        x.push_back(v);
    if (sizeof(T) == 4) x.push_back(static_cast<T>(1e-40)), x.push_back(static_cast<T>(-1e-40));  // subnormal floats
    return x;
}

struct Measured {
    std::string isa, dtype, fn;
    long double max_ulp;
    long double worst_x, worst_got, worst_ref;
    std::size_t count;
    double bound;
};

std::vector<Measured>& results() {
    static std::vector<Measured> r;
    return r;
}

// The inputs and their reference values are shared by all ISAs (the reference costs the most).
template <class T>
struct Sweep {
    std::vector<T> x;
    std::vector<long double> ref;
};

template <class T>
const Sweep<T>& sweep_for(Fn f) {
    static Sweep<T> sweeps[3];
    Sweep<T>& s = sweeps[static_cast<int>(f)];
    if (s.x.empty()) {
        Rng rng(0x5eed0000u + static_cast<unsigned>(f) * 7 + sizeof(T));
        s.x = make_inputs<T>(f, rng);
        s.ref.resize(s.x.size());
        for (std::size_t i = 0; i < s.x.size(); ++i) s.ref[i] = fn_ref(f, s.x[i]);
    }
    return s;
}

template <class T>
void measure(nncore::Isa isa, const KernelTable<T>& kt, Fn f) {
    Scope scope(std::string(fn_name(f)) + " " + nntest::dtype_name<T>());
    const Sweep<T>& s = sweep_for<T>(f);
    std::vector<T> y(s.x.size(), nntest::quiet_nan<T>());
    run_fn(kt, f, s.x.data(), y.data(), static_cast<index_t>(s.x.size()));
    Measured m{nncore::isa_name(isa), nntest::dtype_name<T>(), fn_name(f), 0, 0, 0, 0, s.x.size(), fn_bound(f)};
    for (std::size_t i = 0; i < s.x.size(); ++i) {
        const long double e = nntest::ulp_error(y[i], s.ref[i]);
        if (e > m.max_ulp || (std::isnan(e) && !std::isnan(m.max_ulp))) {
            m.max_ulp = e;
            m.worst_x = s.x[i];
            m.worst_got = y[i];
            m.worst_ref = s.ref[i];
        }
    }
    results().push_back(m);
    CHECK_MSG(m.max_ulp <= m.bound, "max error " << static_cast<double>(m.max_ulp) << " ulp > stated " << m.bound
                                                 << " ulp; worst input x = " << std::hexfloat
                                                 << static_cast<double>(m.worst_x) << std::defaultfloat << " ("
                                                 << static_cast<double>(m.worst_x) << "): got "
                                                 << static_cast<double>(m.worst_got) << ", expected "
                                                 << m.worst_ref);
}

// ---------------------------------------------------------------------------------------------
// Special values, checked exactly (including the sign of zero). Each is placed at every lane
// position of the widest vector and in the scalar tail, by running the kernel on `shift` filler
// values followed by the specials.
template <class T>
struct Special {
    T x;
    T expected;  // NaN means "must be NaN"
};

template <class T>
void check_specials(const KernelTable<T>& kt, const char* name, const std::vector<Special<T>>& cases,
                    void (*run)(const KernelTable<T>&, const T*, T*, index_t)) {
    Scope scope(std::string("special values of ") + name + " " + nntest::dtype_name<T>());
    for (index_t shift = 0; shift <= 17; ++shift) {
        std::vector<T> x(static_cast<std::size_t>(shift), T(0.5));
        for (const auto& c : cases) x.push_back(c.x);
        nntest::Guarded<T> y(static_cast<index_t>(x.size()), nntest::quiet_nan<T>());
        run(kt, x.data(), y.data(), static_cast<index_t>(x.size()));
        for (std::size_t i = 0; i < cases.size(); ++i) {
            const T got = y[shift + static_cast<index_t>(i)], want = cases[i].expected;
            const bool ok = std::isnan(want) ? std::isnan(got)
                                             : got == want && std::signbit(got) == std::signbit(want);
            CHECK_MSG(ok, name << "(" << cases[i].x << ") = " << got << ", expected " << want << " (lane offset "
                               << shift + static_cast<index_t>(i) << ")");
        }
        CHECK(y.guards_intact());
    }
}

template <class T>
void test_specials(const KernelTable<T>& kt) {
    using L = std::numeric_limits<T>;
    const T inf = L::infinity(), nan = L::quiet_NaN(), tiny = L::denorm_min();
    check_specials<T>(kt, "exp",
                      {{-inf, T(0)}, {inf, inf}, {nan, nan}, {T(0), T(1)}, {-T(0), T(1)}, {T(1e4), inf},
                       {T(-1e4), T(0)}, {L::max(), inf}, {-L::max(), T(0)}, {tiny, T(1)}, {-tiny, T(1)}},
                      [](const KernelTable<T>& t, const T* x, T* y, index_t n) { t.exp(x, y, n); });
    check_specials<T>(kt, "tanh",
                      {{T(0), T(0)}, {-T(0), -T(0)}, {inf, T(1)}, {-inf, T(-1)}, {nan, nan}, {T(1e30), T(1)},
                       {T(-1e30), T(-1)}, {L::max(), T(1)}, {-L::max(), T(-1)}, {tiny, tiny}, {-tiny, -tiny},
                       {L::min(), L::min()}, {-L::min(), -L::min()}},
                      [](const KernelTable<T>& t, const T* x, T* y, index_t n) { t.act_forward(Act::tanh, T(0), x, y, n); });
    check_specials<T>(kt, "sigmoid",
                      {{inf, T(1)}, {-inf, T(0)}, {nan, nan}, {T(0), T(0.5)}, {-T(0), T(0.5)}, {T(1e30), T(1)},
                       {T(-1e30), T(0)}, {L::max(), T(1)}, {-L::max(), T(0)}},
                      [](const KernelTable<T>& t, const T* x, T* y, index_t n) {
                          t.act_forward(Act::sigmoid, T(0), x, y, n);
                      });
    check_specials<T>(kt, "relu", {{nan, nan}, {-inf, T(0)}, {inf, inf}, {T(-2), T(0)}, {T(3), T(3)}},
                      [](const KernelTable<T>& t, const T* x, T* y, index_t n) { t.act_forward(Act::relu, T(0), x, y, n); });
    check_specials<T>(kt, "leaky_relu", {{nan, nan}, {-inf, -inf}, {inf, inf}, {T(3), T(3)}},
                      [](const KernelTable<T>& t, const T* x, T* y, index_t n) {
                          t.act_forward(Act::leaky_relu, T(0.1), x, y, n);
                      });
    check_specials<T>(kt, "identity", {{nan, nan}, {-inf, -inf}, {inf, inf}, {-T(0), -T(0)}},
                      [](const KernelTable<T>& t, const T* x, T* y, index_t n) {
                          t.act_forward(Act::identity, T(0), x, y, n);
                      });
}

}  // namespace

int main() {
    nntest::for_each_isa([](nncore::Isa isa, const nncore::Tables& tables) {
        for (Fn f : {Fn::exp, Fn::tanh, Fn::sigmoid}) {
            measure(isa, tables.f32, f);
            measure(isa, tables.f64, f);
        }
        test_specials(tables.f32);
        test_specials(tables.f64);
    });
    std::printf("\nmax error in ulp (bound stated in kernels/math.h), worst input:\n");
    for (const Measured& m : results())
        std::printf("  %-7s %-8s %-7s %6.3f ulp (<= %.0f) %s  x = %-14.9g got %-14.9g expected %.9Lg  [%zu inputs]\n",
                    m.isa.c_str(), m.dtype.c_str(), m.fn.c_str(), static_cast<double>(m.max_ulp), m.bound,
                    m.max_ulp <= m.bound ? "ok  " : "FAIL", static_cast<double>(m.worst_x),
                    static_cast<double>(m.worst_got), m.worst_ref, m.count);
    return nntest::finish("test_math_accuracy");
}
