// AVX2 + FMA vectors (8 floats / 4 doubles). Included inside an ISA namespace of a TU built with
// -mavx2 -mfma.
template <class T>
struct Vec;

template <>
struct Vec<float> {
    using value_type = float;
    using reg = __m256;
    using mask = __m256;
    static constexpr int width = 8;
    static constexpr bool has_compress = false;  // see vec_avx512.h

    static reg zero() { return _mm256_setzero_ps(); }
    static reg set1(float x) { return _mm256_set1_ps(x); }
    static reg load(const float* p) { return _mm256_loadu_ps(p); }
    static void store(float* p, reg a) { _mm256_storeu_ps(p, a); }
    // Lanes [lo, hi) of the vector at p (0 <= lo <= hi <= width): the others load as zero (or as
    // `fill`), and their memory is never touched.
    using span = __m256i;
    static span lanes(index_t lo, index_t hi) {
        const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        return _mm256_and_si256(_mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(hi)), lane),
                                _mm256_cmpgt_epi32(lane, _mm256_set1_epi32(static_cast<int>(lo) - 1)));
    }
    static reg load_span(const float* p, span m) { return _mm256_maskload_ps(p, m); }
    static reg load_span_or(const float* p, span m, reg fill) {
        return _mm256_blendv_ps(fill, _mm256_maskload_ps(p, m), _mm256_castsi256_ps(m));
    }
    static void store_span(float* p, span m, reg a) { _mm256_maskstore_ps(p, m, a); }
    static reg add(reg a, reg b) { return _mm256_add_ps(a, b); }
    static reg sub(reg a, reg b) { return _mm256_sub_ps(a, b); }
    static reg mul(reg a, reg b) { return _mm256_mul_ps(a, b); }
    static reg div(reg a, reg b) { return _mm256_div_ps(a, b); }
    static reg fmadd(reg a, reg b, reg c) { return _mm256_fmadd_ps(a, b, c); }
    static reg fmsub(reg a, reg b, reg c) { return _mm256_fmsub_ps(a, b, c); }
    static reg fnmadd(reg a, reg b, reg c) { return _mm256_fnmadd_ps(a, b, c); }
    // a * b - p exactly, for p = fl(a * b).
    static reg product_error(reg a, reg b, reg p) { return _mm256_fmsub_ps(a, b, p); }
    static reg max(reg a, reg b) { return _mm256_max_ps(a, b); }
    static reg min(reg a, reg b) { return _mm256_min_ps(a, b); }
    static reg sqrt(reg a) { return _mm256_sqrt_ps(a); }
    static reg abs(reg a) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), a); }
    static reg bit_or(reg a, reg b) { return _mm256_or_ps(a, b); }
    static reg copysign(reg magnitude, reg sign) {
        const reg sign_bit = _mm256_set1_ps(-0.0f);
        return _mm256_or_ps(_mm256_andnot_ps(sign_bit, magnitude), _mm256_and_ps(sign_bit, sign));
    }
    // a with its sign bit flipped where b's is set (copysign(a, b) for a >= +0, in two bitwise
    // operations instead of three).
    static reg xorsign(reg a, reg b) { return _mm256_xor_ps(a, _mm256_and_ps(_mm256_set1_ps(-0.0f), b)); }
    static reg round(reg a) { return _mm256_round_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
    // 2^n is built from exponent bits in two halves so that subnormal results stay exact:
    // each half stays within the normal exponent range for |n| <= 252.
    static reg pow2(reg n) {
        __m256i bits = _mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127));
        return _mm256_castsi256_ps(_mm256_slli_epi32(bits, 23));
    }
    // 2^n for integral n with a normal result.
    static reg exp2i(reg n) { return pow2(n); }
    static reg scale2(reg a, reg n) {
        reg half = _mm256_floor_ps(_mm256_mul_ps(n, _mm256_set1_ps(0.5f)));
        return _mm256_mul_ps(_mm256_mul_ps(a, pow2(half)), pow2(_mm256_sub_ps(n, half)));
    }
    static mask lt(reg a, reg b) { return _mm256_cmp_ps(a, b, _CMP_LT_OQ); }
    static mask gt(reg a, reg b) { return _mm256_cmp_ps(a, b, _CMP_GT_OQ); }
    static mask ge(reg a, reg b) { return _mm256_cmp_ps(a, b, _CMP_GE_OQ); }
    static mask isnan(reg a) { return _mm256_cmp_ps(a, a, _CMP_UNORD_Q); }
    static mask mask_or(mask a, mask b) { return _mm256_or_ps(a, b); }
    static reg select(mask m, reg if_true, reg if_false) { return _mm256_blendv_ps(if_false, if_true, m); }
    // Lanes of the pair a:b (16 values, a first): the even ones, the odd ones, and the first or last
    // 8 values of the two interleaved (a0 b0 a1 b1 ...). Shuffles work within 128-bit halves, so a
    // 64-bit permute puts the halves in order.
    static reg even(reg a, reg b) { return in_order(_mm256_shuffle_ps(a, b, 0x88)); }
    static reg odd(reg a, reg b) { return in_order(_mm256_shuffle_ps(a, b, 0xDD)); }
    static reg zip_lo(reg a, reg b) { return _mm256_unpacklo_ps(in_order(a), in_order(b)); }
    static reg zip_hi(reg a, reg b) { return _mm256_unpackhi_ps(in_order(a), in_order(b)); }
    // 64-bit blocks 0 2 1 3.
    static reg in_order(reg a) { return _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(a), 0xD8)); }
    // In place, the 8 x 8 block whose rows are r[0..8): r[i] lane j <-> r[j] lane i. Within 128-bit
    // halves, 32-bit then 64-bit interleaves gather four rows' values of one column in each half;
    // a half exchange then puts the two halves of each column together.
    static void transpose(reg (&r)[8]) {
        reg t[8], u[8];
        for (int i = 0; i < 8; i += 2) {
            t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
            t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
        }
        for (int g = 0; g < 8; g += 4)
            for (int k = 0; k < 2; ++k) {
                const __m256d a = _mm256_castps_pd(t[g + k]), b = _mm256_castps_pd(t[g + k + 2]);
                u[g + 2 * k] = _mm256_castpd_ps(_mm256_unpacklo_pd(a, b));
                u[g + 2 * k + 1] = _mm256_castpd_ps(_mm256_unpackhi_pd(a, b));
            }
        // u[4g + k], half h: column 4h + k of rows 4g..4g+3.
        for (int k = 0; k < 4; ++k) {
            r[k] = _mm256_permute2f128_ps(u[k], u[4 + k], 0x20);
            r[4 + k] = _mm256_permute2f128_ps(u[k], u[4 + k], 0x31);
        }
    }
    // Lanes i + lanes i + 4: the first level of both sums.
    static __m128 add_halves(reg a) { return _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1)); }
    static float reduce_add(reg a) {
        __m128 s = add_halves(a);
        s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        s = _mm_add_ss(s, _mm_movehdup_ps(s));
        return _mm_cvtss_f32(s);
    }
    // Lanes 0..3 = reduce_add of a, b, c, d, with the same tree (i + i + 4, i + 2, i + 1), the
    // others zero.
    static reg reduce_add4(reg a, reg b, reg c, reg d) {
        const __m128 ha = add_halves(a), hb = add_halves(b), hc = add_halves(c), hd = add_halves(d);
        // [a0+a2, a1+a3, b0+b2, b1+b3] and the same of c, d
        const __m128 ab = _mm_add_ps(_mm_shuffle_ps(ha, hb, 0x44), _mm_shuffle_ps(ha, hb, 0xEE));
        const __m128 cd = _mm_add_ps(_mm_shuffle_ps(hc, hd, 0x44), _mm_shuffle_ps(hc, hd, 0xEE));
        return _mm256_zextps128_ps256(_mm_add_ps(_mm_shuffle_ps(ab, cd, 0x88), _mm_shuffle_ps(ab, cd, 0xDD)));
    }
    static float reduce_max(reg a) {
        __m128 s = _mm_max_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
        s = _mm_max_ps(s, _mm_movehl_ps(s, s));
        s = _mm_max_ss(s, _mm_movehdup_ps(s));
        return _mm_cvtss_f32(s);
    }
};

