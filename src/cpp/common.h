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
// input x (relu, leaky_relu) or the forward output y (tanh, sigmoid), whichever is exact.
enum class Act : int { identity = 0, relu = 1, leaky_relu = 2, tanh = 3, sigmoid = 4 };

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
};

}  // namespace nncore
