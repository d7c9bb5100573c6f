#include "pool.h"

#include <algorithm>
#include <cmath>

#include "thread_pool.h"

namespace nncore {

namespace {

// body(plane) for every plane (n * c of them), split over the pool in contiguous runs.
template <class Body>
void for_each_plane(const Pool2dShape& s, Body&& body) {
    const index_t planes = s.n * s.c;
    const index_t per_plane = std::max<index_t>(1, s.h * s.w);
    const index_t min_planes = std::max<index_t>(1, (index_t(1) << 14) / per_plane);
    parallel_ranges(planes, static_cast<int>(std::min<index_t>(get_num_threads(), planes / min_planes)),
                    [&](index_t p0, index_t p1) {
                        for (index_t p = p0; p < p1; ++p) body(p);
                    });
}

// Offset (within the plane) of the first maximum of the window at (oy, ox).
template <class T>
index_t argmax(const Pool2dShape& s, const T* plane, index_t oy, index_t ox) {
    index_t best = oy * s.sh * s.w + ox * s.sw;
    T m = plane[best];
    if (std::isnan(m)) return best;
    for (index_t i = 0; i < s.kh; ++i)
        for (index_t j = 0; j < s.kw; ++j) {
            const index_t at = (oy * s.sh + i) * s.w + ox * s.sw + j;
            const T v = plane[at];
            if (std::isnan(v)) return at;
            if (v > m) m = v, best = at;
        }
    return best;
}

bool is_2x2(const Pool2dShape& s) {
    return s.kh == 2 && s.kw == 2 && s.sh == 2 && s.sw == 2;
}

}  // namespace

template <class T>
void max_pool2d_forward(const KernelTable<T>& kt, const Pool2dShape& s, const T* x, T* y) {
    const index_t oh = s.out_h(), ow = s.out_w();
    if (is_2x2(s)) {
        for_each_plane(s, [&](index_t p) { kt.max_pool2x2_forward(x + p * s.h * s.w, s.h, s.w, y + p * oh * ow); });
        return;
    }
    for_each_plane(s, [&](index_t p) {
        const T* plane = x + p * s.h * s.w;
        T* out = y + p * oh * ow;
        for (index_t oy = 0; oy < oh; ++oy)
            for (index_t ox = 0; ox < ow; ++ox) out[oy * ow + ox] = plane[argmax(s, plane, oy, ox)];
    });
}

template <class T>
void max_pool2d_backward(const KernelTable<T>& kt, const Pool2dShape& s, const T* x, const T* dy, T* dx) {
    const index_t oh = s.out_h(), ow = s.out_w();
    if (is_2x2(s)) {
        // Windows do not overlap: the kernel writes each value of dx once, with no zero fill first.
        for_each_plane(s, [&](index_t p) {
            kt.max_pool2x2_backward(x + p * s.h * s.w, dy + p * oh * ow, s.h, s.w, dx + p * s.h * s.w);
        });
        return;
    }
    for_each_plane(s, [&](index_t p) {
        const T* plane = x + p * s.h * s.w;
        const T* g = dy + p * oh * ow;
        T* d = dx + p * s.h * s.w;
        std::fill(d, d + s.h * s.w, T(0));
        for (index_t oy = 0; oy < oh; ++oy)
            for (index_t ox = 0; ox < ow; ++ox) d[argmax(s, plane, oy, ox)] += g[oy * ow + ox];
    });
}

template <class T>
void avg_pool2d_forward(const Pool2dShape& s, const T* x, T* y) {
    const index_t oh = s.out_h(), ow = s.out_w();
    const T inv = T(1) / static_cast<T>(s.kh * s.kw);
    for_each_plane(s, [&](index_t p) {
        const T* plane = x + p * s.h * s.w;
        T* out = y + p * oh * ow;
        for (index_t oy = 0; oy < oh; ++oy)
            for (index_t ox = 0; ox < ow; ++ox) {
                T sum = T(0);
                for (index_t i = 0; i < s.kh; ++i)
                    for (index_t j = 0; j < s.kw; ++j) sum += plane[(oy * s.sh + i) * s.w + ox * s.sw + j];
                out[oy * ow + ox] = sum * inv;
            }
    });
}

template <class T>
void avg_pool2d_backward(const Pool2dShape& s, const T* dy, T* dx) {
    const index_t oh = s.out_h(), ow = s.out_w();
    const T inv = T(1) / static_cast<T>(s.kh * s.kw);
    for_each_plane(s, [&](index_t p) {
        const T* g = dy + p * oh * ow;
        T* d = dx + p * s.h * s.w;
        std::fill(d, d + s.h * s.w, T(0));
        for (index_t oy = 0; oy < oh; ++oy)
            for (index_t ox = 0; ox < ow; ++ox) {
                const T v = g[oy * ow + ox] * inv;
                for (index_t i = 0; i < s.kh; ++i)
                    for (index_t j = 0; j < s.kw; ++j) d[(oy * s.sh + i) * s.w + ox * s.sw + j] += v;
            }
    });
}

#define NNCORE_POOL_INSTANTIATE(T)                                                                         \
    template void max_pool2d_forward<T>(const KernelTable<T>&, const Pool2dShape&, const T*, T*);             \
    template void max_pool2d_backward<T>(const KernelTable<T>&, const Pool2dShape&, const T*, const T*, T*); \
    template void avg_pool2d_forward<T>(const Pool2dShape&, const T*, T*);                                 \
    template void avg_pool2d_backward<T>(const Pool2dShape&, const T*, T*);
NNCORE_POOL_INSTANTIATE(float)
NNCORE_POOL_INSTANTIATE(double)
#undef NNCORE_POOL_INSTANTIATE

}  // namespace nncore
