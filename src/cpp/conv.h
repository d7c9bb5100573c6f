// 2-D convolution (cross-correlation, as PyTorch's conv2d) on contiguous NCHW buffers: direct
// micro-kernels, or im2col and the shared GEMM. ISA-agnostic: each function takes the kernel table.
#pragma once

#include "common.h"
#include "conv_shape.h"
#include "dispatch.h"

namespace nncore {

// y = conv(x, w) + bias[o] (bias may be null). With a unit width stride and well-filled register
// tiles, directly: each sample zero-padded into a reused buffer and read in place by the conv
// micro-kernels (samples split over threads). Otherwise samples go in groups (a size fixed by the
// shape): im2col of the group side by side (one task per sample), one threaded GEMM
// (o x c*kh*kw) * (c*kh*kw x group*oh*ow), then each sample's block copied to NCHW with the bias.
// Bit-identical for any thread count (GEMM never splits k).
template <class T>
void conv2d_forward(const KernelTable<T>& kt, const Conv2dShape& s, const T* x, const T* w, const T* bias, T* y);

// Given dy (n, o, oh, ow): dw = sum over samples of dy_n * cols_n^T, db = sums of dy over n, oh, ow
// (skipped when db is null), dx = col2im(w^T dy_n) (skipped when dx is null). Samples go in groups
// fixed by the shape, one task each (im2col, its partial dw and db, its dx); the partials are added
// in group order, so the sums do not depend on the thread count.
template <class T>
void conv2d_backward(const KernelTable<T>& kt, const Conv2dShape& s, const T* x, const T* w, const T* dy, T* dx,
                     T* dw, T* db);

}  // namespace nncore
