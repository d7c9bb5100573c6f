// AVX-512 kernels: this file alone is compiled with -mavx512f -mavx512bw -mavx512dq -mavx512vl.
#include <immintrin.h>
#define NNCORE_ISA_NS isa_avx512
#define NNCORE_VEC_HEADER "vec_avx512.h"
#include "isa_impl.inc"

namespace nncore {
void fill_tables_avx512(Tables& tables) {
    tables.isa = Isa::avx512;
    // Measured on Zen 5 (48 KiB L1d, 1 MiB L2 per core; FMA peak ~260 / ~131 GF/s f32 / f64), 1
    // thread, interleaved runs, at 1024^3 and 128x1024x1024:
    //   f32 12x32 (24 accumulators, 2 B loads + 12 broadcasts per k step), kc 512, mc 192:
    //       ~231 and ~212 GF/s; 6x64 kc 512 mc 96: the same within noise, so the narrower tile
    //       (less padding on narrow outputs) stays; kc 256 (before): ~229 at 1024^3.
    //   f64 6x32 (24 accumulators, 4 B loads + 6 broadcasts), mc 48, kc 512: ~114-116 and ~107-109
    //       (2048^3 ~114-116); kc 384: ~112-113 and ~100-104 (2048^3 ~113); kc 256: ~108-111;
    //       12x16 kc 384: ~108 and ~93; 12x16 kc 128 (before): ~97 at 1024^3.
    // A long kc amortises the load and store of C per micro-kernel call.
    // Re-measured on Zen 4 (32 KiB L1d, 1 MiB L2; peak ~118 / ~59 GF/s), 1 thread, interleaved,
    // after A's packing moved to register transposes: f32 1024^3 kc 1024 mc 96 ~101-104 GF/s
    // median against ~95-96 for kc 512 mc 192 (and ~85-92 for kc 128-384, whatever mc; the
    // micro-panels stream from L2 either way); 2048^3 ~100 against ~94 (nc 2048 = nc 4096).
    // f64 kc 512 and 1024 within noise (1024^3 ~50-52), so f64 stays at 512.
    // direct_max_k: with B (k x n, by rows) in L2, the unpacked 4 x 64 direct kernel beat packing
    // at every k measured in float32 (Zen 4, 1 thread, GF/s packed vs direct): the Dense backward
    // 64x784x256 87 vs 109, 256x784x64 88 vs 103, 256x784x256 95 vs 105; 64x64x2048 79 vs 117;
    // 1024x128x1024 97 vs 107 (but with A^T by rows 79 vs 80, and 2048x64x2048 60 vs 43: hence the
    // limit on a strided A in gemm.cpp). 2 threads, 64x784x256: 168 vs 225. float64: k 64 and 128
    // win (64x256x128 46 vs 56, 256x784x128 47 vs 49), k 256 loses (256x784x256 50 vs 48, A^T 45
    // vs 38).
    // The short tile (fourth argument: its rows, see KernelTable::tile_short): float32 8 x 32, 5-12%
    // faster than 12 x 32 on X W^T and dY W at batch 32 and 64 (Intel Xeon, 1 thread; numbers in
    // gemm.cpp); float64 4 x 32 was within noise of 6 x 32 there, so float64 has none.
    // nc 512 (the columns of B packed at a time: a kc x nc block of 2 MiB in both dtypes), after
    // 2048 (float32) and 4096 (float64), whose blocks of up to 8 and 16 MiB came back from L3 for
    // every block of mc rows once n is large. Intel Xeon (2 MiB L2 per core), 1 thread, old and new
    // nc alternated in one process, medians of 5-8 rounds, GF/s: float32 2048^3 70 -> 79, 86 -> 106,
    // 96 -> 111; 1536^3 72 -> 77, 76 -> 81; 1024^3 (n = 1024, so two blocks instead of one)
    // 74 -> 78, 88 -> 95, 111 -> 112; 10000x256x784 (n = 256) unchanged. float64 2048^3 38-40 ->
    // 48-50, 1024^3 and 256x256x784 unchanged. nc 256 was no better, 1024 in between. The order of
    // the sums over k (set by kc alone) is unchanged, so are the results. AVX2 (kc 512) showed no
    // difference between 512, 1024 and 4096, and keeps 4096.
    // kc_small (the second number; gemm.cpp: gemm_kc): float64 128 for products of up to 64 rows,
    // 3-25% faster there on the Xeon; float32 gained nothing at k = 784, so it keeps kc.
    isa_avx512::fill_table<float, 12, 2, 8>(tables.f32, 1024, 1024, 8, 512, index_t(1) << 30,
                                         isa_avx512::ConvTiles<10, 2, 8, 2, 14, 1, 10, 1, 5, 1>{});
    // float64's short tile has 4 rows (a batch of 32 takes 36 rows in 6-row tiles, 32 in 4-row
    // ones; a product's last 1-4 rows go through it too). The table with it against the same
    // table with the 6-row tile in both places, alternated in one process, medians of 21 rounds,
    // 1 thread: dY W 32x784x256 x1.07, 32x256x128 x1.09, 64x784x256 and 64x256x128 x1.03, X W^T
    // and dY^T X of the MLP shapes x1.00-1.02, 1024^3 x1.01, 2048^3 x1.00. Same bits.
    isa_avx512::fill_table<double, 6, 4, 4>(tables.f64, 512, 128, 8, 512, 128, isa_avx512::ConvTiles<12, 2, 10, 2, 14, 1>{});
}
}  // namespace nncore
