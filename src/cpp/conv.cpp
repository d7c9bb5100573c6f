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

// cols (c*kh*kw x oh*ow): row (ci, ki, kj), column (oy, ox) holds x[ci, oy*sh - ph + ki*dh, ox*sw - pw + kj*dw],
// zero outside the input.
template <class T>
void im2col(const Conv2dShape& s, const T* x, T* cols) {
    const index_t oh = s.out_h(), ow = s.out_w();
    for (index_t ci = 0; ci < s.c; ++ci)
        for (index_t ki = 0; ki < s.kh; ++ki)
            for (index_t kj = 0; kj < s.kw; ++kj) {
                T* row = cols + ((ci * s.kh + ki) * s.kw + kj) * oh * ow;
                const T* plane = x + ci * s.h * s.w;
                for (index_t oy = 0; oy < oh; ++oy) {
                    T* out = row + oy * ow;
                    const index_t iy = oy * s.sh - s.ph + ki * s.dh;
                    if (iy < 0 || iy >= s.h) {
                        std::fill(out, out + ow, T(0));
                        continue;
                    }
                    const T* in = plane + iy * s.w;
                    const index_t x0 = kj * s.dw - s.pw;
                    for (index_t ox = 0; ox < ow; ++ox) {
                        const index_t ix = ox * s.sw + x0;
                        out[ox] = (ix >= 0 && ix < s.w) ? in[ix] : T(0);
                    }
                }
            }
}

// The adjoint of im2col: dx (c, h, w) += scatter of cols. dx must be zeroed by the caller.
template <class T>
void col2im(const Conv2dShape& s, const T* cols, T* dx) {
    const index_t oh = s.out_h(), ow = s.out_w();
    for (index_t ci = 0; ci < s.c; ++ci)
        for (index_t ki = 0; ki < s.kh; ++ki)
            for (index_t kj = 0; kj < s.kw; ++kj) {
                const T* row = cols + ((ci * s.kh + ki) * s.kw + kj) * oh * ow;
                T* plane = dx + ci * s.h * s.w;
                for (index_t oy = 0; oy < oh; ++oy) {
                    const index_t iy = oy * s.sh - s.ph + ki * s.dh;
                    if (iy < 0 || iy >= s.h) continue;
                    const T* in = row + oy * ow;
                    T* out = plane + iy * s.w;
                    const index_t x0 = kj * s.dw - s.pw;
                    for (index_t ox = 0; ox < ow; ++ox) {
                        const index_t ix = ox * s.sw + x0;
                        if (ix >= 0 && ix < s.w) out[ix] += in[ox];
                    }
                }
            }
}

}  // namespace

template <class T>
void conv2d_forward(const KernelTable<T>& kt, const Conv2dShape& s, const T* x, const T* w, const T* bias, T* y) {
    const index_t oh = s.out_h(), ow = s.out_w(), p = oh * ow, k = s.c * s.kh * s.kw;
    const int threads = get_num_threads();
    T* cols = workspace<T, 0>(k * p);
    Epilogue<T> ep;
    ep.beta = bias ? 1 : 0;
    for (index_t i = 0; i < s.n; ++i) {
        im2col(s, x + i * s.c * s.h * s.w, cols);
        T* yi = y + i * s.o * p;
        if (bias)
            for (index_t oc = 0; oc < s.o; ++oc) std::fill(yi + oc * p, yi + (oc + 1) * p, bias[oc]);
        gemm(kt, s.o, p, k, ConstMatrix<T>{w, k, 1}, ConstMatrix<T>{cols, p, 1}, yi, p, ep, threads);
    }
}

template <class T>
void conv2d_backward(const KernelTable<T>& kt, const Conv2dShape& s, const T* x, const T* w, const T* dy, T* dx,
                     T* dw, T* db) {
    const index_t oh = s.out_h(), ow = s.out_w(), p = oh * ow, k = s.c * s.kh * s.kw;
    const int threads = get_num_threads();
    if (db) {
        for (index_t oc = 0; oc < s.o; ++oc) db[oc] = T(0);
        for (index_t i = 0; i < s.n; ++i)
            for (index_t oc = 0; oc < s.o; ++oc) {
                const T* g = dy + (i * s.o + oc) * p;
                T sum = T(0);
                for (index_t j = 0; j < p; ++j) sum += g[j];
                db[oc] += sum;
            }
    }
    if (s.n == 0) {
        std::fill(dw, dw + s.o * k, T(0));
        return;
    }
    T* cols = workspace<T, 0>(k * p);
    T* dcols = dx ? workspace<T, 1>(k * p) : nullptr;
    for (index_t i = 0; i < s.n; ++i) {
        const T* dyi = dy + i * s.o * p;
        im2col(s, x + i * s.c * s.h * s.w, cols);
        Epilogue<T> ep;
        ep.beta = i == 0 ? 0 : 1;
        // dw (o x k) += dy_i (o x p) * cols^T (p x k)
        gemm(kt, s.o, k, p, ConstMatrix<T>{dyi, p, 1}, ConstMatrix<T>{cols, 1, p}, dw, k, ep, threads);
        if (dx) {
            // dcols (k x p) = w^T (k x o) * dy_i (o x p)
            gemm(kt, k, p, s.o, ConstMatrix<T>{w, 1, k}, ConstMatrix<T>{dyi, p, 1}, dcols, p, Epilogue<T>{}, threads);
            T* dxi = dx + i * s.c * s.h * s.w;
            std::fill(dxi, dxi + s.c * s.h * s.w, T(0));
            col2im(s, dcols, dxi);
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
