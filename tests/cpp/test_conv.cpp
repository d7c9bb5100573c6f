// conv2d forward and its three gradients (conv.h) against a naive direct loop accumulated in long
// double, on every ISA this CPU supports, over kernel sizes 1..5, strides 1..3, paddings 0..2,
// dilations 1..2, odd spatial sizes, channel counts 1..5 and batches 1..3. Outputs are poisoned with
// NaN and surrounded by guard values; results must be bit-identical for 1 and 2 threads.
#include <cmath>
#include <string>
#include <vector>

#include "conv.h"
#include "harness.h"
#include "thread_pool.h"

namespace {

using nncore::Conv2dShape;
using nncore::KernelTable;
using nntest::Guarded;
using nntest::index_t;
using nntest::Rng;
using nntest::Scope;

struct Ref {
    std::vector<long double> y, dx, dw, db;        // values
    std::vector<long double> my, mdx, mdw, mdb;    // sums of absolute terms (rounding scale)
};

template <class T>
Ref reference(const Conv2dShape& s, const std::vector<T>& x, const std::vector<T>& w, const std::vector<T>& b,
              const std::vector<T>& dy) {
    const index_t oh = s.out_h(), ow = s.out_w();
    Ref r;
    r.y.assign(s.n * s.o * oh * ow, 0);
    r.my.assign(r.y.size(), 0);
    r.dx.assign(s.n * s.c * s.h * s.w, 0);
    r.mdx.assign(r.dx.size(), 0);
    r.dw.assign(s.o * s.c * s.kh * s.kw, 0);
    r.mdw.assign(r.dw.size(), 0);
    r.db.assign(s.o, 0);
    r.mdb.assign(s.o, 0);
    for (index_t n = 0; n < s.n; ++n)
        for (index_t o = 0; o < s.o; ++o)
            for (index_t oy = 0; oy < oh; ++oy)
                for (index_t ox = 0; ox < ow; ++ox) {
                    const index_t yi = ((n * s.o + o) * oh + oy) * ow + ox;
                    long double acc = b[o], mag = std::fabs((long double)b[o]);
                    const long double g = dy[yi];
                    r.db[o] += g;
                    r.mdb[o] += std::fabs(g);
                    for (index_t c = 0; c < s.c; ++c)
                        for (index_t ki = 0; ki < s.kh; ++ki)
                            for (index_t kj = 0; kj < s.kw; ++kj) {
                                const index_t iy = oy * s.sh - s.ph + ki * s.dh, ix = ox * s.sw - s.pw + kj * s.dw;
                                if (iy < 0 || iy >= s.h || ix < 0 || ix >= s.w) continue;
                                const index_t xi = ((n * s.c + c) * s.h + iy) * s.w + ix;
                                const index_t wi = ((o * s.c + c) * s.kh + ki) * s.kw + kj;
                                const long double p = (long double)x[xi] * w[wi];
                                acc += p;
                                mag += std::fabs(p);
                                r.dw[wi] += g * x[xi];
                                r.mdw[wi] += std::fabs(g * x[xi]);
                                r.dx[xi] += g * w[wi];
                                r.mdx[xi] += std::fabs(g * w[wi]);
                            }
                    r.y[yi] = acc;
                    r.my[yi] = mag;
                }
    return r;
}

template <class T>
void check_close(const char* what, const Guarded<T>& got, const std::vector<long double>& ref,
                 const std::vector<long double>& mag) {
    const long double eps = nntest::eps<T>();
    const long double rel = 64 * eps;
    long long bad = 0;
    std::size_t first = 0;
    for (std::size_t i = 0; i < ref.size(); ++i) {
        const long double tol = rel * mag[i] + nntest::tiny<T>();
        if (!(std::fabs((long double)got[i] - ref[i]) <= tol) && bad++ == 0) first = i;
    }
    CHECK_MSG(bad == 0, what << ": " << bad << " of " << ref.size() << " wrong; first at " << first << ": got "
                             << (long double)got[first] << ", expected " << ref[first]);
    CHECK_MSG(got.guards_intact(), what << ": guard values overwritten");
}

template <class T>
void run_choice(const KernelTable<T>& kt, const Conv2dShape& s, const std::vector<T>& x, const std::vector<T>& w,
                const std::vector<T>& b, const std::vector<T>& dy, const Ref& r, const nncore::ConvChoice& choice) {
    const index_t oh = s.out_h(), ow = s.out_w();
    const index_t nx = s.n * s.c * s.h * s.w, ny = s.n * s.o * oh * ow, nw = s.o * s.c * s.kh * s.kw;
    const T nan = nntest::quiet_nan<T>();
    std::vector<T> y1, dx1, dw1, db1;
    for (int threads : {1, 2}) {
        nncore::set_num_threads(threads);
        Scope scope("threads=" + std::to_string(threads));
        Guarded<T> y(ny, nan), dx(nx, nan), dw(nw, nan), db(s.o, nan);
        nncore::conv2d_forward(kt, s, x.data(), w.data(), b.data(), y.data(), choice);
        check_close("forward", y, r.y, r.my);
        nncore::conv2d_backward(kt, s, x.data(), w.data(), dy.data(), dx.data(), dw.data(), db.data(), choice);
        check_close("dx", dx, r.dx, r.mdx);
        check_close("dw", dw, r.dw, r.mdw);
        check_close("db", db, r.db, r.mdb);
        std::vector<T> vy(y.data(), y.data() + ny), vdx(dx.data(), dx.data() + nx), vdw(dw.data(), dw.data() + nw),
            vdb(db.data(), db.data() + s.o);
        if (threads == 1) {
            y1 = vy, dx1 = vdx, dw1 = vdw, db1 = vdb;
        } else {
            CHECK(nntest::same_bits(y1, vy));
            CHECK(nntest::same_bits(dx1, vdx));
            CHECK(nntest::same_bits(dw1, vdw));
            CHECK(nntest::same_bits(db1, vdb));
        }
    }
    // No bias, no dx.
    {
        Guarded<T> y(ny, nan), dw(nw, nan);
        std::vector<T> zero(s.o, T(0));
        const Ref r0 = reference(s, x, w, zero, dy);
        nncore::conv2d_forward(kt, s, x.data(), w.data(), static_cast<const T*>(nullptr), y.data(), choice);
        check_close("forward without bias", y, r0.y, r0.my);
        nncore::conv2d_backward(kt, s, x.data(), w.data(), dy.data(), static_cast<T*>(nullptr), dw.data(),
                                static_cast<T*>(nullptr), choice);
        check_close("dw without dx", dw, r.dw, r.mdw);
    }
}

const char* method_name(nncore::ConvMethod m) {
    switch (m) {
    case nncore::ConvMethod::positions: return "positions";
    case nncore::ConvMethod::channels: return "channels";
    case nncore::ConvMethod::im2col: return "im2col";
    default: return "automatic";
    }
}

// Every choice in `choices` (default: the cost model's) computes the same case.
template <class T>
void run_case(const KernelTable<T>& kt, const Conv2dShape& s, Rng& rng,
              const std::vector<nncore::ConvChoice>& choices = {nncore::ConvChoice{}}) {
    const index_t oh = s.out_h(), ow = s.out_w();
    const index_t nx = s.n * s.c * s.h * s.w, ny = s.n * s.o * oh * ow, nw = s.o * s.c * s.kh * s.kw;
    const auto x = nntest::random_vector<T>(nx, rng), w = nntest::random_vector<T>(nw, rng),
               b = nntest::random_vector<T>(s.o, rng), dy = nntest::random_vector<T>(ny, rng);
    const Ref r = reference(s, x, w, b, dy);
    for (const nncore::ConvChoice& choice : choices) {
        Scope scope(std::string("method=") + method_name(choice.forward) + " tile=" + std::to_string(choice.tile));
        run_choice(kt, s, x, w, b, dy, r, choice);
    }
}

template <class T>
void test_conv(const KernelTable<T>& kt, Rng& rng) {
    Scope dtype(nntest::dtype_name<T>());
    long long cases = 0;
    for (index_t k = 1; k <= 5; ++k)
        for (index_t stride = 1; stride <= 3; ++stride)
            for (index_t pad = 0; pad <= 2; ++pad)
                for (index_t dil = 1; dil <= 2; ++dil)
                    for (int rep = 0; rep < 2; ++rep) {
                        Conv2dShape s;
                        s.n = 1 + static_cast<index_t>(rng.below(3));
                        s.c = 1 + static_cast<index_t>(rng.below(5));
                        s.o = 1 + static_cast<index_t>(rng.below(5));
                        s.kh = k;
                        s.kw = std::max<index_t>(1, k - static_cast<index_t>(rng.below(2)));  // square and not
                        s.sh = stride;
                        s.sw = 1 + static_cast<index_t>(rng.below(3));
                        s.ph = pad;
                        s.pw = static_cast<index_t>(rng.below(3));
                        s.dh = dil;
                        s.dw = 1 + static_cast<index_t>(rng.below(2));
                        // Odd spatial sizes, at least as large as the dilated kernel minus padding.
                        s.h = std::max<index_t>(1, s.dh * (s.kh - 1) + 1 - 2 * s.ph) + 2 * static_cast<index_t>(rng.below(4));
                        s.w = std::max<index_t>(1, s.dw * (s.kw - 1) + 1 - 2 * s.pw) + 2 * static_cast<index_t>(rng.below(4));
                        if (s.h % 2 == 0) ++s.h;
                        if (s.w % 2 == 0) ++s.w;
                        if (!s.valid()) continue;
                        Scope scope("n=" + std::to_string(s.n) + " c=" + std::to_string(s.c) + " o=" + std::to_string(s.o) +
                                    " h=" + std::to_string(s.h) + " w=" + std::to_string(s.w) + " k=" + std::to_string(s.kh) +
                                    "x" + std::to_string(s.kw) + " stride=" + std::to_string(s.sh) + "," + std::to_string(s.sw) +
                                    " pad=" + std::to_string(s.ph) + "," + std::to_string(s.pw) + " dil=" +
                                    std::to_string(s.dh) + "," + std::to_string(s.dw));
                        run_case(kt, s, rng);
                        ++cases;
                    }
    CHECK(cases == 5 * 3 * 3 * 2 * 2);  // every combination is valid by construction
    // Every register tile in every use, forced: the forward as mr positions x nr channels and as mr
    // channels x nr positions, dx (mr outputs x nr input channels per tap) and dw (mr taps x nr
    // output channels), plus im2col, on shapes around the tile's edges: rows of outputs around mr
    // and nr, channel counts around mr and nr, c*kh*kw around mr. Strides, paddings and dilations
    // vary (a width stride > 1 makes the forward use im2col and dx rows sw*c apart).
    for (int t = 0; t < kt.conv_tile_count; ++t) {
        const index_t mr = kt.conv_tiles[t].mr, nr = kt.conv_tiles[t].nr;
        const std::vector<nncore::ConvChoice> choices = {{nncore::ConvMethod::positions, t},
                                                         {nncore::ConvMethod::channels, t},
                                                         {nncore::ConvMethod::im2col, t},
                                                         {nncore::ConvMethod::automatic, -1}};
        const index_t rows[] = {1, mr - 1, mr, mr + 1, 2 * mr + 3, nr - 1, nr + 1};
        const index_t channels[] = {1, mr - 1, mr + 1, nr - 1, nr, nr + 1, 2 * nr + 1};
        for (int i = 0; i < 7; ++i) {
            Conv2dShape s;
            s.n = 1 + static_cast<index_t>(rng.below(3));
            s.o = std::max<index_t>(1, channels[i]);
            s.c = std::max<index_t>(1, channels[(i + 3) % 7] / (i % 2 ? 1 : 4));
            s.kh = 1 + static_cast<index_t>(rng.below(4));
            s.kw = 1 + static_cast<index_t>(rng.below(4));
            s.dh = 1 + static_cast<index_t>(rng.below(2));
            s.dw = 1 + static_cast<index_t>(rng.below(2));
            s.ph = static_cast<index_t>(rng.below(3));
            s.pw = static_cast<index_t>(rng.below(3));
            s.sh = 1 + static_cast<index_t>(rng.below(2));
            s.sw = i == 6 ? 2 : 1;
            s.w = std::max<index_t>(1, (std::max<index_t>(1, rows[i]) - 1) * s.sw + s.dw * (s.kw - 1) + 1 - 2 * s.pw);
            s.h = std::max<index_t>(1, s.dh * (s.kh - 1) + 1 - 2 * s.ph) + static_cast<index_t>(rng.below(5));
            if (!s.valid()) continue;
            Scope scope("tile " + std::to_string(mr) + "x" + std::to_string(nr) + ": n=" + std::to_string(s.n) +
                        " c=" + std::to_string(s.c) + " o=" + std::to_string(s.o) + " h=" + std::to_string(s.h) +
                        " w=" + std::to_string(s.w) + " (ow=" + std::to_string(s.out_w()) + ") k=" +
                        std::to_string(s.kh) + "x" + std::to_string(s.kw) + " stride=" + std::to_string(s.sh) + "," +
                        std::to_string(s.sw) + " pad=" + std::to_string(s.ph) + "," + std::to_string(s.pw) +
                        " dil=" + std::to_string(s.dh) + "," + std::to_string(s.dw));
            run_case(kt, s, rng, choices);
            ++cases;
        }
    }
    CHECK(cases >= 5 * 3 * 3 * 2 * 2 + 6 * kt.conv_tile_count);
    // A larger case (the im2col forward takes the packed GEMM path: k and p beyond the unpacked
    // thresholds).
    Conv2dShape big;
    big.n = 2, big.c = 16, big.o = 24, big.h = 33, big.w = 29, big.kh = 3, big.kw = 3, big.ph = 1, big.pw = 1;
    Scope scope("large case");
    run_case(kt, big, rng, {{nncore::ConvMethod::im2col, -1}, {}});
}

}  // namespace

int main() {
    nntest::for_each_isa([](nncore::Isa, const nncore::Tables& tables) {
        Rng rng(20261125);
        test_conv(tables.f32, rng);
        test_conv(tables.f64, rng);
    });
    return nntest::finish("test_conv");
}
