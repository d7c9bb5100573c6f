// The dispatch table: one struct of function pointers per dtype, filled once per ISA. Drivers call
// through it; nothing else in the code branches on the ISA.
#pragma once

#include "common.h"
#include "conv_shape.h"

namespace nncore {

// One register tile of the direct convolution (an implicit GEMM reading the zero-padded input in
// place, see conv.cpp), mr x nr with nr a multiple of the vector width, used three ways with the
// GEMM micro-kernel's epilogue; only the m_eff x n_eff corner of C is stored.
//   positions: C[i][j] = sum over q < k of x[offsets[q] + i] * packed_w[q * nr + j]: mr neighbouring
//     output positions of a row times nr output channels (packed_w: k x nr); x[offsets[q] + i]
//     must be readable for all i < mr.
//   channels: C[i][j] = sum over q < k of packed_w[q * mr + i] * x[offsets[q] + j]: mr output
//     channels times nr positions; x[offsets[q] + j] readable for j < nr.
//   weights: C[i][j] = sum over q < k of x[positions[q] + taps[i]] * packed_dy[q * nr + j]: the
//     weight gradient (transposed) of mr kernel taps times nr output channels, summed over k output
//     positions; taps[i] readable for all i < mr.
template <class T>
struct ConvTile {
    int mr, nr, vectors;  // nr = vectors * the vector width
    void (*positions)(index_t k, const T* x, const index_t* offsets, const T* packed_w, T* c, index_t ldc,
                      int m_eff, int n_eff, const Epilogue<T>& epilogue);
    void (*channels)(index_t k, const T* packed_w, const T* x, const index_t* offsets, T* c, index_t ldc,
                     int m_eff, int n_eff, const Epilogue<T>& epilogue);
    void (*weights)(index_t k, const T* x, const index_t* positions, const index_t* taps, const T* packed_dy, T* c,
                    index_t ldc, int m_eff, int n_eff, const Epilogue<T>& epilogue);
};

// A GEMM register tile of mr rows by the table's nr columns.
template <class T>
struct GemmTile {
    // Micro-kernel contract: C[0:m_eff, 0:n_eff] (row stride ldc) receives the epilogue of
    // packed_a (kc x MR, MR values per k step) times b (kc x NR: NR values per k step, the steps
    // ldb apart: a packed panel with ldb = NR, or NR columns of B stored by rows, read in place).
    // Packing zero-pads partial panels, so the kernel always multiplies full MR x NR tiles and only
    // the store is partial; B in place therefore serves full panels only. kc may be 0 (then the
    // product is zero). With epilogue.transposed the tile goes to C^T instead: element (i, j) to
    // c[j * ldc + i], bias per row i.
    void (*ukernel)(index_t kc, const T* packed_a, const T* b, index_t ldb, T* c, index_t ldc, int m_eff, int n_eff,
                    const Epilogue<T>& epilogue);
    // The same for a full MR-row tile of A read in place: MR rows lda apart, kc contiguous values
    // each (A stored by rows, see gemm.cpp for when the driver skips packing it). Same arithmetic,
    // so the same bits as ukernel on the packed copy.
    void (*ukernel_rows)(index_t kc, const T* a, index_t lda, const T* b, index_t ldb, T* c, index_t ldc, int n_eff,
                         const Epilogue<T>& epilogue);
    // Both over the k steps steps[0:count) only (ascending, each < kc): the steps at which the
    // tile's rows of A are not all zero (KernelTable::nonzero_steps), for the driver's zero-skipping
    // products (gemm.h). With B finite the values are those of the full kernels: a step left out
    // would only have added a zero product (a zero or NaN result may differ in sign).
    void (*ukernel_steps)(index_t count, const std::int32_t* steps, const T* packed_a, const T* b, index_t ldb, T* c,
                          index_t ldc, int m_eff, int n_eff, const Epilogue<T>& epilogue);
    void (*ukernel_rows_steps)(index_t count, const std::int32_t* steps, const T* a, index_t lda, const T* b,
                               index_t ldb, T* c, index_t ldc, int n_eff, const Epilogue<T>& epilogue);
    int mr;
    // The same tile at half its width (NR / 2 columns, null for a half-width tile itself), for a
    // last panel of at most that many columns, which the full tile would pad to NR (784 columns
    // are 24 panels of 32 and one of 16). It reads the first NR / 2 columns of each k step (ldb
    // apart as above) and runs the same products per element in the same order, so the same bits.
    const GemmTile* half = nullptr;
};

template <class T>
struct KernelTable {
    GemmTile<T> tile;  // the GEMM's register tile
    // A second tile, as wide (so B's packing serves both) with fewer rows (mc is a multiple of
    // both): for products whose row count the main tile would pad by much (a batch of 32 or 64 rows
    // takes 36 or 72 in 12-row tiles, 32 and 64 in 8-row ones). Per element it runs the same
    // products in the same order, so the same bits (the driver chooses, gemm.cpp). Where a table
    // has none, it is the main tile.
    GemmTile<T> tile_short;
    int nr;  // the tiles' columns
    // Direct convolution register tiles (the GEMM's first, see conv.cpp for the choice).
    static constexpr int kMaxConvTiles = 6;
    ConvTile<T> conv_tiles[kMaxConvTiles];
    int conv_tile_count;
    // Unpacked kernels, for few rows, a short k, or a B small enough to stay in L2 (the driver
    // chooses, see gemm.cpp); both write C[0:m, 0:n] with the same epilogue and never read C
    // unless beta == 1.
    //   gemm_direct: A (m x k) through strides, B (k x n) with contiguous rows (row stride ldb).
    //   gemm_dot: A (m x k) and B^T (n x k) both with contiguous rows: C[i][j] = <A_i, B^T_j>.
    void (*gemm_direct)(index_t m, index_t n, index_t k, const T* a, index_t rs_a, index_t cs_a, const T* b,
                        index_t ldb, T* c, index_t ldc, const Epilogue<T>& epilogue);
    void (*gemm_dot)(index_t m, index_t n, index_t k, const T* a, index_t lda, const T* bt, index_t ldbt, T* c,
                     index_t ldc, const Epilogue<T>& epilogue);
    int kc, mc, nc;      // cache blocks (multiples of the tile)
    // kc for products of few rows (gemm.h: gemm_kc), whose row tiles then reuse a B micro-panel
    // from L1 (the same as kc where not measured).
    int kc_small;
    // The longest reduction for which the driver prefers gemm_direct to packing when B fits in L2
    // (measured per ISA and dtype, see the fill functions).
    index_t direct_max_k;
    // The most rows of C for which the driver streams a B that fits in L2 through the unpacked
    // kernels (gemm_dot, and gemm_direct for k > 4) rather than packing it; the direct kernel
    // also takes any m while k is at most this. Unlimited unless the CPU's FMA pipes outrun its
    // L2 at that traffic (set per CPU in dispatch.cpp).
    index_t stream_max_rows;
    // Packing for the GEMM driver, through element strides (any, including negative), zero-padded:
    // rows [0, kc) x columns [0, nc) of B into NR-column panels (per k step the NR values of the
    // panel's columns). A's MR-row panels are the MR-column panels of A^T, so the driver packs A
    // with the same function and swapped strides.
    void (*pack_b)(const T* b, index_t rs, index_t cs, index_t kc, index_t nc, int nr, T* out);

