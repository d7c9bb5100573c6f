// Max and average pooling (pool.h) against naive loops: window sizes 1..4, strides 1..3, odd and
// even spatial sizes, channels 1..5, batches 1..3, with 1 and 2 threads (bit-identical), on every
// ISA (the 2x2 window with stride 2 runs the ISA's kernels). Outputs are poisoned with NaN and
// guarded; ties, signed zeros, infinities and NaNs with distinct payloads check bit for bit which
// element max pooling picks.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "harness.h"
#include "pool.h"
#include "thread_pool.h"

namespace {

using nncore::KernelTable;
using nncore::Pool2dShape;
using nntest::Guarded;
using nntest::index_t;
using nntest::Rng;
using nntest::Scope;

template <class T>
void check_equal(const char* what, const Guarded<T>& got, const std::vector<long double>& ref, long double rel) {
    long long bad = 0;
    std::size_t first = 0;
    for (std::size_t i = 0; i < ref.size(); ++i) {
        const long double g = got[i];
        const bool ok = std::isnan(ref[i]) ? std::isnan(g) : g == ref[i] || std::fabs(g - ref[i]) <= rel * (1 + std::fabs(ref[i]));
        if (!ok && bad++ == 0) first = i;
    }
    CHECK_MSG(bad == 0, what << ": " << bad << " of " << ref.size() << " wrong; first at " << first << ": got "
                             << (long double)got[first] << ", expected " << ref[first]);
    CHECK_MSG(got.guards_intact(), what << ": guard values overwritten");
}

template <class T>
void run_case(const KernelTable<T>& kt, const Pool2dShape& s, const std::vector<T>& x, Rng& rng) {
    const index_t oh = s.out_h(), ow = s.out_w(), nx = s.n * s.c * s.h * s.w, ny = s.n * s.c * oh * ow;
    const auto dy = nntest::random_vector<T>(ny, rng);
    std::vector<long double> ymax(ny), yavg(ny), dmax(nx, 0), davg(nx, 0);
    // The exact bits: the chosen element itself, and (windows not overlapping) dy there, +0 elsewhere.
    const bool disjoint = s.sh >= s.kh && s.sw >= s.kw;
    std::vector<T> ychosen(ny), dchosen(nx, T(0));
    for (index_t p = 0; p < s.n * s.c; ++p)
        for (index_t oy = 0; oy < oh; ++oy)
            for (index_t ox = 0; ox < ow; ++ox) {
                const index_t yi = (p * oh + oy) * ow + ox;
                index_t best = -1;
                long double sum = 0;
                for (index_t i = 0; i < s.kh && !(best >= 0 && std::isnan(x[best])); ++i)
                    for (index_t j = 0; j < s.kw; ++j) {
                        const index_t xi = (p * s.h + oy * s.sh + i) * s.w + ox * s.sw + j;
                        if (best < 0 || std::isnan(x[xi]) || x[xi] > x[best]) best = xi;
                        if (std::isnan(x[best])) break;
                    }
                for (index_t i = 0; i < s.kh; ++i)
                    for (index_t j = 0; j < s.kw; ++j) sum += x[(p * s.h + oy * s.sh + i) * s.w + ox * s.sw + j];
                ymax[yi] = x[best];
                dmax[best] += dy[yi];
                ychosen[yi] = x[best];
                dchosen[best] = dy[yi];
                yavg[yi] = sum / (s.kh * s.kw);
                for (index_t i = 0; i < s.kh; ++i)
                    for (index_t j = 0; j < s.kw; ++j)
                        davg[(p * s.h + oy * s.sh + i) * s.w + ox * s.sw + j] += (long double)dy[yi] / (s.kh * s.kw);
            }
    const long double rel = 16 * nntest::eps<T>() * (s.kh * s.kw);
    const T nan = nntest::quiet_nan<T>();
    std::vector<std::vector<T>> first;
    for (int threads : {1, 2}) {
        nncore::set_num_threads(threads);
        Scope scope("threads=" + std::to_string(threads));
        Guarded<T> a(ny, nan), b(nx, nan), c(ny, nan), d(nx, nan);
        nncore::max_pool2d_forward(kt, s, x.data(), a.data());
        check_equal("max forward", a, ymax, 0);
        CHECK_MSG(nntest::same_bits(std::vector<T>(a.data(), a.data() + ny), ychosen), "max forward: not the chosen bits");
        nncore::max_pool2d_backward(kt, s, x.data(), dy.data(), b.data());
        check_equal("max backward", b, dmax, rel);
        if (disjoint)
            CHECK_MSG(nntest::same_bits(std::vector<T>(b.data(), b.data() + nx), dchosen), "max backward: not the exact bits");
        nncore::avg_pool2d_forward(s, x.data(), c.data());
        check_equal("avg forward", c, yavg, rel);
        nncore::avg_pool2d_backward(s, dy.data(), d.data());
        check_equal("avg backward", d, davg, rel);
        std::vector<std::vector<T>> all{std::vector<T>(a.data(), a.data() + ny), std::vector<T>(b.data(), b.data() + nx),
                                        std::vector<T>(c.data(), c.data() + ny), std::vector<T>(d.data(), d.data() + nx)};
        if (threads == 1) first = all;
        else
            for (int k = 0; k < 4; ++k) CHECK(nntest::same_bits(first[k], all[k]));
    }
}

// A quiet NaN of either sign with payload k, so the test can tell which NaN max pooling took.
template <class T>
T nan_with_payload(std::uint64_t k, bool negative) {
    T v;
    if constexpr (sizeof(T) == 4) {
        const std::uint32_t bits = 0x7fc00000u | static_cast<std::uint32_t>(k & 0x3fffff) | (negative ? 0x80000000u : 0);
        std::memcpy(&v, &bits, sizeof v);
    } else {
        const std::uint64_t bits = 0x7ff8000000000000ull | (k & 0xffffffffffffull) | (negative ? 1ull << 63 : 0);
        std::memcpy(&v, &bits, sizeof v);
    }
    return v;
}

constexpr int kVariants = 5;

// Random input; variant 1 has many ties (max pooling must pick the first), variant 2 NaNs (they
// propagate to the windows that hold them); variant 3 takes only -inf, -1, -0, +0, 1, +inf (ties
// of every kind, -0 against +0 among them), variant 4 the same and distinct NaNs in a quarter of
// the places (often several in one window: the first wins).
template <class T>
std::vector<T> pool_input(const Pool2dShape& s, int variant, Rng& rng) {
    auto x = nntest::random_vector<T>(s.n * s.c * s.h * s.w, rng);
    const T inf = std::numeric_limits<T>::infinity(), few[] = {-inf, T(-1), T(-0.0), T(0), T(1), inf};
    std::uint64_t payload = 0;
    for (auto& v : x) {
        if (variant == 1) v = static_cast<T>(std::round(v * 2));
        if (variant == 2 && rng.below(7) == 0) v = nntest::quiet_nan<T>();
        if (variant >= 3) v = few[rng.below(6)];
        if (variant == 4 && rng.below(4) == 0) v = nan_with_payload<T>(++payload, rng.coin());
    }
    return x;
}

template <class T>
void test_pool(const KernelTable<T>& kt, Rng& rng) {
    Scope dtype(nntest::dtype_name<T>());
    for (index_t k = 1; k <= 4; ++k)
        for (index_t stride = 1; stride <= 3; ++stride)
            for (int variant = 0; variant < kVariants; ++variant) {
                Pool2dShape s;
                s.n = 1 + static_cast<index_t>(rng.below(3));
                s.c = 1 + static_cast<index_t>(rng.below(5));
                s.kh = k;
                s.kw = 1 + static_cast<index_t>(rng.below(4));
                s.sh = stride;
                s.sw = 1 + static_cast<index_t>(rng.below(3));
                s.h = s.kh + static_cast<index_t>(rng.below(8));
                s.w = s.kw + static_cast<index_t>(rng.below(8));
                CHECK(s.valid());
                Scope scope("n=" + std::to_string(s.n) + " c=" + std::to_string(s.c) + " h=" + std::to_string(s.h) +
                            " w=" + std::to_string(s.w) + " k=" + std::to_string(s.kh) + "x" + std::to_string(s.kw) +
                            " stride=" + std::to_string(s.sh) + "," + std::to_string(s.sw) + " variant=" +
                            std::to_string(variant));
                run_case(kt, s, pool_input<T>(s, variant, rng), rng);
            }
    // The 2x2 window with stride 2 runs the ISA's kernels, a vector of windows (two of input) at a
    // time: every width up to two vectors of windows and more, so that all the full and partial
    // steps occur; even and odd sizes (an odd last row or column is in no window).
    constexpr index_t kMaxWindows = 2 * 16 + 3;  // 16 lanes: AVX-512 float
    for (index_t h : {2, 3, 4, 5, 9})
        for (index_t w = 2; w <= 2 * kMaxWindows + 1; ++w)
            for (int variant = 0; variant < kVariants; ++variant) {
                Pool2dShape s;
                s.n = 1 + static_cast<index_t>(rng.below(2)), s.c = 1 + static_cast<index_t>(rng.below(3));
                s.h = h, s.w = w, s.kh = 2, s.kw = 2, s.sh = 2, s.sw = 2;
                Scope scope("2x2/2 n=" + std::to_string(s.n) + " c=" + std::to_string(s.c) + " h=" + std::to_string(h) +
                            " w=" + std::to_string(w) + " variant=" + std::to_string(variant));
                run_case(kt, s, pool_input<T>(s, variant, rng), rng);
            }
    // Enough planes to be split over threads.
    Pool2dShape big;
    big.n = 4, big.c = 8, big.h = 33, big.w = 31, big.kh = 2, big.kw = 3, big.sh = 2, big.sw = 2;
    for (index_t kw : {3, 2}) {
        big.kw = kw;
        Scope scope("large case, kw=" + std::to_string(kw));
        run_case(kt, big, nntest::random_vector<T>(big.n * big.c * big.h * big.w, rng), rng);
    }
}

}  // namespace

int main() {
    nntest::for_each_isa([](nncore::Isa, const nncore::Tables& tables) {
        Rng rng(7);
        test_pool(tables.f32, rng);
        test_pool(tables.f64, rng);
    });
    return nntest::finish("test_pool");
}
