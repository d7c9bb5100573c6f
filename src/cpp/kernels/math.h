// Vectorised transcendental functions over the Vec abstraction, written once for every ISA.
// Included inside an ISA namespace after the Vec header.
//
// Error bounds (measured by tests/cpp/test_math_accuracy.cpp over >= 1e6 inputs per ISA, and stated
// in the README):
//   exp:     float <= 2 ulp, double <= 2 ulp (measured 1.14 / 1.11 ulp, both scalar; 0.86 / 0.86 AVX)
//   tanh:    float <= 4 ulp, double <= 4 ulp (measured 3.0 ulp for double; for float over all 2^32
//            inputs by tests/cpp/tanh_exhaustive.cpp: 3.28 ulp AVX-512 and AVX2, 3.33 scalar, the
//            worst near |x| = 0.12, where n = 0 and tanh is just below a power of two)
//   sigmoid: float <= 4 ulp, double <= 4 ulp (measured 2.3 / 2.3 ulp)
//   erf:     float <= 4 ulp, double <= 4 ulp (measured 2.7 / 1.8 ulp; test_erf_gelu prints them)
//   gelu:    float <= 8 ulp, double <= 8 ulp for x >= -1 (measured 3.1 / 2.9 ulp); <= 16 ulp below,
//            down to where x Phi(x) underflows (measured 12.7 / 4.6 ulp; the float worst case is
//            near x = -13, where exp(-x^2 / 2) is already subnormal), except for double below
//            x = -37.5, where Phi(x) is subnormal before the product with x brings the result
//            back to normal numbers: up to 36 ulp there (measured near -37.6). The deep tail keeps its
//            relative accuracy thanks to the correction for the rounding of x / sqrt 2 (see
//            vnormal_cdf_pdf). PyTorch computes 1 + erf(x / sqrt 2) there and returns 0 below
//            about x = -5.5 (float) / -8.3 (double).
// Special values: exp(-inf) = 0, exp(+inf) = +inf, NaN propagates; tanh(+-0) = +-0.

template <class T>
struct MathConstants;

template <>
struct MathConstants<float> {
    // Beyond these exp over- or underflows; clamping first keeps the integer part in range.
    static constexpr float exp_hi = 89.0f, exp_lo = -104.0f;
    // ln 2 split so that n * ln2_hi is exact for |n| < 2^9 (Cody-Waite).
    static constexpr float ln2_hi = 0.693359375f, ln2_lo = -2.12194440e-4f;
    // exp(r) on |r| <= ln2/2: 1 + r + sum_{j=2..6} exp_poly[j] r^j, of degree 6 fitted (weighted least
    // squares iterated to equal ripple) for the least maximum relative error with the constant and
    // linear terms fixed at 1, each coefficient rounded to float in turn with the higher ones
    // refitted: 3.1e-9 (2^-28.3) with these values, where the Taylor polynomial of degree 7 (before:
    // one more FMA) left 2^-27.4.
    static constexpr int exp_degree = 6;
    static constexpr float exp_poly[7] = {1.0f, 1.0f, 0x1.fffffcp-2f, 0x1.555494p-3f, 0x1.5558bep-5f, 0x1.123856p-7f,
                                          0x1.6a3d04p-10f};
    // tanh: |x| is limited to tanh_clamp first; tanh rounds to +-1 from |x| = 9.0109 on, and so does
    // the formula at 9.1 (see vtanh).
    static constexpr float tanh_clamp = 9.1f;
    // 2 log2(e) rounded; tanh_q[0] * two_log2e = 2 (1 - 1.1e-8), so tanh(x) = x exactly for tiny x.
    static constexpr float two_log2e = 0x1.715476p+1f;
    // 2^f - 1 = f q(f) on |f| <= 1/2: q of degree 5 fitted (weighted least squares iterated to
    // equal ripple) for the least maximum relative error, q0 fixed as above, each coefficient
    // rounded to float in turn with the higher ones refitted: 0.22 * 2^-24 with these values.
    static constexpr int tanh_q_terms = 6;
    static constexpr float tanh_q[6] = {0x1.62e430p-1f, 0x1.ebfbdep-3f, 0x1.c6afa6p-5f,
                                        0x1.3b2c32p-7f, 0x1.5ef01cp-10f, 0x1.42a2bep-13f};
};

