// AVX-512 kernels: this file alone is compiled with -mavx512f -mavx512bw -mavx512dq -mavx512vl.
#include <immintrin.h>
#define NNCORE_ISA_NS isa_avx512
#define NNCORE_VEC_HEADER "vec_avx512.h"
#include "isa_impl.inc"

namespace nncore {
void fill_tables_avx512(Tables& tables) {
    tables.isa = Isa::avx512;
    // 12 x 32 floats = 24 accumulators + 2 B vectors + 1 broadcast of the 32 zmm registers.
    isa_avx512::fill_table<float, 12, 2>(tables.f32, 256, 8, 4096);
    isa_avx512::fill_table<double, 12, 2>(tables.f64, 128, 8, 4096);
}
}  // namespace nncore
