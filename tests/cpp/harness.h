// A deliberately tiny test harness shared by the C++ test executables (no framework is available
// offline): CHECK macros that count failures instead of aborting, a context stack so a failure says
// which ISA / dtype / shape it came from, deterministic random numbers, NaN poisoning and ULP
// measurement. Each executable returns nntest::finish(), which is non-zero if any check failed.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "common.h"
#include "cpu_features.h"
#include "dispatch.h"

namespace nntest {

using nncore::index_t;

// ---------------------------------------------------------------------------------------------
// Checks and failure reporting.
struct State {
    long long checks = 0;
    long long failures = 0;
    std::vector<std::string> context;
    std::vector<std::string> isas_run, isas_skipped;
};

inline State& state() {
    static State s;
    return s;
}

// Printing stops after this many failures: a broken kernel fails thousands of elements, and the
// first few (with their context) are what is needed to find the bug.
constexpr long long kMaxPrintedFailures = 40;

inline std::string context_string() {
    std::string out;
    for (const auto& c : state().context) {
        if (!out.empty()) out += " | ";
        out += c;
    }
    return out;
}

inline void report_failure(const char* expr, const char* file, int line, const std::string& detail) {
    State& s = state();
    ++s.failures;
    if (s.failures <= kMaxPrintedFailures) {
        std::fprintf(stderr, "FAIL %s:%d: %s\n    where: %s\n", file, line, expr, context_string().c_str());
        if (!detail.empty()) std::fprintf(stderr, "    %s\n", detail.c_str());
    } else if (s.failures == kMaxPrintedFailures + 1) {
        std::fprintf(stderr, "(further failures are counted but not printed)\n");
    }
}

// RAII context entry: everything that fails while it is alive is reported with its text.
class Scope {
public:
    explicit Scope(std::string text) { state().context.push_back(std::move(text)); }
    ~Scope() { state().context.pop_back(); }
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;
};

}  // namespace nntest