template <>
struct MathConstants<double> {
    static constexpr double exp_hi = 710.0, exp_lo = -746.0;
    static constexpr double ln2_hi = 6.93145751953125e-1, ln2_lo = 1.42860682030941723212e-6;
    // Taylor terms up to r^13 (the next is below 2^-60 relative).
    static constexpr int exp_degree = 13;
    static constexpr double exp_poly[14] = {
        1.0, 1.0, 0.5, 1.0 / 6, 1.0 / 24, 1.0 / 120, 1.0 / 720, 1.0 / 5040, 1.0 / 40320,
        1.0 / 362880, 1.0 / 3628800, 1.0 / 39916800, 1.0 / 479001600, 1.0 / 6227020800.0};
    static constexpr double tanh_clamp = 19.1;  // tanh rounds to +-1 from 19.0615 on
    static constexpr double two_log2e = 2.8853900817779268;
    // q(f) = sum_k ln2^(k+1) f^k / (k+1)!, the Taylor series of (2^f - 1) / f up to f^13 (the next
    // term is below 2^-60 relative on |f| <= 1/2).
    static constexpr int tanh_q_terms = 14;
    static constexpr double tanh_q[14] = {
        0.693147180559945309417, 0.240226506959100712334, 0.0555041086648215799531, 0.00961812910762847716198,
        0.00133335581464284434234, 0.000154035303933816099544, 0.00001525273380405984028,
        0.00000132154867901443094884, 1.01780860092396997275e-7, 7.05491162080112332988e-9,
        4.4455382718708114976e-10, 2.5678435993488205142e-11, 1.36914888539041288809e-12,
        6.77872635482254563345e-14};
};

// exp(x) = 2^n exp(r), r = x - n ln2 (Cody-Waite, two constants), |r| <= ln2/2. The clamp lets a
// NaN through (min and max return their second operand when either is NaN, on every ISA), so NaN
// flows through n, r and the scaling to the result with no compare and select (two operations per
// register less; with the float polynomial one degree lower, float exp went from 3.46 to 4.59
// Gelem/s: AVX-512, Zen 4, 1 thread, 4096 floats, medians of 15 alternated runs of the two builds).
template <class V>
__attribute__((always_inline)) inline typename V::reg vexp(typename V::reg x) {
    using T = typename V::value_type;
    using C = MathConstants<T>;
    const auto xc = V::min(V::set1(C::exp_hi), V::max(V::set1(C::exp_lo), x));
    const auto n = V::round(V::mul(xc, V::set1(T(1.4426950408889634))));
    auto r = V::fmadd(n, V::set1(-C::ln2_hi), xc);
    r = V::fmadd(n, V::set1(-C::ln2_lo), r);
    auto p = V::set1(C::exp_poly[C::exp_degree]);
    for (int i = C::exp_degree - 1; i >= 0; --i) p = V::fmadd(p, r, V::set1(C::exp_poly[i]));
    return V::scale2(p, n);
}

