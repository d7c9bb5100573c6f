// AVX-512 (F/BW/DQ/VL) vectors (16 floats / 8 doubles). Included inside an ISA namespace of a TU
// built with -mavx512f -mavx512bw -mavx512dq -mavx512vl -mfma.
template <class T>
struct Vec;

// The 4 x 4 transpose of 128-bit lanes: lane l of out[j] = lane j of in[l]. The last step of both
// register transposes below (bits are bits: doubles pass through as casts).
inline void transpose_lanes128(__m512 in0, __m512 in1, __m512 in2, __m512 in3, __m512& out0, __m512& out1,
                               __m512& out2, __m512& out3) {
    const __m512 v0 = _mm512_shuffle_f32x4(in0, in1, 0x44), v1 = _mm512_shuffle_f32x4(in0, in1, 0xEE);
    const __m512 v2 = _mm512_shuffle_f32x4(in2, in3, 0x44), v3 = _mm512_shuffle_f32x4(in2, in3, 0xEE);
    out0 = _mm512_shuffle_f32x4(v0, v2, 0x88);
    out1 = _mm512_shuffle_f32x4(v0, v2, 0xDD);
    out2 = _mm512_shuffle_f32x4(v1, v3, 0x88);
    out3 = _mm512_shuffle_f32x4(v1, v3, 0xDD);
}

