// The geometry of a 2-D convolution, shared by the conv driver (conv.h) and the per-ISA lowering
// kernels (im2col / col2im in the kernel table).
#pragma once

#include "common.h"

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

}  // namespace nncore