    // Convolution lowering for one sample x (c, h, w), see conv_shape.h: im2col writes the sample's
    // block of columns into cols (c*kh*kw rows of oh*ow values, row stride ld): row (ci, ki, kj),
    // column (oy, ox) holds x[ci, oy*sh - ph + ki*dh, ox*sw - pw + kj*dw], zero outside the input.
    // col2im is its adjoint: dx = the scatter-add of such a block (dx is overwritten).
    void (*im2col)(const Conv2dShape& s, const T* x, T* cols, index_t ld);
    void (*col2im)(const Conv2dShape& s, const T* cols, index_t ld, T* dx);

    // Sparse A (m x k, row i's nonzeros in entries [begin[i], end[i]) of col/val) times B (k x n,
    // contiguous rows with row stride ldb): C[0:m, 0:n] = epilogue of A B (see sparse.h). Each
    // element is summed over its row's entries in order from zero. C may hold partial sums while it
    // runs (isa_impl.inc: csr_block), so it must not overlap A or B.
    void (*csr_gemm)(index_t m, index_t n, const index_t* begin, const index_t* end, const std::int32_t* col, const T* val,
                     const T* b, index_t ldb, T* c, index_t ldc, const Epilogue<T>& epilogue);
    // The nonzeros of x[0:n) (not +-0; NaN counts) in order: indices plus `first` to col, values to
    // val (room for n at each, all of which may be written); returns their count.
    index_t (*compress_nonzero)(const T* x, index_t n, index_t first, std::int32_t* col, T* val);
    // The steps q < k at which any of the rows a[i * lda + q], i < rows, is nonzero (not +-0;
    // NaN counts), ascending, to steps (room for k + 16); returns their count.
    index_t (*nonzero_steps)(const T* a, index_t lda, int rows, index_t k, std::int32_t* steps);