template <>
struct Vec<float> {
    using value_type = float;
    using reg = __m512;
    using mask = __mmask16;
    static constexpr int width = 16;
    static constexpr bool has_compress = true;
    // The lanes of the vector at x that are not +-0 (NaN included), packed in order to val, and
    // their indices (first + lane) to col; both written as whole vectors. Returns how many.
    static int compress_nonzero(const float* x, index_t first, std::int32_t* col, float* val) {
        const __m512 v = _mm512_loadu_ps(x);
        const __mmask16 m = _mm512_cmp_ps_mask(v, _mm512_setzero_ps(), _CMP_NEQ_UQ);
        if (m == 0) return 0;
        const __m512i index = _mm512_add_epi32(_mm512_set1_epi32(static_cast<int>(first)),
                                               _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15));
        _mm512_storeu_ps(val, _mm512_maskz_compress_ps(m, v));
        _mm512_storeu_si512(col, _mm512_maskz_compress_epi32(m, index));
        return __builtin_popcount(m);
    }

    static reg zero() { return _mm512_setzero_ps(); }
    static reg set1(float x) { return _mm512_set1_ps(x); }
    static reg load(const float* p) { return _mm512_loadu_ps(p); }
    static void store(float* p, reg a) { _mm512_storeu_ps(p, a); }
    // Lanes [lo, hi) of the vector at p (0 <= lo <= hi <= width): the others load as zero (or as
    // `fill`), and their memory is never touched.
    using span = __mmask16;
    static span lanes(index_t lo, index_t hi) { return static_cast<span>(((1u << hi) - 1u) & ~((1u << lo) - 1u)); }
    static reg load_span(const float* p, span m) { return _mm512_maskz_loadu_ps(m, p); }
    static reg load_span_or(const float* p, span m, reg fill) { return _mm512_mask_loadu_ps(fill, m, p); }
    static void store_span(float* p, span m, reg a) { _mm512_mask_storeu_ps(p, m, a); }
    static reg add(reg a, reg b) { return _mm512_add_ps(a, b); }
    static reg sub(reg a, reg b) { return _mm512_sub_ps(a, b); }
    static reg mul(reg a, reg b) { return _mm512_mul_ps(a, b); }
    static reg div(reg a, reg b) { return _mm512_div_ps(a, b); }
    static reg fmadd(reg a, reg b, reg c) { return _mm512_fmadd_ps(a, b, c); }
    static reg fmsub(reg a, reg b, reg c) { return _mm512_fmsub_ps(a, b, c); }
    static reg fnmadd(reg a, reg b, reg c) { return _mm512_fnmadd_ps(a, b, c); }
    // a * b - p exactly, for p = fl(a * b).
    static reg product_error(reg a, reg b, reg p) { return _mm512_fmsub_ps(a, b, p); }
    static reg max(reg a, reg b) { return _mm512_max_ps(a, b); }
    static reg min(reg a, reg b) { return _mm512_min_ps(a, b); }
    static reg abs(reg a) { return _mm512_abs_ps(a); }
    static reg bit_or(reg a, reg b) { return _mm512_or_ps(a, b); }
    static reg sqrt(reg a) { return _mm512_sqrt_ps(a); }
    static reg copysign(reg magnitude, reg sign) {
        // One bitwise select: sign bit from `sign`, the rest from `magnitude` (0xCA = a ? b : c).
        return _mm512_castsi512_ps(_mm512_ternarylogic_epi32(
            _mm512_set1_epi32(INT32_MIN), _mm512_castps_si512(sign), _mm512_castps_si512(magnitude), 0xCA));
    }
    // a with its sign bit flipped where b's is set: copysign(a, b) for a >= +0. GCC makes it one
    // ternary-logic instruction that overwrites a, so unlike copysign's (which overwrites its
    // sign-mask constant) it needs no register copy when a is a temporary.
    static reg xorsign(reg a, reg b) {
        return _mm512_castsi512_ps(_mm512_xor_si512(
            _mm512_castps_si512(a), _mm512_and_si512(_mm512_set1_epi32(INT32_MIN), _mm512_castps_si512(b))));
    }
    static reg round(reg a) { return _mm512_roundscale_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
    // scalef computes a * 2^floor(n) with correct overflow, underflow and subnormal results.
    static reg scale2(reg a, reg n) { return _mm512_scalef_ps(a, n); }
    // 2^n for integral n with a normal result.
    static reg exp2i(reg n) { return _mm512_scalef_ps(_mm512_set1_ps(1.0f), n); }
    static mask lt(reg a, reg b) { return _mm512_cmp_ps_mask(a, b, _CMP_LT_OQ); }
    static mask gt(reg a, reg b) { return _mm512_cmp_ps_mask(a, b, _CMP_GT_OQ); }
    static mask ge(reg a, reg b) { return _mm512_cmp_ps_mask(a, b, _CMP_GE_OQ); }
    static mask isnan(reg a) { return _mm512_cmp_ps_mask(a, a, _CMP_UNORD_Q); }
    static mask mask_or(mask a, mask b) { return static_cast<mask>(a | b); }
    static reg select(mask m, reg if_true, reg if_false) { return _mm512_mask_blend_ps(m, if_false, if_true); }
    // Lanes of the pair a:b (32 values, a first): the even ones, the odd ones, and the first or last
    // 16 values of the two interleaved (a0 b0 a1 b1 ...); each one two-source permute.
    static reg even(reg a, reg b) {
        return _mm512_permutex2var_ps(a, _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30), b);
    }
    static reg odd(reg a, reg b) {
        return _mm512_permutex2var_ps(a, _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31), b);
    }
    static reg zip_lo(reg a, reg b) {
        return _mm512_permutex2var_ps(a, _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23), b);
    }
    static reg zip_hi(reg a, reg b) {
        return _mm512_permutex2var_ps(a, _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31), b);
    }
    // In place, the 16 x 16 block whose rows are r[0..16): r[i] lane j <-> r[j] lane i. Within
    // 128-bit lanes, 32-bit then 64-bit interleaves gather four rows' values of one column in each
    // lane; a 4 x 4 transpose of 128-bit lanes (two rounds of shuffle_f32x4) finishes. (Lanes
    // gathered by 128- or 256-bit loads and inserts instead, saving two rounds or one, took 1.9x or
    // 1.15x as long on blocks in L1.)
    static void transpose(reg (&r)[16]) {
        reg t[16], u[16];
        for (int i = 0; i < 16; i += 2) {
            t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
            t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
        }
        for (int g = 0; g < 16; g += 4)
            for (int k = 0; k < 2; ++k) {
                const __m512d a = _mm512_castps_pd(t[g + k]), b = _mm512_castps_pd(t[g + k + 2]);
                u[g + 2 * k] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, b));
                u[g + 2 * k + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, b));
            }
        // u[4g + k], 128-bit lane l: column 4l + k of rows 4g..4g+3; column 4l + k takes lane l of
        // u[k], u[4 + k], u[8 + k], u[12 + k].
        for (int k = 0; k < 4; ++k)
            transpose_lanes128(u[k], u[4 + k], u[8 + k], u[12 + k], r[k], r[4 + k], r[8 + k], r[12 + k]);
    }
    // The sum of the lanes, as a tree: lanes i and i + 8, then i and i + 4, i + 2, i + 1 (the
    // order of _mm512_reduce_add_ps, written out so that reduce_add4 can match it bit for bit).
    // Lanes i + lanes i + 8: the first level of both sums.
    static __m256 add_halves(reg a) { return _mm256_add_ps(_mm512_castps512_ps256(a), _mm512_extractf32x8_ps(a, 1)); }
    static float reduce_add(reg a) {
        const __m256 h = add_halves(a);
        __m128 q = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
        q = _mm_add_ps(q, _mm_movehl_ps(q, q));
        return _mm_cvtss_f32(_mm_add_ss(q, _mm_movehdup_ps(q)));
    }
    // Lanes 0..3 = reduce_add of a, b, c, d (the same tree for each), the other lanes zero: ~13
    // instead of ~28 instructions, and no trip through memory, for the dot kernels' 4-column blocks.
    static reg reduce_add4(reg a, reg b, reg c, reg d) {
        const __m256 ha = add_halves(a), hb = add_halves(b), hc = add_halves(c), hd = add_halves(d);
        // [a | b] and [c | d], each 4 lanes (i + i + 4)
        const __m256 ab = _mm256_add_ps(_mm256_permute2f128_ps(ha, hb, 0x20), _mm256_permute2f128_ps(ha, hb, 0x31));
        const __m256 cd = _mm256_add_ps(_mm256_permute2f128_ps(hc, hd, 0x20), _mm256_permute2f128_ps(hc, hd, 0x31));
        // i + i + 2: [a0+a2, a1+a3, c0+c2, c1+c3 | the same of b, d]
        const __m256 x = _mm256_add_ps(_mm256_shuffle_ps(ab, cd, 0x44), _mm256_shuffle_ps(ab, cd, 0xEE));
        // i + i + 1: [a, c, a, c | b, d, b, d]
        const __m256 y = _mm256_add_ps(_mm256_shuffle_ps(x, x, 0x88), _mm256_shuffle_ps(x, x, 0xDD));
        return _mm512_zextps128_ps512(_mm_unpacklo_ps(_mm256_castps256_ps128(y), _mm256_extractf128_ps(y, 1)));
    }
    static float reduce_max(reg a) { return _mm512_reduce_max_ps(a); }
};