// tanh(|x|) = -u / (2 + u) with u = expm1(-2|x|) in (-1, 0]: one exponential and one division.
// expm1 keeps its relative accuracy near 0 and 2 + u in (1, 2] never cancels, so no second branch
// is needed for small |x|. Taking the exponential of -2|x| (not of 2x) keeps 2 + u just below a
// power of two for small |x|, where its rounding costs half as much as that of 2 + expm1(2|x|).
// The sign of x is put back at the end (which also gives tanh(-0) = -0); |x| is limited to
// tanh_clamp before (min returns its second operand, |x|, when that is NaN, so NaN passes).
// The exponential is taken in base 2 with a single rounded product t = -2 |x| log2(e) (its
// relative error moves tanh by at most as much, since |x tanh'(x) / tanh(x)| <= 1), t = n + f with
// n an integer and |f| <= 1/2 (f = t - n is exact; where the compiler fuses the product into it,
// as GCC does for the AVX builds, f is the exact -2|x| log2(e) - n rounded once, which is better), and
//   -u = (1 - 2^n) - (2^n f) q(f),
// one fused negated multiply-add; 1 - 2^n is exact for the n that occur (-27 <= n <= 0). -u is
// >= +0 (+0 exactly for x = +-0), so tanh(|x|) = -u / (2 - (-u)) is >= +0 and flipping its sign
// bit where x's is set (xorsign) gives tanh(x), tanh(-0) = -0 included; the results are bitwise
// those of copysign(u / (2 + u), x).
// Per register: abs, min, 2 multiplications, round, one subtraction for f, 5 FMAs for q, 2^n, one
// subtraction, the fused multiply-add, one subtraction, the division and xorsign (one
// ternary-logic instruction with AVX-512, and + xor with AVX2, where copysign takes three): 17
// operations, where the previous form (expm1 in base e with a two-constant reduction) took 21.
// The AVX-512 ternary logic of xorsign overwrites the quotient, where copysign's overwrote its
// sign-mask constant, which GCC then copied into a fresh register for every 16 values: one vector
// operation less, 4.39 -> 4.47 Gelem/s (AVX-512 kernel alone, 1 thread, 4096 floats, old and new
// builds alternated).
// On Zen 4 the zmm multiplications and FMAs share two pipes (one zmm operation per cycle), the
// scalef of 2^n takes one of them for two cycles and the division one for six (a loop of
// divisions alone: 6 cycles per zmm register): ~13 cycles per 16 floats are the bound once enough
// registers are in flight, which the elementwise kernels ensure by evaluating 4 at a time
// (lanes.h); one register at a time, the ~55-cycle dependency chain left the core waiting.
// Measured alternatives on Zen 4 (AVX-512, 1 thread, 4096 and 1M floats, same conditions, Gelem/s):
// a (4, 4) minimax rational x P(x^2) / Q(x^2) on |x| <= 9.1 needs 10 multiplications/FMAs and the
// division: 4.6, and misses the bound (5.3 ulp near |x| = 8.5, where the rounding of P and Q
// moves a result just below 1 by up to 5 ulp); its division replaced by rcp14 and a correction:
// 4.0; 32-interval piecewise polynomials picked with vpermt2ps (no division), degree 5: 4.1, 6:
// 3.6; tanh(b + r) with tanh(b) from a 32-entry table and one division: 4.6; Estrin for q, a
// scalef for 2^n f, 2^n from integer operations, the denominator as fma(2^n f, q, 1 + 2^n):
// no gain or slower. Even without its division (a wrong result) this formula ran at 5.4 and the
// rational at 5.8 (one register at a time). With 4 registers side by side (lanes.h), Estrin, 2^n
// from integer operations and rcp14 with a correction for the division were each slower again
// (4.0-4.2 against 4.35-4.45 Gelem/s, 4608 floats).
// Always inlined (as are act_forward_reg, vexp and vsigmoid): left to itself, GCC kept them out of
// line in the ISA builds (~50 callers each), so each register paid a call, the vector calling
// convention and the reload of every constant; measured with act_forward on Zen 4, 1 thread, 4096
// floats: AVX2 tanh 1.7 -> 2.6 and sigmoid 1.2 -> 1.55 Gelem/s, AVX-512 unchanged (~4.2 / ~3.2).
template <class V>
__attribute__((always_inline)) inline typename V::reg vtanh(typename V::reg x) {
    using T = typename V::value_type;
    using C = MathConstants<T>;
    const auto a = V::min(V::set1(C::tanh_clamp), V::abs(x));
    const auto t = V::mul(a, V::set1(-C::two_log2e));
    const auto n = V::round(t);
    const auto f = V::sub(t, n);
    auto q = V::set1(C::tanh_q[C::tanh_q_terms - 1]);
    for (int i = C::tanh_q_terms - 2; i >= 0; --i) q = V::fmadd(q, f, V::set1(C::tanh_q[i]));
    const auto one = V::set1(T(1));
    const auto s = V::exp2i(n);
    const auto v = V::fnmadd(V::mul(s, f), q, V::sub(one, s));  // -u >= +0 (+0 for x = +-0)
    return V::xorsign(V::div(v, V::sub(V::set1(T(2)), v)), x);
}

// 1 / (1 + e^-x) for x >= 0 and e^x / (1 + e^x) for x < 0, both with e = exp(-|x|) <= 1. exp never
// overflows, so for very negative x the result is e^x itself (down into the subnormal range)
// rather than 1 / inf = 0, which missed the <= 4 ulp bound by millions of ulp there.
template <class V>
__attribute__((always_inline)) inline typename V::reg vsigmoid(typename V::reg x) {
    using T = typename V::value_type;
    const auto one = V::set1(T(1));
    auto e = vexp<V>(V::sub(V::zero(), V::abs(x)));
    auto numerator = V::select(V::lt(x, V::zero()), e, one);
    return V::div(numerator, V::add(one, e));
}

