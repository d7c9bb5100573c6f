// AVX2 + FMA kernels: this file alone is compiled with -mavx2 -mfma.
#include <immintrin.h>
#define NNCORE_ISA_NS isa_avx2
#define NNCORE_VEC_HEADER "vec_avx2.h"
#include "isa_impl.inc"

namespace nncore {
void fill_tables_avx2(Tables& tables) {
    tables.isa = Isa::avx2;
    // 6 x 16 floats = 12 accumulators + 2 B vectors + 1 broadcast of the 16 ymm registers.
    // Measured with NNCORE_ISA=avx2 on Zen 5 (AVX2 FMA peak ~136 / ~68 GF/s), 1024^3, 1 thread,
    // interleaved: f32 kc 256 mc 96 (before) ~115-117 -> kc 512 mc 192 ~118-122 GF/s; f64 kc 128
    // ~56-57 -> kc 512 ~59-60 GF/s (~87% of peak both).
    // direct_max_k (Zen 4, 1 thread, packed vs direct, A by rows / A^T by rows): f32 k 64
    // 256x784 88/86 vs 103/91 GF/s, k 128 mixed (A^T 79 vs 60), k 256 98 vs 70; f64 k 64 already
    // mixed (A^T 41 vs 33), so f64 keeps the direct kernel for k <= 4 only.
    // No short tile (the fourth argument, its rows, is the main tile's): 4 x 16 was measured
    // (Intel Xeon, 1 thread, float32 Dense 784 -> 256 and 256 -> 128 at batch 32 and 64) within
    // noise of 6 x 16, which pads those batches to 36 and 66 rows.
    isa_avx2::fill_table<float, 6, 2, 6>(tables.f32, 512, 512, 32, 4096, 64, isa_avx2::ConvTiles<5, 2, 4, 2, 12, 1>{});
    isa_avx2::fill_table<double, 6, 2, 6>(tables.f64, 512, 512, 16, 4096, 4, isa_avx2::ConvTiles<5, 2, 4, 2, 12, 1>{});
}
}  // namespace nncore
