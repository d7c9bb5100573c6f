// Layer-level operations on raw contiguous buffers, ISA-agnostic: each takes the kernel table to
// use (so tests can run every ISA) and splits its work over the thread pool.
#pragma once

#include "common.h"
#include "dispatch.h"

namespace nncore {

// y (batch x out) = act(x (batch x in) * w^T + bias), with w stored (out x in) as in PyTorch.
template <class T>
void linear_forward(const KernelTable<T>& kt, index_t batch, index_t in, index_t out, const T* x,
                    const T* w, const T* bias, Act act, T alpha, T* y);

// Given dz = dL/d(pre-activation) (batch x out): dx = dz * w (skipped when dx is null),
// dw = dz^T * x, db = column sums of dz (skipped when db is null).
template <class T>
void linear_backward(const KernelTable<T>& kt, index_t batch, index_t in, index_t out, const T* x,
                     const T* w, const T* dz, T* dx, T* dw, T* db);

template <class T>
void activation_forward(const KernelTable<T>& kt, Act act, T alpha, const T* x, T* y, index_t n);
template <class T>
void activation_backward(const KernelTable<T>& kt, Act act, T alpha, const T* x, const T* y,
                         const T* dy, T* dx, index_t n);
template <class T>
void exp(const KernelTable<T>& kt, const T* x, T* y, index_t n);
template <class T>
void softmax_forward(const KernelTable<T>& kt, const T* x, T* y, index_t rows, index_t cols);
template <class T>
void softmax_backward(const KernelTable<T>& kt, const T* y, const T* dy, T* dx, index_t rows,
                      index_t cols);

}  // namespace nncore