// ---------------------------------------------------------------------------------------------
// erf and erfc of a = |z| (>= 0), from three expansions chosen per lane:
//   erf(a), a < 1: a * sum_n c_n a^(2n), the Taylor series, c_n = (2/sqrt pi) (-1)^n / (n! (2n+1)),
//               truncated where the next term is below 1e-17 (double) or 1e-9 (float) at a = 1.
//   erfc(a), 0.5 <= a < 2: exp(-a^2) / a * h(a), h(a) = a e^(a^2) erfc(a) (an entire function):
//               a Chebyshev series in a on [0.5, 2].
//   erfc(a), a >= 2: the same with h as a Chebyshev series in w = 1 / a^2 on [0, 1/4]
//               (h -> 1/sqrt(pi) as a -> inf, smooth in w).
//   Otherwise erf = 1 - erfc (a >= 1) and erfc = 1 - erf (a < 0.5), where neither cancels.
// Both Chebyshev series were interpolated at 40 and 32 nodes with 50-digit arithmetic (mpmath) and
// are truncated at |c_k| < 1e-18 (double) or 1e-9 (float); they are evaluated by Clenshaw's
// recurrence. Taking erfc directly (not 1 - erf) from a = 0.5 on keeps its relative accuracy,
// which gelu needs for negative x. exp(-a^2) uses the exact product a*a = hi + lo (Vec::product_error).
constexpr double kErfTaylor[19] = {
    1.1283791670955125739, -0.37612638903183752463, 0.11283791670955125739, -0.026866170645131251759,
    0.0052239776254421878421, -0.00085483270234508528325, 0.00012055332981789664251,
    -0.000014925650358406250977, 1.6462114365889247402e-6, -1.6365844691234924317e-7,
    1.480719281587921724e-8, -1.2290555301717927353e-9, 9.4227590646504109706e-11,
    -6.7113668551641103779e-12, 4.4632242632864773449e-13, -2.7835162072109213549e-14,
    1.6342614095367151894e-15, -9.0639708428086724792e-17, 4.7633480405150681197e-18};

constexpr double kErfcMidChebyshev[22] = {
    4.3561936171342333716e-1, 9.5755725603908076854e-2, -2.5199271698684604757e-2, 5.5236578508258016878e-3,
    -1.0702173905813292922e-3, 1.8886255367550372842e-4, -3.0907222292470596198e-5, 4.7470145014363437493e-6,
    -6.9016182956476933631e-7, 9.5598516521008298295e-8, -1.2679649509991455841e-8, 1.6168730116311524419e-9,
    -1.9888476289350206058e-10, 2.3664312931694381304e-11, -2.7301227393496004372e-12, 3.0602227822357183516e-13,
    -3.33871221107848556e-14, 3.5509073524946011513e-15, -3.6866889449270579203e-16, 3.7411788829722290899e-17,
    -3.7148295891595891244e-18, 3.6129751262407102726e-19};

constexpr double kErfcTailChebyshev[28] = {
    5.3575896551014623873e-1, -2.6532434337606715756e-2, 1.7111539779208558833e-3,
    -1.6375166345851788416e-4, 1.98712935005520365e-5, -2.8437124127665550875e-6,
    4.6061613089631303697e-7, -8.2277530258792084206e-8, 1.5921418727709011299e-8,
    -3.2950713622528432149e-9, 7.2234397604005554658e-10, -1.6648558133987295933e-10,
    4.0103925882376648178e-11, -1.0048162144257311257e-11, 2.6082759133003336414e-12,
    -6.9911105604040208743e-13, 1.9294923332616975011e-13, -5.4701311887540994147e-14,
    1.5896633097621340053e-14, -4.7268939801837603843e-15, 1.4358733767509849699e-15,
    -4.4495105609735212357e-16, 1.4048108826588917109e-16, -4.5138183346462695935e-17,
    1.4745214062585930912e-17, -4.8926179596852644262e-18, 1.6476032526321098364e-18,
    -5.6265860359036304499e-19};

template <class T>
struct ErfTerms;
template <>
struct ErfTerms<float> {
    static constexpr int taylor = 12, mid = 12, tail = 12;
};
template <>
struct ErfTerms<double> {
    static constexpr int taylor = 19, mid = 22, tail = 28;
};