#define CHECK(cond)                                                                       \
    do {                                                                                  \
        ++::nntest::state().checks;                                                       \
        if (!(cond)) ::nntest::report_failure(#cond, __FILE__, __LINE__, std::string()); \
    } while (0)

// The detail is a stream expression (a << b << c), only evaluated when the check fails.
#define CHECK_MSG(cond, detail)                                                     \
    do {                                                                            \
        ++::nntest::state().checks;                                                 \
        if (!(cond)) {                                                              \
            std::ostringstream nntest_detail_;                                      \
            nntest_detail_.precision(10);                                           \
            nntest_detail_ << detail;                                               \
            ::nntest::report_failure(#cond, __FILE__, __LINE__, nntest_detail_.str()); \
        }                                                                           \
    } while (0)

namespace nntest {

// Prints the summary line and gives main's return value.
inline int finish(const char* test_name) {
    const State& s = state();
    std::string ran, skipped;
    for (const auto& i : s.isas_run) ran += " " + i;
    for (const auto& i : s.isas_skipped) skipped += " " + i;
    if (!ran.empty() || !skipped.empty())
        std::printf("%s: ISAs tested:%s%s%s\n", test_name, ran.empty() ? " none" : ran.c_str(),
                    skipped.empty() ? "" : "; skipped (not supported here):", skipped.c_str());
    std::printf("%s: %lld checks, %lld failures -> %s\n", test_name, s.checks, s.failures,
                s.failures ? "FAILED" : "passed");
    return s.failures ? 1 : 0;
}

// ---------------------------------------------------------------------------------------------
// Runs body(isa, tables) for every ISA this CPU supports; the others are recorded as skipped.
template <class Body>
void for_each_isa(Body&& body) {
    for (int i = 0; i < nncore::kIsaCount; ++i) {
        const nncore::Isa isa = static_cast<nncore::Isa>(i);
        const std::string name = nncore::isa_name(isa);
        if (!nncore::cpu_supports(isa)) {
            state().isas_skipped.push_back(name);
            continue;
        }
        state().isas_run.push_back(name);
        std::printf("[%s]\n", name.c_str());
        std::fflush(stdout);
        Scope scope("isa=" + name);
        body(isa, nncore::tables_for(isa));
    }
}

template <class T>
const char* dtype_name();
template <>
inline const char* dtype_name<float>() { return "float32"; }
template <>
inline const char* dtype_name<double>() { return "float64"; }

// ---------------------------------------------------------------------------------------------
// Deterministic random numbers (splitmix64): the same values on every platform and standard
// library, so a failure reproduces exactly.
class Rng {
public:
    explicit Rng(std::uint64_t seed) : state_(seed) {}
    std::uint64_t next() {
        std::uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        return z ^ (z >> 31);
    }
    // Uniform in [0, 1) with 53 random bits.
    double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }
    double uniform(double lo, double hi) { return lo + (hi - lo) * uniform(); }
    // Uniform integer in [0, n).
    std::uint64_t below(std::uint64_t n) { return next() % n; }
    bool coin() { return (next() >> 63) != 0; }

private:
    std::uint64_t state_;
};

template <class T>
std::vector<T> random_vector(std::size_t n, Rng& rng, double lo = -1.0, double hi = 1.0) {
    std::vector<T> v(n);
    for (auto& x : v) x = static_cast<T>(rng.uniform(lo, hi));
    return v;
}

// ---------------------------------------------------------------------------------------------
// Bit-level helpers. Outputs are poisoned with NaN so an element a kernel forgot to write fails;
// guard zones get a NaN with a recognisable payload, so a stray write (even of a NaN) is detected
// by comparing bits, and a stray read of a guard into a result turns that result into NaN.
template <class T>
T quiet_nan() { return std::numeric_limits<T>::quiet_NaN(); }

template <class T>
T guard_value();
template <>
inline float guard_value<float>() {
    const std::uint32_t bits = 0x7fc5a5a5u;
    float f;
    std::memcpy(&f, &bits, sizeof f);
    return f;
}
template <>
inline double guard_value<double>() {
    const std::uint64_t bits = 0x7ff8a5a5a5a5a5a5ull;
    double d;
    std::memcpy(&d, &bits, sizeof d);
    return d;
}

template <class T>
bool same_bits(T a, T b) { return std::memcmp(&a, &b, sizeof(T)) == 0; }

template <class T>
bool same_bits(const std::vector<T>& a, const std::vector<T>& b) {
    return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0);
}

// An array of n values with guard zones on both sides; data() points at the first value.
template <class T>
class Guarded {
public:
    static constexpr index_t kGuard = 64;  // wider than any vector register
    Guarded(index_t n, T fill) : buffer_(static_cast<std::size_t>(n + 2 * kGuard), guard_value<T>()), n_(n) {
        for (index_t i = 0; i < n; ++i) buffer_[kGuard + i] = fill;
    }
    Guarded(const std::vector<T>& values) : Guarded(static_cast<index_t>(values.size()), T(0)) {
        for (index_t i = 0; i < n_; ++i) buffer_[kGuard + i] = values[i];
    }
    T* data() { return buffer_.data() + kGuard; }
    const T* data() const { return buffer_.data() + kGuard; }
    T& operator[](index_t i) { return data()[i]; }
    const T& operator[](index_t i) const { return data()[i]; }
    index_t size() const { return n_; }
    bool guards_intact() const {
        for (index_t i = 0; i < kGuard; ++i)
            if (!same_bits(buffer_[i], guard_value<T>()) || !same_bits(buffer_[kGuard + n_ + i], guard_value<T>()))
                return false;
        return true;
    }

private:
    std::vector<T> buffer_;
    index_t n_;
};

template <class T>
long double eps() { return std::numeric_limits<T>::epsilon(); }

template <class T>
long double tiny() { return std::numeric_limits<T>::denorm_min(); }

template <class T>
Guarded<T> random_guarded(index_t n, Rng& rng, double lo, double hi) {
    return Guarded<T>(random_vector<T>(static_cast<std::size_t>(n), rng, lo, hi));
}

// A random finite value of T with a uniformly random bit pattern: the magnitudes are log-uniform
// from the smallest subnormal to the largest finite value.
template <class T>
T random_finite(Rng& rng) {
    for (;;) {
        T v;
        if constexpr (sizeof(T) == 4) {
            const std::uint32_t bits = static_cast<std::uint32_t>(rng.next());
            std::memcpy(&v, &bits, sizeof v);
        } else {
            const std::uint64_t bits = rng.next();
            std::memcpy(&v, &bits, sizeof v);
        }
        if (std::isfinite(v)) return v;
    }
}

// Counts the bad elements of one output and makes one CHECK naming the first.
class ElementCheck {
public:
    explicit ElementCheck(std::string what) : what_(std::move(what)) {}
    void add(bool ok, index_t i, long double got, long double expected, long double input = NAN) {
        if (ok) return;
        if (bad_++ == 0) {
            first_ = i;
            got_ = got;
            expected_ = expected;
            input_ = input;
        }
    }
    ~ElementCheck() {
        CHECK_MSG(bad_ == 0, what_ << ": " << bad_ << " elements wrong; first at index " << first_ << ": got " << got_
                                   << ", expected " << expected_ << " (input " << input_ << ")");
    }
    ElementCheck(const ElementCheck&) = delete;
    ElementCheck& operator=(const ElementCheck&) = delete;

private:
    std::string what_;
    long long bad_ = 0;
    index_t first_ = 0;
    long double got_ = 0, expected_ = 0, input_ = 0;
};

// ---------------------------------------------------------------------------------------------
// Error in units in the last place of T, measured against a long double reference. The ulp of the
// reference is the spacing of T at that magnitude; below the smallest normal number that is the
// subnormal spacing, so a subnormal result is judged by the precision T actually has there.
// Infinities count as 2^max_exponent (one ulp above the largest finite value), so returning inf
// for a result just below overflow is a small error and not an infinite one.
template <class T>
long double ulp_of(long double ref) {
    using L = std::numeric_limits<T>;
    const long double a = std::fabs(ref);
    if (a < static_cast<long double>(L::min())) return static_cast<long double>(L::denorm_min());
    int e = std::ilogb(a);
    if (e > L::max_exponent - 1) e = L::max_exponent - 1;
    return std::ldexp(1.0L, e - (L::digits - 1));
}

template <class T>
long double ulp_error(T got, long double ref) {
    using L = std::numeric_limits<T>;
    const bool ref_nan = std::isnan(ref), got_nan = std::isnan(got);
    if (ref_nan || got_nan) return ref_nan && got_nan ? 0.0L : std::numeric_limits<long double>::infinity();
    const long double big = std::ldexp(1.0L, L::max_exponent);
    long double g = std::isinf(got) ? std::copysign(big, static_cast<long double>(got)) : got;
    long double r = std::fabs(ref) > big ? std::copysign(big, ref) : ref;
    if (g == r) return 0.0L;
    return std::fabs(g - r) / ulp_of<T>(r);
}

// ---------------------------------------------------------------------------------------------
// Activations: names, the long double reference, and the bounds kernels/math.h states.
constexpr nncore::Act kActs[] = {nncore::Act::identity, nncore::Act::relu, nncore::Act::leaky_relu,
                                 nncore::Act::tanh, nncore::Act::sigmoid, nncore::Act::gelu,
                                 nncore::Act::gelu_tanh};
constexpr std::uint64_t kActCount = sizeof(kActs) / sizeof(kActs[0]);
constexpr double kLeakyAlpha = 0.1;

// Max error in ulp stated in kernels/math.h, for float and double alike.
constexpr double kExpMaxUlp = 2.0;
constexpr double kTanhMaxUlp = 4.0;
constexpr double kSigmoidMaxUlp = 4.0;

inline const char* act_name(nncore::Act act) {
    switch (act) {
        case nncore::Act::identity: return "identity";
        case nncore::Act::relu: return "relu";
        case nncore::Act::leaky_relu: return "leaky_relu";
        case nncore::Act::tanh: return "tanh";
        case nncore::Act::sigmoid: return "sigmoid";
        case nncore::Act::gelu: return "gelu";
        case nncore::Act::gelu_tanh: return "gelu_tanh";
    }
    return "?";
}

inline long double act_ref(nncore::Act act, long double alpha, long double x) {
    switch (act) {
        case nncore::Act::identity: return x;
        case nncore::Act::relu: return x < 0 ? 0.0L : x;
        case nncore::Act::leaky_relu: return x < 0 ? alpha * x : x;
        case nncore::Act::tanh: return std::tanh(x);
        case nncore::Act::sigmoid: return 1.0L / (1.0L + std::exp(-x));
        case nncore::Act::gelu: return x * 0.5L * std::erfc(-x / std::sqrt(2.0L));
        case nncore::Act::gelu_tanh:
            return 0.5L * x * (1 + std::tanh(0.797884560802865355879892119868763737L * (x + 0.044715L * x * x * x)));
    }
    return x;
}

}  // namespace nntest
