// 2-D convolution (cross-correlation, as PyTorch's conv2d) on contiguous NCHW buffers, through
// im2col and the shared GEMM. ISA-agnostic: each function takes the kernel table to use.
#pragma once

#include "common.h"
#include "dispatch.h"

namespace nncore {

// Geometry of one conv2d: input (n, c, h, w), weights (o, c, kh, kw), output (n, o, oh, ow) with
// oh = (h + 2 ph - dh (kh - 1) - 1) / sh + 1 (likewise ow). Zero padding.
struct Conv2dShape {
    index_t n = 0, c = 0, h = 0, w = 0;
    index_t o = 0, kh = 0, kw = 0;
    index_t sh = 1, sw = 1, ph = 0, pw = 0, dh = 1, dw = 1;
    index_t out_h() const { return (h + 2 * ph - dh * (kh - 1) - 1) / sh + 1; }
    index_t out_w() const { return (w + 2 * pw - dw * (kw - 1) - 1) / sw + 1; }
    // False when a size is not positive (n may be 0) or the dilated kernel exceeds the padded input.
    bool valid() const {
        return n >= 0 && c > 0 && h > 0 && w > 0 && o > 0 && kh > 0 && kw > 0 && sh > 0 && sw > 0 && ph >= 0 &&
               pw >= 0 && dh > 0 && dw > 0 && h + 2 * ph >= dh * (kh - 1) + 1 && w + 2 * pw >= dw * (kw - 1) + 1;
    }
};

// y = conv(x, w) + bias[o] (bias may be null). Per sample: im2col into a reused thread-local
// workspace, then one GEMM (o x c*kh*kw) * (c*kh*kw x oh*ow). The bias is broadcast along rows of
// the NCHW output, which the column-bias epilogue cannot express, so it is written into y first and
// the GEMM accumulates onto it (beta = 1). Bit-identical for any thread count (GEMM never splits k).
template <class T>
void conv2d_forward(const KernelTable<T>& kt, const Conv2dShape& s, const T* x, const T* w, const T* bias, T* y);

// Given dy (n, o, oh, ow): dw = sum over samples of dy_n * cols_n^T, db = sums of dy over n, oh, ow
// (skipped when db is null), dx = col2im(w^T dy_n) (skipped when dx is null).
template <class T>
void conv2d_backward(const KernelTable<T>& kt, const Conv2dShape& s, const T* x, const T* w, const T* dy, T* dx,
                     T* dw, T* db);

}  // namespace nncore
