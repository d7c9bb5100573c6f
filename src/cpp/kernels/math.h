// Vectorised transcendental functions over the Vec abstraction, written once for every ISA.
// Included inside an ISA namespace after the Vec header.
//
// Error bounds (measured by tests/cpp/test_math_accuracy.cpp over >= 1e6 inputs per ISA, and stated
// in the README):
//   exp:     float <= 2 ulp, double <= 2 ulp
//   tanh:    float <= 4 ulp, double <= 4 ulp
//   sigmoid: float <= 4 ulp, double <= 4 ulp
// Special values: exp(-inf) = 0, exp(+inf) = +inf, NaN propagates; tanh(+-0) = +-0.

template <class T>
struct MathConstants;

template <>
struct MathConstants<float> {
    // Beyond these exp over- or underflows; clamping first keeps the integer part in range.
    static constexpr float exp_hi = 89.0f, exp_lo = -104.0f;
    // ln 2 split so that n * ln2_hi is exact for |n| < 2^9 (Cody-Waite).
    static constexpr float ln2_hi = 0.693359375f, ln2_lo = -2.12194440e-4f;
    // exp(r) on |r| <= ln2/2: Taylor terms up to r^7 (the r^8 term is below 2^-27).
    static constexpr int exp_degree = 7;
    // tanh on |x| < tanh_small: odd Taylor series up to x^13 (the next term is below 2^-30).
    static constexpr float tanh_small = 0.35f;
    static constexpr int tanh_terms = 7;
};

template <>
struct MathConstants<double> {
    static constexpr double exp_hi = 710.0, exp_lo = -746.0;
    static constexpr double ln2_hi = 6.93145751953125e-1, ln2_lo = 1.42860682030941723212e-6;
    static constexpr int exp_degree = 13;
    static constexpr double tanh_small = 0.35;
    static constexpr int tanh_terms = 14;
};

// Coefficients of tanh(x) = x * sum_i c_i (x^2)^i, from the Bernoulli-number series.
constexpr double kTanhTaylor[14] = {
    1.0, -0.3333333333333333, 0.13333333333333333, -0.05396825396825397,
    0.021869488536155203, -0.008863235529902197, 0.003592128036572481, -0.0014558343870513183,
    0.000590027440945586, -0.00023912911424355248, 9.691537956929451e-05, -3.927832388331683e-05,
    1.5918905069328964e-05, -6.451689215655431e-06};

// 1/k! for the exp Taylor polynomial.
constexpr double kInverseFactorial[14] = {
    1.0, 1.0, 0.5, 1.0 / 6, 1.0 / 24, 1.0 / 120, 1.0 / 720, 1.0 / 5040, 1.0 / 40320,
    1.0 / 362880, 1.0 / 3628800, 1.0 / 39916800, 1.0 / 479001600, 1.0 / 6227020800.0};

template <class V>
inline typename V::reg vexp(typename V::reg x) {
    using T = typename V::value_type;
    using C = MathConstants<T>;
    auto xc = V::min(V::max(x, V::set1(C::exp_lo)), V::set1(C::exp_hi));
    auto n = V::round(V::mul(xc, V::set1(T(1.4426950408889634))));
    auto r = V::fmadd(n, V::set1(-C::ln2_hi), xc);
    r = V::fmadd(n, V::set1(-C::ln2_lo), r);
    auto p = V::set1(T(kInverseFactorial[C::exp_degree]));
    for (int i = C::exp_degree - 1; i >= 0; --i) p = V::fmadd(p, r, V::set1(T(kInverseFactorial[i])));
    auto result = V::scale2(p, n);
    return V::select(V::isnan(x), x, result);
}

template <class V>
inline typename V::reg vtanh(typename V::reg x) {
    using T = typename V::value_type;
    using C = MathConstants<T>;
    auto a = V::abs(x);
    // Small |x|: the Taylor series keeps full relative accuracy near zero.
    auto x2 = V::mul(a, a);
    auto p = V::set1(T(kTanhTaylor[C::tanh_terms - 1]));
    for (int i = C::tanh_terms - 2; i >= 0; --i) p = V::fmadd(p, x2, V::set1(T(kTanhTaylor[i])));
    auto small = V::mul(p, a);
    // Larger |x|: 1 - 2 / (exp(2|x|) + 1); exp overflowing to inf gives exactly 1.
    auto e = vexp<V>(V::add(a, a));
    auto large = V::sub(V::set1(T(1)), V::div(V::set1(T(2)), V::add(e, V::set1(T(1)))));
    auto magnitude = V::select(V::lt(a, V::set1(C::tanh_small)), small, large);
    return V::copysign(magnitude, x);
}

// 1 / (1 + e^-x) for x >= 0 and e^x / (1 + e^x) for x < 0, both with e = exp(-|x|) <= 1. exp never
// overflows, so for very negative x the result is e^x itself (down into the subnormal range)
// rather than 1 / inf = 0, which missed the <= 4 ulp bound by millions of ulp there.
template <class V>
inline typename V::reg vsigmoid(typename V::reg x) {
    using T = typename V::value_type;
    const auto one = V::set1(T(1));
    auto e = vexp<V>(V::sub(V::zero(), V::abs(x)));
    auto numerator = V::select(V::lt(x, V::zero()), e, one);
    return V::div(numerator, V::add(one, e));
}

// Activation forward on one register; the kind is a template parameter so that loops over many
// registers compile to straight-line code (see with_act below).
template <Act A, class V>
inline typename V::reg act_forward_reg(typename V::value_type alpha, typename V::reg x) {
    if constexpr (A == Act::identity) return x;
    if constexpr (A == Act::relu) return V::select(V::lt(x, V::zero()), V::zero(), x);  // NaN stays NaN
    if constexpr (A == Act::leaky_relu) return V::select(V::lt(x, V::zero()), V::mul(x, V::set1(alpha)), x);
    if constexpr (A == Act::tanh) return vtanh<V>(x);
    if constexpr (A == Act::sigmoid) return vsigmoid<V>(x);
}

// d(loss)/d(input) = dy * act'(.), through x (relu, leaky_relu) or y (tanh, sigmoid).
template <Act A, class V>
inline typename V::reg act_backward_reg(typename V::value_type alpha, typename V::reg x,
                                        typename V::reg y, typename V::reg dy) {
    using T = typename V::value_type;
    if constexpr (A == Act::identity) return dy;
    if constexpr (A == Act::relu) return V::select(V::gt(x, V::zero()), dy, V::zero());
    if constexpr (A == Act::leaky_relu) return V::select(V::gt(x, V::zero()), dy, V::mul(dy, V::set1(alpha)));
    if constexpr (A == Act::tanh) return V::mul(dy, V::fmadd(V::sub(V::zero(), y), y, V::set1(T(1))));
    if constexpr (A == Act::sigmoid) return V::mul(dy, V::mul(y, V::sub(V::set1(T(1)), y)));
}

template <Act A>
struct ActTag {
    static constexpr Act value = A;
};

// Calls body(ActTag<act>{}) with the runtime kind turned into a compile-time one.
template <class Body>
inline void with_act(Act act, Body&& body) {
    switch (act) {
        case Act::identity: body(ActTag<Act::identity>{}); return;
        case Act::relu: body(ActTag<Act::relu>{}); return;
        case Act::leaky_relu: body(ActTag<Act::leaky_relu>{}); return;
        case Act::tanh: body(ActTag<Act::tanh>{}); return;
        case Act::sigmoid: body(ActTag<Act::sigmoid>{}); return;
    }
}
