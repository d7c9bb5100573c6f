#include "gemm.h"

#include <algorithm>
#include <cstdint>

#include "thread_pool.h"
#include "workspace.h"

namespace nncore {

namespace {

// Owners of the driver's per-thread packing buffers (workspace.h's thread_buffer).
struct PackedA;
struct PackedB;
struct StepLists;  // the zero-skipping products' lists of k steps per row tile (see gemm.h)

// Whether `rows` rows stride_bytes apart fall into enough of the L1 data cache's 64 sets (of
// 64-byte lines; so on every x86 core this runs on) that none holds more than 3 of them. The
// micro-kernel reads A in place only then: rows 4 KiB apart (a 1024-float leading dimension) map to
// one set and evict each other within the k loop (12 x 32 tile, kc 1024, Zen 4: 73 GF/s in place
// against 111 on the packed copy, and 111 in place with 1040 floats between rows).
bool rows_spread_over_l1(index_t stride_bytes, int rows) {
    const auto stride = static_cast<std::uint64_t>(stride_bytes < 0 ? -stride_bytes : stride_bytes);
    int in_set[64] = {};
    for (int i = 0; i < rows; ++i)
        if (++in_set[(static_cast<std::uint64_t>(i) * stride >> 6) & 63] > 3) return false;
    return true;
}

// B stored by rows is read in place by the micro-kernel (its k steps a row of B apart) instead of
// being packed when the product has at most this many row tiles: packing copies all of B's k x n
// values, which only m / MR row tiles share (dY W of a Dense layer at a small batch). In place the
// kernel streams each panel's rows from where B lies, so B's block of kc rows must fit in L2 with
// room to spare, and (unless its panels start on cache lines, below) the rows must be less than a
// page apart. Same arithmetic, so the same bits. Measured on the 2-core Xeon
// (AVX-512, 2 MiB L2), the two alternated in one process, medians of 21-31 rounds, packed -> in
// place: float32 dY W 256 -> 128 at batch 24, 32, 48: x1.25, x1.10-1.28, x1.05-1.20 (1 thread),
// x1.28, x1.13, x1.09 (2 threads); 784 -> 256: x1.23, x1.04-1.05, x1.03-1.06 (2 threads x1.10,
// x1.16, x1.10); at batch 64 x0.90-0.92 for 784 -> 256, hence 4 tiles. float64 (6-row tile) at
// batch 16-24 x1.00-1.15; at 32-48 x0.90-0.98. AVX2 float32 (6 rows) at batch 8-24 x1.32-1.85.
// Where the limits come from (float32, m = 32, B as numpy lays it out, mostly 16 bytes past a
// line): rows 4 KiB apart or more x0.68-0.99 (32x1024x256, 32x1536x256, 32x4096x256), rows of
// 2.5-3.6 KiB x1.02-1.25; a block of more than 1 MiB x0.57-0.97 (32x512x1024, 32x784x1024), while
// 48x256x1024 (1 MiB) x1.17. With B's panels on lines (below) rows of any length gained, the
// block within 1 MiB: float32 32x1024x256 x1.19 (2 threads x1.13), 32x1536x128 x1.16-1.17,
// 32x2048x64 x1.15, 32x3136x64 x1.25-1.28, 32x4096x64 x1.03, 48x2560x96 x1.11; float64 (784
// columns, 6272 bytes, k blocks of 128 at these rows, gemm_kc) 24x784x256 x1.25, 32x x1.15 (2
// threads x1.12), 48x x1.09, 64x x1.04, 32x1200x64 x1.25.
// Why not more rows at any alignment: numpy's arrays usually start 16 bytes past a cache line, and
// then every vector load of B in place spans two lines (64x784x256 with B 16 bytes off x0.89-0.97).
// Where B's panels start on cache lines (B aligned, or after column_lead's panel), so that no load
// spans two lines, in place pays for rows of any length and at more rows: up to
// kBInPlaceLinedMaxTiles row tiles, and at any number of rows for k blocks of at most
// kBInPlaceShortK steps (dY^T X at a batch of up to 64), whose panels (at most 8 KiB) stay in L1
// for all of a block's row tiles while packing them cost as much as a tile's few k steps.
// In-process A/B on the 2-core Xeon, medians of 15 rounds, packed -> in place, 1 thread unless
// named, B 16 bytes past a line through the lead panel (784 columns) or aligned (256 columns):
// - float32 AVX-512 dY W 64x784x256 x1.08 (2 threads x1.06-1.07), 128x784x256 x1.02 (x1.00-1.02),
//   64x256x128 x1.09 (x1.07), 128x256x128 x1.04 (x1.08), 64x512x512 x1.16, 128x512x512 x1.04;
//   dY^T X 256x784x32 x1.06-1.09, x64 x1.04-1.05, 128x784x128 x1.06 (2 threads), 128x256x32-64
//   x1.05-1.09; AVX2 64x784x256 x1.06-1.07, 32x256x128 x1.13; float64 32x256x128 x1.15,
//   64x256x128 x1.11.
// - 256 rows at k = 256 lost (dY W and dY^T X 256x784x256 x0.98), hence 11 tiles (128 rows of
//   float32 AVX-512); dY^T X at k = 128 x1.00, so 64 steps; larger blocks x1.00 (128x256x1024,
//   128x640x768).
// - Where B's loads would span two lines (no lead panel, as at 256 columns 16 bytes off): float32
//   128x256x64 x0.97-0.99, float64 x0.86, and 256 columns with a lead panel (a ninth) x0.89-0.97.
// - MNIST training epochs (batch 32 and 64, SGD and Adam, 1 and 2 threads): x1.00-1.01. (More rows
//   in place with B aligned, without the k limit, had made them ~5% slower on 2026-12-03.)
constexpr index_t kBInPlaceMaxTiles = 4, kBInPlaceLinedMaxTiles = 11, kBInPlaceShortK = 64;
constexpr index_t kBInPlaceMaxRowBytes = 4096, kBInPlaceMaxBlockBytes = index_t(1) << 20;
bool b_in_place_pays(index_t m, int mr, index_t row_bytes, index_t kc, bool panels_on_lines) {
    if (row_bytes <= 0 || kc * row_bytes > kBInPlaceMaxBlockBytes) return false;
    if (panels_on_lines) return m <= kBInPlaceLinedMaxTiles * mr || kc <= kBInPlaceShortK;
    return m <= kBInPlaceMaxTiles * mr && row_bytes < kBInPlaceMaxRowBytes;
}

// Whether B's panels read in place, from column `lead` on, start on 64-byte lines.
template <class T>
bool panels_on_lines(const KernelTable<T>& kt, ConstMatrix<T> b, index_t lead) {
    return b.col_stride == 1 && (b.row_stride * sizeof(T)) % 64 == 0 && (kt.nr * sizeof(T)) % 64 == 0 &&
           reinterpret_cast<std::uintptr_t>(b.data + lead) % 64 == 0;
}

// The short tile does fewer FMAs per load and stores C more often: per row it took ~5% longer
// (AVX-512 float32, 8 against 12 rows, Intel Xeon, 1 thread, 1024^3: 142-148 against 150-156
// GF/s). So it takes the product when the main tile would pad the rows by more than that. Float32,
// X W^T / dY W, GF/s with the 12-row vs the 8-row tile (builds alternated): 784 -> 256 at batch 32
// 124-125 / 114 vs 131-134 / 123-125, at batch 64 132-134 / 121-126 vs 141-142 / 136-139;
// 256 -> 128 at batch 64 138 / 135 vs 155 / 145-149; at batch 128 and 256 within noise.
constexpr double kShortTileCostPerRow = 1.05;

// Whether the packed driver splits a product of tiles_m x tiles_n tiles between threads by its
// columns (rather than its rows): the side with more tiles, which divides more evenly.
constexpr bool split_columns(index_t tiles_m, index_t tiles_n) { return tiles_n >= tiles_m; }

// Columns of B before its first 64-byte boundary, for B read in place (b_in_place_pays) by rows
// a whole number of cache lines apart but starting inside a line (numpy's arrays mostly start 16
// bytes past one): the driver then computes those columns as a narrow first panel (packed) and
// the rest in panels that start on a line, so that no load of B in place spans two lines. Only
// where that panel adds at most kLeadMaxExtraWork to the panels' work (counted in half-width
// panels, GemmTile::half): 784 columns (24 full panels and a half) then take 24 and two halves
// plus the lead, 256 columns (8 panels) would take a ninth. 0 where not. Each element sums the same
// products in the same order, so the same bits. Measured on the 2-core Xeon, float32 AVX-512, B
// and C 16 bytes past a line, in-process A/B, medians of 15 rounds: dY W 24x784x256, 32x784x256,
// 48x784x256 x1.10-1.16 on 1 thread, x1.16-1.21 on 2; other products unchanged (1024^3,
// 128x784x256, 256x784x32 x1.00 then), as were float64 (x1.00-1.01, when 784 doubles, more than
// a page, were still packed) and AVX2 (x0.99-1.01). The in-place reads that a lead panel makes
// possible at more rows and longer rows came after (b_in_place_pays).
constexpr double kLeadMaxExtraWork = 0.03;
template <class T>
index_t column_lead(const KernelTable<T>& kt, index_t m, index_t n, ConstMatrix<T> b, index_t kc, bool transposed) {
    const int nr = kt.nr;
    const auto address = reinterpret_cast<std::uintptr_t>(b.data);
    if (transposed || address % sizeof(T) != 0 || address % 64 == 0) return 0;
    const auto lead = static_cast<index_t>((64 - address % 64) / sizeof(T));
    if (n <= lead + nr || !panels_on_lines(kt, b, lead) ||
        !b_in_place_pays(m, kt.tile.mr, b.row_stride * static_cast<index_t>(sizeof(T)), kc, true))
        return 0;
    const auto half_panels = [nr](index_t cols) {
        const index_t rest = cols % nr;
        return 2 * (cols / nr) + (rest == 0 ? 0 : 2 * rest <= nr ? 1 : 2);
    };
    return half_panels(lead) + half_panels(n - lead) <= (1 + kLeadMaxExtraWork) * half_panels(n) ? lead : 0;
}

// n columns split into a lead panel (when lead > 0) and nr-wide panels: how many, and where panel
// t starts (n for t = the count).
inline index_t panel_count(index_t n, index_t lead, int nr) { return (lead > 0) + (n - lead + nr - 1) / nr; }
inline index_t panel_start(index_t t, index_t lead, int nr, index_t n) {
    return std::min(n, lead > 0 ? (t == 0 ? 0 : lead + (t - 1) * nr) : t * nr);
}

// The register tile a packed product of m rows (n columns in tiles_n panels) goes through, split
// between up to max_parts threads as gemm below splits it: the table's main one or its short one,
// whichever leaves the product's slowest part the fewest rows to run, counting its padded last
// tile in full. On one thread that is the whole product; split by rows, it is the part with the
// most tiles: m = 128 over two threads is 11 twelve-row tiles, 6 on one thread (72 rows' worth),
// or 16 eight-row ones, 8 each (64 rows, x1.05). Float32 on 2 threads, the tile by the whole
// product vs by its slowest part, alternated in one process (with a control), medians of 61
// rounds: 128x256x256 89.3 -> 82.9 us, 224x128x256 X W^T 56.7 -> 53.2 us, 128x128x256 X W^T 37.7
// -> 34.1 us (control within 2%). Both tiles sum each element's k steps in the same order, one
// multiply-add each, so the choice never changes the bits, whatever the thread count.
template <class T>
const GemmTile<T>& choose_row_tile(const KernelTable<T>& kt, index_t m, index_t tiles_n, index_t max_parts) {
    const auto slowest_part_rows = [&](int mr) {
        const index_t tiles_m = (m + mr - 1) / mr;
        const index_t parts = split_columns(tiles_m, tiles_n) ? 1 : std::max<index_t>(1, std::min(max_parts, tiles_m));
        return static_cast<double>((tiles_m + parts - 1) / parts * mr);
    };
    return slowest_part_rows(kt.tile_short.mr) * kShortTileCostPerRow < slowest_part_rows(kt.tile.mr) ? kt.tile_short : kt.tile;
}

// Long reductions run in blocks of k whose partial sums accumulate into C: block [p0, p0 + kb)
// of k takes the caller's beta when it is the first and adds to C after it; bias and activation
// belong to the last block only.
template <class T>
Epilogue<T> k_block_epilogue(const Epilogue<T>& ep, index_t p0, index_t kb, index_t k) {
    Epilogue<T> block = ep;
    if (p0 > 0) block.beta = 1;
    if (p0 + kb < k) {
        block.bias = nullptr;
        block.act = Act::identity;
    }
    return block;
}

// Where element (i, j) of the product goes: C[i][j], or C[j][i] when the driver computes C^T (see
// gemm_packed).
template <class T>
T* element_of(T* c, index_t ldc, index_t i, index_t j, bool transposed) {
    return transposed ? c + j * ldc + i : c + i * ldc + j;
}

// kc_max: the k block, gemm_kc's for the whole product (so the same for any split between threads).
template <class T>
void gemm_serial(const KernelTable<T>& kt, const GemmTile<T>& row_tile, index_t m, index_t n, index_t k,
                 ConstMatrix<T> a, ConstMatrix<T> b, T* c, index_t ldc, const Epilogue<T>& epilogue,
                 bool skip_zero_steps, index_t kc_max, index_t lead_asked) {
    const int mr = row_tile.mr, nr = kt.nr;
    const index_t mc_max = kt.mc, nc_max = kt.nc;
    // A block's partial last row tile, when the table's short tile holds its rows, goes through the
    // short tile instead of a zero-padded main one: at m = 128 (10 x 12 + 8 rows) the main tile's
    // padding was 4 of every 132 rows computed, at m = 256 8 of 264 (now 4). Same sums per element
    // in the same order, so the same bits. Float32 AVX-512, 1 thread, in-process A/B, medians of 15
    // rounds: 128-row products x1.02-1.05 (X W^T 128x256x784, dY W 128x784x256, dY^T X
    // 128x256x32-64), 256-row ones x1.00-1.02, 1024^3 x1.02.
    const GemmTile<T>& tail_tile = kt.tile_short.mr < mr ? kt.tile_short : row_tile;
    const auto kc_room = static_cast<std::size_t>(std::min<index_t>(kc_max, std::max<index_t>(k, 1)));
    T* packed_a = thread_buffer<T, PackedA>(kc_room * static_cast<std::size_t>((std::min(mc_max, m) + mr - 1) / mr * mr));
    // A stored by rows is read in place by its full MR-row tiles, rather than copied into panels
    // whose k steps hold MR values side by side: the same products in the same order, so the same
    // bits, without the copy (a transposition in registers) and its second pass over A. When A
    // comes from memory (a large batch through a Dense layer) the kernel's loads then overlap its
    // arithmetic instead of stalling a separate packing pass: batch-10000 MNIST-MLP inference
    // spent 6-8% of its time packing X, and runs ~3-5% faster. Measured on Zen 4, 1 thread, X W^T
    // (GF/s, packed -> in place, medians): AVX-512 256x256x784 96 -> 100, 256x128x256 96 -> 103,
    // 1024x256x784 91 -> 95; AVX2 72 -> 84, 79 -> 103, 74 -> 85; 256^3 and 128x256x784 unchanged.
    // Only a last partial tile is still packed (zero-padded).
    const bool transposed = epilogue.transposed;  // C^T is stored (element_of)
    const bool a_in_place = a.col_stride == 1 && rows_spread_over_l1(a.row_stride * static_cast<index_t>(sizeof(T)), mr);
    // Zero-skipping (gemm.h): each row tile of a block lists the k steps at which its rows of A are
    // not all zero, once per block of k (every column panel of B then reuses the list), in one pass
    // over the tile's rows; a tile with no zero step runs the full kernel. Inputs with no zeros
    // measured within noise of the product without lists (float32 1024 x 784 x 256, 1 thread).
    const bool skip = skip_zero_steps && a.col_stride == 1;
    // B by rows in place (b_in_place_pays), its full panels only: a partial last panel is packed
    // (zero-padded), so the kernel never reads past a row.
    const bool b_rows_in_place = b.col_stride == 1 &&
                                 b_in_place_pays(m, mr, b.row_stride * static_cast<index_t>(sizeof(T)),
                                                 static_cast<index_t>(kc_room), panels_on_lines(kt, b, lead_asked));
    // Columns [0, lead) go through a panel of their own (column_lead), where B is read in place;
    // where this part packs B anyway, a lead panel would only be one panel more.
    const index_t lead = b_rows_in_place ? lead_asked : 0;
    // A block's panels in packing order, the lead panel first: panel i starts at column
    // panel_start(i) of the block and is packed (when it is) at packed_b + i * nr * kc.
    const index_t block_panels = panel_count(std::min(nc_max + lead, n), lead, nr);  // the most a block has
    T* packed_b = thread_buffer<T, PackedB>(kc_room * static_cast<std::size_t>(block_panels * nr));
    const index_t step_room = static_cast<index_t>(kc_room) + 16;
    const auto block_tiles = static_cast<std::size_t>((std::min(mc_max, m) + mr - 1) / mr);
    std::int32_t* steps = skip ? thread_buffer<std::int32_t, StepLists>(block_tiles * step_room) : nullptr;
    index_t* step_counts = skip ? thread_buffer<index_t, StepLists>(block_tiles) : nullptr;
    // The first block takes the lead columns on top of its nc_max, so the others start on a line too.
    for (index_t jc = 0, nc = 0; jc < n; jc += nc) {
        const index_t first = jc == 0 ? lead : 0;  // the block's lead columns
        nc = std::min(first + nc_max, n - jc);
        const auto panel = [&](index_t i) { return panel_start(i, first, nr, nc); };
        const index_t panels = panel_count(nc, first, nr);
        // The k loop runs at least once so that k == 0 still applies the epilogue.
        for (index_t pc = 0; pc == 0 || pc < k; pc += kc_max) {
            const index_t kc = std::min(kc_max, k - pc);
            const T* b_block = b.data + pc * b.row_stride + jc * b.col_stride;
            // Panels [in_place_from, in_place_to) are read in place (the full ones after the lead
            // panel); the lead panel and those after them are packed (a lead implies B in place).
            const index_t in_place_from = first > 0;
            const index_t in_place_to = b_rows_in_place ? in_place_from + (nc - first) / nr : in_place_from;
            const auto pack_panels = [&](index_t i0, index_t i1) {  // nr-wide panels, or the lead alone
                if (i0 < i1)
                    kt.pack_b(b_block + panel(i0), b.row_stride, b.col_stride, kc, panel(i1) - panel(i0), nr,
                              packed_b + i0 * nr * kc);
            };
            pack_panels(0, in_place_from);
            pack_panels(in_place_to, panels);
            Epilogue<T> ep = k_block_epilogue(epilogue, pc, kc, k);
            const T* block_bias = ep.bias;
            for (index_t ic = 0; ic < m; ic += mc_max) {
                const index_t mc = std::min(mc_max, m - ic);
                const index_t in_place = a_in_place ? mc / mr * mr : 0;  // rows [0, in_place) of the block
                // A partial last tile of at most tail_tile's (fewer) rows goes through tail_tile;
                // its rows [tail_start, mc) are packed as a panel of tail_tile.mr.
                const index_t tail_start = mc / mr * mr;
                const bool short_tail = tail_tile.mr < mr && tail_start < mc && mc - tail_start <= tail_tile.mr;
                const index_t packed_end = short_tail ? tail_start : mc;
                // A's row panels are A^T's column panels.
                if (in_place < packed_end)
                    kt.pack_b(a.data + (ic + in_place) * a.row_stride + pc * a.col_stride, a.col_stride, a.row_stride,
                              kc, packed_end - in_place, mr, packed_a + in_place * kc);
                if (short_tail)
                    kt.pack_b(a.data + (ic + tail_start) * a.row_stride + pc * a.col_stride, a.col_stride, a.row_stride,
                              kc, mc - tail_start, tail_tile.mr, packed_a + tail_start * kc);
                if (skip)
                    for (index_t ir = 0; ir < mc; ir += mr)
                        step_counts[ir / mr] = kt.nonzero_steps(a.data + (ic + ir) * a.row_stride + pc, a.row_stride,
                                                                static_cast<int>(std::min<index_t>(mr, mc - ir)), kc,
                                                                steps + ir / mr * step_room);
                for (index_t i = 0; i < panels; ++i) {
                    const index_t jr = panel(i);
                    if (!transposed) ep.bias = block_bias ? block_bias + jc + jr : nullptr;
                    const int n_eff = static_cast<int>(panel(i + 1) - jr);
                    // A last panel of at most nr / 2 columns goes through the half-width tiles
                    // (GemmTile::half). Float32 AVX-512, 1 thread, in-process A/B, medians of 15
                    // rounds: the 784-column products (dY W, dY^T X of 784 -> 256 at batch 32-256)
                    // x1.00-1.03, 1000x784x100 x1.02; products with no such panel unchanged.
                    const bool half = 2 * n_eff <= nr && row_tile.half && tail_tile.half;
                    const GemmTile<T>& panel_tile = half ? *row_tile.half : row_tile;
                    const GemmTile<T>& panel_tail_tile = half ? *tail_tile.half : tail_tile;
                    const bool b_panel_in_place = i >= in_place_from && i < in_place_to;
                    const T* pb = b_panel_in_place ? b_block + jr : packed_b + i * nr * kc;
                    const index_t ldb = b_panel_in_place ? b.row_stride : nr;
                    for (index_t ir = 0; ir < mc; ir += mr) {
                        if (transposed) ep.bias = block_bias ? block_bias + ic + ir : nullptr;
                        T* tile = element_of(c, ldc, ic + ir, jc + jr, transposed);
                        const index_t count = skip ? step_counts[ir / mr] : kc;
                        const int m_eff = static_cast<int>(std::min<index_t>(mr, mc - ir));
                        const GemmTile<T>& packed_tile = short_tail && ir == tail_start ? panel_tail_tile : panel_tile;
                        if (count < kc) {
                            const std::int32_t* listed = steps + ir / mr * step_room;
                            if (ir < in_place)
                                panel_tile.ukernel_rows_steps(count, listed, a.data + (ic + ir) * a.row_stride + pc,
                                                              a.row_stride, pb, ldb, tile, ldc, n_eff, ep);
                            else
                                packed_tile.ukernel_steps(count, listed, packed_a + ir * kc, pb, ldb, tile, ldc, m_eff,
                                                          n_eff, ep);
                        } else if (ir < in_place) {
                            panel_tile.ukernel_rows(kc, a.data + (ic + ir) * a.row_stride + pc, a.row_stride, pb, ldb, tile,
                                                    ldc, n_eff, ep);
                        } else {
                            packed_tile.ukernel(kc, packed_a + ir * kc, pb, ldb, tile, ldc, m_eff, n_eff, ep);
                        }
                    }
                }
            }
        }
    }
}

// Below this many multiply-adds per thread, waking another thread costs more than it saves.
constexpr double kMinMacsPerThread = 1 << 18;
// The same for the unpacked kernels below, whose few-row products are bound by streaming B
// rather than by arithmetic: each thread then streams its own part of B (from its own L2 when the
// same product repeats, as a layer's weights do). Measured, 1 -> 2 threads, float32, one row:
// 256 x 784 9.1 -> 5.3 us and 784 x 256 10.9 -> 6.0 us (both under 1 << 18 multiply-adds), but
// 256 x 256 3.3 -> 3.3 us.
constexpr double kMinMacsPerThreadUnpacked = 1 << 16;

// The direct kernel splits rows between threads from this many rows, while B is at most this size.
constexpr index_t kDirectSplitRowsMin = 64;
constexpr double kDirectSplitRowsMaxBytesOfB = 512 << 10;

// Which kernel computes a product; chosen from the whole problem's shape and layout only (never
// from the thread count), so every thread count runs the same arithmetic.
enum class Path { packed, dot, direct };

// Up to this many rows of C, packing a panel of A and all of B costs more than it saves: B is
// streamed once in place instead (batch 1..4 of a Dense layer is a matrix-vector product).
constexpr index_t kUnpackedMaxRows = 4;
// The dot kernel also takes products with at most this many columns (a Dense layer with few
// outputs), where the packed kernel's NR-wide tile would be mostly zero padding.
constexpr index_t kDotMaxCols = 16;
// ... and X W^T for a moderate batch when W fits in L2 with room to spare: packing W^T is a
// transposing copy that a small batch cannot amortise. Measured on Zen 5, 1 thread, f32: 8x256x784
// packed 42 -> dot 182 GF/s, 64x128x256 117 -> 181; but 512^3 (W = 1 MiB) packed 175 vs dot 163,
// and f64 256x256x784 (W = 1.6 MB) packed 85 vs dot 74. Each dot product ends in a horizontal
// sum, which a short k amortises badly, so the batch up to which dot wins grows with k: up to 64
// rows, or k / 4. Measured on Zen 4 after packing got cheaper (1 thread, f32, dot vs packed us):
// 128x128x256 119 vs 95, 256x128x256 235 vs 182, 512x256x784 2557 vs 2301, while 64x256x784 and
// 128x256x784 stay within noise (AVX2: 256x256x784 2309 vs 1473).
constexpr index_t kDotMaxRows = 64, kDotRowsPerK = 4;
constexpr std::size_t kDotMaxBytesOfB = 896 << 10;
// The direct kernel also takes products with a reduction this short (dY^T X at batch <= 4):
// an outer product bound by the stores of C, where packing would be pure overhead.
constexpr index_t kDirectMaxK = 4;
// ... and, up to the table's direct_max_k, products whose B fits in L2 like the dot kernel's
// (dY W and dY^T X of Dense layers), unless A is read across its rows (A^T stored by rows) and
// larger than this: then every k step of the 4-row tile touches a new cache line of A.
constexpr std::size_t kDirectMaxBytesOfStridedA = std::size_t(4) << 20;

// Bytes of a rows x cols matrix of T (in double: the products of large sizes would overflow).
template <class T>
double matrix_bytes(index_t rows, index_t cols) {
    return static_cast<double>(rows) * static_cast<double>(cols) * sizeof(T);
}

template <class T>
Path choose_path(const KernelTable<T>& kt, index_t m, index_t n, index_t k, ConstMatrix<T> a, ConstMatrix<T> b) {
    const bool along_k = a.col_stride == 1 && b.row_stride == 1;  // X W^T with W stored (out, in)
    const bool b_rows = b.col_stride == 1;                        // dY W, dY^T X
    const bool b_fits = matrix_bytes<T>(k, n) <= kDotMaxBytesOfB;
    const bool few_rows = m <= std::min(std::max(kDotMaxRows, k / kDotRowsPerK), kt.stream_max_rows);
    if (along_k && (m <= kUnpackedMaxRows || n <= kDotMaxCols || (few_rows && b_fits))) return Path::dot;
    if (b_rows && (m <= kUnpackedMaxRows || k <= kDirectMaxK)) return Path::direct;
    const bool a_fits = a.col_stride == 1 || matrix_bytes<T>(m, k) <= kDirectMaxBytesOfStridedA;
    const bool stream = m <= kt.stream_max_rows || k <= kt.stream_max_rows;
    if (b_rows && b_fits && a_fits && stream && k <= kt.direct_max_k) return Path::direct;
    return Path::packed;
}

// Rows [i0, i1) x columns [j0, j1) of C with an unpacked kernel.
template <class T>
void gemm_unpacked(Path path, const KernelTable<T>& kt, index_t i0, index_t i1, index_t j0, index_t j1, index_t k,
                   ConstMatrix<T> a, ConstMatrix<T> b, T* c, index_t ldc, const Epilogue<T>& epilogue) {
    Epilogue<T> ep = epilogue;
    if (ep.bias) ep.bias += j0;
    const T* pa = a.data + i0 * a.row_stride;
    T* pc = c + i0 * ldc + j0;
    if (path == Path::dot) {
        kt.gemm_dot(i1 - i0, j1 - j0, k, pa, a.row_stride, b.data + j0 * b.col_stride, b.col_stride, pc, ldc, ep);
        return;
    }
    // The direct kernel sums each element over k in one sequence, whose rounding error grows with
    // k (float32, one to four rows, k = 2^20: relative error 1.8e-4, numpy's 1.3-6.6e-6); so k goes
    // in blocks added to C in turn, as the packed path adds its kc blocks: the error then grows
    // with the block length plus the number of blocks (measured 0.7-1.0e-6). (The dot kernel keeps
    // a vector of partial sums per output: 2.6e-6 there.)
    for (index_t p0 = 0; p0 == 0 || p0 < k; p0 += kDirectSumBlock) {  // once for k == 0 (the epilogue)
        const index_t kb = std::min(kDirectSumBlock, k - p0);
        kt.gemm_direct(i1 - i0, j1 - j0, kb, pa + p0 * a.col_stride, a.row_stride, a.col_stride,
                       b.data + j0 + p0 * b.row_stride, b.row_stride, pc, ldc, k_block_epilogue(ep, p0, kb, k));
    }
}

// The packed path for products split into up to max_parts parts, with the k block kc.
template <class T>
void gemm_packed(const KernelTable<T>& kt, index_t m, index_t n, index_t k, ConstMatrix<T> a, ConstMatrix<T> b, T* c,
                 index_t ldc, const Epilogue<T>& epilogue, index_t max_parts, bool skip_zero_steps, index_t kc) {
    const index_t lead = column_lead(kt, m, n, b, std::min(kc, std::max<index_t>(k, 1)), epilogue.transposed);
    const index_t tiles_n = panel_count(n, lead, kt.nr);
    const GemmTile<T>& row_tile = choose_row_tile(kt, m, tiles_n, max_parts);
    const index_t tiles_m = (m + row_tile.mr - 1) / row_tile.mr;
    const bool split_n = split_columns(tiles_m, tiles_n);
    const index_t tiles = split_n ? tiles_n : tiles_m;
    const index_t parts = std::min(max_parts, tiles);
    if (parts <= 1) {
        gemm_serial(kt, row_tile, m, n, k, a, b, c, ldc, epilogue, skip_zero_steps, kc, lead);
        return;
    }
    parallel_for(static_cast<int>(parts), [&](int part) {
        // Whole tiles per part, spread as evenly as possible.
        const index_t t0 = tiles * part / parts, t1 = tiles * (part + 1) / parts;
        if (split_n) {
            const index_t j0 = panel_start(t0, lead, kt.nr, n), j1 = panel_start(t1, lead, kt.nr, n);
            Epilogue<T> ep = epilogue;
            if (ep.bias && !ep.transposed) ep.bias += j0;
            ConstMatrix<T> b_part{b.data + j0 * b.col_stride, b.row_stride, b.col_stride};
            gemm_serial(kt, row_tile, m, j1 - j0, k, a, b_part, element_of(c, ldc, 0, j0, ep.transposed), ldc, ep,
                        skip_zero_steps, kc, part == 0 ? lead : 0);
        } else {
            const index_t i0 = t0 * row_tile.mr, i1 = std::min(m, t1 * row_tile.mr);
            Epilogue<T> ep = epilogue;
            if (ep.bias && ep.transposed) ep.bias += i0;
            ConstMatrix<T> a_part{a.data + i0 * a.row_stride, a.row_stride, a.col_stride};
            gemm_serial(kt, row_tile, i1 - i0, n, k, a_part, b, element_of(c, ldc, i0, 0, ep.transposed), ldc, ep,
                        skip_zero_steps, kc, lead);
        }
    });
}

// X W^T at a small batch (m rows, n >= 4 m outputs) is computed as its transpose W X^T, each tile
// stored transposed (Epilogue::transposed): packing then copies X, n / m times fewer values, where
// the direct form copies all of W (transposed, kc x NR panels), and W, stored by rows, is read in
// place as the A operand. Each element is the same sum over k in the same order (the k blocks of
// the original m, gemm_kc; each step multiplies the same two values), so the bits are those of
// the direct form, for any thread count. X's rows become the columns of NR-wide panels, so m must
// fill them to within 1/16 (32 or 64 rows for float32 AVX-512, not 40 or 48: 48x256x784 x0.86, and
// 40 x0.81-0.98, the padded panel costing more than the copy saved). Measured on the 2-core Xeon,
// the two forms alternated in one process, 15 rounds, medians of the paired ratios, float32
// AVX-512, 1 thread: 32x256x784 x1.28, 64x256x784 x1.11, 32x128x256 x1.11, 64x256x256 x0.99,
// 96x512x784 x1.16, 128x1024x1024 x1.10, 256x1024x1024 x1.07, 32x1024x1024 x1.24; 2 threads
// x1.00-1.22 (32x256x784 x1.21); float64 1 thread x1.07-1.44, 2 threads x0.98-1.37; AVX2 float32 x1.02-1.35.
// From n >= 2 m where the reduction is long (k >= kTransposedLongK) and W's rows spread over L1,
// so that W is read in place (gemm_serial's a_in_place) and the copy saved, (n - m) k values,
// outweighs the transposed stores of C, m n values whatever k: float32 64x128x528 x1.05,
// 64x128x784 x1.08, 64x160x784 x1.06, 96x256x784 x1.05-1.06, 128x256x784 x1.02-1.03 (2 threads
// x1.08-1.11), 256x512x784 x1.07-1.10 (2 threads x1.07), 128x256x1024 x1.05, 128x256x528 x1.00;
// float64 128x256x784 x1.09, 64x160x784 x1.03; AVX2 x1.00-1.05. Shorter: 64x128x256 x0.97,
// 64x128x400 x1.05, 128x256x400 x0.99; W's rows crowding a few L1 sets (2 or 4 KiB apart, so W
// packed): 128x256x512 x0.94-0.95, float64 x1.00.
constexpr index_t kTransposedMinRatio = 4, kTransposedMinRatioLongK = 2, kTransposedLongK = 512;
constexpr index_t kTransposedMaxPadding = 16;
template <class T>
bool transposed_pays(const KernelTable<T>& kt, index_t m, index_t n, index_t k, ConstMatrix<T> a, ConstMatrix<T> b,
                     bool skip_zero_steps) {
    const index_t padding = (m + kt.nr - 1) / kt.nr * kt.nr - m;  // X's rows are the transpose's columns
    const bool w_in_place = rows_spread_over_l1(b.col_stride * static_cast<index_t>(sizeof(T)), kt.tile.mr);
    const index_t min_ratio = k >= kTransposedLongK && w_in_place ? kTransposedMinRatioLongK : kTransposedMinRatio;
    return a.col_stride == 1 && b.row_stride == 1 && b.col_stride != 1 && !skip_zero_steps && n >= min_ratio * m &&
           padding * kTransposedMaxPadding <= m;
}

}  // namespace

// The packed path's k block (gemm_kc): kt.kc_small for products of at most kShortKcMaxRows rows (a Dense
// layer's X W^T at a small batch), k then split into blocks of equal length, else kt.kc. A short
// block's B micro-panel (kc x NR) stays in L1 for the few row tiles that reuse it. Measured on the
// 2-core Xeon, 1 thread, the two alternated in a C++ loop, 11 rounds, medians, float64 kc 512 ->
// 128 (blocks of 112 for k = 784): X W^T 17x256x784 x1.25, 32x256x784 x1.11-1.14, 48x256x784
// x1.11-1.14, 64x256x784 x1.03-1.07, 64x1024x1024 x1.04-1.06, 64x512x2048 x1.06-1.07, dY W
// 32x784x1024 x1.15-1.19; on 2 threads x0.96-1.10. Blocks of 256 with a last one of 16 for
// k = 784 did worse (float32 on 2 threads, 32 rows: x0.96-0.97): a short last block costs a pass
// over C for a few steps. float32 (1024 -> 256, or 196 for k = 784) gained at k >= 1024
// (64x1024x1024 x1.05-1.09, 32x784x1024 x1.32-1.44, where B is then read in place) but not at
// k = 784, the first layer of the MNIST MLP (x0.96-1.05 on 1 thread, x0.90-1.04 on 2), so its
// kc_small is its kc. From 128 rows on neither gained (128x256x784 x0.99-1.00, 256x256x784
// x0.96-1.00), and large products lost (10000x256x784 x0.84, 2048^3 x0.92 with kc 256 wherever C
// took under 1 MiB: C's pass per block from L3 or memory). The sums over k then run in more blocks (each block's sum added to C, as for
// any k > kc): other bits than with one block, the same for every thread count and layout.
template <class T>
index_t gemm_kc(const KernelTable<T>& kt, index_t m, index_t k) {
    if (m > kShortKcMaxRows || kt.kc_small >= kt.kc) return kt.kc;
    const index_t blocks = std::max<index_t>(1, (k + kt.kc_small - 1) / kt.kc_small);
    return std::max<index_t>(1, (k + blocks - 1) / blocks);
}

template <class T>
void gemm(const KernelTable<T>& kt, index_t m, index_t n, index_t k, ConstMatrix<T> a,
          ConstMatrix<T> b, T* c, index_t ldc, const Epilogue<T>& epilogue, int n_threads, bool skip_zero_steps) {
    if (m <= 0 || n <= 0) return;
    const double macs = static_cast<double>(m) * n * std::max<index_t>(k, 1);
    const Path path = choose_path(kt, m, n, k, a, b);
    const double min_macs = path == Path::packed ? kMinMacsPerThread : kMinMacsPerThreadUnpacked;
    const index_t max_parts = std::min<index_t>(n_threads, static_cast<index_t>(macs / min_macs));
    if (path != Path::packed) {
        // Split the longer side of C: rows in groups of 4, columns in groups of 64 values. The
        // direct kernel splits rows also when there are enough of them and every thread can keep
        // all of B in its L2: its 64-column groups rarely divide n evenly, and the part holding a
        // narrower last group runs it at a fraction of the speed (Dense 784 -> 256's dY^T X,
        // 256 x 784 x 64, 2 threads: 146 -> 130 us; at batch 32 81 -> 68 us; dY W unchanged).
        const bool split_m = m >= n || (path == Path::direct && m >= kDirectSplitRowsMin &&
                                        matrix_bytes<T>(k, n) <= kDirectSplitRowsMaxBytesOfB);
        const index_t unit = split_m ? 4 : 64, units = ((split_m ? m : n) + unit - 1) / unit;
        const index_t parts = std::min(max_parts, units);
        if (parts <= 1) {
            gemm_unpacked(path, kt, 0, m, 0, n, k, a, b, c, ldc, epilogue);
            return;
        }
        parallel_for(static_cast<int>(parts), [&](int part) {
            const index_t lo = std::min(units * part / parts * unit, split_m ? m : n);
            const index_t hi = std::min(units * (part + 1) / parts * unit, split_m ? m : n);
            if (hi <= lo) return;
            if (split_m) gemm_unpacked(path, kt, lo, hi, 0, n, k, a, b, c, ldc, epilogue);
            else gemm_unpacked(path, kt, 0, m, lo, hi, k, a, b, c, ldc, epilogue);
        });
        return;
    }
    if (transposed_pays(kt, m, n, k, a, b, skip_zero_steps)) {
        Epilogue<T> ep = epilogue;
        ep.transposed = true;
        gemm_packed(kt, n, m, k, ConstMatrix<T>{b.data, b.col_stride, b.row_stride},
                    ConstMatrix<T>{a.data, a.col_stride, a.row_stride}, c, ldc, ep, max_parts, false, gemm_kc(kt, m, k));
        return;
    }
    gemm_packed(kt, m, n, k, a, b, c, ldc, epilogue, max_parts, skip_zero_steps, gemm_kc(kt, m, k));
}

template index_t gemm_kc<float>(const KernelTable<float>&, index_t, index_t);
template index_t gemm_kc<double>(const KernelTable<double>&, index_t, index_t);
template void gemm<float>(const KernelTable<float>&, index_t, index_t, index_t, ConstMatrix<float>,
                          ConstMatrix<float>, float*, index_t, const Epilogue<float>&, int, bool);
template void gemm<double>(const KernelTable<double>&, index_t, index_t, index_t,
                           ConstMatrix<double>, ConstMatrix<double>, double*, index_t,
                           const Epilogue<double>&, int, bool);

}  // namespace nncore
