// AVX2 + FMA kernels: this file alone is compiled with -mavx2 -mfma.
#include <immintrin.h>
#define NNCORE_ISA_NS isa_avx2
#define NNCORE_VEC_HEADER "vec_avx2.h"
#include "isa_impl.inc"

namespace nncore {
void fill_tables_avx2(Tables& tables) {
    tables.isa = Isa::avx2;
    // 6 x 16 floats = 12 accumulators + 2 B vectors + 1 broadcast of the 16 ymm registers.
    isa_avx2::fill_table<float, 6, 2>(tables.f32, 256, 16, 4096);
    isa_avx2::fill_table<double, 6, 2>(tables.f64, 128, 16, 4096);
}
}  // namespace nncore
