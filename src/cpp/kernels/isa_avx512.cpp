// AVX-512 kernels: this file alone is compiled with -mavx512f -mavx512bw -mavx512dq -mavx512vl.
#include <immintrin.h>
#define NNCORE_ISA_NS isa_avx512
#define NNCORE_VEC_HEADER "vec_avx512.h"
#include "isa_impl.inc"

namespace nncore {
void fill_tables_avx512(Tables& tables) {
    tables.isa = Isa::avx512;
    // 6 x 64 floats (6 x 32 doubles) = 24 accumulators + 4 B vectors + 1 broadcast of the 32 zmm
    // registers: per k step 4 vector loads and 6 broadcasts feed 24 FMAs. Measured on Zen 5 at
    // 1024^3, 1 thread (FMA peak 259 / 131 GF/s), interleaved runs: f32 12x32 ~233 -> 6x64 ~238 GF/s;
    // f64 12x16 ~104-108 -> 6x32 ~113-116 GF/s (8x24 and 14x16 in between).
    // Cache blocks: a long kc amortises the load/store of C per micro-kernel call; the B sliver
    // (kc x nr) then no longer fits L1 beside the A panel, but L2 keeps up. f32 kc 256 -> 512 and
    // f64 kc 128 -> 384 gained ~3% and ~10%; mc (the A block kept in L2) mattered within noise.
    isa_avx512::fill_table<float, 6, 4>(tables.f32, 512, 16, 4096);
    isa_avx512::fill_table<double, 6, 4>(tables.f64, 384, 16, 4096);
}
}  // namespace nncore