// sum_k c_k T_k(u) for u in [-1, 1] (Clenshaw).
template <class V>
inline typename V::reg vchebyshev(typename V::reg u, const double* c, int count) {
    using T = typename V::value_type;
    const auto two_u = V::add(u, u);
    auto b1 = V::zero(), b2 = V::zero();
    for (int k = count - 1; k >= 1; --k) {
        const auto b0 = V::add(V::sub(V::mul(two_u, b1), b2), V::set1(T(c[k])));
        b2 = b1;
        b1 = b0;
    }
    return V::add(V::sub(V::mul(u, b1), b2), V::set1(T(c[0])));
}

template <class V>
struct ErfParts {
    typename V::reg erf, erfc, exp_neg_square;  // erf(a), erfc(a), exp(-a^2)
};

template <class V>
inline ErfParts<V> verf_parts(typename V::reg a) {
    using T = typename V::value_type;
    using N = ErfTerms<T>;
    const auto one = V::set1(T(1)), minus_one = V::set1(T(-1));
    // Taylor branch.
    const auto a2 = V::mul(a, a);
    auto p = V::set1(T(kErfTaylor[N::taylor - 1]));
    for (int i = N::taylor - 2; i >= 0; --i) p = V::fmadd(p, a2, V::set1(T(kErfTaylor[i])));
    const auto small_erf = V::mul(p, a);
    // erfc branches. Beyond a = 30 erfc underflows in both types; clamping keeps a*a finite for
    // the exact-product step (inf - inf would be NaN). NaN lanes are restored at the end. Each
    // Chebyshev argument is clamped to [-1, 1] so lanes of the other branches stay finite.
    const auto ac = V::min(V::max(a, V::set1(T(0.5))), V::set1(T(30)));
    const auto ac2 = V::mul(ac, ac);
    // u = (4 a - 5) / 3 maps [0.5, 2] to [-1, 1].
    const auto u_mid = V::min(V::max(V::fmadd(ac, V::set1(T(4.0 / 3.0)), V::set1(T(-5.0 / 3.0))), minus_one), one);
    const auto u_tail = V::min(V::max(V::fmadd(V::div(one, ac2), V::set1(T(8)), minus_one), minus_one), one);
    const auto is_mid = V::lt(ac, V::set1(T(2)));
    const auto h = V::select(is_mid, vchebyshev<V>(u_mid, kErfcMidChebyshev, N::mid),
                             vchebyshev<V>(u_tail, kErfcTailChebyshev, N::tail));
    const auto lo = V::product_error(ac, ac, ac2);  // ac*ac = ac2 + lo exactly
    const auto e_large = V::mul(vexp<V>(V::sub(V::zero(), ac2)), V::sub(one, lo));
    const auto large_erfc = V::div(V::mul(e_large, h), ac);
    const auto erf_from_taylor = V::lt(a, one), erfc_from_taylor = V::lt(a, V::set1(T(0.5)));
    const auto is_nan = V::isnan(a);
    ErfParts<V> r;
    r.erf = V::select(is_nan, a, V::select(erf_from_taylor, small_erf, V::sub(one, large_erfc)));
    r.erfc = V::select(is_nan, a, V::select(erfc_from_taylor, V::sub(one, small_erf), large_erfc));
    r.exp_neg_square = V::select(is_nan, a, V::select(erfc_from_taylor, vexp<V>(V::sub(V::zero(), a2)), e_large));
    return r;
}

template <class V>
inline typename V::reg verf(typename V::reg x) {
    return V::copysign(verf_parts<V>(V::abs(x)).erf, x);
}

// Phi(x) = 0.5 erfc(-x / sqrt 2) (taken from erfc for x < 0, so it keeps its relative accuracy in
// the tail) and the density phi(x) = exp(-x^2 / 2) / sqrt(2 pi).
// z = x / sqrt 2 is rounded; in the Gaussian tail that rounding d would grow into a relative error
// of about 2 z d of erfc (hundreds of ulp at x = -10). The exact remainder d = x / sqrt 2 - z
// (the product's rounding error plus x times the rounding error of the constant) corrects erf,
// erfc and exp(-z^2) to first order: erfc(a + d) = erfc(a) - d (2 / sqrt pi) exp(-a^2).
constexpr long double kSqrtHalf = 0.707106781186547524400844362104849039L;

