// Portable one-lane "vector": the baseline every machine builds. Included inside an ISA namespace.
template <class T>
struct Vec {
    using value_type = T;
    using reg = T;
    using mask = bool;
    static constexpr int width = 1;
    static constexpr bool has_compress = false;  // see vec_avx512.h

    static reg zero() { return T(0); }
    static reg set1(T x) { return x; }
    static reg load(const T* p) { return *p; }
    static void store(T* p, reg a) { *p = a; }
    // Lanes [lo, hi) of the vector at p (0 <= lo <= hi <= width): the others load as zero (or as
    // `fill`), and their memory is never touched.
    using span = bool;
    static span lanes(index_t lo, index_t hi) { return lo <= 0 && hi > 0; }
    static reg load_span(const T* p, span m) { return m ? *p : T(0); }
    static reg load_span_or(const T* p, span m, reg fill) { return m ? *p : fill; }
    static void store_span(T* p, span m, reg a) {
        if (m) *p = a;
    }
    static reg add(reg a, reg b) { return a + b; }
    static reg sub(reg a, reg b) { return a - b; }
    static reg mul(reg a, reg b) { return a * b; }
    static reg div(reg a, reg b) { return a / b; }
    // Plain multiply-add: std::fma would be a slow software routine on CPUs without FMA.
    static reg fmadd(reg a, reg b, reg c) { return a * b + c; }
    static reg fmsub(reg a, reg b, reg c) { return a * b - c; }
    static reg fnmadd(reg a, reg b, reg c) { return c - a * b; }
    // a * b - p exactly, for p = fl(a * b) (|a b| well inside the range): Dekker's product with
    // Veltkamp's split, or one fused multiply-add where the compiler says it is fast.
    static reg product_error(reg a, reg b, reg p) {
#if defined(FP_FAST_FMA) && defined(FP_FAST_FMAF)
        return std::fma(a, b, -p);
#else
        const T split = sizeof(T) == 4 ? T(4097) : T(134217729);  // 2^12 + 1, 2^27 + 1
        const T ca = split * a, a_hi = ca - (ca - a), a_lo = a - a_hi;
        const T cb = split * b, b_hi = cb - (cb - b), b_lo = b - b_hi;
        return ((a_hi * b_hi - p) + a_hi * b_lo + a_lo * b_hi) + a_lo * b_lo;
#endif
    }
    static reg max(reg a, reg b) { return a > b ? a : b; }
    static reg min(reg a, reg b) { return a < b ? a : b; }
    static reg abs(reg a) { return std::fabs(a); }
    static reg bit_or(reg a, reg b) {  // the bits of a or those of b
        using U = std::conditional_t<sizeof(T) == 4, std::uint32_t, std::uint64_t>;
        U x, y;
        std::memcpy(&x, &a, sizeof x);
        std::memcpy(&y, &b, sizeof y);
        x |= y;
        std::memcpy(&a, &x, sizeof x);
        return a;
    }
    static reg sqrt(reg a) { return std::sqrt(a); }
    static reg copysign(reg magnitude, reg sign) { return std::copysign(magnitude, sign); }
    // a with its sign bit flipped where b's is set (copysign(a, b) for a >= +0, without clearing
    // a's own sign first).
    static reg xorsign(reg a, reg b) { return std::signbit(b) ? -a : a; }
    static reg round(reg a) { return std::nearbyint(a); }
    // a * 2^n for integral n already clamped to the range the caller documents; NaN for a NaN n
    // (converting it to int would be undefined).
    static reg scale2(reg a, reg n) { return n != n ? n : std::ldexp(a, static_cast<int>(n)); }
    // 2^n for integral n with a normal result; NaN for a NaN n.
    static reg exp2i(reg n) { return n != n ? n : std::ldexp(T(1), static_cast<int>(n)); }
    static mask lt(reg a, reg b) { return a < b; }
    static mask gt(reg a, reg b) { return a > b; }
    static mask ge(reg a, reg b) { return a >= b; }
    static mask isnan(reg a) { return a != a; }
    static mask mask_or(mask a, mask b) { return a || b; }
    static reg select(mask m, reg if_true, reg if_false) { return m ? if_true : if_false; }
    // Lanes of the pair a:b (2 * width values, a first): the even ones, the odd ones, and the first
    // or last width values of the two interleaved (a0 b0 a1 b1 ...). With one lane: a, b, a, b.
    static reg even(reg a, reg) { return a; }
    static reg odd(reg, reg b) { return b; }
    static reg zip_lo(reg a, reg) { return a; }
    static reg zip_hi(reg, reg b) { return b; }
    // In place, the width x width block whose rows are r[0..width): r[i] lane j <-> r[j] lane i.
    static void transpose(reg (&)[1]) {}
    static T reduce_add(reg a) { return a; }
    static T reduce_max(reg a) { return a; }
};