template <>
struct Vec<double> {
    using value_type = double;
    using reg = __m256d;
    using mask = __m256d;
    static constexpr int width = 4;
    static constexpr bool has_compress = false;

    static reg zero() { return _mm256_setzero_pd(); }
    static reg set1(double x) { return _mm256_set1_pd(x); }
    static reg load(const double* p) { return _mm256_loadu_pd(p); }
    static void store(double* p, reg a) { _mm256_storeu_pd(p, a); }
    using span = __m256i;
    static span lanes(index_t lo, index_t hi) {
        const __m256i lane = _mm256_setr_epi64x(0, 1, 2, 3);
        return _mm256_and_si256(_mm256_cmpgt_epi64(_mm256_set1_epi64x(hi), lane),
                                _mm256_cmpgt_epi64(lane, _mm256_set1_epi64x(lo - 1)));
    }
    static reg load_span(const double* p, span m) { return _mm256_maskload_pd(p, m); }
    static reg load_span_or(const double* p, span m, reg fill) {
        return _mm256_blendv_pd(fill, _mm256_maskload_pd(p, m), _mm256_castsi256_pd(m));
    }
    static void store_span(double* p, span m, reg a) { _mm256_maskstore_pd(p, m, a); }
    static reg add(reg a, reg b) { return _mm256_add_pd(a, b); }
    static reg sub(reg a, reg b) { return _mm256_sub_pd(a, b); }
    static reg mul(reg a, reg b) { return _mm256_mul_pd(a, b); }
    static reg div(reg a, reg b) { return _mm256_div_pd(a, b); }
    static reg fmadd(reg a, reg b, reg c) { return _mm256_fmadd_pd(a, b, c); }
    static reg fmsub(reg a, reg b, reg c) { return _mm256_fmsub_pd(a, b, c); }
    static reg fnmadd(reg a, reg b, reg c) { return _mm256_fnmadd_pd(a, b, c); }
    static reg product_error(reg a, reg b, reg p) { return _mm256_fmsub_pd(a, b, p); }
    static reg max(reg a, reg b) { return _mm256_max_pd(a, b); }
    static reg min(reg a, reg b) { return _mm256_min_pd(a, b); }
    static reg sqrt(reg a) { return _mm256_sqrt_pd(a); }
    static reg abs(reg a) { return _mm256_andnot_pd(_mm256_set1_pd(-0.0), a); }
    static reg bit_or(reg a, reg b) { return _mm256_or_pd(a, b); }
    static reg copysign(reg magnitude, reg sign) {
        const reg sign_bit = _mm256_set1_pd(-0.0);
        return _mm256_or_pd(_mm256_andnot_pd(sign_bit, magnitude), _mm256_and_pd(sign_bit, sign));
    }
    static reg xorsign(reg a, reg b) { return _mm256_xor_pd(a, _mm256_and_pd(_mm256_set1_pd(-0.0), b)); }
    static reg round(reg a) { return _mm256_round_pd(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
    static reg pow2(reg n) {
        __m128i n32 = _mm_add_epi32(_mm256_cvtpd_epi32(n), _mm_set1_epi32(1023));
        return _mm256_castsi256_pd(_mm256_slli_epi64(_mm256_cvtepi32_epi64(n32), 52));
    }
    static reg exp2i(reg n) { return pow2(n); }
    static reg scale2(reg a, reg n) {
        reg half = _mm256_floor_pd(_mm256_mul_pd(n, _mm256_set1_pd(0.5)));
        return _mm256_mul_pd(_mm256_mul_pd(a, pow2(half)), pow2(_mm256_sub_pd(n, half)));
    }
    static mask lt(reg a, reg b) { return _mm256_cmp_pd(a, b, _CMP_LT_OQ); }
    static mask gt(reg a, reg b) { return _mm256_cmp_pd(a, b, _CMP_GT_OQ); }
    static mask ge(reg a, reg b) { return _mm256_cmp_pd(a, b, _CMP_GE_OQ); }
    static mask isnan(reg a) { return _mm256_cmp_pd(a, a, _CMP_UNORD_Q); }
    static mask mask_or(mask a, mask b) { return _mm256_or_pd(a, b); }
    static reg select(mask m, reg if_true, reg if_false) { return _mm256_blendv_pd(if_false, if_true, m); }
    // As for float: a0 a2 b0 b2, a1 a3 b1 b3, a0 b0 a1 b1, a2 b2 a3 b3.
    static reg even(reg a, reg b) { return _mm256_permute4x64_pd(_mm256_unpacklo_pd(a, b), 0xD8); }
    static reg odd(reg a, reg b) { return _mm256_permute4x64_pd(_mm256_unpackhi_pd(a, b), 0xD8); }
    static reg zip_lo(reg a, reg b) { return _mm256_permute2f128_pd(_mm256_unpacklo_pd(a, b), _mm256_unpackhi_pd(a, b), 0x20); }
    static reg zip_hi(reg a, reg b) { return _mm256_permute2f128_pd(_mm256_unpacklo_pd(a, b), _mm256_unpackhi_pd(a, b), 0x31); }
    // In place, the 4 x 4 block whose rows are r[0..4), as for float.
    static void transpose(reg (&r)[4]) {
        const reg t0 = _mm256_unpacklo_pd(r[0], r[1]), t1 = _mm256_unpackhi_pd(r[0], r[1]);
        const reg t2 = _mm256_unpacklo_pd(r[2], r[3]), t3 = _mm256_unpackhi_pd(r[2], r[3]);
        r[0] = _mm256_permute2f128_pd(t0, t2, 0x20);
        r[1] = _mm256_permute2f128_pd(t1, t3, 0x20);
        r[2] = _mm256_permute2f128_pd(t0, t2, 0x31);
        r[3] = _mm256_permute2f128_pd(t1, t3, 0x31);
    }
    static __m128d add_halves(reg a) { return _mm_add_pd(_mm256_castpd256_pd128(a), _mm256_extractf128_pd(a, 1)); }
    static double reduce_add(reg a) {
        __m128d s = add_halves(a);
        return _mm_cvtsd_f64(_mm_add_sd(s, _mm_unpackhi_pd(s, s)));
    }
    static reg reduce_add4(reg a, reg b, reg c, reg d) {
        const __m128d ha = add_halves(a), hb = add_halves(b), hc = add_halves(c), hd = add_halves(d);
        return _mm256_set_m128d(_mm_add_pd(_mm_unpacklo_pd(hc, hd), _mm_unpackhi_pd(hc, hd)),
                                _mm_add_pd(_mm_unpacklo_pd(ha, hb), _mm_unpackhi_pd(ha, hb)));
    }
    static double reduce_max(reg a) {
        __m128d s = _mm_max_pd(_mm256_castpd256_pd128(a), _mm256_extractf128_pd(a, 1));
        return _mm_cvtsd_f64(_mm_max_sd(s, _mm_unpackhi_pd(s, s)));
    }
};
