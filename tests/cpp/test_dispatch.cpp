// The dispatch layer: every available ISA has a complete, sensible table; unavailable ISAs are
// refused; the start-up choice honours NNCORE_ISA.
//
// Usage: test_dispatch [--expect-active ISA] [--expect-note]
//   --expect-active ISA  also require that the active tables are ISA (CTest runs this with
//                        NNCORE_ISA=scalar to check the cap).
//   --expect-note        require that isa_choice() explains why NNCORE_ISA was not honoured (CTest
//                        runs this with an unknown NNCORE_ISA value).
#include <cmath>
#include <stdexcept>
#include <string>

#include "harness.h"
#include "peak.h"

using nncore::Isa;
using nncore::KernelTable;

namespace {

template <class T>
void check_table(const KernelTable<T>& t) {
    nntest::Scope scope(std::string("dtype=") + nntest::dtype_name<T>());
    // Register tile: positive and small enough to live in registers.
    CHECK_MSG(t.tile.mr >= 1 && t.tile.mr <= 32, "mr=" << t.tile.mr);
    CHECK_MSG(t.nr >= 1 && t.nr <= 64, "nr=" << t.nr);
    // Cache blocks: the driver relies on mc and nc being whole tiles.
    CHECK_MSG(t.kc >= 16 && t.kc <= 4096, "kc=" << t.kc);
    CHECK_MSG(t.mc >= t.tile.mr && t.mc % t.tile.mr == 0, "mc=" << t.mc << " mr=" << t.tile.mr);
    CHECK_MSG(t.tile_short.mr >= 1 && t.tile_short.mr <= t.tile.mr && t.mc % t.tile_short.mr == 0,
              "mc=" << t.mc << " short tile mr=" << t.tile_short.mr);
    CHECK(t.tile_short.ukernel != nullptr && t.tile_short.ukernel_rows != nullptr);
    CHECK_MSG(t.nc >= t.nr && t.nc % t.nr == 0, "nc=" << t.nc << " nr=" << t.nr);
    // A packed kc x mc block of A and kc x nc block of B must fit a few MB, or blocking is pointless.
    CHECK_MSG(static_cast<double>(t.kc) * t.mc * sizeof(T) <= 4.0 * 1024 * 1024, "kc*mc too large");
    CHECK(t.tile.ukernel != nullptr && t.tile.ukernel_rows != nullptr);
    CHECK(t.act_forward != nullptr);
    CHECK(t.act_backward != nullptr);
    CHECK(t.exp != nullptr);
    CHECK(t.all_finite != nullptr);
    CHECK(t.axpy != nullptr);
    CHECK(t.softmax_forward != nullptr);
    CHECK(t.softmax_backward != nullptr);
    CHECK(t.column_sums != nullptr);
    CHECK(t.squared_error_sum != nullptr);
    CHECK(t.squared_error_grad != nullptr);
    CHECK(t.binary_cross_entropy_sum != nullptr);
    CHECK(t.binary_cross_entropy_grad != nullptr);
    // The speed probes the benchmarks divide by run this table's kernels and give a rate (no
    // threshold: timings are never tested).
    const double fma = nncore::fma_peak_gflops(t, 0.005, 1), tile = nncore::tile_peak_gflops(t, 0.005);
    CHECK_MSG(std::isfinite(fma) && fma > 0, "fma_peak_gflops=" << fma);
    CHECK_MSG(std::isfinite(tile) && tile > 0, "tile_peak_gflops=" << tile);
    std::printf("    %s: mr=%d nr=%d kc=%d mc=%d nc=%d\n", nntest::dtype_name<T>(), t.tile.mr, t.nr, t.kc,
                t.mc, t.nc);
}

}  // namespace