template <class V>
inline void vnormal_cdf_pdf(typename V::reg x, typename V::reg& cdf, typename V::reg& pdf) {
    using T = typename V::value_type;
    constexpr T c_hi = static_cast<T>(kSqrtHalf);
    constexpr T c_lo = static_cast<T>(kSqrtHalf - static_cast<long double>(c_hi));
    const auto half = V::set1(T(0.5));
    const auto c = V::set1(c_hi);
    const auto z = V::mul(x, c);
    // d, in the direction of |z|: a_true = |z| + d_abs. Beyond |x| = 1e30 (where the remainder's
    // computation could overflow, and +-inf) the correction is moot and left out.
    const auto d_raw = V::fmadd(x, V::set1(c_lo), V::product_error(x, c, z));
    const auto d = V::select(V::lt(V::abs(x), V::set1(T(1e30))), d_raw, V::zero());
    const auto negative = V::lt(x, V::zero());
    const auto d_abs = V::select(negative, V::sub(V::zero(), d), d);
    const auto a = V::abs(z);
    const ErfParts<V> parts = verf_parts<V>(a);
    const auto slope = V::mul(V::mul(V::set1(T(1.12837916709551257390)), parts.exp_neg_square), d_abs);  // d erf
    const auto erf = V::add(parts.erf, slope), erfc = V::sub(parts.erfc, slope);
    cdf = V::select(negative, V::mul(half, erfc), V::mul(half, V::add(V::set1(T(1)), erf)));
    // exp(-(a + d)^2) = exp(-a^2) (1 - 2 a d) to first order.
    const auto e = V::fmadd(V::mul(V::set1(T(-2)), V::mul(a, d_abs)), parts.exp_neg_square, parts.exp_neg_square);
    pdf = V::mul(e, V::set1(T(0.39894228040143267794)));
}

// gelu_tanh constants as PyTorch writes them: beta = sqrt(2) * (2 / sqrt(pi)) * 0.5, kappa.
constexpr double kGeluBeta = 0.79788456080286535588;
constexpr double kGeluKappa = 0.044715;

// Activation forward on one register; the kind is a template parameter so that loops over many
// registers compile to straight-line code (see with_act below).
template <Act A, class V>
__attribute__((always_inline)) inline typename V::reg act_forward_reg(typename V::value_type alpha, typename V::reg x) {
    if constexpr (A == Act::identity) return x;
    if constexpr (A == Act::relu) return V::select(V::lt(x, V::zero()), V::zero(), x);  // NaN stays NaN
    if constexpr (A == Act::leaky_relu) return V::select(V::lt(x, V::zero()), V::mul(x, V::set1(alpha)), x);
    if constexpr (A == Act::tanh) return vtanh<V>(x);
    if constexpr (A == Act::sigmoid) return vsigmoid<V>(x);
    if constexpr (A == Act::gelu) {
        typename V::reg cdf, pdf;
        vnormal_cdf_pdf<V>(x, cdf, pdf);
        return V::mul(x, cdf);
    }
    if constexpr (A == Act::gelu_tanh) {
        using T = typename V::value_type;
        const auto cube = V::mul(V::mul(x, x), x);
        const auto inner = V::mul(V::set1(T(kGeluBeta)), V::fmadd(V::set1(T(kGeluKappa)), cube, x));
        return V::mul(V::mul(V::set1(T(0.5)), x), V::add(V::set1(T(1)), vtanh<V>(inner)));
    }
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
    if constexpr (A == Act::gelu) {  // Phi(x) + x phi(x)
        typename V::reg cdf, pdf;
        vnormal_cdf_pdf<V>(x, cdf, pdf);
        return V::mul(dy, V::fmadd(x, pdf, cdf));
    }
    if constexpr (A == Act::gelu_tanh) {  // PyTorch's GeluBackward for approximate='tanh'
        const auto one = V::set1(T(1)), half = V::set1(T(0.5)), beta = V::set1(T(kGeluBeta));
        const auto x2 = V::mul(x, x);
        const auto inner = V::mul(beta, V::fmadd(V::set1(T(kGeluKappa)), V::mul(x2, x), x));
        const auto t = vtanh<V>(inner);
        const auto left_derivative = V::mul(half, V::add(one, t));
        const auto sech2 = V::fmadd(V::sub(V::zero(), t), t, one);
        const auto inner_derivative = V::mul(beta, V::fmadd(V::set1(T(3 * kGeluKappa)), x2, one));
        const auto right_derivative = V::mul(V::mul(V::mul(half, x), sech2), inner_derivative);
        return V::mul(dy, V::add(left_derivative, right_derivative));
    }
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
        case Act::gelu: body(ActTag<Act::gelu>{}); return;
        case Act::gelu_tanh: body(ActTag<Act::gelu_tanh>{}); return;
    }
}
