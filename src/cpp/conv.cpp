#include "conv.h"

#include <algorithm>
#include <vector>

#include "gemm.h"
#include "thread_pool.h"

namespace nncore {

namespace {

// A per-thread buffer grown when needed and then reused, so repeated calls do not allocate.
template <class T, int Slot>
T* workspace(index_t count) {
    thread_local std::vector<T> buffer;
    if (buffer.size() < static_cast<std::size_t>(count)) buffer.resize(static_cast<std::size_t>(count));
    return buffer.data();
}

// Samples are processed in groups of g, a count fixed by the shape alone (never by the thread
// count), so every sum is formed in the same order whatever the number of threads.
// The group's columns (c*kh*kw x g*oh*ow, row stride ld) hold the samples' im2col blocks side by side.
constexpr index_t kGroupElements = index_t(1) << 20;  // cols of one group: at most ~4 MB in float32
// The backward takes smaller groups: dw = dy cols^T then reduces along rows that are contiguous in
// both operands, which the GEMM computes without packing (its dot path) while cols stays below
// ~900 KB, and packing cols^T would be a transposing copy as costly as the product itself.
constexpr index_t kDotGroupBytes = index_t(768) << 10;

index_t group_size(const Conv2dShape& s, index_t elements = kGroupElements) {
    const index_t per_sample = s.c * s.kh * s.kw * s.out_h() * s.out_w();
    return std::max<index_t>(1, std::min<index_t>(s.n, elements / std::max<index_t>(per_sample, 1)));
}

// Runs f(i) for i in [0, count), one task per sample, over the thread pool.
template <class F>
void for_samples(index_t count, F&& f) {
    parallel_for(static_cast<int>(count), [&](int i) { f(static_cast<index_t>(i)); });
}

// ---------------------------------------------------------------------------------------------
// Direct convolution (no im2col) for a unit width stride: each sample is copied into a zero-padded
// buffer that the conv micro-kernels read in place through a table of tap offsets, instead of
// expanding the input c*kh*kw-fold. Two tile shapes: MR neighbouring positions of a row times NR
// output channels (the tile is then transposed into y), or, for few channels and long rows, MR
// channels times NR positions (stored straight into y). Each is used when its tiles are mostly
// filled: at least 50% of the multiply-adds of the partial tiles (at the end of a row, and of the
// channels) are real, and more than with the other shape; else im2col + GEMM.
enum class Direct { none, positions, channels };

template <class T>
Direct direct_shape(const KernelTable<T>& kt, const Conv2dShape& s) {
    const auto fill = [](index_t used, index_t tile) {
        return static_cast<double>(used) / static_cast<double>((used + tile - 1) / tile * tile);
    };
    const index_t ow = s.out_w();
    const double positions = fill(ow, kt.mr) * fill(s.o, kt.nr), channels = fill(s.o, kt.mr) * fill(ow, kt.nr);
    if (s.sw != 1 || std::max(positions, channels) < 0.5) return Direct::none;
    return positions >= channels ? Direct::positions : Direct::channels;
}

// The weights w (o, c, kh, kw) packed for the chosen kernel: w^T (c*kh*kw x o) in NR-channel panels
// (positions), or w in MR-channel panels (channels).
template <class T>
const T* pack_weights(const KernelTable<T>& kt, const Conv2dShape& s, const T* w, Direct shape) {
    const index_t k = s.c * s.kh * s.kw;
    const int tile = shape == Direct::positions ? kt.nr : kt.mr;
    T* packed = workspace<T, 3>(k * ((s.o + tile - 1) / tile * tile));
    if (shape == Direct::positions) kt.pack_b(w, 1, k, k, s.o, kt.nr, packed);
    else kt.pack_a(w, k, 1, s.o, k, kt.mr, packed);
    return packed;
}

// y (n, o, oh, ow) = conv(x, w) + bias (bias may be null), s.sw == 1.
template <class T>
void direct_conv(const KernelTable<T>& kt, const Conv2dShape& s, const T* x, const T* w, const T* bias, T* y,
                 Direct shape) {
    const index_t oh = s.out_h(), ow = s.out_w(), hp = s.h + 2 * s.ph, wp = s.w + 2 * s.pw;
    const index_t k = s.c * s.kh * s.kw, in_size = s.c * s.h * s.w, padded_size = s.c * hp * wp;
    const int mr = kt.mr, nr = kt.nr;
    const T* packed_w = pack_weights(kt, s, w, shape);
    index_t* offsets = workspace<index_t, 0>(k);
    for (index_t ci = 0; ci < s.c; ++ci)
        for (index_t ki = 0; ki < s.kh; ++ki)
            for (index_t kj = 0; kj < s.kw; ++kj)
                offsets[(ci * s.kh + ki) * s.kw + kj] = ci * hp * wp + ki * s.dh * wp + kj * s.dw;
    const index_t parts = std::min<index_t>(s.n, get_num_threads());
    parallel_for(static_cast<int>(parts), [&](int part) {
        Epilogue<T> ep;
        // Slack: a tile at the end of the last row reads (but never stores) up to a tile past it.
        const index_t slack = std::max(mr, nr);
        T* padded = workspace<T, 4>(padded_size + slack);
        T* tile = workspace<T, 5>(static_cast<index_t>(mr) * nr);
        std::fill(padded, padded + padded_size + slack, T(0));
        for (index_t n = s.n * part / parts; n < s.n * (part + 1) / parts; ++n) {
            const T* xn = x + n * in_size;
            for (index_t ci = 0; ci < s.c; ++ci)
                for (index_t iy = 0; iy < s.h; ++iy)
                    std::copy(xn + (ci * s.h + iy) * s.w, xn + (ci * s.h + iy + 1) * s.w,
                              padded + (ci * hp + iy + s.ph) * wp + s.pw);
            T* yn = y + n * s.o * oh * ow;
            if (shape == Direct::channels) {
                for (index_t oy = 0; oy < oh; ++oy)
                    for (index_t ox = 0; ox < ow; ox += nr) {
                        const int n_eff = static_cast<int>(std::min<index_t>(nr, ow - ox));
                        const T* origin = padded + oy * s.sh * wp + ox;
                        for (index_t i0 = 0; i0 < s.o; i0 += mr) {
                            const int m_eff = static_cast<int>(std::min<index_t>(mr, s.o - i0));
                            kt.conv_ukernel_channels(k, packed_w + i0 * k, origin, offsets, yn + (i0 * oh + oy) * ow + ox,
                                                     oh * ow, m_eff, n_eff, ep);
                        }
                    }
                if (bias)
                    for (index_t oc = 0; oc < s.o; ++oc)
                        for (T *v = yn + oc * oh * ow, *end = v + oh * ow; v < end; ++v) *v += bias[oc];
                continue;
            }
            for (index_t oy = 0; oy < oh; ++oy)
                for (index_t ox = 0; ox < ow; ox += mr) {
                    const int m_eff = static_cast<int>(std::min<index_t>(mr, ow - ox));
                    const T* origin = padded + oy * s.sh * wp + ox;
                    for (index_t j0 = 0; j0 < s.o; j0 += nr) {
                        const int n_eff = static_cast<int>(std::min<index_t>(nr, s.o - j0));
                        ep.bias = bias ? bias + j0 : nullptr;
                        kt.conv_ukernel(k, origin, offsets, packed_w + j0 * k, tile, nr, m_eff, n_eff, ep);
                        // The tile is positions x channels; y is channels x positions.
                        for (int j = 0; j < n_eff; ++j) {
                            T* dst = yn + ((j0 + j) * oh + oy) * ow + ox;
                            for (int i = 0; i < m_eff; ++i) dst[i] = tile[i * nr + j];
                        }
                    }
                }
        }
    });
}

}  // namespace

template <class T>
void conv2d_forward(const KernelTable<T>& kt, const Conv2dShape& s, const T* x, const T* w, const T* bias, T* y) {
    if (const Direct shape = direct_shape(kt, s); shape != Direct::none) {
        direct_conv(kt, s, x, w, bias, y, shape);
        return;
    }
    const index_t p = s.out_h() * s.out_w(), k = s.c * s.kh * s.kw, in_size = s.c * s.h * s.w;
    const index_t g = group_size(s);
    const int threads = get_num_threads();
    T* cols = workspace<T, 0>(k * g * p);
    T* out = workspace<T, 2>(s.o * g * p);
    for (index_t first = 0; first < s.n; first += g) {
        const index_t count = std::min(g, s.n - first), ld = count * p;
        for_samples(count, [&](index_t i) { kt.im2col(s, x + (first + i) * in_size, cols + i * p, ld); });
        // out (o x count*p) = w (o x k) * cols (k x count*p); then out's columns of sample i, plus the
        // bias of each row, are sample i's (o, p) output.
        gemm(kt, s.o, ld, k, ConstMatrix<T>{w, k, 1}, ConstMatrix<T>{cols, ld, 1}, out, ld, Epilogue<T>{}, threads);
        for_samples(count, [&](index_t i) {
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
                     T* dw, T* db) {
    const index_t p = s.out_h() * s.out_w(), k = s.c * s.kh * s.kw, in_size = s.c * s.h * s.w;
    const index_t g = group_size(s, kDotGroupBytes / static_cast<index_t>(sizeof(T)));
    const index_t groups = (s.n + g - 1) / g, partial_size = s.o * k + s.o;
    if (db) std::fill(db, db + s.o, T(0));
    if (s.n == 0) {
        std::fill(dw, dw + s.o * k, T(0));
        return;
    }
    // Each group is one task (one thread, no synchronisation inside): it fills its own partial dw
    // and db; a wave of kWave groups is then summed into dw and db in group order. Groups and waves
    // depend on the shape only, so the sums are the same for any thread count.
    constexpr index_t kWave = 8;
    T* partials = workspace<T, 6>(kWave * partial_size);
    for (index_t wave = 0; wave < groups; wave += kWave) {
        const index_t in_wave = std::min(kWave, groups - wave);
        parallel_for(static_cast<int>(in_wave), [&](int task) {
            const index_t first = (wave + task) * g, count = std::min(g, s.n - first), ld = count * p;
            T* cols = workspace<T, 0>(k * g * p);
            T* grad = workspace<T, 2>(s.o * g * p);
            T* pdw = partials + task * partial_size;
            // grad (o x count*p): the group's output gradient with samples side by side.
            for (index_t i = 0; i < count; ++i) {
                kt.im2col(s, x + (first + i) * in_size, cols + i * p, ld);
                const T* dyi = dy + (first + i) * s.o * p;
                for (index_t oc = 0; oc < s.o; ++oc)
                    std::copy(dyi + oc * p, dyi + (oc + 1) * p, grad + oc * ld + i * p);
            }
            for (index_t oc = 0; oc < s.o; ++oc) {
                const T* row = grad + oc * ld;
                T sum = T(0);
                for (index_t j = 0; j < ld; ++j) sum += row[j];
                pdw[s.o * k + oc] = sum;
            }
            // partial dw (o x k) = grad (o x count*p) * cols^T (count*p x k)
            gemm(kt, s.o, k, ld, ConstMatrix<T>{grad, ld, 1}, ConstMatrix<T>{cols, 1, ld}, pdw, k, Epilogue<T>{}, 1);
            if (dx) {
                // dcols (k x count*p) = w^T (k x o) * grad (o x count*p), scattered back per sample.
                T* dcols = workspace<T, 1>(k * g * p);
                gemm(kt, k, ld, s.o, ConstMatrix<T>{w, 1, k}, ConstMatrix<T>{grad, ld, 1}, dcols, ld, Epilogue<T>{}, 1);
                for (index_t i = 0; i < count; ++i) kt.col2im(s, dcols + i * p, ld, dx + (first + i) * in_size);
            }
        });
        for (index_t task = 0; task < in_wave; ++task) {
            const T* pdw = partials + task * partial_size;
            if (wave + task == 0) std::copy(pdw, pdw + s.o * k, dw);
            else
                for (index_t j = 0; j < s.o * k; ++j) dw[j] += pdw[j];
            if (db)
                for (index_t oc = 0; oc < s.o; ++oc) db[oc] += pdw[s.o * k + oc];
        }
    }
}

template void conv2d_forward<float>(const KernelTable<float>&, const Conv2dShape&, const float*, const float*,
                                    const float*, float*);
template void conv2d_forward<double>(const KernelTable<double>&, const Conv2dShape&, const double*, const double*,
                                     const double*, double*);
template void conv2d_backward<float>(const KernelTable<float>&, const Conv2dShape&, const float*, const float*,
                                     const float*, float*, float*, float*);
template void conv2d_backward<double>(const KernelTable<double>&, const Conv2dShape&, const double*, const double*,
                                      const double*, double*, double*, double*);

}  // namespace nncore
