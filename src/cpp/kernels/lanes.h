// Lanes<V, U>: U registers of the Vec type V used as one wider vector, every operation applied to
// each register in turn. Included inside an ISA namespace after the Vec header.
//
// A function written once over the Vec interface (vtanh, vsigmoid, vexp in math.h) then evaluates
// U independent registers stage by stage: all U minimums, then all U products, and so on. On
// their own, the ~20 operations of one tanh form a dependency chain ~55 cycles long (the division
// alone ~13); the out-of-order core holds only a few such chains in flight at once, so a loop
// of one register per step waits on latency with the arithmetic units half idle. With the U
// chains side by side in program order, each instruction that enters the scheduler is usually
// ready to run. The values are those of V, operation for operation.
// Measured on Zen 4 (AVX-512, 1 thread, 4608 floats in L1, medians of 15 alternated runs,
// Gelem/s): tanh 1 register 2.8-3.4, 2: 3.7-3.9, 3: 3.9-4.0, 4: 4.35-4.45, 6: 4.1-4.2, 8: 3.8-3.9
// (from 6 on the temporaries no longer fit in the 32 registers). The scalar build (width 1)
// neither gains nor loses (0.10-0.11 Gelem/s for every count).
template <class V, int U>
struct Lanes {
    using value_type = typename V::value_type;
    static constexpr int width = V::width * U;
    struct reg {
        typename V::reg r[U];
    };
    struct mask {
        typename V::mask m[U];
    };

    template <class F>
    __attribute__((always_inline)) static reg each(F f) {
        reg out;
#pragma GCC unroll 16
        for (int u = 0; u < U; ++u) out.r[u] = f(u);
        return out;
    }
    static reg load(const value_type* p) {
        return each([&](int u) { return V::load(p + u * V::width); });
    }
    static void store(value_type* p, reg a) {
#pragma GCC unroll 16
        for (int u = 0; u < U; ++u) V::store(p + u * V::width, a.r[u]);
    }
    static reg set1(value_type x) {
        const auto v = V::set1(x);
        return each([&](int) { return v; });
    }
    static reg zero() { return set1(value_type(0)); }
    static reg abs(reg a) { return each([&](int u) { return V::abs(a.r[u]); }); }
    static reg round(reg a) { return each([&](int u) { return V::round(a.r[u]); }); }
    static reg exp2i(reg a) { return each([&](int u) { return V::exp2i(a.r[u]); }); }
    static reg add(reg a, reg b) { return each([&](int u) { return V::add(a.r[u], b.r[u]); }); }
    static reg sub(reg a, reg b) { return each([&](int u) { return V::sub(a.r[u], b.r[u]); }); }
    static reg mul(reg a, reg b) { return each([&](int u) { return V::mul(a.r[u], b.r[u]); }); }
    static reg div(reg a, reg b) { return each([&](int u) { return V::div(a.r[u], b.r[u]); }); }
    static reg min(reg a, reg b) { return each([&](int u) { return V::min(a.r[u], b.r[u]); }); }
    static reg max(reg a, reg b) { return each([&](int u) { return V::max(a.r[u], b.r[u]); }); }
    static reg scale2(reg a, reg b) { return each([&](int u) { return V::scale2(a.r[u], b.r[u]); }); }
    static reg xorsign(reg a, reg b) { return each([&](int u) { return V::xorsign(a.r[u], b.r[u]); }); }
    static reg fmadd(reg a, reg b, reg c) { return each([&](int u) { return V::fmadd(a.r[u], b.r[u], c.r[u]); }); }
    static reg fnmadd(reg a, reg b, reg c) { return each([&](int u) { return V::fnmadd(a.r[u], b.r[u], c.r[u]); }); }
    static mask lt(reg a, reg b) {
        mask out;
#pragma GCC unroll 16
        for (int u = 0; u < U; ++u) out.m[u] = V::lt(a.r[u], b.r[u]);
        return out;
    }
    static reg select(mask m, reg if_true, reg if_false) {
        return each([&](int u) { return V::select(m.m[u], if_true.r[u], if_false.r[u]); });
    }
};
