#include "conv.h"

#include <algorithm>
#include <cstdint>

#include "gemm.h"
#include "thread_pool.h"
#include "workspace.h"

namespace nncore {

namespace {

// The convolution drivers' per-thread buffers, numbered by Slot (workspace.h).
struct ConvBuffers;
template <class T, int Slot>
T* workspace(index_t count) {
    return thread_buffer<T, ConvBuffers, Slot>(static_cast<std::size_t>(std::max<index_t>(count, 0)));
}

// Forward through im2col: samples are processed in groups of g, a count fixed by the shape alone
// (never by the thread count), so every sum is formed in the same order whatever the number of
// threads. The group's columns (c*kh*kw x g*oh*ow, row stride ld) hold the samples' im2col blocks
// side by side.
constexpr index_t kGroupElements = index_t(1) << 20;  // cols of one group: at most ~4 MB in float32
// The weight gradient takes groups of samples whose padded inputs and packed output gradients
// fill about this many bytes (read by every tile of the group, so they should stay in L2).
constexpr index_t kWeightsGroupBytes = index_t(256) << 10;
// Groups run in waves of this many tasks, each with its own partial sums.
constexpr index_t kWave = 8;

// Runs f(i) for i in [0, count), one task each, over the thread pool.
template <class F>
void for_tasks(index_t count, F&& f) {
    parallel_for(static_cast<int>(count), [&](int i) { f(static_cast<index_t>(i)); });
}

index_t ceil_div(index_t a, index_t b) { return (a + b - 1) / b; }

// Runs f(begin, end) over contiguous ranges of n independent items (samples, channels), a few
// ranges per thread, so that a thread the shared machine delays leaves its share to the others
// (each item is computed the same way in any range).
template <class F>
void for_ranges(index_t n, F&& f) {
    parallel_ranges(n, static_cast<int>(std::min<index_t>(n, 4 * get_num_threads())), f);
}

// ---------------------------------------------------------------------------------------------
// Direct convolution (no im2col) for a unit width stride: each sample is copied into a zero-padded
// buffer (c, hp, wp) that the conv micro-kernels read in place through a table of tap offsets,
// instead of expanding the input c*kh*kw-fold. Each register tile of the kernel table can be used
// (see ConvTile) as mr neighbouring outputs of a row times nr output channels (positions: the
// tiles fill the sample's output as positions x channels, then transposed into y), or as mr
// channels times nr neighbouring outputs of a row (channels: stored straight into y).
enum class Role { none, positions, channels };

template <class T>
struct DirectPlan {
    Role role = Role::none;
    const ConvTile<T>* tile = nullptr;
};

// The tile and role with the least estimated time per sample: one cycle per vector multiply-add
// (each tile runs at the FMA peak when its operands are in cache: measured 98% for every tile and
// role on Zen 4), plus each tile's vector stores, and for the positions role the transposition of
// its values into y (pack_b's in-register transposes, about 0.1 cycle a value). At least half of
// the multiply-adds must be real (the rest fall on partial tiles); else none, and the caller uses
// im2col + GEMM. A forced method or tile (tests) skips the fill requirement.
template <class T>
DirectPlan<T> direct_plan(const KernelTable<T>& kt, const Conv2dShape& s, const ConvChoice& choice) {
    DirectPlan<T> best;
    if (s.sw != 1 || choice.forward == ConvMethod::im2col) return best;
    const bool forced = choice.forward != ConvMethod::automatic || choice.tile >= 0;
    const bool role_forced = choice.forward == ConvMethod::positions || choice.forward == ConvMethod::channels;
    const index_t oh = s.out_h(), ow = s.out_w(), k = s.c * s.kh * s.kw;
    const double useful = static_cast<double>(oh * ow * s.o * k);
    double best_cycles = 0;
    for (int t = 0; t < kt.conv_tile_count; ++t) {
        if (choice.tile >= 0 && t != choice.tile) continue;
        const ConvTile<T>& tile = kt.conv_tiles[t];
        const double steps = static_cast<double>(tile.mr) * tile.vectors * static_cast<double>(k);
        const double lanes = static_cast<double>(tile.mr) * tile.nr * static_cast<double>(k);
        const struct {
            Role role;
            index_t tiles;
            double store;
        } options[] = {
            {Role::positions, oh * ceil_div(ow, tile.mr) * ceil_div(s.o, tile.nr),
             static_cast<double>(tile.mr) * tile.vectors + 0.1 * tile.mr * tile.nr},
            {Role::channels, oh * ceil_div(s.o, tile.mr) * ceil_div(ow, tile.nr), static_cast<double>(tile.mr) * tile.vectors},
        };
        for (const auto& option : options) {
            if (role_forced && (choice.forward == ConvMethod::positions) != (option.role == Role::positions)) continue;
            if (!forced && 2.0 * useful < static_cast<double>(option.tiles) * lanes) continue;
            const double cycles = static_cast<double>(option.tiles) * (steps + option.store);
            if (best.role == Role::none || cycles < best_cycles) {
                best = {option.role, &tile};
                best_cycles = cycles;
            }
        }
    }
    return best;
}

// Offsets of the taps (ci, ki, kj) inside a sample's padded input (rows of wp values, planes of
// hp rows), followed by `extra` zeros (readable offsets for the rows of a partial tile).
template <int Slot>
const index_t* tap_offsets(const Conv2dShape& s, index_t hp, index_t wp, index_t extra) {
    const index_t k = s.c * s.kh * s.kw;
    index_t* offsets = workspace<index_t, Slot>(k + extra);
    for (index_t ci = 0; ci < s.c; ++ci)
        for (index_t ki = 0; ki < s.kh; ++ki)
            for (index_t kj = 0; kj < s.kw; ++kj)
                offsets[(ci * s.kh + ki) * s.kw + kj] = ci * hp * wp + ki * s.dh * wp + kj * s.dw;
    std::fill(offsets + k, offsets + k + extra, index_t(0));
    return offsets;
}

// Copies sample x (c, h, w) into the interior of its zero-padded buffer (c, hp, wp); the padding
// is left as it is (zero).
template <class T>
void copy_interior(const Conv2dShape& s, const T* x, index_t hp, index_t wp, T* padded) {
    for (index_t ci = 0; ci < s.c; ++ci)
        for (index_t iy = 0; iy < s.h; ++iy)
            std::copy(x + (ci * s.h + iy) * s.w, x + (ci * s.h + iy + 1) * s.w, padded + (ci * hp + iy + s.ph) * wp + s.pw);
}

// y (n, o, oh, ow) = conv(x, w) + bias (bias may be null), s.sw == 1, with the plan's tile.
template <class T>
void direct_conv(const KernelTable<T>& kt, const Conv2dShape& s, const T* x, const T* w, const T* bias, T* y,
                 const DirectPlan<T>& plan) {
    const index_t oh = s.out_h(), ow = s.out_w(), hp = s.h + 2 * s.ph, wp = s.w + 2 * s.pw;
    const index_t k = s.c * s.kh * s.kw, in_size = s.c * s.h * s.w, padded_size = s.c * hp * wp;
    const ConvTile<T>& tile = *plan.tile;
    const int mr = tile.mr, nr = tile.nr;
    // The weights w (o, c, kh, kw) packed: w^T (k x o) in nr-channel panels (positions), or w in
    // mr-channel panels (channels).
    const index_t panel = plan.role == Role::positions ? nr : mr;
    T* packed_w = workspace<T, 3>(k * ceil_div(s.o, panel) * panel);
    kt.pack_b(w, 1, k, k, s.o, panel, packed_w);  // w^T's column panels are w's row panels
    const index_t* offsets = tap_offsets<0>(s, hp, wp, 0);
    for_ranges(s.n, [&](index_t begin, index_t end) {
        Epilogue<T> ep;
        // Slack: a tile at the end of the last row reads (but never stores) up to a tile past it.
        const index_t slack = std::max(mr, nr);
        T* padded = workspace<T, 4>(padded_size + slack);
        T* values = workspace<T, 5>(plan.role == Role::positions ? oh * ow * s.o : 0);  // positions x channels
        std::fill(padded, padded + padded_size + slack, T(0));
        for (index_t n = begin; n < end; ++n) {
            copy_interior(s, x + n * in_size, hp, wp, padded);
            T* yn = y + n * s.o * oh * ow;
            switch (plan.role) {
            case Role::channels:
                for (index_t oy = 0; oy < oh; ++oy)
                    for (index_t ox = 0; ox < ow; ox += nr) {
                        const int n_eff = static_cast<int>(std::min<index_t>(nr, ow - ox));
                        const T* origin = padded + oy * s.sh * wp + ox;
                        for (index_t i0 = 0; i0 < s.o; i0 += mr) {
                            const int m_eff = static_cast<int>(std::min<index_t>(mr, s.o - i0));
                            tile.channels(k, packed_w + i0 * k, origin, offsets, yn + (i0 * oh + oy) * ow + ox, oh * ow,
                                          m_eff, n_eff, ep);
                        }
                    }
                if (bias)
                    for (index_t oc = 0; oc < s.o; ++oc)
                        for (T *v = yn + oc * oh * ow, *end = v + oh * ow; v < end; ++v) *v += bias[oc];
                break;
            default:
                for (index_t oy = 0; oy < oh; ++oy)
                    for (index_t ox = 0; ox < ow; ox += mr) {
                        const int m_eff = static_cast<int>(std::min<index_t>(mr, ow - ox));
                        const T* origin = padded + oy * s.sh * wp + ox;
                        for (index_t j0 = 0; j0 < s.o; j0 += nr) {
                            const int n_eff = static_cast<int>(std::min<index_t>(nr, s.o - j0));
                            ep.bias = bias ? bias + j0 : nullptr;
                            tile.positions(k, origin, offsets, packed_w + j0 * k, values + (oy * ow + ox) * s.o + j0,
                                           s.o, m_eff, n_eff, ep);
                        }
                    }
                // The tiles filled the sample's output as positions x channels; y is channels x
                // positions: the transposing copy of pack_b, as one panel of oh*ow columns.
                kt.pack_b(values, 1, s.o, s.o, oh * ow, oh * ow, yn);
            }
        }
    });
}

// ---------------------------------------------------------------------------------------------
// Backward.

// The tile of the least cost(tile), the first such; or conv_tiles[forced] when forced >= 0.
template <class T, class Cost>
const ConvTile<T>& cheapest_tile(const KernelTable<T>& kt, int forced, Cost&& cost) {
    if (forced >= 0) return kt.conv_tiles[forced];
    int best = 0;
    for (int t = 1; t < kt.conv_tile_count; ++t)
        if (cost(kt.conv_tiles[t]) < cost(kt.conv_tiles[best])) best = t;
    return kt.conv_tiles[best];
}

// dx as the adjoint of the positions role, for any stride, padding and dilation: the gradient of
// each output position, times the kernels, is added into the window it was computed from. Per
// sample, tap (ki, kj) and row of outputs, a tile of mr neighbouring outputs times nr input
// channels, sum over the o output channels of dy[oc, oy, ox + i] * w[oc, ci, ki, kj], is added
// (beta = 1) into an NHWC copy of dx with its padding, where output (oy, ox + i) lands at row
// oy sh + ki dh, column (ox + i) sw + kj dw: tile rows sw * c apart. The interior is then
// transposed into dx. Every dx value sums its taps in the same order for any thread count.
//
// With few input channels most lanes of the tile would be idle (LeNet's first conv, c = 1, would
// use 1 of 16: 17 ms against 3.3 ms at batch 64), so when fewer than half of them hold channels,
// or when forced (ConvMethod::im2col), dx goes per sample through the lowering instead: dcols
// (k x p) = w^T (k x o) * dy_n (o x p) by the GEMM, scattered back by col2im.
template <class T>
void input_gradient(const KernelTable<T>& kt, const Conv2dShape& s, const T* w, const T* dy, T* dx,
                    const ConvChoice& choice) {
    const index_t oh = s.out_h(), ow = s.out_w(), p = oh * ow, hp = s.h + 2 * s.ph, wp = s.w + 2 * s.pw;
    const index_t taps = s.kh * s.kw, in_size = s.c * s.h * s.w;
    // The tile with the fewest multiply-adds (and read-modify-writes of its rows).
    const ConvTile<T>& tile = cheapest_tile(kt, choice.tile, [&](const ConvTile<T>& t) {
        return ceil_div(ow, t.mr) * ceil_div(s.c, t.nr) * t.mr * t.vectors * (s.o + 2);
    });
    const bool forced = choice.tile >= 0 || choice.forward != ConvMethod::automatic;
    if (choice.forward == ConvMethod::im2col || (!forced && 2 * s.c < ceil_div(s.c, tile.nr) * tile.nr)) {
        const index_t k = s.c * taps;
        for_tasks(s.n, [&](index_t n) {
            T* dcols = workspace<T, 1>(k * p);
            gemm(kt, k, p, s.o, ConstMatrix<T>{w, 1, k}, ConstMatrix<T>{dy + n * s.o * p, p, 1}, dcols, p,
                 Epilogue<T>{}, 1);
            kt.col2im(s, dcols, p, dx + n * in_size);
        });
        return;
    }
    const index_t panels = ceil_div(s.c, tile.nr), tap_size = s.o * panels * tile.nr;
    // Per tap: w[:, :, ki, kj] as an (o x c) matrix in nr-channel panels.
    T* packed = workspace<T, 7>(taps * tap_size);
    for (index_t tap = 0; tap < taps; ++tap) kt.pack_b(w + tap, s.c * taps, taps, s.o, s.c, tile.nr, packed + tap * tap_size);
    index_t* channels = workspace<index_t, 3>(s.o);  // where output channel oc starts in dy_n
    for (index_t oc = 0; oc < s.o; ++oc) channels[oc] = oc * p;
    for_ranges(s.n, [&](index_t begin, index_t end) {
        Epilogue<T> accumulate;
        accumulate.beta = 1;
        T* grad = workspace<T, 10>(hp * wp * s.c);
        for (index_t n = begin; n < end; ++n) {
            // A partial tile reads (never uses) up to mr - 1 values past the row: past the end of
            // dy for the last samples (less than mr values after their own), which are therefore
            // read from a copy with that much slack.
            const T* dyn = dy + n * s.o * p;
            if (ow % tile.mr != 0 && (s.n - 1 - n) * s.o * p < tile.mr) {
                T* copy = workspace<T, 8>(s.o * p + tile.mr);
                std::fill(std::copy(dyn, dyn + s.o * p, copy), copy + s.o * p + tile.mr, T(0));
                dyn = copy;
            }
            std::fill(grad, grad + hp * wp * s.c, T(0));
            for (index_t ki = 0; ki < s.kh; ++ki)
                for (index_t kj = 0; kj < s.kw; ++kj) {
                    const T* wt = packed + (ki * s.kw + kj) * tap_size;
                    for (index_t oy = 0; oy < oh; ++oy)
                        for (index_t ox = 0; ox < ow; ox += tile.mr) {
                            T* window = grad + ((oy * s.sh + ki * s.dh) * wp + ox * s.sw + kj * s.dw) * s.c;
                            for (index_t j = 0; j < panels; ++j)
                                tile.positions(s.o, dyn + oy * ow + ox, channels, wt + j * s.o * tile.nr, window + j * tile.nr,
                                               s.sw * s.c, static_cast<int>(std::min<index_t>(tile.mr, ow - ox)),
                                               static_cast<int>(std::min<index_t>(tile.nr, s.c - j * tile.nr)), accumulate);
                        }
                }
            T* dxn = dx + n * in_size;
            for (index_t ci = 0; ci < s.c; ++ci)
                for (index_t iy = 0; iy < s.h; ++iy) {
                    const T* from = grad + ((iy + s.ph) * wp + s.pw) * s.c + ci;
                    for (index_t ix = 0; ix < s.w; ++ix) *dxn++ = from[ix * s.c];
                }
        }
    });
}

// dw = sum over samples and output positions of dy x window, db = sums of dy (unless db is null),
// directly from the (padded) input: dw^T (taps x o) is an implicit GEMM over output positions.
// Samples go in groups of g fixed by the shape, one task each (its padded inputs, its output
// gradients packed in nr-channel panels, its partial dw^T and db); a wave of kWave groups is then
// added into dw and db in group order, so the sums are the same for any thread count.
template <class T>
void weights_gradient(const KernelTable<T>& kt, const Conv2dShape& s, const T* x, const T* dy, T* dw, T* db,
                      int tile_choice) {
    const index_t oh = s.out_h(), ow = s.out_w(), p = oh * ow, k = s.c * s.kh * s.kw, in_size = s.c * s.h * s.w;
    const bool unpadded = s.ph == 0 && s.pw == 0;
    const index_t hp = s.h + 2 * s.ph, wp = s.w + 2 * s.pw, padded_size = s.c * hp * wp;
    // The tile covering (c*kh*kw taps) x (o channels) with the fewest multiply-adds, each tap
    // offset costing registers: up to 8 stay in general-purpose registers; with more, the
    // compiler spills some and every step moves them back (measured in cache, AVX-512 float: 8
    // taps 116 GFLOP/s, 10 and 12 taps 94-100, 14 taps 84).
    const ConvTile<T>& tile = cheapest_tile(kt, tile_choice, [&](const ConvTile<T>& t) {
        const double spills = t.mr <= 8 ? 1.0 : t.mr <= 12 ? 1.15 : 1.4;
        return spills * static_cast<double>(ceil_div(k, t.mr) * ceil_div(s.o, t.nr) * t.mr * t.vectors);
    });
    const index_t panels = ceil_div(s.o, tile.nr), panel_size = p * tile.nr;
    const auto channels_in = [&](index_t j) { return std::min<index_t>(tile.nr, s.o - j * tile.nr); };  // of panel j
    const index_t per_sample = (unpadded ? 0 : padded_size) + panels * panel_size;
    // At most kWeightsGroupBytes, and at least kWave groups when there are that many samples, so
    // that a wave keeps several threads busy with equal shares.
    const index_t by_size = kWeightsGroupBytes / static_cast<index_t>(sizeof(T)) / std::max<index_t>(per_sample, 1);
    const index_t g = std::max<index_t>(1, std::min(by_size, ceil_div(s.n, kWave)));
    const index_t groups = ceil_div(s.n, g), partial_size = k * s.o + s.o;
    if (db) std::fill(db, db + s.o, T(0));
    if (s.n == 0) {
        std::fill(dw, dw + s.o * k, T(0));
        return;
    }
    const index_t* taps = tap_offsets<1>(s, hp, wp, tile.mr);
    // positions[q] for q = (sample i of the group, oy, ox): where that output's window starts.
    index_t* positions = workspace<index_t, 2>(g * p);
    for (index_t i = 0; i < g; ++i)
        for (index_t oy = 0; oy < oh; ++oy)
            for (index_t ox = 0; ox < ow; ++ox)
                positions[(i * oh + oy) * ow + ox] = i * padded_size + oy * s.sh * wp + ox * s.sw;
    T* partials = workspace<T, 6>(kWave * partial_size);
    for (index_t wave = 0; wave < groups; wave += kWave) {
        const index_t in_wave = std::min(kWave, groups - wave);
        for_tasks(in_wave, [&](index_t task) {
            const index_t first = (wave + task) * g, count = std::min(g, s.n - first);
            T* pdw = partials + task * partial_size;  // dw^T (k x o), then db
            const T* xg = x + first * in_size;
            if (!unpadded) {
                T* padded = workspace<T, 8>(g * padded_size);
                std::fill(padded, padded + count * padded_size, T(0));
                for (index_t i = 0; i < count; ++i) copy_interior(s, xg + i * in_size, hp, wp, padded + i * padded_size);
                xg = padded;
            }
            // Panel j of the group: rows q (as positions) of nr output channels [j nr, (j + 1) nr).
            T* packed_dy = workspace<T, 9>(panels * g * panel_size);
            for (index_t j = 0; j < panels; ++j)
                for (index_t i = 0; i < count; ++i)
                    kt.pack_b(dy + ((first + i) * s.o + j * tile.nr) * p, 1, p, p, channels_in(j), tile.nr,
                              packed_dy + (j * g + i) * panel_size);
            // db: the columns of the packed panels summed (each channel over its samples, then
            // positions, in order).
            for (index_t j = 0; j < panels; ++j)
                kt.column_sums(packed_dy + j * g * panel_size, count * p, channels_in(j), tile.nr,
                               pdw + k * s.o + j * tile.nr);
            for (index_t t0 = 0; t0 < k; t0 += tile.mr)
                for (index_t j = 0; j < panels; ++j)
                    tile.weights(count * p, xg, positions, taps + t0, packed_dy + j * g * panel_size,
                                 pdw + t0 * s.o + j * tile.nr, s.o, static_cast<int>(std::min<index_t>(tile.mr, k - t0)),
                                 static_cast<int>(channels_in(j)), Epilogue<T>{});
        });
        // dw (o x k) += the wave's partial dw^T (k x o) in group order, split over threads by
        // output channel (every value is summed in the same order).
        for_ranges(s.o, [&](index_t begin, index_t end) {
            for (index_t oc = begin; oc < end; ++oc)
                for (index_t task = 0; task < in_wave; ++task) {
                    const T* pdw = partials + task * partial_size;
                    T* row = dw + oc * k;
                    if (wave + task == 0)
                        for (index_t q = 0; q < k; ++q) row[q] = pdw[q * s.o + oc];
                    else
                        for (index_t q = 0; q < k; ++q) row[q] += pdw[q * s.o + oc];
                    if (db) db[oc] += pdw[k * s.o + oc];
                }
        });
    }
}

}  // namespace

template <class T>
void conv2d_forward(const KernelTable<T>& kt, const Conv2dShape& s, const T* x, const T* w, const T* bias, T* y,
                    const ConvChoice& choice) {
    if (const DirectPlan<T> plan = direct_plan(kt, s, choice); plan.role != Role::none) {
        direct_conv(kt, s, x, w, bias, y, plan);
        return;
    }
    const index_t p = s.out_h() * s.out_w(), k = s.c * s.kh * s.kw, in_size = s.c * s.h * s.w;
    const index_t g = std::max<index_t>(1, std::min<index_t>(s.n, kGroupElements / std::max<index_t>(k * p, 1)));
    const int threads = get_num_threads();
    T* cols = workspace<T, 0>(k * g * p);
    T* out = workspace<T, 2>(s.o * g * p);
    for (index_t first = 0; first < s.n; first += g) {
        const index_t count = std::min(g, s.n - first), ld = count * p;
        for_tasks(count, [&](index_t i) { kt.im2col(s, x + (first + i) * in_size, cols + i * p, ld); });
        // out (o x count*p) = w (o x k) * cols (k x count*p); then out's columns of sample i, plus the
        // bias of each row, are sample i's (o, p) output.
        gemm(kt, s.o, ld, k, ConstMatrix<T>{w, k, 1}, ConstMatrix<T>{cols, ld, 1}, out, ld, Epilogue<T>{}, threads);
        for_tasks(count, [&](index_t i) {
            T* yi = y + (first + i) * s.o * p;
            for (index_t oc = 0; oc < s.o; ++oc) {
                const T* src = out + oc * ld + i * p;
                if (bias)
                    for (index_t j = 0; j < p; ++j) yi[oc * p + j] = src[j] + bias[oc];
                else
                    std::copy(src, src + p, yi + oc * p);
            }
        });
    }
}

template <class T>
void conv2d_backward(const KernelTable<T>& kt, const Conv2dShape& s, const T* x, const T* w, const T* dy, T* dx,
                     T* dw, T* db, const ConvChoice& choice) {
    if (dx && s.n > 0) input_gradient(kt, s, w, dy, dx, choice);
    weights_gradient(kt, s, x, dy, dw, db, choice.tile);
}

template void conv2d_forward<float>(const KernelTable<float>&, const Conv2dShape&, const float*, const float*,
                                    const float*, float*, const ConvChoice&);
template void conv2d_forward<double>(const KernelTable<double>&, const Conv2dShape&, const double*, const double*,
                                     const double*, double*, const ConvChoice&);
template void conv2d_backward<float>(const KernelTable<float>&, const Conv2dShape&, const float*, const float*,
                                     const float*, float*, float*, float*, const ConvChoice&);
template void conv2d_backward<double>(const KernelTable<double>&, const Conv2dShape&, const double*, const double*,
                                      const double*, double*, double*, double*, const ConvChoice&);

}  // namespace nncore
