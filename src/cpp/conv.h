// 2-D convolution (cross-correlation, as PyTorch's conv2d) on contiguous NCHW buffers: direct
// micro-kernels (implicit GEMMs over the padded input), or im2col and the shared GEMM. ISA-agnostic: each function takes the kernel table.
#pragma once

#include "common.h"
#include "conv_shape.h"
#include "dispatch.h"

namespace nncore {

// How a call is computed; the default lets the cost model in conv.cpp choose. Tests force each
// register tile (an index into kt.conv_tiles) and each forward method in turn (im2col also sends
// dx through col2im).
enum class ConvMethod { automatic, positions, channels, im2col };
struct ConvChoice {
    ConvMethod forward = ConvMethod::automatic;
    int tile = -1;
};

// y = conv(x, w) + bias[o] (bias may be null). With a unit width stride and well-filled register
// tiles, directly: each sample zero-padded into a reused buffer and read in place by a register
// tile of mr positions x nr channels or mr channels x nr positions (samples split over threads).
// Otherwise samples go in groups (a size fixed by the shape): im2col of the group side by side (one
// task per sample), one threaded GEMM (o x c*kh*kw) * (c*kh*kw x group*oh*ow), then each sample's
// block copied to NCHW with the bias. Bit-identical for any thread count (no sum is ever split).
template <class T>
void conv2d_forward(const KernelTable<T>& kt, const Conv2dShape& s, const T* x, const T* w, const T* bias, T* y,
                    const ConvChoice& choice = {});

// Given dy (n, o, oh, ow): dx (skipped when null) by adding each output's gradient times the
// kernels into its window, a register tile of mr outputs x nr input channels per tap (samples split
// over threads), or for few input channels by w^T dy_n and col2im per sample; dw as an implicit
// GEMM over output positions straight from the padded input, and db = sums of dy over n, oh, ow
// (skipped when null), in groups of samples fixed by the shape, one task each, whose partial sums
// are added in group order. No sum depends on the thread count.
template <class T>
void conv2d_backward(const KernelTable<T>& kt, const Conv2dShape& s, const T* x, const T* w, const T* dy, T* dx,
                     T* dw, T* db, const ConvChoice& choice = {});

}  // namespace nncore
