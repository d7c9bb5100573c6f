// The sparse-input path of a first Dense layer (sparse.h) on every ISA: compress_nonzero and
// csr_gemm against naive loops (bit for bit: the kernels promise each element's sum in order from
// zero), the batch's row and column lists against a naive build, the forward and weight-gradient
// drivers against dense double references and across thread counts, and the engine's sparse path
// against its dense path (to rounding), on 1 and 2 threads (bit for bit).
#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>
#include <vector>

#include "engine.h"
#include "harness.h"
#include "sparse.h"
#include "thread_pool.h"

using nncore::Act;
using nncore::Epilogue;
using nncore::index_t;
using nncore::KernelTable;
using nntest::Rng;
using nntest::Scope;

namespace {

// Values with the given share of nonzeros; among the zeros some are -0 (also a zero).
template <class T>
std::vector<T> sparse_values(index_t n, double density, Rng& rng) {
    std::vector<T> v(static_cast<std::size_t>(n), T(0));
    for (auto& x : v) {
        if (rng.uniform() < density) x = static_cast<T>(rng.uniform(-1.0, 1.0));
        else if (rng.coin()) x = -T(0);
    }
    return v;
}

template <class T>
void test_compress(const KernelTable<T>& kt, Rng& rng) {
    Scope scope(std::string("compress_nonzero ") + nntest::dtype_name<T>());
    for (index_t n : {0, 1, 2, 7, 8, 9, 15, 16, 17, 31, 32, 33, 97, 784}) {
        for (double density : {0.0, 0.2, 0.7, 1.0}) {
            Scope inner("n=" + std::to_string(n) + " density=" + std::to_string(density));
            std::vector<T> x = sparse_values<T>(n, density, rng);
            if (n > 3) {  // NaN, infinity and a subnormal are nonzero
                x[1] = nntest::quiet_nan<T>();
                x[n - 1] = std::numeric_limits<T>::infinity();
                x[n / 2] = std::numeric_limits<T>::denorm_min();
            }
            const index_t first = n % 2 ? 1000 : 0;  // x's place in a longer row, added to the indices
            std::vector<std::int32_t> want_col;
            std::vector<T> want_val;
            for (index_t j = 0; j < n; ++j)
                if (x[j] != T(0) || std::isnan(x[j]))
                    want_col.push_back(static_cast<std::int32_t>(first + j)), want_val.push_back(x[j]);
            nntest::Guarded<T> val(n, nntest::quiet_nan<T>());
            std::vector<std::int32_t> col(static_cast<std::size_t>(n) + 64, -7);
            const index_t count = kt.compress_nonzero(x.data(), n, first, col.data(), val.data());
            CHECK_MSG(count == static_cast<index_t>(want_col.size()), "count " << count << " want " << want_col.size());
            bool same = count == static_cast<index_t>(want_col.size());
            for (index_t e = 0; same && e < count; ++e) same = col[e] == want_col[e] && nntest::same_bits(val[e], want_val[e]);
            CHECK_MSG(same, "entries differ from the naive list");
            CHECK_MSG(val.guards_intact(), "values written outside [0, n)");
            bool col_untouched = true;
            for (index_t e = n; e < n + 64; ++e) col_untouched = col_untouched && col[e] == -7;
            CHECK_MSG(col_untouched, "indices written outside [0, n)");
        }
    }
}

// C = epilogue of A B for A by rows (begin/end/col/val), each element as the kernel promises: one
// multiply-add per entry in order from zero (fused where the ISA's vectors fuse it: not on the
// scalar baseline), then + bias, then the activation (relu here).
template <class T>
std::vector<T> csr_reference(index_t m, index_t n, const std::vector<index_t>& begin, const std::vector<index_t>& end,
                             const std::vector<std::int32_t>& col, const std::vector<T>& val, const std::vector<T>& b,
                             const T* bias, Act act, bool fused) {
    std::vector<T> c(static_cast<std::size_t>(m * n));
    for (index_t i = 0; i < m; ++i)
        for (index_t j = 0; j < n; ++j) {
            T s = T(0);
            for (index_t e = begin[i]; e < end[i]; ++e) {
                if (fused) {
                    s = std::fma(val[e], b[col[e] * n + j], s);
                } else {
                    const T product = val[e] * b[col[e] * n + j];
                    s = product + s;
                }
            }
            if (bias) s = s + bias[j];
            if (act == Act::relu) s = s > T(0) ? s : T(0);
            c[i * n + j] = s;
        }
    return c;
}

template <class T>
void test_csr_gemm(const KernelTable<T>& kt, int width, bool fused, Rng& rng) {
    Scope scope(std::string("csr_gemm ") + nntest::dtype_name<T>());
    const index_t w = width;
    for (index_t m : {0, 1, 2, 5}) {
        // Block edges of 4 and of 16 vectors (csr_gemm's blocks), and 256 (MNIST's first layer).
        for (index_t n : {index_t(1), index_t(2), w - 1, w, w + 1, 4 * w - 1, 4 * w, 4 * w + 1, 5 * w + 3, 16 * w - 1, 16 * w,
                          16 * w + 1, 20 * w + 3, index_t(13), index_t(256)}) {
            if (n <= 0) continue;
            for (index_t k : {1, 7, 61}) {
                for (Act act : {Act::identity, Act::relu}) {
                    for (bool with_bias : {false, true}) {
                        Scope inner("m=" + std::to_string(m) + " n=" + std::to_string(n) + " k=" + std::to_string(k) +
                                    " act=" + nntest::act_name(act) + (with_bias ? " bias" : ""));
                        // Rows with gaps between them (row i's entries start at i * (k + 3)).
                        std::vector<index_t> begin(static_cast<std::size_t>(m)), end(static_cast<std::size_t>(m));
                        std::vector<std::int32_t> col(static_cast<std::size_t>(m * (k + 3)), 0);
                        std::vector<T> val(col.size(), nntest::quiet_nan<T>());
                        for (index_t i = 0; i < m; ++i) {
                            begin[i] = end[i] = i * (k + 3);
                            for (index_t p = 0; p < k; ++p)
                                if (rng.uniform() < 0.4 || (i == 0 && p == k - 1)) {
                                    col[end[i]] = static_cast<std::int32_t>(p);
                                    val[end[i]++] = static_cast<T>(rng.uniform(-1, 1));
                                }
                        }
                        if (m > 2) end[2] = begin[2];  // an empty row: bias (and act) only
                        const std::vector<T> b = nntest::random_vector<T>(static_cast<std::size_t>(k * n), rng);
                        const std::vector<T> bias = nntest::random_vector<T>(static_cast<std::size_t>(n), rng);
                        Epilogue<T> ep;
                        ep.bias = with_bias ? bias.data() : nullptr;
                        ep.act = act;
                        nntest::Guarded<T> c(m * n, nntest::quiet_nan<T>());
                        kt.csr_gemm(m, n, begin.data(), end.data(), col.data(), val.data(), b.data(), n, c.data(), n, ep);
                        const std::vector<T> want = csr_reference(m, n, begin, end, col, val, b, ep.bias, act, fused);
                        bool same = true;
                        for (index_t i = 0; same && i < m * n; ++i) same = nntest::same_bits(c[i], want[i]);
                        CHECK_MSG(same, "differs from one fma per entry in order");
                        CHECK_MSG(c.guards_intact(), "wrote outside C");
                    }
                }
            }
        }
    }
}

// csr_gemm over many rows and a long k, where it visits B in chunks of kCsrChunkBytes, its rows'
// partial sums waiting in C (isa_impl.inc: csr_block): still one multiply-add per entry in
// order from zero, at chunk edges, over more rows than one group of kCsrRowGroup, with empty rows,
// rows whose entries all lie in a late chunk, a row whose columns are not ascending, and with beta
// (C an input too: the unchunked blocks then).
template <class T>
void test_csr_gemm_chunks(const KernelTable<T>& kt, int width, bool fused, Rng& rng) {
    Scope scope(std::string("csr_gemm in chunks ") + nntest::dtype_name<T>());
    const index_t nv = width * static_cast<index_t>(sizeof(T)) == 64 ? 16 : 4;  // the kernel's widest block
    const index_t block = nv * width, chunk = std::max<index_t>(1, (48 << 10) / (block * static_cast<index_t>(sizeof(T))));
    for (index_t m : {16, 37, 300}) {
        for (index_t n : {block, block + 3, 2 * block + 5}) {
            for (index_t k : {chunk - 1, chunk + 1, 2 * chunk + 7}) {
                if (m * k * n > (index_t(1) << 25)) continue;  // the scalar baseline's chunks are long
                for (bool beta : {false, true}) {
                    Scope inner("m=" + std::to_string(m) + " n=" + std::to_string(n) + " k=" + std::to_string(k) +
                                (beta ? " beta" : ""));
                    std::vector<index_t> begin(static_cast<std::size_t>(m)), end(static_cast<std::size_t>(m));
                    std::vector<std::int32_t> col;
                    std::vector<T> val;
                    for (index_t i = 0; i < m; ++i) {
                        begin[i] = static_cast<index_t>(col.size());
                        const index_t from = i % 5 == 1 ? k - k / 4 : 0;  // entries in the last chunks only
                        if (i % 7 != 3)                                     // else empty
                            for (index_t p = from; p < k; ++p)
                                if (rng.uniform() < 0.3 || p == k - 1) {
                                    col.push_back(static_cast<std::int32_t>(p));
                                    val.push_back(static_cast<T>(rng.uniform(-1, 1)));
                                }
                        end[i] = static_cast<index_t>(col.size());
                        if (i == 2) std::reverse(col.begin() + begin[i], col.end());  // descending columns
                    }
                    const std::vector<T> b = nntest::random_vector<T>(static_cast<std::size_t>(k * n), rng);
                    const std::vector<T> bias = nntest::random_vector<T>(static_cast<std::size_t>(n), rng);
                    const std::vector<T> c0 = nntest::random_vector<T>(static_cast<std::size_t>(m * n), rng);
                    Epilogue<T> ep;
                    ep.bias = bias.data();
                    ep.act = Act::relu;
                    ep.beta = beta;
                    nntest::Guarded<T> c(m * n, nntest::quiet_nan<T>());
                    if (beta)
                        for (index_t i = 0; i < m * n; ++i) c[i] = c0[i];
                    kt.csr_gemm(m, n, begin.data(), end.data(), col.data(), val.data(), b.data(), n, c.data(), n, ep);
                    std::vector<T> want = csr_reference(m, n, begin, end, col, val, b, static_cast<const T*>(nullptr),
                                                        Act::identity, fused);
                    for (index_t i = 0; i < m * n; ++i) {
                        T s = beta ? want[i] + c0[i] : want[i];
                        s = s + bias[i % n];
                        want[i] = s > T(0) ? s : T(0);
                    }
                    bool same = true;
                    for (index_t i = 0; same && i < m * n; ++i) same = nntest::same_bits(c[i], want[i]);
                    CHECK_MSG(same, "differs from one fma per entry in order");
                    CHECK_MSG(c.guards_intact(), "wrote outside C");
                }
            }
        }
    }
}

// The batch's lists, the forward and the weight gradient against dense references, 1 and 2 threads.
template <class T>
void test_batch_products(const KernelTable<T>& kt, Rng& rng) {
    Scope scope(std::string("sparse batch ") + nntest::dtype_name<T>());
    for (index_t rows : {1, 2, 63, 64, 65, 130}) {
        for (index_t cols : {1, 17, 200}) {
            for (index_t n : {37, 150}) {  // 150: the forward's columns split over 2 threads
                Scope inner("rows=" + std::to_string(rows) + " cols=" + std::to_string(cols) + " n=" + std::to_string(n));
                std::vector<T> x = sparse_values<T>(rows * cols, 0.2, rng);
                std::vector<const T*> row_data(static_cast<std::size_t>(rows));
                // Rows in a shuffled order, as the engine gathers them.
                for (index_t r = 0; r < rows; ++r) row_data[r] = x.data() + ((r * 7 + 3) % rows) * cols;
                const std::vector<T> wt = nntest::random_vector<T>(static_cast<std::size_t>(cols * n), rng);
                const std::vector<T> dy = nntest::random_vector<T>(static_cast<std::size_t>(rows * n), rng);
                const std::vector<T> bias = nntest::random_vector<T>(static_cast<std::size_t>(n), rng);
                std::vector<std::vector<T>> y_by_threads, dwt_by_threads;
                for (int threads : {1, 2}) {
                    nncore::SparseBatch<T> batch;
                    nncore::sparse_batch(kt, row_data.data(), rows, cols, batch, threads);
                    // The lists hold exactly the nonzeros, in order.
                    bool rows_ok = batch.rows == rows && batch.cols == cols, cols_ok = true;
                    std::vector<index_t> seen(static_cast<std::size_t>(cols), 0);
                    for (index_t r = 0; r < rows && rows_ok; ++r) {
                        for (int h = 0; h < 2; ++h) {  // each half of the columns apart
                            const index_t split = nncore::sparse_split(cols), p0 = h == 0 ? 0 : split, p1 = h == 0 ? split : cols;
                            index_t e = batch.row_begin[h][r];
                            for (index_t p = p0; p < p1; ++p) {
                                const T v = row_data[r][p];
                                if (v == T(0)) continue;
                                rows_ok = rows_ok && e < batch.row_end[h][r] && batch.col[e] == p &&
                                          nntest::same_bits(batch.row_val[e], v);
                                ++e;
                                const index_t c = batch.col_begin[p] + seen[p]++;
                                cols_ok = cols_ok && c < batch.col_end[p] && batch.row[c] == r && nntest::same_bits(batch.col_val[c], v);
                            }
                            rows_ok = rows_ok && e == batch.row_end[h][r];
                        }
                    }
                    for (index_t p = 0; p < cols; ++p) cols_ok = cols_ok && batch.col_begin[p] + seen[p] == batch.col_end[p];
                    CHECK_MSG(rows_ok, "row lists differ from the nonzeros (threads=" << threads << ")");
                    CHECK_MSG(cols_ok, "column lists differ from the nonzeros (threads=" << threads << ")");

                    Epilogue<T> ep;
                    ep.bias = bias.data();
                    ep.act = Act::relu;
                    std::vector<T> y(static_cast<std::size_t>(rows * n), nntest::quiet_nan<T>());
                    std::vector<T> dwt(static_cast<std::size_t>(cols * n), nntest::quiet_nan<T>());
                    std::vector<T> partial(static_cast<std::size_t>(rows * n), nntest::quiet_nan<T>());
                    nncore::sparse_forward(kt, batch, n, wt.data(), y.data(), partial.data(), ep, threads);
                    nncore::sparse_weight_grad(kt, batch, n, dy.data(), dwt.data(), threads);
                    // With rows_done, stored or not: every row reported once, in blocks within one
                    // half of the rows, holding the gradient's bits; dwt is written when stored only.
                    for (bool store : {true, false}) {
                        std::vector<T> dwt_blocks(static_cast<std::size_t>(cols * n), nntest::quiet_nan<T>());
                        std::vector<T> seen_blocks(static_cast<std::size_t>(cols * n), nntest::quiet_nan<T>());
                        std::vector<int> reported(static_cast<std::size_t>(cols), 0);
                        std::atomic<bool> blocks_ok{true};
                        const auto note_rows = [&](index_t r0, index_t r1, const T* block) {
                            const index_t split = nncore::sparse_split(cols);
                            if (!(0 <= r0 && r0 < r1 && r1 <= cols && (r1 <= split || r0 >= split))) blocks_ok = false;
                            if (store && block != dwt_blocks.data() + r0 * n) blocks_ok = false;
                            for (index_t r = r0; r < r1; ++r) {
                                ++reported[static_cast<std::size_t>(r)];
                                std::copy(block + (r - r0) * n, block + (r - r0 + 1) * n, seen_blocks.begin() + r * n);
                            }
                        };
                        const nncore::RowsDone<T> rows_done(note_rows);
                        nncore::sparse_weight_grad(kt, batch, n, dy.data(), dwt_blocks.data(), threads, &rows_done, store);
                        CHECK_MSG(blocks_ok.load() && std::all_of(reported.begin(), reported.end(), [](int c) { return c == 1; }),
                                  "rows_done blocks (threads=" << threads << ", store=" << store << ")");
                        CHECK_MSG(nntest::same_bits(seen_blocks, dwt), "rows_done blocks differ from the gradient (threads="
                                                                           << threads << ", store=" << store << ")");
                        const bool untouched = std::all_of(dwt_blocks.begin(), dwt_blocks.end(), [](T v) { return std::isnan(v); });
                        CHECK_MSG(store ? nntest::same_bits(dwt_blocks, dwt) : untouched,
                                  "dwt with rows_done (threads=" << threads << ", store=" << store << ")");
                    }
                    double worst_y = 0, worst_dw = 0;
                    for (index_t r = 0; r < rows; ++r)
                        for (index_t j = 0; j < n; ++j) {
                            double s = bias[j];
                            for (index_t p = 0; p < cols; ++p) s += double(row_data[r][p]) * wt[p * n + j];
                            worst_y = std::max(worst_y, std::fabs((s > 0 ? s : 0) - double(y[r * n + j])));
                        }
                    for (index_t p = 0; p < cols; ++p)
                        for (index_t j = 0; j < n; ++j) {
                            double s = 0;
                            for (index_t r = 0; r < rows; ++r) s += double(row_data[r][p]) * dy[r * n + j];
                            worst_dw = std::max(worst_dw, std::fabs(s - double(dwt[p * n + j])));
                        }
                    const double tolerance = (sizeof(T) == 4 ? 1e-5 : 1e-13) * double(std::max(rows, cols));
                    CHECK_MSG(worst_y <= tolerance, "forward error " << worst_y << " (threads=" << threads << ")");
                    CHECK_MSG(worst_dw <= tolerance, "weight gradient error " << worst_dw << " (threads=" << threads << ")");
                    y_by_threads.push_back(y);
                    dwt_by_threads.push_back(dwt);
                }
                CHECK_MSG(nntest::same_bits(y_by_threads[0], y_by_threads[1]), "forward differs between 1 and 2 threads");
                CHECK_MSG(nntest::same_bits(dwt_by_threads[0], dwt_by_threads[1]), "weight gradient differs between 1 and 2 threads");
            }
        }
    }
}

// Three epochs of Dense(in, 24) + act -> Dense(24, 5), cross-entropy, on mostly-zero inputs with
// momentum SGD or Adam and gradient clipping: the sparse path against the dense one (to rounding)
// and against itself on 2 threads (bit for bit), with the layer's arrays back in their layout.
template <class T>
void test_engine_sparse(const KernelTable<T>& kt, Act act, nncore::EngineUpdate update, Rng& rng) {
    Scope scope(std::string("engine sparse ") + nntest::dtype_name<T>() + " act=" + nntest::act_name(act) +
                (update == nncore::EngineUpdate::adam ? " adam" : " sgd"));
    const index_t n = 150, in = 40, hidden = 24, out = 5, batch = 32;
    const std::vector<T> x = sparse_values<T>(n * in, 0.2, rng);
    std::vector<std::int64_t> labels(static_cast<std::size_t>(n)), order(static_cast<std::size_t>(n));
    for (index_t i = 0; i < n; ++i) labels[i] = static_cast<std::int64_t>(rng.below(out)), order[i] = (i * 61 + 5) % n;
    const auto w1 = nntest::random_vector<T>(static_cast<std::size_t>(hidden * in), rng, -0.3, 0.3);
    const auto w2 = nntest::random_vector<T>(static_cast<std::size_t>(out * hidden), rng, -0.3, 0.3);
    const auto b1 = nntest::random_vector<T>(static_cast<std::size_t>(hidden), rng, -0.1, 0.1);
    const auto b2 = nntest::random_vector<T>(static_cast<std::size_t>(out), rng, -0.1, 0.1);
    struct Result {
        std::vector<T> w1, b1, w2, b2, dw1, state1;
        double loss;
    };
    const auto train = [&](bool sparse, int threads) {
        nncore::set_num_threads(threads);
        Result r{w1, b1, w2, b2, std::vector<T>(w1.size()), {}, 0.0};
        std::vector<T> db1(b1.size()), dw2(w2.size()), db2(b2.size());
        std::vector<std::vector<T>> state;
        for (std::size_t size : {w1.size(), b1.size(), w2.size(), b2.size()})
            for (int k = 0; k < 2; ++k) state.emplace_back(size, T(0));
        std::vector<nncore::EngineParamState<T>> states(4);
        for (int j = 0; j < 4; ++j) {
            if (update == nncore::EngineUpdate::adam) states[j].exp_avg = state[2 * j].data(), states[j].exp_avg_sq = state[2 * j + 1].data();
            else states[j].momentum_buffer = state[2 * j].data();
        }
        std::vector<std::int64_t> steps(4, 0);
        nncore::Engine<T> engine({{in, hidden, r.w1.data(), r.b1.data(), r.dw1.data(), db1.data(), act, T(0)},
                                  {hidden, out, r.w2.data(), r.b2.data(), dw2.data(), db2.data(), Act::identity, T(0)}});
        nncore::EpochArgs<T> a;
        a.x = x.data(), a.n = n, a.labels = labels.data(), a.order = order.data(), a.target_width = out, a.batch_size = batch;
        a.first_batch = 0, a.last_batch = (n + batch - 1) / batch, a.loss = nncore::EngineLoss::cross_entropy;
        a.update = update, a.sgd.lr = 0.05, a.sgd.momentum = 0.9, a.adam.lr = 1e-2, a.adam.beta1 = 0.9, a.adam.beta2 = 0.999;
        a.adam.eps = 1e-8, a.clip_norm = 5.0, a.states = states.data(), a.steps = steps.data(), a.sparse_input = sparse;
        for (int epoch = 0; epoch < 3; ++epoch) {
            nncore::EpochTotals totals;
            engine.run_epoch(kt, a, totals);
            CHECK(totals.failed_batch == -1 && totals.batches_done == a.last_batch);
            r.loss = totals.loss_sum;
        }
        r.state1 = state[0];
        return r;
    };
    const Result dense = train(false, 1), sparse = train(true, 1), sparse2 = train(true, 2);
    nncore::set_num_threads(1);
    const auto close = [](const std::vector<T>& a, const std::vector<T>& b) {
        double worst = 0, norm = 1e-30;
        for (std::size_t i = 0; i < a.size(); ++i)
            worst = std::max(worst, std::fabs(double(a[i]) - double(b[i]))), norm = std::max(norm, std::fabs(double(b[i])));
        return worst / norm;
    };
    const double tolerance = sizeof(T) == 4 ? 1e-4 : 1e-11;
    CHECK_MSG(close(sparse.w1, dense.w1) <= tolerance, "layer 1 weights: " << close(sparse.w1, dense.w1));
    CHECK_MSG(close(sparse.b1, dense.b1) <= tolerance, "layer 1 bias: " << close(sparse.b1, dense.b1));
    CHECK_MSG(close(sparse.w2, dense.w2) <= tolerance, "layer 2 weights: " << close(sparse.w2, dense.w2));
    CHECK_MSG(close(sparse.dw1, dense.dw1) <= tolerance, "layer 1 gradient: " << close(sparse.dw1, dense.dw1));
    CHECK_MSG(close(sparse.state1, dense.state1) <= tolerance, "layer 1 optimizer state: " << close(sparse.state1, dense.state1));
    CHECK_MSG(std::fabs(sparse.loss - dense.loss) <= tolerance * std::fabs(dense.loss), "loss " << sparse.loss << " vs " << dense.loss);
    CHECK_MSG(nntest::same_bits(sparse.w1, sparse2.w1) && nntest::same_bits(sparse.w2, sparse2.w2) &&
                  nntest::same_bits(sparse.dw1, sparse2.dw1) && nntest::same_bits(sparse.state1, sparse2.state1),
              "sparse path differs between 1 and 2 threads");
}

}  // namespace

int main() {
    nntest::for_each_isa([](nncore::Isa isa, const nncore::Tables& tables) {
        Rng rng(20261202);
        const int bytes = isa == nncore::Isa::avx512 ? 64 : isa == nncore::Isa::avx2 ? 32 : 0;
        test_compress(tables.f32, rng);
        test_compress(tables.f64, rng);
        test_csr_gemm(tables.f32, bytes ? bytes / 4 : 1, bytes != 0, rng);
        test_csr_gemm(tables.f64, bytes ? bytes / 8 : 1, bytes != 0, rng);
        test_csr_gemm_chunks(tables.f32, bytes ? bytes / 4 : 1, bytes != 0, rng);
        test_csr_gemm_chunks(tables.f64, bytes ? bytes / 8 : 1, bytes != 0, rng);
        test_batch_products(tables.f32, rng);
        test_batch_products(tables.f64, rng);
        for (Act act : {Act::relu, Act::gelu}) {
            test_engine_sparse(tables.f32, act, nncore::EngineUpdate::sgd, rng);
            test_engine_sparse(tables.f64, act, nncore::EngineUpdate::adam, rng);
        }
    });
    return nntest::finish("test_sparse");
}
