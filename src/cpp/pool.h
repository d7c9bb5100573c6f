// 2-D max and average pooling on contiguous NCHW buffers (no padding): input (n, c, h, w), window
// kh x kw moved by (sh, sw), output (n, c, (h - kh) / sh + 1, (w - kw) / sw + 1). Planes are split
// over the thread pool; each plane is computed the same way for any thread count.
#pragma once

#include "common.h"
#include "dispatch.h"

namespace nncore {

struct Pool2dShape {
    index_t n = 0, c = 0, h = 0, w = 0, kh = 1, kw = 1, sh = 1, sw = 1;
    index_t out_h() const { return (h - kh) / sh + 1; }
    index_t out_w() const { return (w - kw) / sw + 1; }
    bool valid() const { return n >= 0 && c > 0 && kh > 0 && kw > 0 && sh > 0 && sw > 0 && h >= kh && w >= kw; }
};

// Max pooling takes the first maximum of each window in row-major order and a NaN wins, as in
// PyTorch; of several NaNs in one window the first is taken (PyTorch's CPU kernel takes the last,
// so its gradient goes to another position then). The backward recomputes that choice from x and
// routes dy there (overlapping windows add up). The 2x2 window with stride 2 runs kt's kernels (see dispatch.h).
template <class T>
void max_pool2d_forward(const KernelTable<T>& kt, const Pool2dShape& s, const T* x, T* y);
template <class T>
void max_pool2d_backward(const KernelTable<T>& kt, const Pool2dShape& s, const T* x, const T* dy, T* dx);

template <class T>
void avg_pool2d_forward(const Pool2dShape& s, const T* x, T* y);
template <class T>
void avg_pool2d_backward(const Pool2dShape& s, const T* dy, T* dx);

}  // namespace nncore