    // The classic per-sample SGD step (batch 1) in one sweep over a Dense layer's weights, see
    // engine.cpp. dense_forward_sgd: y[0:rows] = act(w x + bias), w (rows x k, row stride ldw),
    // bit-identical to gemm_dot at m = 1 (so rows may be split at multiples of 4); when g_prev is
    // not null it first applies the previous sample's batch-1 SGD step, the rank-1 update
    // w[j] += (neg_lr g_prev[j]) x_prev (the coefficient rounded once per row, then one fused
    // multiply-add per weight). `descending` visits the 4-row blocks last to first (same results).
    // sgd_rank1: that step alone (when w is not null), and/or dW = g x^T as gemm_direct forms it
    // (when dw is not null). The layer-by-layer batch-1 SGD uses sgd_rank1, so both agree.
    void (*dense_forward_sgd)(index_t k, index_t rows, const T* x, T* w, index_t ldw, const T* bias, const T* g_prev,
                              const T* x_prev, T neg_lr, Act act, T alpha, T* y, bool descending);
    void (*sgd_rank1)(index_t k, index_t rows, const T* g, const T* x, T neg_lr, T* w, T* dw, index_t ldw);

    // FMA throughput probe (the machine's limit, see peak.h): `iters` rounds of independent
    // register-only fused multiply-adds over several accumulators, no memory traffic; each round is
    // fma_flops_per_iter floating-point operations. Returns a value derived from all accumulators
    // so the work cannot be optimised away.
    T (*fma_loop)(index_t iters, T x);
    int fma_flops_per_iter;

    // Elementwise over n contiguous values.
    void (*act_forward)(Act act, T alpha, const T* x, T* y, index_t n);
    void (*act_backward)(Act act, T alpha, const T* x, const T* y, const T* dy, T* dx, index_t n);
    void (*exp)(const T* x, T* y, index_t n);
    void (*erf)(const T* x, T* y, index_t n);
    void (*axpy)(T a, const T* x, T* y, index_t n);  // y += a * x (the SGD step)
    bool (*all_finite)(const T* x, index_t n);       // no NaN or infinity among x[0:n)

    // Row-wise over `rows` contiguous rows of `cols` values.
    void (*softmax_forward)(const T* x, T* y, index_t rows, index_t cols);
    void (*softmax_backward)(const T* y, const T* dy, T* dx, index_t rows, index_t cols);
    void (*column_sums)(const T* x, index_t rows, index_t cols, index_t ld, T* out);

