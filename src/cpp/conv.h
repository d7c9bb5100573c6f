// 2-D convolution (cross-correlation, as PyTorch's conv2d) on contiguous NCHW buffers, through
// im2col and the shared GEMM. ISA-agnostic: each function takes the kernel table to use.
#pragma once

#include "common.h"
#include "conv_shape.h"
#include "dispatch.h"

namespace nncore {

// y = conv(x, w) + bias[o] (bias may be null). Samples go in groups (a size fixed by the shape):
// im2col of the group's samples side by side into a reused thread-local workspace (one task per
// sample), one GEMM (o x c*kh*kw) * (c*kh*kw x group*oh*ow), then each sample's block copied to
// NCHW with the bias added. Bit-identical for any thread count (GEMM never splits k).
template <class T>
void conv2d_forward(const KernelTable<T>& kt, const Conv2dShape& s, const T* x, const T* w, const T* bias, T* y);

// Given dy (n, o, oh, ow), per group of samples as in the forward: dw (+)= dy_group * cols_group^T,
// db = sums of dy over n, oh, ow (skipped when db is null), dx = col2im(w^T dy_group) (skipped when
// dx is null).
template <class T>
void conv2d_backward(const KernelTable<T>& kt, const Conv2dShape& s, const T* x, const T* w, const T* dy, T* dx,
                     T* dw, T* db);

}  // namespace nncore
