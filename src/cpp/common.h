// Shared vocabulary of the native core: ISA names, activation kinds and the GEMM epilogue.
#pragma once

#include <cstddef>
#include <cstdint>

namespace nncore {

using index_t = std::ptrdiff_t;

enum class Isa : int { scalar = 0, avx2 = 1, avx512 = 2 };
constexpr int kIsaCount = 3;
const char* isa_name(Isa isa);

// Activations that kernels know natively. The backward of each is computed from the forward
// input x (relu, leaky_relu, gelu, gelu_tanh) or the forward output y (tanh, sigmoid), whichever
// is exact.
//   gelu:      x * Phi(x) = 0.5 x (1 + erf(x / sqrt 2)), PyTorch's default GELU
//   gelu_tanh: 0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3))), PyTorch's approximate='tanh'
enum class Act : int { identity = 0, relu = 1, leaky_relu = 2, tanh = 3, sigmoid = 4, gelu = 5, gelu_tanh = 6 };

// True when the activation's derivative is read from the forward input x (else from its output y).
constexpr bool act_backward_reads_input(Act act) {
    return act == Act::relu || act == Act::leaky_relu || act == Act::gelu || act == Act::gelu_tanh;
}
constexpr bool act_backward_reads_output(Act act) { return act == Act::tanh || act == Act::sigmoid; }

// Elementwise losses of (y_true t, y_pred p); each kernel returns per-element loss sums and,
// when asked, the gradient d(loss)/dp times a scale.
//   squared_error:               (p - t)^2,                            grad 2 (p - t)
//   absolute_error:              |p - t|,                              grad sign(p - t) (0 at 0)
//   binary_cross_entropy:        -(t log p + (1 - t) log(1 - p)), logs clamped at -100,
//                                grad (p - t) / max(p (1 - p), 1e-12)   (as PyTorch's BCELoss)
//   binary_cross_entropy_logits: max(z, 0) - z t + log1p(exp(-|z|)),   grad sigmoid(z) - t
enum class LossKind : int { squared_error = 0, absolute_error = 1, binary_cross_entropy = 2, binary_cross_entropy_logits = 3 };

// Coefficients of the fused optimizer updates, computed once per step by ops.cpp in double and
// rounded to T, the way PyTorch turns its Python-float hyper-parameters into tensor scalars.
template <class T>
struct SgdCoefficients {
    T lr = T(0);
    T momentum = T(0);      // 0: no buffer
    T weight_decay = T(0);  // L2 term added to the gradient
    bool nesterov = false;
};

// exp_avg.lerp_(g, w) with w = 1 - beta1 is fma(c, g - m, base) where c = w, base = m when
// |w| < 0.5 and c = w - 1, base = g otherwise (PyTorch's lerp).
template <class T>
struct AdamCoefficients {
    T param_factor = T(1);  // AdamW: 1 - lr * weight_decay; else 1 (skipped)
    T weight_decay = T(0);  // Adam (L2): added to the gradient as wd * p; else 0 (skipped)
    T lerp_coefficient = T(0);
    bool lerp_from_end = false;
    T beta2 = T(0), one_minus_beta2 = T(0);
    T inv_bias_correction2_sqrt = T(1);  // 1 / sqrt(1 - beta2^step)
    T eps = T(0);
    T neg_step_size = T(0);  // -lr / (1 - beta1^step)
};

template <class T>
struct RmspropCoefficients {
    T neg_lr = T(0);
    T alpha = T(0), one_minus_alpha = T(0);
    T lerp_coefficient = T(0);  // grad_avg.lerp_(g, 1 - alpha), as in AdamCoefficients
    bool lerp_from_end = false;
    T eps = T(0);
    T weight_decay = T(0);
    T momentum = T(0);
    bool use_momentum = false;  // momentum > 0
    bool centered = false;
};

// What the GEMM micro-kernel does when it stores a tile:
//   C = act(beta * C + A*B + bias[col])
// beta is 0 or 1; with beta == 0 the kernel never reads C (so C may hold garbage or NaN).
// bias, when not null, points at the bias of the tile's first column.
template <class T>
struct Epilogue {
    int beta = 0;
    const T* bias = nullptr;
    Act act = Act::identity;
    T alpha = T(0);  // negative slope of leaky_relu
    // The packed GEMM micro-kernels only (gemm.cpp sets it): the tile is the transpose of C's,
    // so its element (i, j) goes to c[j * ldc + i] and bias[i] is added to its row i.
    bool transposed = false;
};

}  // namespace nncore
