// Portable one-lane "vector": the baseline every machine builds. Included inside an ISA namespace.
template <class T>
struct Vec {
    using value_type = T;
    using reg = T;
    using mask = bool;
    static constexpr int width = 1;

    static reg zero() { return T(0); }
    static reg set1(T x) { return x; }
    static reg load(const T* p) { return *p; }
    static void store(T* p, reg a) { *p = a; }
    static reg add(reg a, reg b) { return a + b; }
    static reg sub(reg a, reg b) { return a - b; }
    static reg mul(reg a, reg b) { return a * b; }
    static reg div(reg a, reg b) { return a / b; }
    // Plain multiply-add: std::fma would be a slow software routine on CPUs without FMA.
    static reg fmadd(reg a, reg b, reg c) { return a * b + c; }
    static reg max(reg a, reg b) { return a > b ? a : b; }
    static reg min(reg a, reg b) { return a < b ? a : b; }
    static reg abs(reg a) { return std::fabs(a); }
    static reg sqrt(reg a) { return std::sqrt(a); }
    static reg copysign(reg magnitude, reg sign) { return std::copysign(magnitude, sign); }
    static reg round(reg a) { return std::nearbyint(a); }
    // a * 2^n for integral n already clamped to the range the caller documents.
    static reg scale2(reg a, reg n) { return std::ldexp(a, static_cast<int>(n)); }
    static mask lt(reg a, reg b) { return a < b; }
    static mask gt(reg a, reg b) { return a > b; }
    static mask isnan(reg a) { return a != a; }
    static reg select(mask m, reg if_true, reg if_false) { return m ? if_true : if_false; }
    static T reduce_add(reg a) { return a; }
    static T reduce_max(reg a) { return a; }
};