    // Losses over n contiguous values: the sum of per-element losses, and the gradient times scale.
    double (*squared_error_sum)(const T* y_true, const T* y_pred, index_t n);
    void (*squared_error_grad)(const T* y_true, const T* y_pred, T* grad, index_t n, T scale);
    double (*binary_cross_entropy_sum)(const T* y_true, const T* y_pred, index_t n);
    void (*binary_cross_entropy_grad)(const T* y_true, const T* y_pred, T* grad, index_t n, T scale);

    // One pass of an elementwise loss over n values: block_sums[b] receives the loss summed over
    // values [b * kLossBlock, (b + 1) * kLossBlock) (accumulated in T within the block, so that a
    // split at block boundaries over threads gives identical sums), and grad (unless null) the
    // gradient times scale.
    void (*loss)(LossKind kind, const T* y_true, const T* y_pred, T* grad, T scale, index_t n, double* block_sums);
    // Softmax + cross-entropy over `rows` rows of `cols` logits. The target is either class labels
    // (labels[r] in [0, cols), checked by the caller; probabilities null) or rows of probabilities
    // (labels null). row_losses[r] = logsumexp(z) sum(t) - sum(t z), computed stably in double;
    // grad (unless null) = (softmax(z) sum(t) - t) * scale.
    void (*softmax_cross_entropy)(const T* logits, const T* probabilities, const std::int64_t* labels, T* grad,
                                  T scale, index_t rows, index_t cols, double* row_losses);
    void (*sum_of_squares)(const T* x, index_t n, double* block_sums);  // blocks as in loss
    void (*scale)(T factor, T* x, index_t n);                           // x *= factor

    // Fused in-place optimizer updates over n contiguous values (PyTorch's single-tensor formulas).
    void (*sgd_update)(const SgdCoefficients<T>& c, T* param, const T* grad, T* momentum_buffer, index_t n);
    // `steps` sgd_updates whose gradient is all +0, bit for bit (momentum_buffer unused, and may be
    // null, when c.momentum is 0).
    void (*sgd_zero_steps)(const SgdCoefficients<T>& c, T* param, T* momentum_buffer, index_t n, long long steps);
    void (*adam_update)(const AdamCoefficients<T>& c, T* param, const T* grad, T* exp_avg, T* exp_avg_sq, index_t n);
    void (*rmsprop_update)(const RmspropCoefficients<T>& c, T* param, const T* grad, T* square_avg,
                           T* momentum_buffer, T* grad_avg, index_t n);

    // 2x2 max pooling with stride 2 (pool.h) over one plane x (h x w, both >= 2): forward writes y
    // (h/2 x w/2); backward writes every value of dx (h x w) once, dy at each window's choice and
    // zero elsewhere (an odd last row or column is in no window).
    void (*max_pool2x2_forward)(const T* x, index_t h, index_t w, T* y);
    void (*max_pool2x2_backward)(const T* x, const T* dy, index_t h, index_t w, T* dx);
};

// Loss and sum-of-squares kernels sum blocks of this many values (see KernelTable::loss).
constexpr index_t kLossBlock = 1024;
inline index_t loss_block_count(index_t n) { return (n + kLossBlock - 1) / kLossBlock; }

struct Tables {
    Isa isa;
    KernelTable<float> f32;
    KernelTable<double> f64;
};

template <class T>
const KernelTable<T>& table_of(const Tables& tables);
template <>
inline const KernelTable<float>& table_of<float>(const Tables& tables) { return tables.f32; }
template <>
inline const KernelTable<double>& table_of<double>(const Tables& tables) { return tables.f64; }

// Per-ISA fill functions, each defined in its own translation unit.
void fill_tables_scalar(Tables& tables);
#if defined(NNCORE_HAVE_X86_KERNELS)
void fill_tables_avx2(Tables& tables);
void fill_tables_avx512(Tables& tables);
#endif

// Tables for one ISA; `isa` must be available on this CPU (see cpu_features.h).
const Tables& tables_for(Isa isa);
// The tables chosen once at start-up (best ISA, capped by NNCORE_ISA).
const Tables& active_tables();

template <class T>
const KernelTable<T>& active_table() { return table_of<T>(active_tables()); }

}  // namespace nncore