template <>
struct Vec<double> {
    using value_type = double;
    using reg = __m512d;
    using mask = __mmask8;
    static constexpr int width = 8;
    static constexpr bool has_compress = true;
    // As Vec<float>::compress_nonzero, 8 lanes.
    static int compress_nonzero(const double* x, index_t first, std::int32_t* col, double* val) {
        const __m512d v = _mm512_loadu_pd(x);
        const __mmask8 m = _mm512_cmp_pd_mask(v, _mm512_setzero_pd(), _CMP_NEQ_UQ);
        if (m == 0) return 0;
        const __m256i index = _mm256_add_epi32(_mm256_set1_epi32(static_cast<int>(first)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
        _mm512_storeu_pd(val, _mm512_maskz_compress_pd(m, v));
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(col), _mm256_maskz_compress_epi32(m, index));
        return __builtin_popcount(m);
    }

    static reg zero() { return _mm512_setzero_pd(); }
    static reg set1(double x) { return _mm512_set1_pd(x); }
    static reg load(const double* p) { return _mm512_loadu_pd(p); }
    static void store(double* p, reg a) { _mm512_storeu_pd(p, a); }
    using span = __mmask8;
    static span lanes(index_t lo, index_t hi) { return static_cast<span>(((1u << hi) - 1u) & ~((1u << lo) - 1u)); }
    static reg load_span(const double* p, span m) { return _mm512_maskz_loadu_pd(m, p); }
    static reg load_span_or(const double* p, span m, reg fill) { return _mm512_mask_loadu_pd(fill, m, p); }
    static void store_span(double* p, span m, reg a) { _mm512_mask_storeu_pd(p, m, a); }
    static reg add(reg a, reg b) { return _mm512_add_pd(a, b); }
    static reg sub(reg a, reg b) { return _mm512_sub_pd(a, b); }
    static reg mul(reg a, reg b) { return _mm512_mul_pd(a, b); }
    static reg div(reg a, reg b) { return _mm512_div_pd(a, b); }
    static reg fmadd(reg a, reg b, reg c) { return _mm512_fmadd_pd(a, b, c); }
    static reg fmsub(reg a, reg b, reg c) { return _mm512_fmsub_pd(a, b, c); }
    static reg fnmadd(reg a, reg b, reg c) { return _mm512_fnmadd_pd(a, b, c); }
    static reg product_error(reg a, reg b, reg p) { return _mm512_fmsub_pd(a, b, p); }
    static reg max(reg a, reg b) { return _mm512_max_pd(a, b); }
    static reg min(reg a, reg b) { return _mm512_min_pd(a, b); }
    static reg abs(reg a) { return _mm512_abs_pd(a); }
    static reg bit_or(reg a, reg b) { return _mm512_or_pd(a, b); }
    static reg sqrt(reg a) { return _mm512_sqrt_pd(a); }
    static reg copysign(reg magnitude, reg sign) {
        return _mm512_castsi512_pd(_mm512_ternarylogic_epi64(
            _mm512_set1_epi64(INT64_MIN), _mm512_castpd_si512(sign), _mm512_castpd_si512(magnitude), 0xCA));
    }
    static reg xorsign(reg a, reg b) {
        return _mm512_castsi512_pd(_mm512_xor_si512(
            _mm512_castpd_si512(a), _mm512_and_si512(_mm512_set1_epi64(INT64_MIN), _mm512_castpd_si512(b))));
    }
    static reg round(reg a) { return _mm512_roundscale_pd(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
    static reg scale2(reg a, reg n) { return _mm512_scalef_pd(a, n); }
    static reg exp2i(reg n) { return _mm512_scalef_pd(_mm512_set1_pd(1.0), n); }
    static mask lt(reg a, reg b) { return _mm512_cmp_pd_mask(a, b, _CMP_LT_OQ); }
    static mask gt(reg a, reg b) { return _mm512_cmp_pd_mask(a, b, _CMP_GT_OQ); }
    static mask ge(reg a, reg b) { return _mm512_cmp_pd_mask(a, b, _CMP_GE_OQ); }
    static mask isnan(reg a) { return _mm512_cmp_pd_mask(a, a, _CMP_UNORD_Q); }
    static mask mask_or(mask a, mask b) { return static_cast<mask>(a | b); }
    static reg select(mask m, reg if_true, reg if_false) { return _mm512_mask_blend_pd(m, if_false, if_true); }
    static reg even(reg a, reg b) { return _mm512_permutex2var_pd(a, _mm512_setr_epi64(0, 2, 4, 6, 8, 10, 12, 14), b); }
    static reg odd(reg a, reg b) { return _mm512_permutex2var_pd(a, _mm512_setr_epi64(1, 3, 5, 7, 9, 11, 13, 15), b); }
    static reg zip_lo(reg a, reg b) { return _mm512_permutex2var_pd(a, _mm512_setr_epi64(0, 8, 1, 9, 2, 10, 3, 11), b); }
    static reg zip_hi(reg a, reg b) { return _mm512_permutex2var_pd(a, _mm512_setr_epi64(4, 12, 5, 13, 6, 14, 7, 15), b); }
    // In place, the 8 x 8 block whose rows are r[0..8): a 64-bit interleave gathers two rows' values
    // of one column in each 128-bit lane, then a 4 x 4 transpose of 128-bit lanes as for float.
    static void transpose(reg (&r)[8]) {
        reg t[8];
        for (int i = 0; i < 8; i += 2) {
            t[i] = _mm512_unpacklo_pd(r[i], r[i + 1]);
            t[i + 1] = _mm512_unpackhi_pd(r[i], r[i + 1]);
        }
        // t[2g + k], lane l: column 2l + k of rows 2g, 2g + 1.
        for (int k = 0; k < 2; ++k) {
            __m512 o[4];
            transpose_lanes128(_mm512_castpd_ps(t[k]), _mm512_castpd_ps(t[2 + k]), _mm512_castpd_ps(t[4 + k]),
                               _mm512_castpd_ps(t[6 + k]), o[0], o[1], o[2], o[3]);
            for (int j = 0; j < 4; ++j) r[2 * j + k] = _mm512_castps_pd(o[j]);
        }
    }
    // Lanes i and i + 4, then i + 2, i + 1 (the order of _mm512_reduce_add_pd, see reduce_add4).
    static __m256d add_halves(reg a) { return _mm256_add_pd(_mm512_castpd512_pd256(a), _mm512_extractf64x4_pd(a, 1)); }
    static double reduce_add(reg a) {
        const __m256d h = add_halves(a);
        const __m128d q = _mm_add_pd(_mm256_castpd256_pd128(h), _mm256_extractf128_pd(h, 1));
        return _mm_cvtsd_f64(_mm_add_sd(q, _mm_unpackhi_pd(q, q)));
    }
    static reg reduce_add4(reg a, reg b, reg c, reg d) {
        const __m256d ha = add_halves(a), hb = add_halves(b), hc = add_halves(c), hd = add_halves(d);
        // [a0+a2, a1+a3 | b0+b2, b1+b3] and the same of c, d
        const __m256d ab = _mm256_add_pd(_mm256_permute2f128_pd(ha, hb, 0x20), _mm256_permute2f128_pd(ha, hb, 0x31));
        const __m256d cd = _mm256_add_pd(_mm256_permute2f128_pd(hc, hd, 0x20), _mm256_permute2f128_pd(hc, hd, 0x31));
        // [a, c | b, d]
        const __m256d y = _mm256_add_pd(_mm256_unpacklo_pd(ab, cd), _mm256_unpackhi_pd(ab, cd));
        return _mm512_zextpd256_pd512(_mm256_permute4x64_pd(y, 0xD8));
    }
    static double reduce_max(reg a) { return _mm512_reduce_max_pd(a); }
};
