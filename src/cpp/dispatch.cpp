#include "dispatch.h"

#include <stdexcept>
#include <string>

#include "cpu_features.h"

namespace nncore {

namespace {
struct AllTables {
    Tables by_isa[kIsaCount];
    bool filled[kIsaCount] = {};
    AllTables() {
        fill_tables_scalar(by_isa[0]);
        filled[0] = true;
#if defined(NNCORE_HAVE_X86_KERNELS)
        if (cpu_supports(Isa::avx2)) {
            fill_tables_avx2(by_isa[1]);
            filled[1] = true;
        }
        if (cpu_supports(Isa::avx512)) {
            fill_tables_avx512(by_isa[2]);
            filled[2] = true;
        }
#endif
        if (cpu_vendor() == "GenuineIntel") {
            // Intel cores run two FMA pipes of the full vector width, and the unpacked kernels'
            // stream of B from L2 (a few vector loads per 16 or 32 FMAs, each B value reused by
            // only 4 rows) then falls behind them: past a handful of rows the packed kernel,
            // whose B panel is reused by every row tile from L1, wins. Measured on a 2-core Xeon
            // with AMX (KVM; FMA peak ~240 / ~120 GF/s f32 / f64 per core), 1 thread, float32 GF/s
            // unpacked vs packed, Dense 784 -> 256 (X W^T, dY W, dY^T X):
            //   AVX-512 batch 16: 94 / 100 / 98 vs 75 / 68 / 103; batch 24: 94 / 101 / 101 vs
            //   112 / 104 / 115; batch 64: 97 / 104 / 107 vs 133 / 127 / 142; 256 -> 128 at
            //   batch 64: 84 / 115 / 109 vs 130 / 123 / 129.
            //   AVX2 batch 16: 42 / 60 / 83 vs 60 / 62 / 64; batch 64: 54 / 90 / 64 vs 86 / 87 / 87.
            // (On Zen 4, with one zmm FMA per cycle, and on Zen 5 the unpacked kernels were
            // measured to win up to the limits in gemm.cpp, see fill_tables_avx512.)
            // float64 alike (AVX-512, batch 64: 60 / 60 / 54 vs 70 / 73 / 71 for 256 -> 128).
            for (int i = 1; i < kIsaCount; ++i) by_isa[i].f32.stream_max_rows = by_isa[i].f64.stream_max_rows = 16;
        }
    }
};

const AllTables& all_tables() {
    static const AllTables tables;
    return tables;
}
}  // namespace

const Tables& tables_for(Isa isa) {
    const AllTables& all = all_tables();
    const int i = static_cast<int>(isa);
    if (!all.filled[i]) throw std::runtime_error(std::string("ISA not available: ") + isa_name(isa));
    return all.by_isa[i];
}

const Tables& active_tables() {
    static const Tables& active = tables_for(isa_choice().isa);
    return active;
}

}  // namespace nncore