int main(int argc, char** argv) {
    std::string expect_active;
    bool expect_note = false;
    for (int i = 1; i < argc; ++i) {
        const std::string arg = argv[i];
        if (arg == "--expect-active" && i + 1 < argc) {
            expect_active = argv[++i];
        } else if (arg == "--expect-note") {
            expect_note = true;
        } else {
            std::fprintf(stderr, "unknown argument: %s\n", arg.c_str());
            return 2;
        }
    }

    // The scalar path is the baseline and must exist everywhere.
    CHECK(nncore::cpu_supports(Isa::scalar));

    nntest::for_each_isa([&](Isa isa, const nncore::Tables& tables) {
        std::printf("  %s\n", nncore::isa_name(isa));
        CHECK_MSG(tables.isa == isa, "tables.isa=" << nncore::isa_name(tables.isa));
        // Asking twice gives the same tables (they are built once).
        CHECK(&nncore::tables_for(isa) == &tables);
        check_table(tables.f32);
        check_table(tables.f64);
    });

    // ISAs this CPU cannot run are refused with an exception, never handed out.
    for (int i = 0; i < nncore::kIsaCount; ++i) {
        const Isa isa = static_cast<Isa>(i);
        if (nncore::cpu_supports(isa)) continue;
        bool threw = false;
        try {
            (void)nncore::tables_for(isa);
        } catch (const std::runtime_error&) {
            threw = true;
        }
        CHECK_MSG(threw, "tables_for(" << nncore::isa_name(isa) << ") did not throw");
    }

    // The ISA levels are ordered: supporting a higher one implies the lower ones.
    for (int i = 1; i < nncore::kIsaCount; ++i)
        if (nncore::cpu_supports(static_cast<Isa>(i))) CHECK(nncore::cpu_supports(static_cast<Isa>(i - 1)));

    // Names round-trip, and nonsense is rejected.
    for (int i = 0; i < nncore::kIsaCount; ++i) {
        Isa parsed = Isa::scalar;
        CHECK(nncore::parse_isa(nncore::isa_name(static_cast<Isa>(i)), &parsed));
        CHECK(parsed == static_cast<Isa>(i));
    }
    Isa unused;
    CHECK(!nncore::parse_isa("avx3", &unused));
    CHECK(!nncore::parse_isa("", &unused));

    // The start-up choice.
    const nncore::IsaChoice& choice = nncore::isa_choice();
    CHECK(nncore::active_tables().isa == choice.isa);
    CHECK(&nncore::active_tables() == &nncore::tables_for(choice.isa));
    CHECK(&nncore::active_table<float>() == &nncore::active_tables().f32);
    CHECK(&nncore::active_table<double>() == &nncore::active_tables().f64);
    CHECK(nncore::cpu_supports(choice.isa));
    CHECK(static_cast<int>(choice.isa) <= static_cast<int>(nncore::best_supported_isa()));
    if (choice.requested.empty()) {
        // No request: the best ISA, and nothing to explain.
        CHECK(choice.isa == nncore::best_supported_isa());
        CHECK(choice.note.empty());
    }
    std::printf("  active: %s (NNCORE_ISA='%s'%s%s)\n", nncore::isa_name(choice.isa), choice.requested.c_str(),
                choice.note.empty() ? "" : ", note: ", choice.note.c_str());
    if (!expect_active.empty()) {
        Isa wanted;
        CHECK_MSG(nncore::parse_isa(expect_active, &wanted), "bad --expect-active " << expect_active);
        // A cap above what the CPU has cannot be honoured; then the best ISA is expected.
        if (nncore::parse_isa(expect_active, &wanted) && nncore::cpu_supports(wanted))
            CHECK_MSG(choice.isa == wanted, "active=" << nncore::isa_name(choice.isa) << " expected=" << expect_active);
    }
    if (expect_note) {
        CHECK_MSG(!choice.note.empty(), "NNCORE_ISA='" << choice.requested << "' gave no note");
        CHECK(choice.isa == nncore::best_supported_isa());
    }
    return nntest::finish("test_dispatch");
}
