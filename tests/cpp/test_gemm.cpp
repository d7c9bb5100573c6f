// GEMM (gemm.h: packing, blocking, micro-kernel, epilogue, thread split) and the linear layer
// (ops.h) against naive references accumulated in long double, on every ISA this CPU supports.
//
// Every case poisons the output with NaN when it must not be read (beta == 0), pads every row of
// A and B with NaN (a kernel reading past a row produces NaN), and surrounds C with guard values
// that must still be bit-identical afterwards (ldc padding and whole rows before and after).
#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "gemm.h"
#include "harness.h"
#include "ops.h"
#include "thread_pool.h"

namespace {

using nncore::Act;
using nncore::ConstMatrix;
using nncore::Epilogue;
using nncore::KernelTable;
using nntest::act_name;
using nntest::act_ref;
using nntest::index_t;
using nntest::kActs;
using nntest::kLeakyAlpha;
using nntest::Rng;
using nntest::Scope;

// Compares got[0:count] with a long double reference. Each element may be off by
// rel * mag[i] (the accumulated rounding of a sum whose absolute terms add up to mag[i]; an
// activation never amplifies it, its slope is at most 1) plus 8 eps of the result (the activation's
// own error, at most 4 ulp). One CHECK per call, naming the first bad element.
template <class T>
void check_close(const char* what, const T* got, const std::vector<long double>& ref,
                 const std::vector<long double>& mag, long double rel) {
    const long double eps = std::numeric_limits<T>::epsilon();
    long long bad = 0;
    std::size_t first = 0;
    for (std::size_t i = 0; i < ref.size(); ++i) {
        const long double tol = rel * mag[i] + 8 * eps * std::fabs(ref[i]) + std::numeric_limits<T>::denorm_min();
        const long double err = std::fabs(static_cast<long double>(got[i]) - ref[i]);
        if (!(err <= tol)) {  // also catches NaN
            if (bad++ == 0) first = i;
        }
    }
    CHECK_MSG(bad == 0, what << ": " << bad << " of " << ref.size() << " elements wrong; first at flat index "
                             << first << ": got " << static_cast<long double>(got[first]) << ", expected "
                             << ref[first] << " (tolerance "
                             << rel * mag[first] + 8 * std::numeric_limits<T>::epsilon() * std::fabs(ref[first])
                             << ")");
}

// The long double reference of act(x w^T + bias) for x (rows x in), w (out x in) and bias (out, or
// null), and the sums of absolute terms that bound its rounding (for check_close).
template <class T>
void dense_reference(const T* x, const T* w, const T* bias, Act act, long double alpha, index_t rows, index_t in,
                     index_t out, std::vector<long double>& ref, std::vector<long double>& mag) {
    ref.assign(static_cast<std::size_t>(rows * out), 0);
    mag.assign(static_cast<std::size_t>(rows * out), 0);
    for (index_t r = 0; r < rows; ++r)
        for (index_t o = 0; o < out; ++o) {
            long double acc = bias ? bias[o] : 0, abs_sum = std::fabs(acc);
            for (index_t i = 0; i < in; ++i) {
                const long double t = static_cast<long double>(x[r * in + i]) * w[o * in + i];
                acc += t;
                abs_sum += std::fabs(t);
            }
            ref[r * out + o] = act_ref(act, alpha, acc);
            mag[r * out + o] = abs_sum;
        }
}

// ---------------------------------------------------------------------------------------------
// How a logical matrix is laid out in memory.
struct Layout {
    bool trans = false;     // stored transposed: the logical columns are the contiguous rows
    bool reversed = false;  // stored rows in reverse order: the view starts at the last stored row
                            // and steps back with a negative stride
    index_t pad = 0;        // extra elements (NaN) after each stored row: leading dimension > row
};

std::string describe(const Layout& l) {
    std::string s = l.trans ? "T" : "N";
    if (l.reversed) s += ",reversed";
    if (l.pad) s += ",pad=" + std::to_string(l.pad);
    return s;
}

// A logical rows x cols matrix (row-major `values`) placed in memory according to a Layout;
// view() is the ConstMatrix gemm receives. Padding is NaN, so a kernel that reads it fails.
template <class T>
class StoredMatrix {
public:
    StoredMatrix(const std::vector<T>& values, index_t rows, index_t cols, const Layout& layout) {
        const index_t stored_rows = layout.trans ? cols : rows;
        const index_t ld = (layout.trans ? rows : cols) + layout.pad;
        storage_.assign(static_cast<std::size_t>(std::max<index_t>(1, stored_rows * ld)), nntest::quiet_nan<T>());
        T* origin = storage_.data();
        index_t step = ld;
        if (layout.reversed && stored_rows > 0) {
            origin += (stored_rows - 1) * ld;
            step = -ld;
        }
        const index_t rs = layout.trans ? 1 : step, cs = layout.trans ? step : 1;
        for (index_t r = 0; r < rows; ++r)
            for (index_t c = 0; c < cols; ++c) origin[r * rs + c * cs] = values[r * cols + c];
        view_ = ConstMatrix<T>{origin, rs, cs};
    }
    StoredMatrix(const StoredMatrix&) = delete;  // the view points into storage_
    StoredMatrix& operator=(const StoredMatrix&) = delete;
    ConstMatrix<T> view() const { return view_; }

private:
    std::vector<T> storage_;
    ConstMatrix<T> view_{};
};

struct GemmSpec {
    index_t m = 0, n = 0, k = 0;
    Layout a, b;
    index_t pad_c = 0;  // ldc = n + pad_c
    int beta = 0;
    bool bias = false;
    Act act = Act::identity;
};

std::string describe(const GemmSpec& s) {
    return "m=" + std::to_string(s.m) + " n=" + std::to_string(s.n) + " k=" + std::to_string(s.k) + " A[" +
           describe(s.a) + "] B[" + describe(s.b) + "] ldc=n+" + std::to_string(s.pad_c) +
           " beta=" + std::to_string(s.beta) + " bias=" + (s.bias ? "yes" : "no") + " act=" + act_name(s.act);
}

Layout random_layout(Rng& rng) {
    Layout l;
    l.trans = rng.coin();
    l.reversed = rng.coin();
    l.pad = rng.coin() ? 0 : 1 + static_cast<index_t>(rng.below(5));
    return l;
}

GemmSpec random_spec(index_t m, index_t n, index_t k, Rng& rng) {
    GemmSpec s;
    s.m = m;
    s.n = n;
    s.k = k;
    s.a = random_layout(rng);
    s.b = random_layout(rng);
    s.pad_c = rng.coin() ? 0 : 1 + static_cast<index_t>(rng.below(7));
    s.beta = rng.coin() ? 1 : 0;
    s.bias = rng.coin();
    s.act = kActs[rng.below(nntest::kActCount)];
    return s;
}

// Runs one GEMM case with each thread count in turn: the first result is checked against the
// reference, every later one must be bit-identical to it (threads never split k).
template <class T>
void check_gemm(const KernelTable<T>& kt, const GemmSpec& s, Rng& rng, const std::vector<int>& thread_counts = {1}) {
    Scope scope(describe(s));
    const index_t m = s.m, n = s.n, k = s.k;
    const std::vector<T> a_values = nntest::random_vector<T>(m * k, rng);
    const std::vector<T> b_values = nntest::random_vector<T>(k * n, rng);
    const std::vector<T> bias = nntest::random_vector<T>(n, rng);
    const std::vector<T> c0 = nntest::random_vector<T>(m * n, rng);
    const StoredMatrix<T> a(a_values, m, k, s.a), b(b_values, k, n, s.b);

    Epilogue<T> ep;
    ep.beta = s.beta;
    ep.bias = s.bias ? bias.data() : nullptr;
    ep.act = s.act;
    ep.alpha = T(kLeakyAlpha);  // set for every act: only leaky_relu may use it

    // C sits between `guard` guard values on each side and has ldc - n guard values after each row.
    const index_t ldc = n + s.pad_c, guard = 32;
    std::vector<T> c_init(static_cast<std::size_t>(m * ldc + 2 * guard), nntest::guard_value<T>());
    for (index_t i = 0; i < m; ++i)
        for (index_t j = 0; j < n; ++j)
            c_init[guard + i * ldc + j] = s.beta ? c0[i * n + j] : nntest::quiet_nan<T>();

    // Reference, and the sum of absolute terms that bounds its rounding error.
    std::vector<long double> ref(m * n), mag(m * n);
    const long double alpha = static_cast<long double>(ep.alpha);
    for (index_t i = 0; i < m; ++i)
        for (index_t j = 0; j < n; ++j) {
            long double acc = 0, abs_sum = 0;
            for (index_t p = 0; p < k; ++p) {
                const long double t = static_cast<long double>(a_values[i * k + p]) * b_values[p * n + j];
                acc += t;
                abs_sum += std::fabs(t);
            }
            if (s.beta) {
                acc += c0[i * n + j];
                abs_sum += std::fabs(static_cast<long double>(c0[i * n + j]));
            }
            if (s.bias) {
                acc += bias[j];
                abs_sum += std::fabs(static_cast<long double>(bias[j]));
            }
            ref[i * n + j] = act_ref(s.act, alpha, acc);
            mag[i * n + j] = abs_sum;
        }
    // Rounding of a k-term dot product grows like sqrt(k) for random data (the worst case is k);
    // this stays below 1e-5 relative for float even for the largest k tested.
    const long double rel = std::numeric_limits<T>::epsilon() * (2 * std::sqrt(static_cast<long double>(k + 2)) + 4);

    std::vector<T> first_result;
    for (int threads : thread_counts) {
        Scope thread_scope("threads=" + std::to_string(threads));
        nncore::set_num_threads(threads);
        std::vector<T> c = c_init;
        nncore::gemm(kt, m, n, k, a.view(), b.view(), c.data() + guard, ldc, ep, threads);
        if (!first_result.empty()) {
            CHECK_MSG(nntest::same_bits(c, first_result), "result differs from the one with "
                                                               << thread_counts.front() << " thread(s)");
            continue;
        }
        first_result = c;
        std::vector<T> got(m * n);
        for (index_t i = 0; i < m; ++i)
            for (index_t j = 0; j < n; ++j) got[i * n + j] = c[guard + i * ldc + j];
        check_close("C", got.data(), ref, mag, rel);
        // Everything outside the m x n block keeps its guard bits.
        long long touched = 0;
        index_t first_touched = -1;
        for (index_t idx = 0; idx < static_cast<index_t>(c.size()); ++idx) {
            const index_t off = idx - guard;
            const bool inside = off >= 0 && off < m * ldc && off % ldc < n;
            if (!inside && !nntest::same_bits(c[idx], nntest::guard_value<T>()))
                if (touched++ == 0) first_touched = off;
        }
        CHECK_MSG(touched == 0, touched << " elements outside the m x n block of C were modified; first at offset "
                                        << first_touched << " from C (ldc=" << ldc << ")");
    }
    nncore::set_num_threads(1);
}

template <class T>
void test_gemm(const KernelTable<T>& kt, Rng& rng) {
    Scope scope(std::string("gemm ") + nntest::dtype_name<T>());
    const index_t mr = kt.tile.mr, nr = kt.nr, kc = kt.kc, ks = kt.kc_small, mc = kt.mc, nc = kt.nc;
    const index_t short_rows = nncore::kShortKcMaxRows;
    std::vector<index_t> sizes = {0, 1, 2, 3, mr - 1, mr, mr + 1, nr - 1, nr, nr + 1, 7, 13, 31, 61, 127};
    std::sort(sizes.begin(), sizes.end());
    sizes.erase(std::unique(sizes.begin(), sizes.end()), sizes.end());
    long long cases = 0;

    // 1. Every (m, n, k) combination of edge sizes, twice, each time with a random layout and
    //    epilogue (over the ~3000 combinations every layout x epilogue pair comes up many times).
    for (index_t m : sizes)
        for (index_t n : sizes)
            for (index_t k : sizes)
                for (int repeat = 0; repeat < 2; ++repeat) {
                    check_gemm(kt, random_spec(m, n, k, rng), rng);
                    ++cases;
                }

    // 2. Every layout x every epilogue, on shapes with partial tiles in both directions (the
    //    second also has k = 1, the third k = 0: C = act(beta C + bias)).
    const index_t shapes[][3] = {{mr + 1, nr + 1, 13}, {2 * mr - 1, 2 * nr + 3, 1}, {5, 3, 0}};
    for (const auto& shape : shapes)
        for (int layout = 0; layout < 16; ++layout)
            for (int beta = 0; beta < 2; ++beta)
                for (int bias = 0; bias < 2; ++bias)
                    for (Act act : kActs) {
                        GemmSpec s;
                        s.m = shape[0];
                        s.n = shape[1];
                        s.k = shape[2];
                        s.a.trans = layout & 1;
                        s.a.reversed = layout & 2;
                        s.b.trans = layout & 4;
                        s.b.reversed = layout & 8;
                        s.a.pad = (layout + beta) % 3;
                        s.b.pad = (layout + bias) % 4;
                        s.pad_c = (layout + static_cast<int>(act)) % 3;
                        s.beta = beta;
                        s.bias = bias;
                        s.act = act;
                        check_gemm(kt, s, rng);
                        ++cases;
                    }

    // 3. Shapes beyond the cache blocks: tall-skinny, short-fat, k > kc (several k blocks, so
    //    the epilogue must apply bias and activation on the last block only), m > mc, n > nc.
    //    Up to kShortKcMaxRows (64) rows the k blocks are kc_small long at most, and of equal
    //    length (gemm_kc): k around it there, and around kc from one row more on.
    const index_t big[][3] = {{1000, 3, 5},          {3, 1000, 7},         {17, 19, 2 * kc + 3},
                              {mc + mr + 1, 2 * nr + 1, 9}, {4, nc + nr + 3, 5}, {mc + 5, nc + 7, 3},
                              {mc + 13, 37, kc + 5}, {mr + 2, nr + 3, ks - 1}, {mr + 2, nr + 3, ks + 1},
                              {2 * mr - 1, nr + 1, 2 * ks + 1}, {short_rows, nr + 5, 3 * ks + 16}, {short_rows + 1, nr + 3, kc + 1}};
    for (const auto& shape : big)
        for (int variant = 0; variant < 4; ++variant) {
            GemmSpec s = random_spec(shape[0], shape[1], shape[2], rng);
            s.beta = variant & 1;
            s.bias = variant & 2;
            s.act = variant == 3 ? Act::tanh : kActs[rng.below(nntest::kActCount)];
            check_gemm(kt, s, rng);
            ++cases;
        }

    // 4. Thread counts: big enough that the driver really splits (over m for the first, n for
    //    the second), and each result must be bit-identical across 1, 2 and 3 threads. With a
    //    short tile, the last two take it on 2 threads only (choose_row_tile: the rows of the
    //    slowest part; float32 AVX-512: 11 twelve-row tiles split 6 / 5, 16 eight-row ones 8 / 8).
    const index_t threaded[][3] = {{500, 40, 40},     {40, 500, 40},           {200, 70, 2 * kc + 3},
                                   {2 * mc + 1, 4 * nr + 3, 2 * kc + 1}, {128, 8 * nr, 64}, {224, 4 * nr, 256},
                                   {short_rows, 4 * nr + 3, 3 * ks + 16}};
    for (const auto& shape : threaded)
        for (int variant = 0; variant < 2; ++variant) {
            GemmSpec s = random_spec(shape[0], shape[1], shape[2], rng);
            s.beta = variant;
            s.bias = true;
            s.act = variant ? Act::sigmoid : Act::leaky_relu;
            check_gemm(kt, s, rng, {1, 2, 3});
            ++cases;
        }
    std::printf("    gemm %s: %lld cases (mr=%d nr=%d kc=%d (%d up to %d rows) mc=%d nc=%d)\n", nntest::dtype_name<T>(), cases,
                kt.tile.mr, kt.nr, kt.kc, kt.kc_small, static_cast<int>(nncore::kShortKcMaxRows), kt.mc, kt.nc);
}

// The unpacked small-problem paths of the driver (gemm.cpp: choose_path). The dot kernel runs when
// A's rows and B's columns are both contiguous along k (X W^T with W stored (out, in)) and m <= 4,
// n <= 16 or B is small; the direct kernel when B's rows are contiguous and m <= 4, k <= 4, or B
// is small and k <= the table's direct_max_k.
// Layouts are forced so that each path really runs, on edge sizes around the vector width (W),
// the row blocks (4) and the column blocks, with leading dimensions > row, reversed rows
// (negative strides), every epilogue, and threads (results bit-identical for 1, 2, 3).
template <class T>
void test_gemm_unpacked_paths(const KernelTable<T>& kt, Rng& rng) {
    Scope scope(std::string("gemm unpacked paths ") + nntest::dtype_name<T>());
    const index_t w = 64 / static_cast<index_t>(sizeof(T));  // at least the vector width of any ISA
    long long cases = 0;
    auto run = [&](index_t m, index_t n, index_t k, bool dot, const std::vector<int>& threads) {
        GemmSpec s = random_spec(m, n, k, rng);
        s.a.trans = false;     // A rows contiguous along k (dot); the direct kernel takes any A
        if (!dot) s.a.trans = rng.coin();
        s.a.pad = rng.coin() ? 0 : 1 + static_cast<index_t>(rng.below(5));
        s.b.trans = dot;       // dot: B^T rows contiguous along k; direct: B rows contiguous along n
        check_gemm(kt, s, rng, threads);
        ++cases;
    };
    const index_t small_m[] = {1, 2, 3, 4, 5};
    const index_t ks[] = {0, 1, 2, 3, 4, 5, w - 1, w, w + 1, 37, 3 * w + 5};
    const index_t ns[] = {1, 2, 3, 4, 5, 8, 15, 16, 17, w - 1, w, w + 1, 4 * w - 1, 4 * w + 3, 131};
    for (index_t m : small_m)
        for (index_t n : ns)
            for (index_t k : ks) {
                run(m, n, k, true, {1});
                run(m, n, k, false, {1});
            }
    // Few columns with many rows (dot), short k with many rows (direct), a B small enough for the
    // dot path at a moderate batch.
    const index_t dot_m[] = {6, 9, 30, 67}, dot_n[] = {1, 3, 10, 16}, dot_k[] = {1, 7, w + 3, 128};
    for (index_t m : dot_m)
        for (index_t n : dot_n)
            for (index_t k : dot_k) run(m, n, k, true, {1});
    const index_t direct_m[] = {6, 9, 37, 100}, direct_n[] = {1, 5, w + 1, 70}, direct_k[] = {0, 1, 2, 3, 4};
    for (index_t m : direct_m)
        for (index_t n : direct_n)
            for (index_t k : direct_k) run(m, n, k, false, {1});
    // Longer reductions take the direct kernel too while B fits in L2, up to the table's
    // direct_max_k (with a short one, these cases run packed).
    const index_t long_k[] = {w + 3, 3 * w + 5, 200};
    for (index_t m : direct_m)
        for (index_t n : direct_n)
            for (index_t k : long_k)
                if (k <= kt.direct_max_k) run(m, n, k, false, {1});
    run(300, 200, std::min<index_t>(kt.direct_max_k, 150), false, {1, 2, 3});
    run(40, 50, 70, true, {1});
    // Threaded: large enough to split rows (first of each) or columns (second).
    run(700, 10, 200, true, {1, 2, 3});
    run(2, 3000, 300, true, {1, 2, 3});
    run(3000, 100, 3, false, {1, 2, 3});
    run(3, 5000, 100, false, {1, 2, 3});
    // The direct kernel splits rows also when they are fewer than the columns but B is small.
    run(102, 300, std::min<index_t>(kt.direct_max_k, 40), false, {1, 2, 3});
    // Reductions around the direct kernel's sum block (k summed in blocks added to C in turn, bias
    // and activation with the last): every epilogue, one row (the GEMV) and row blocks.
    const index_t block = nncore::kDirectSumBlock;
    for (index_t m : {1, 3, 4})
        for (index_t k : {block - 1, block, block + 1, 2 * block + 3}) run(m, m == 1 ? 2 * w + 3 : w + 1, k, false, {1, 2});
    // One row (the GEMV in axpy order, columns in blocks of 4 KiB): several blocks and a tail.
    run(1, 3000, 37, false, {1, 2, 3});
    run(1, 1029, 5, false, {1});
    run(1, 513, 2 * w + 1, false, {1});
    std::printf("    gemm unpacked paths %s: %lld cases\n", nntest::dtype_name<T>(), cases);
}

// An epilogue with `bias` or none and a random activation (beta 0).
template <class T>
Epilogue<T> random_bias_and_act(const std::vector<T>& bias, Rng& rng) {
    Epilogue<T> ep;
    ep.bias = rng.coin() ? bias.data() : nullptr;
    ep.act = kActs[rng.below(nntest::kActCount)];
    ep.alpha = T(kLeakyAlpha);
    return ep;
}

// `values` (rows x cols, by rows) copied to rows ld apart, the first starting `offset` values past a
// 64-byte boundary, in memory that `store` owns.
template <class T>
T* place_rows(const std::vector<T>& values, index_t rows, index_t cols, index_t ld, index_t offset, std::vector<T>& store) {
    const index_t line = 64 / static_cast<index_t>(sizeof(T));
    store.assign(static_cast<std::size_t>(rows * ld + 2 * line), T(0));
    T* base = store.data() + (line - reinterpret_cast<std::uintptr_t>(store.data()) % 64 / sizeof(T)) % line + offset;
    for (index_t r = 0; r < rows; ++r) std::copy(values.begin() + r * cols, values.begin() + (r + 1) * cols, base + r * ld);
    return base;
}

// For each row stride in `lds` and each offset within a line: `values` (rows x cols) placed there
// (place_rows), then `product(placed, ld)`, whose result must have the bits of `want` (`what`
// names the placed matrix). Returns the number of runs.
template <class T, class Product>
long long check_same_bits_at_every_offset(const std::vector<T>& values, index_t rows, index_t cols,
                                          std::initializer_list<index_t> lds, const std::vector<T>& want,
                                          const char* what, Product&& product) {
    const index_t line = 64 / static_cast<index_t>(sizeof(T));
    std::vector<T> store;
    long long runs = 0;
    for (index_t ld : lds)
        for (index_t offset = 0; offset < line; ++offset) {
            const std::vector<T> got = product(place_rows(values, rows, cols, ld, offset, store), ld);
            CHECK_MSG(nntest::same_bits(got, want), what << " at offset " << offset << ", ld=" << ld
                                                    << ": other bits than on a 64-byte boundary");
            ++runs;
        }
    return runs;
}

// gemm_dot reads a B larger than L1 in one of three ways (isa_impl.inc: DotRead), by B's address
// and row length: plain (rows on vector boundaries), shifted (rows all at one nonzero offset from
// a vector boundary) or prefetching (rows at different offsets). All must give the bits of the
// plain read: the same product with B copied to a 64-byte boundary with rows of whole lines, at
// every offset within a line, with rows of a multiple of the vector (shifted) or not (prefetch),
// k around the vector widths and short of one vector after the shift, n % 8 from 0 to 7 (single
// rows take columns 8 at a time there), 1-5 rows (blocks of 4 or 2, then fewer), every epilogue;
// plus B in L1 (plain whatever its address). The copy's result is checked against the long double
// reference. One element's products all underflow to -0, whose sign every read must keep.
template <class T>
void test_gemm_dot_reads(const KernelTable<T>& kt, Rng& rng) {
    Scope scope(std::string("gemm dot reads ") + nntest::dtype_name<T>());
    const index_t line = 64 / static_cast<index_t>(sizeof(T));
    long long cases = 0;
    const index_t ks[] = {1, 2, 3, line / 2 - 1, line / 2, line / 2 + 1, line - 1, line, line + 1, 37, 2 * line + 3, 131, 784};
    for (index_t k : ks)
        for (index_t m = 1; m <= 5; ++m)
            for (bool in_l1 : {false, true}) {
                // B of more than 64 KiB (kStreamMinBytes) is streamed; 2 KiB stays in L1.
                const index_t bytes = in_l1 ? 2048 : (64 << 10) + 1;
                const index_t n = std::max<index_t>(1, bytes / (k * static_cast<index_t>(sizeof(T))) + 1) / 8 * 8 +
                                  static_cast<index_t>(rng.below(8)) + (in_l1 ? 1 : 8);
                Scope c("m=" + std::to_string(m) + " n=" + std::to_string(n) + " k=" + std::to_string(k));
                std::vector<T> a = nntest::random_vector<T>(m * k, rng), b = nntest::random_vector<T>(n * k, rng);
                const std::vector<T> bias = nntest::random_vector<T>(n, rng);
                // C[0][0] sums products that all round to -0 (so it is -0 unless a read adds +0 to
                // a lane), and A has some zeros.
                const T tiny = std::sqrt(std::numeric_limits<T>::denorm_min()) / 2;
                for (index_t p = 0; p < k; ++p) {
                    a[p] = -tiny;
                    b[p] = tiny;
                }
                for (index_t i = k; i < m * k; i += 5) a[i] = T(0);
                const Epilogue<T> ep = random_bias_and_act(bias, rng);
                // The plain read's copy: 64-byte aligned, rows a whole number of lines apart.
                const index_t ld_lines = (k + line - 1) / line * line;
                std::vector<T> plain_store;
                const T* plain_b = place_rows(b, n, k, ld_lines, 0, plain_store);
                std::vector<T> want(m * n);
                kt.gemm_dot(m, n, k, a.data(), k, plain_b, ld_lines, want.data(), n, ep);
                if (k == 131 || k == 37) {  // the copy itself against the reference, once per shape
                    std::vector<long double> ref, mag;
                    dense_reference(a.data(), b.data(), ep.bias, ep.act, static_cast<long double>(ep.alpha), m, k, n, ref, mag);
                    ref[0] = want[0];  // each product underflows (by design, see above): not a sum to check
                    check_close("C", want.data(), ref, mag, 2 * k * static_cast<long double>(std::numeric_limits<T>::epsilon()));
                }
                // B at every offset within a line, rows k apart (a multiple of the vector or not)
                // and a whole number of vectors plus one value apart.
                cases += check_same_bits_at_every_offset(b, n, k, {k, ld_lines + 1}, want, "B", [&](const T* placed, index_t ld) {
                    std::vector<T> got(m * n);
                    kt.gemm_dot(m, n, k, a.data(), k, placed, ld, got.data(), n, ep);
                    return got;
                });
            }
    std::printf("    gemm dot reads %s: %lld cases\n", nntest::dtype_name<T>(), cases);
}

// gemm_direct streams a B larger than L1 (by rows, k x n) with its loads on vector boundaries when
// the rows all start at one offset from one (isa_impl.inc: streamed_head): the columns before the
// boundary go first as a partial vector, and a single row of C keeps its sums at B's offset. The
// bits must be those of B copied to a 64-byte boundary: at every offset within a line, rows of a
// multiple of the vector or not, n around the 4-vector column block and past a single row's
// 4 KiB block of sums, k = 1..5 rows of B at a time and more, 1-5 rows of C, every epilogue.
// And with a short k, C at every offset (below).
template <class T>
void test_gemm_direct_reads(const KernelTable<T>& kt, Rng& rng) {
    Scope scope(std::string("gemm direct reads ") + nntest::dtype_name<T>());
    const index_t line = 64 / static_cast<index_t>(sizeof(T)), sums_block = 4096 / static_cast<index_t>(sizeof(T));
    long long cases = 0;
    const index_t ns[] = {4 * line + 5, 131, 784, sums_block + 7};
    for (index_t n : ns)
        for (index_t m = 1; m <= 5; ++m) {
            const index_t k = (64 << 10) / (n * static_cast<index_t>(sizeof(T))) + 1 + static_cast<index_t>(rng.below(6));
            Scope c("m=" + std::to_string(m) + " n=" + std::to_string(n) + " k=" + std::to_string(k));
            const std::vector<T> a = nntest::random_vector<T>(m * k, rng), b = nntest::random_vector<T>(k * n, rng);
            const std::vector<T> bias = nntest::random_vector<T>(n, rng);
            const Epilogue<T> ep = random_bias_and_act(bias, rng);
            const index_t ld_lines = (n + line - 1) / line * line;
            std::vector<T> plain_store;
            const T* plain_b = place_rows(b, k, n, ld_lines, 0, plain_store);
            std::vector<T> want(m * n);
            kt.gemm_direct(m, n, k, a.data(), k, 1, plain_b, ld_lines, want.data(), n, ep);
            cases += check_same_bits_at_every_offset(b, k, n, {n, ld_lines + 1, ld_lines + line}, want, "B",
                                                     [&](const T* placed, index_t ld) {
                                                         std::vector<T> got(m * n);
                                                         kt.gemm_direct(m, n, k, a.data(), k, 1, placed, ld, got.data(), n, ep);
                                                         return got;
                                                     });
        }
    // A short k (B in L1, an outer product bound by the stores of C): C's rows take their stores
    // on vector boundaries instead, when C is larger than L1; the same bits at every offset of C.
    for (index_t k = 1; k <= 5; ++k)
        for (index_t m : {index_t(5), index_t(22), index_t(67)})
            for (index_t n : {index_t(784), 4 * line + 5}) {
                Scope c("C placed: m=" + std::to_string(m) + " n=" + std::to_string(n) + " k=" + std::to_string(k));
                const std::vector<T> a = nntest::random_vector<T>(m * k, rng), b = nntest::random_vector<T>(k * n, rng);
                const std::vector<T> bias = nntest::random_vector<T>(n, rng);
                const Epilogue<T> ep = random_bias_and_act(bias, rng);
                const index_t ld_lines = (n + line - 1) / line * line;
                std::vector<T> want(m * n);
                kt.gemm_direct(m, n, k, a.data(), 1, m, b.data(), n, want.data(), n, ep);  // A by columns (dY^T)
                const std::vector<T> nans(static_cast<std::size_t>(m * n), nntest::quiet_nan<T>());
                cases += check_same_bits_at_every_offset(nans, m, n, {n, ld_lines + line}, want, "C", [&](T* c_at, index_t ldc) {
                    kt.gemm_direct(m, n, k, a.data(), 1, m, b.data(), n, c_at, ldc, ep);
                    std::vector<T> got(m * n);
                    for (index_t i = 0; i < m; ++i) std::copy(c_at + i * ldc, c_at + i * ldc + n, got.begin() + i * n);
                    return got;
                });
            }
    std::printf("    gemm direct reads %s: %lld cases\n", nntest::dtype_name<T>(), cases);
}

// pack_b (which also packs A, as A^T) straight against a naive loop, bit for bit: random bit
// patterns from B, zeros in the columns of a partial panel, nothing written around `out`. The
// transposing path (rs == 1: each column of B contiguous along k) works in w x w blocks for the
// vector width w, so kc and nc go around w and its multiples, with tight, padded, zero and
// negative column strides; the other stride forms run once per size.
template <class T>
void test_pack_b(const KernelTable<T>& kt, index_t w, Rng& rng) {
    Scope scope(std::string("pack_b ") + nntest::dtype_name<T>());
    // Every panel width the drivers use: B's nr, and A's (or the conv weights') mr, since A is
    // packed as A^T.
    std::vector<int> nrs;
    auto add = [&](int width) {
        if (std::find(nrs.begin(), nrs.end(), width) == nrs.end()) nrs.push_back(width);
    };
    add(kt.nr);
    add(kt.tile.mr);
    add(kt.tile_short.mr);
    for (int t = 0; t < kt.conv_tile_count; ++t) {
        add(kt.conv_tiles[t].nr);
        add(kt.conv_tiles[t].mr);
    }
    add(static_cast<int>(w) + 3);  // not a multiple of the vector width (when w > 1)
    const index_t sizes[] = {0, 1, 2, 3, 5, 7, 13, w - 1, w, w + 1, 2 * w + 3};
    long long cases = 0;
    auto run = [&](index_t kc, index_t nc, int nr, index_t rs, index_t cs) {
        Scope c("kc=" + std::to_string(kc) + " nc=" + std::to_string(nc) + " nr=" + std::to_string(nr) +
                " rs=" + std::to_string(rs) + " cs=" + std::to_string(cs));
        // The span of B's elements (p, j) at p*rs + j*cs, in guards.
        index_t lo = 0, hi = 0;
        if (kc > 0 && nc > 0)
            for (index_t p : {index_t(0), kc - 1})
                for (index_t j : {index_t(0), nc - 1}) {
                    lo = std::min(lo, p * rs + j * cs);
                    hi = std::max(hi, p * rs + j * cs + 1);
                }
        nntest::Guarded<T> b(hi - lo, T(0));
        for (index_t i = 0; i < hi - lo; ++i) b[i] = nntest::random_finite<T>(rng);
        const T* origin = b.data() - lo;
        const index_t panels = (nc + nr - 1) / nr;
        nntest::Guarded<T> out(panels * kc * nr, nntest::quiet_nan<T>());
        kt.pack_b(origin, rs, cs, kc, nc, nr, out.data());
        std::vector<T> got(out.data(), out.data() + out.size()), want(static_cast<std::size_t>(out.size()));
        for (index_t jp = 0; jp < panels; ++jp)
            for (index_t p = 0; p < kc; ++p)
                for (index_t jj = 0; jj < nr; ++jj) {
                    const index_t j = jp * nr + jj;
                    want[(jp * kc + p) * nr + jj] = j < nc ? origin[p * rs + j * cs] : T(0);
                }
        CHECK_MSG(nntest::same_bits(got, want), "packed values differ");
        CHECK_MSG(out.guards_intact(), "write outside the packed panels");
        CHECK_MSG(b.guards_intact(), "write into B");
        ++cases;
    };
    for (int nr : nrs)
        for (index_t kc : sizes)
            for (index_t nc : sizes) {
                for (index_t cs : {kc, kc + 5, -(kc + 2), index_t(0)}) run(kc, nc, nr, 1, cs);
                run(kc, nc, nr, nc + 2, 1);   // B by rows
                run(kc, nc, nr, 3, 7 * kc + 1);  // neither contiguous
                run(kc, nc, nr, -(nc + 1), -1);  // reversed rows and columns
            }
    // Several panels and k blocks (the conv weight gradient's LeNet shape, and a long partial one).
    for (int nr : nrs) {
        run(784, 16, nr, 1, 784);
        run(2 * w + 3, 5 * nr + 3, nr, 1, 2 * w + 6);
    }
    // B by rows in blocks around pack_b's 512 KiB limit, below which it goes one panel at a time
    // and above which row by row (ragged last panels on both sides).
    const index_t limit_values = index_t(512 << 10) / static_cast<index_t>(sizeof(T));
    for (int nr : {kt.nr, kt.tile.mr}) {
        const index_t nc = 4 * nr + 3;
        for (index_t kc : {limit_values / nc, limit_values / nc + 1}) run(kc, nc, nr, nc + 5, 1);
    }
    std::printf("    pack_b %s: %lld cases\n", nntest::dtype_name<T>(), cases);
}

// The packed path's k block (gemm_kc): up to kShortKcMaxRows rows k in the fewest blocks of at most
// kc_small, of equal length but for a last one at most a step per block shorter; beyond, kc.
template <class T>
void test_gemm_kc(const KernelTable<T>& kt) {
    Scope scope(std::string("gemm_kc ") + nntest::dtype_name<T>());
    const index_t ks = kt.kc_small, short_rows = nncore::kShortKcMaxRows;
    for (index_t m : {index_t(1), index_t(17), short_rows, short_rows + 1, index_t(1000)})
        for (index_t k : {index_t(0), index_t(1), ks - 1, ks, ks + 1, 3 * ks + 16, 7 * ks + 5, index_t(kt.kc) + 1}) {
            Scope shape("m=" + std::to_string(m) + " k=" + std::to_string(k));
            const index_t kc = nncore::gemm_kc(kt, m, k);
            if (m > short_rows || ks >= kt.kc) {
                CHECK_MSG(kc == kt.kc, "kc=" << kc);
                continue;
            }
            const index_t blocks = std::max<index_t>(1, (k + ks - 1) / ks);
            CHECK_MSG(kc >= 1 && kc <= ks, "kc=" << kc);
            CHECK_MSG(k == 0 || ((k + kc - 1) / kc == blocks && blocks * kc - k < blocks), "kc=" << kc << ", " << blocks << " blocks");
        }
}

// A NaN in A or B reaches exactly the outputs that depend on it, whatever the activation (a
// diverging network must show it, not hide it): NaN at A(i0, p0) makes row i0 of C NaN and
// B(p0, j0) column j0. p0 lies in the middle k block, so the NaN also has to survive the
// accumulation of partial sums across blocks.
template <class T>
void test_gemm_nan_propagation(const KernelTable<T>& kt, Rng& rng) {
    Scope scope(std::string("gemm NaN propagation ") + nntest::dtype_name<T>());
    const index_t m = kt.tile.mr + 3, n = kt.nr + 5, k = 2 * kt.kc_small + 3, p0 = nncore::gemm_kc(kt, m, k) + 1;
    const index_t i0 = m - 2, j0 = n - 3;
    for (int in_b = 0; in_b < 2; ++in_b)
        for (Act act : kActs) {
            Scope act_scope(std::string(in_b ? "NaN in B" : "NaN in A") + " act=" + act_name(act));
            std::vector<T> a = nntest::random_vector<T>(m * k, rng), b = nntest::random_vector<T>(k * n, rng);
            const std::vector<T> bias = nntest::random_vector<T>(n, rng);
            if (in_b)
                b[p0 * n + j0] = nntest::quiet_nan<T>();
            else
                a[i0 * k + p0] = nntest::quiet_nan<T>();
            std::vector<T> c(m * n, nntest::quiet_nan<T>());
            Epilogue<T> ep;
            ep.bias = bias.data();
            ep.act = act;
            ep.alpha = T(kLeakyAlpha);
            nncore::gemm(kt, m, n, k, ConstMatrix<T>{a.data(), k, 1}, ConstMatrix<T>{b.data(), n, 1}, c.data(), n, ep, 1);
            long long wrong = 0;
            for (index_t i = 0; i < m; ++i)
                for (index_t j = 0; j < n; ++j) {
                    const bool should_be_nan = in_b ? j == j0 : i == i0;
                    wrong += std::isnan(c[i * n + j]) != should_be_nan;
                }
            CHECK_MSG(wrong == 0, wrong << " elements of C have the wrong NaN-ness");
        }
}

// ---------------------------------------------------------------------------------------------
// linear_forward / linear_backward: y = act(x w^T + b); dx = dz w, dw = dz^T x, db = sum_rows dz.
template <class T>
struct LinearResult {
    std::vector<T> y, dx, dw, db;
};

template <class T>
LinearResult<T> run_and_check_linear(const KernelTable<T>& kt, index_t batch, index_t in, index_t out, bool use_bias,
                                     Act act, bool want_dx, bool want_db, Rng& rng) {
    Scope scope("batch=" + std::to_string(batch) + " in=" + std::to_string(in) + " out=" + std::to_string(out) +
                " bias=" + (use_bias ? "yes" : "no") + " act=" + act_name(act) + " dx=" + (want_dx ? "yes" : "null") +
                " db=" + (want_db ? "yes" : "null"));
    const std::vector<T> x = nntest::random_vector<T>(batch * in, rng);
    const std::vector<T> w = nntest::random_vector<T>(out * in, rng);
    const std::vector<T> bias = nntest::random_vector<T>(out, rng);
    const std::vector<T> dz = nntest::random_vector<T>(batch * out, rng);
    const T nan = nntest::quiet_nan<T>();
    nntest::Guarded<T> y(batch * out, nan), dx(batch * in, nan), dw(out * in, nan), db(out, nan);
    const T alpha = T(kLeakyAlpha);

    nncore::linear_forward(kt, batch, in, out, x.data(), w.data(), use_bias ? bias.data() : nullptr, act, alpha,
                           y.data());
    nncore::linear_backward(kt, batch, in, out, x.data(), w.data(), dz.data(), want_dx ? dx.data() : nullptr,
                            dw.data(), want_db ? db.data() : nullptr);

    const long double eps = std::numeric_limits<T>::epsilon();
    auto rel_for = [&](index_t terms) { return eps * (2 * std::sqrt(static_cast<long double>(terms + 2)) + 4); };
    {
        std::vector<long double> ref, mag;
        dense_reference(x.data(), w.data(), use_bias ? bias.data() : nullptr, act, static_cast<long double>(alpha), batch,
                        in, out, ref, mag);
        check_close("y", y.data(), ref, mag, rel_for(in));
        CHECK(y.guards_intact());
    }
    if (want_dx) {
        std::vector<long double> ref(batch * in), mag(batch * in);
        for (index_t r = 0; r < batch; ++r)
            for (index_t i = 0; i < in; ++i) {
                long double acc = 0, abs_sum = 0;
                for (index_t o = 0; o < out; ++o) {
                    const long double t = static_cast<long double>(dz[r * out + o]) * w[o * in + i];
                    acc += t;
                    abs_sum += std::fabs(t);
                }
                ref[r * in + i] = acc;
                mag[r * in + i] = abs_sum;
            }
        check_close("dx", dx.data(), ref, mag, rel_for(out));
    }
    CHECK(dx.guards_intact());
    {
        // With batch == 0 this is a sum over nothing: dw must be written as zeros, not left alone.
        std::vector<long double> ref(out * in), mag(out * in);
        for (index_t o = 0; o < out; ++o)
            for (index_t i = 0; i < in; ++i) {
                long double acc = 0, abs_sum = 0;
                for (index_t r = 0; r < batch; ++r) {
                    const long double t = static_cast<long double>(dz[r * out + o]) * x[r * in + i];
                    acc += t;
                    abs_sum += std::fabs(t);
                }
                ref[o * in + i] = acc;
                mag[o * in + i] = abs_sum;
            }
        check_close("dw", dw.data(), ref, mag, rel_for(batch));
        CHECK(dw.guards_intact());
    }
    if (want_db) {
        std::vector<long double> ref(out), mag(out);
        for (index_t o = 0; o < out; ++o) {
            long double acc = 0, abs_sum = 0;
            for (index_t r = 0; r < batch; ++r) {
                acc += dz[r * out + o];
                abs_sum += std::fabs(static_cast<long double>(dz[r * out + o]));
            }
            ref[o] = acc;
            mag[o] = abs_sum;
        }
        // column_sums adds rows one after another: the worst case (batch terms) is the bound.
        check_close("db", db.data(), ref, mag, eps * (batch + 2));
    }
    CHECK(db.guards_intact());

    LinearResult<T> result;
    result.y.assign(y.data(), y.data() + batch * out);
    result.dx.assign(dx.data(), dx.data() + batch * in);
    result.dw.assign(dw.data(), dw.data() + out * in);
    result.db.assign(db.data(), db.data() + out);
    return result;
}

template <class T>
void test_linear(const KernelTable<T>& kt, Rng& rng) {
    Scope scope(std::string("linear ") + nntest::dtype_name<T>());
    nncore::set_num_threads(1);
    int variant = 0;
    for (index_t batch : {0, 1, 3, 17, 64})
        for (index_t in : {1, 5, 33})
            for (index_t out : {1, 7, 40}) {
                ++variant;
                run_and_check_linear(kt, batch, in, out, variant % 2 == 0, kActs[variant % nntest::kActCount], variant % 3 != 0,
                                     variant % 4 != 0, rng);
            }
    // Threaded: the results must be bit-identical to the single-threaded ones (same inputs: the
    // generator is re-seeded for each run), on shapes whose products take different paths and
    // splits (rows or columns, packed, direct or dot; below the size that splits at all), with and
    // without dx and db.
    struct Shape {
        index_t batch, in, out;
    };
    int variant_threaded = 0;
    for (const Shape& shape : {Shape{256, 64, 128}, Shape{64, 256, 128}, Shape{2, 784, 256}, Shape{1, 784, 256},
                               Shape{257, 64, 128}, Shape{32, 128, 16}})
        for (Act act : {Act::relu, Act::tanh}) {
            ++variant_threaded;
            const bool want_dx = variant_threaded % 4 != 3, want_db = variant_threaded % 4 != 2;
            std::vector<LinearResult<T>> results;
            for (int threads : {1, 2, 3}) {
                Scope thread_scope("threads=" + std::to_string(threads));
                nncore::set_num_threads(threads);
                Rng same(1234);
                results.push_back(run_and_check_linear(kt, shape.batch, shape.in, shape.out, true, act, want_dx, want_db, same));
            }
            for (std::size_t i = 1; i < results.size(); ++i) {
                CHECK(nntest::same_bits(results[0].y, results[i].y));
                CHECK(nntest::same_bits(results[0].dx, results[i].dx));
                CHECK(nntest::same_bits(results[0].dw, results[i].dw));
                CHECK(nntest::same_bits(results[0].db, results[i].db));
            }
        }
    nncore::set_num_threads(1);
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// The classic batch-1 SGD sweep (dense_forward_sgd, sgd_rank1) against two references: a naive
// long double one (the update W - lr g x_prev^T, then act(W x + b)), and, bit for bit, the
// rank-1 step written out per element (c = -lr g[j] rounded, then one fused multiply-add, or a
// multiply and an add on the scalar ISA, whose Vec::fmadd is that) followed by linear_forward, and
// dW as gemm forms it. Edge sizes around the vector width and the 4-row block, k = 0 and rows = 0,
// guard zones around every written array, and a split of the rows at a multiple of 4.
template <class T>
void test_batch1_sgd_sweep(const KernelTable<T>& kt, bool hardware_fma, Rng& rng) {
    Scope scope(std::string("batch-1 SGD sweep ") + nntest::dtype_name<T>());
    const index_t w = 64 / static_cast<index_t>(sizeof(T));
    const index_t ks[] = {0, 1, 2, 3, 5, w - 1, w, w + 1, 37, 4 * w + 3};
    const index_t row_counts[] = {0, 1, 2, 3, 4, 5, 7, 8, 9, 13};
    const T neg_lr = T(-0.3), alpha = T(kLeakyAlpha), nan = nntest::quiet_nan<T>();
    const long double eps = std::numeric_limits<T>::epsilon();
    long long cases = 0;
    for (index_t k : ks)
        for (index_t rows : row_counts)
            for (int variant = 0; variant < 4; ++variant) {
                const bool update = variant & 1, use_bias = variant & 2, descending = rng.coin();
                const Act act = kActs[rng.below(nntest::kActCount)];
                Scope inner("k=" + std::to_string(k) + " rows=" + std::to_string(rows) + " act=" + act_name(act) +
                            (update ? " update" : " forward only") + (use_bias ? " bias" : "") +
                            (descending ? " descending" : ""));
                const std::vector<T> w0 = nntest::random_vector<T>(rows * k, rng), x = nntest::random_vector<T>(k, rng);
                const std::vector<T> x_prev = nntest::random_vector<T>(k, rng), g = nntest::random_vector<T>(rows, rng);
                const std::vector<T> bias = nntest::random_vector<T>(rows, rng);
                nntest::Guarded<T> weights(w0), y(rows, nan);
                kt.dense_forward_sgd(k, rows, x.data(), weights.data(), k, use_bias ? bias.data() : nullptr,
                                     update ? g.data() : nullptr, update ? x_prev.data() : nullptr, neg_lr, act, alpha, y.data(),
                                     descending);
                CHECK(weights.guards_intact() && y.guards_intact());

                // Naive reference.
                bool close = true;
                for (index_t j = 0; j < rows; ++j) {
                    long double acc = use_bias ? bias[j] : 0, mag = std::fabs(acc);
                    for (index_t p = 0; p < k; ++p) {
                        const long double step = update ? static_cast<long double>(neg_lr) * g[j] * x_prev[p] : 0;
                        const long double wj = w0[j * k + p] + step, size = std::fabs(w0[j * k + p]) + std::fabs(step);
                        // Two roundings (the product, then the update), each relative to its inputs.
                        close &= std::fabs(weights[j * k + p] - wj) <= 3 * eps * size;
                        acc += wj * x[p];
                        mag += size * std::fabs(x[p]);
                    }
                    const long double want = act_ref(act, alpha, acc);
                    // The sum's rounding (k terms), then the activation's few ulp (gelu's tail: 16).
                    close &= std::fabs(y[j] - want) <= eps * (2 * k + 8) * (mag + 1) + 32 * eps * std::fabs(want);
                }
                CHECK_MSG(close, "differs from the naive reference");

                // The rank-1 step per element and the layer-by-layer forward, bit for bit.
                std::vector<T> w_ref = w0, y_ref(rows, nan), dw(rows * k, nan);
                if (update) {
                    nncore::gemm(kt, rows, k, 1, ConstMatrix<T>{g.data(), 1, rows}, ConstMatrix<T>{x_prev.data(), k, 1},
                                 dw.data(), k, Epilogue<T>{}, 1);
                    for (index_t j = 0; j < rows; ++j) {
                        const T c = static_cast<T>(neg_lr * g[j]);
                        for (index_t p = 0; p < k; ++p) {
                            T& wv = w_ref[j * k + p];
                            if (hardware_fma) {
                                wv = std::fma(c, x_prev[p], wv);
                            } else {
                                const volatile T product = c * x_prev[p];  // rounded on its own, never contracted
                                wv = product + wv;
                            }
                        }
                    }
                }
                nncore::linear_forward(kt, 1, k, rows, x.data(), w_ref.data(), use_bias ? bias.data() : nullptr, act, alpha,
                                       y_ref.data());
                std::vector<T> w_got(weights.data(), weights.data() + rows * k), y_got(y.data(), y.data() + rows);
                CHECK_MSG(nntest::same_bits(w_got, w_ref), "weights differ from the per-element rank-1 step");
                CHECK_MSG(nntest::same_bits(y_got, y_ref), "outputs differ from linear_forward");

                // Rows split at a multiple of 4 give the same bits.
                if (rows > 4) {
                    std::vector<T> w_split = w0, y_split(rows, nan);
                    const index_t cut = 4;
                    for (index_t r0 : {index_t(0), cut}) {
                        const index_t r1 = r0 == 0 ? cut : rows;
                        kt.dense_forward_sgd(k, r1 - r0, x.data(), w_split.data() + r0 * k, k, use_bias ? bias.data() + r0 : nullptr,
                                             update ? g.data() + r0 : nullptr, update ? x_prev.data() : nullptr, neg_lr, act,
                                             alpha, y_split.data() + r0, !descending);
                    }
                    CHECK_MSG(nntest::same_bits(w_split, w_ref) && nntest::same_bits(y_split, y_ref), "a split at row 4 differs");
                }

                // sgd_rank1: the update and dW, either alone.
                if (update) {
                    nntest::Guarded<T> w_both(w0), dw_both(rows * k, nan), w_only(w0), dw_only(rows * k, nan);
                    kt.sgd_rank1(k, rows, g.data(), x_prev.data(), neg_lr, w_both.data(), dw_both.data(), k);
                    kt.sgd_rank1(k, rows, g.data(), x_prev.data(), neg_lr, w_only.data(), nullptr, k);
                    kt.sgd_rank1(k, rows, g.data(), x_prev.data(), neg_lr, nullptr, dw_only.data(), k);
                    CHECK(w_both.guards_intact() && dw_both.guards_intact() && w_only.guards_intact() && dw_only.guards_intact());
                    auto vec = [&](nntest::Guarded<T>& a) { return std::vector<T>(a.data(), a.data() + rows * k); };
                    CHECK_MSG(nntest::same_bits(vec(w_both), w_ref) && nntest::same_bits(vec(w_only), w_ref), "sgd_rank1 weights differ");
                    CHECK_MSG(nntest::same_bits(vec(dw_both), dw) && nntest::same_bits(vec(dw_only), dw), "sgd_rank1 dW differs");
                }
                ++cases;
            }
    std::printf("    batch-1 SGD sweep %s: %lld cases\n", nntest::dtype_name<T>(), cases);
}

// The packed driver reads A stored by rows in place, tile by full tile (gemm.cpp), unless its
// rows would crowd into few L1 sets (4 KiB or 2 KiB apart); either way the bits must be those of
// the packed copy, which the same A stored by columns gets. B is strided both ways, so that the
// packed path runs (not the dot or direct kernels), with a partial last tile, several k blocks
// and several m blocks.
template <class T>
void test_gemm_a_in_place(const KernelTable<T>& kt, Rng& rng) {
    Scope scope(std::string("gemm A in place ") + nntest::dtype_name<T>());
    const index_t mr = kt.tile.mr, nr = kt.nr, page = 4096 / static_cast<index_t>(sizeof(T));
    const index_t shapes[][3] = {{2 * mr + 5, nr + 3, 37}, {3 * mr, 2 * nr, kt.kc + 9}, {kt.mc + mr + 1, nr, 64}};
    for (const auto& shape : shapes) {
        const index_t m = shape[0], n = shape[1], k = shape[2];
        for (index_t lda : {k, k + 1, std::max(k, page), std::max(k, 2 * page), std::max(k, page / 2), 3 * k + 5}) {
            Scope lda_scope("m=" + std::to_string(m) + " n=" + std::to_string(n) + " k=" + std::to_string(k) +
                            " lda=" + std::to_string(lda));
            const std::vector<T> a = nntest::random_vector<T>(m * lda, rng), b = nntest::random_vector<T>(4 * k * n, rng),
                                 bias = nntest::random_vector<T>(n, rng);
            std::vector<T> a_by_columns(k * m);
            for (index_t i = 0; i < m; ++i)
                for (index_t p = 0; p < k; ++p) a_by_columns[p * m + i] = a[i * lda + p];
            Epilogue<T> ep;
            ep.bias = bias.data();
            ep.act = Act::relu;
            const nncore::ConstMatrix<T> strided_b{b.data(), 2 * n, 2};
            std::vector<T> in_place(m * n), packed(m * n);
            nncore::gemm(kt, m, n, k, nncore::ConstMatrix<T>{a.data(), lda, 1}, strided_b, in_place.data(), n, ep, 1);
            nncore::gemm(kt, m, n, k, nncore::ConstMatrix<T>{a_by_columns.data(), 1, m}, strided_b, packed.data(), n, ep, 1);
            CHECK_MSG(nntest::same_bits(in_place, packed), "A read in place differs from its packed copy");
        }
    }
}

// The product with B (k x n, its rows ldb apart) read where it lies, against the same product
// with B's columns 2 apart, which the driver always packs: the same bits.
template <class T>
void check_b_in_place_same_bits(const KernelTable<T>& kt, index_t m, index_t n, index_t k, nncore::ConstMatrix<T> am,
                                const T* b, index_t ldb, const Epilogue<T>& ep, int threads, Rng& rng) {
    std::vector<T> b_strided(2 * k * n);
    for (index_t p = 0; p < k; ++p)
        for (index_t j = 0; j < n; ++j) b_strided[2 * (p * n + j)] = b[p * ldb + j];
    std::vector<T> in_place = nntest::random_vector<T>(m * n, rng), packed = in_place;
    nncore::gemm(kt, m, n, k, am, nncore::ConstMatrix<T>{b, ldb, 1}, in_place.data(), n, ep, threads);
    nncore::gemm(kt, m, n, k, am, nncore::ConstMatrix<T>{b_strided.data(), 2 * n, 2}, packed.data(), n, ep, threads);
    CHECK_MSG(nntest::same_bits(in_place, packed), "B read in place differs from its packed copy");
}

// The packed driver reads B stored by rows in place, full panel by full panel, when the product has
// few row tiles and B's rows lie less than a page apart in a block of at most 1 MiB (gemm.cpp:
// b_in_place_pays); either way the bits must be those of its packed copy, which the same B with
// its columns 2 apart gets. Row counts up to and past the limit (4 tiles of either tile), partial
// last panels, row strides of B below and at a page (in place and not), several k and n blocks,
// A in place and packed, every kind of epilogue, 1 and 2 threads. The table streams no B through
// the unpacked kernels (stream_max_rows 0), so that both products run the packed driver.
template <class T>
void test_gemm_b_in_place(KernelTable<T> kt, Rng& rng) {
    Scope scope(std::string("gemm B in place ") + nntest::dtype_name<T>());
    kt.stream_max_rows = 0;
    const index_t mr = kt.tile.mr, nr = kt.nr, page = 4096 / static_cast<index_t>(sizeof(T));
    // (m, n, k): k > kc with a narrow B (several k blocks in place), n > nc (several n blocks).
    const index_t shapes[][3] = {{5, nr + 3, 37},           {mr, 3 * nr, 64},
                                 {2 * mr + 1, 2 * nr - 1, 129}, {4 * mr, nr + 1, 100},
                                 {4 * mr + 1, 2 * nr, 50},   {3 * kt.tile_short.mr, nr / 2 + 1, 9},
                                 {2 * mr, 2 * nr, kt.kc + 9},   {4 * mr, kt.nc + nr + 5, 20}};
    long long cases = 0;
    for (const auto& shape : shapes) {
        const index_t m = shape[0], n = shape[1], k = shape[2];
        for (index_t ldb : {n, n + 1, 3 * n + 2, std::max(n, page), std::max(n, page - 1)})
            for (int variant = 0; variant < 4; ++variant) {
                const bool a_rows = variant & 1;
                const int threads = variant & 2 ? 2 : 1;
                Scope c("m=" + std::to_string(m) + " n=" + std::to_string(n) + " k=" + std::to_string(k) +
                        " ldb=" + std::to_string(ldb) + (a_rows ? " A by rows" : " A by columns") +
                        " threads=" + std::to_string(threads));
                const std::vector<T> a = nntest::random_vector<T>(m * k, rng), b = nntest::random_vector<T>(k * ldb, rng),
                                     bias = nntest::random_vector<T>(n, rng);
                const nncore::ConstMatrix<T> am = a_rows ? nncore::ConstMatrix<T>{a.data(), k, 1}
                                                         : nncore::ConstMatrix<T>{a.data(), 1, m};
                Epilogue<T> ep;
                ep.bias = variant == 1 ? nullptr : bias.data();
                ep.act = kActs[rng.below(nntest::kActCount)];
                ep.beta = variant == 2;
                check_b_in_place_same_bits(kt, m, n, k, am, b.data(), ldb, ep, threads, rng);
                ++cases;
            }
    }
    std::printf("    gemm B in place %s: %lld cases\n", nntest::dtype_name<T>(), cases);
}

// B read in place from inside a cache line (gemm.cpp's column_lead): its columns up to the first
// line go through a panel of their own, packed, and the others start on a line. For B starting at
// every element of a line, rows a whole number of lines apart, a width at which the lead panel is
// taken (24.5 panels), column blocks of two panels (the first block takes the lead on top), one
// and several k blocks, 1 and 2 threads (split by columns, and by rows at 27 row tiles): the same
// bits as B's packed copy. Up to 4 row tiles B is in place at any offset; beyond, only where its
// panels start on a line: up to 11 row tiles at any k, more in k blocks of at most 64 steps (37,
// or blocks of 16 out of kc + 5). Float64's rows (784 values, 6272 bytes) are more than a page
// apart: in place only where the panels start on a line.
template <class T>
void test_gemm_b_lead(KernelTable<T> kt, Rng& rng) {
    Scope scope(std::string("gemm B lead panel ") + nntest::dtype_name<T>());
    kt.stream_max_rows = 0;
    const index_t nr = kt.nr, mr = kt.tile.mr, line = 64 / static_cast<index_t>(sizeof(T));
    const index_t n = 24 * nr + nr / 2, ldb = (n + line - 1) / line * line;
    const int kc = kt.kc, kc_small = kt.kc_small, nc_table = kt.nc;
    long long cases = 0;
    const auto run = [&](index_t m, index_t k, index_t offset, int threads) {
        std::vector<T> storage = nntest::random_vector<T>(k * ldb + 2 * line, rng);
        T* first_line = storage.data();
        while (reinterpret_cast<std::uintptr_t>(first_line) % 64 != 0) ++first_line;
        const std::vector<T> a = nntest::random_vector<T>(m * k, rng), bias = nntest::random_vector<T>(n, rng);
        Epilogue<T> ep;
        ep.bias = bias.data();
        ep.act = kActs[rng.below(nntest::kActCount)];
        ep.beta = threads == 2;
        check_b_in_place_same_bits(kt, m, n, k, nncore::ConstMatrix<T>{a.data(), k, 1}, first_line + offset, ldb, ep,
                                   threads, rng);
        ++cases;
    };
    for (index_t nc : {static_cast<index_t>(nc_table), 2 * nr})
        for (int kc_table : {kc, 16}) {
            kt.nc = static_cast<int>(nc);
            kt.kc = kc_table;
            kt.kc_small = std::min(kc_small, kc_table);
            // More rows than gemm.cpp's unpacked products: up to 4 row tiles, and more (27 tiles: a
            // split by rows on 2 threads, one k block only).
            for (index_t m : {mr + 1, 4 * mr, 5 * mr + 3, 27 * mr})
                for (index_t k : {index_t(37), static_cast<index_t>(kc) + 5}) {
                    if (m == 27 * mr && (k != 37 || nc != nc_table)) continue;
                    for (index_t offset = 0; offset < line; ++offset)
                        for (int threads : {1, 2}) {
                            Scope c("nc=" + std::to_string(nc) + " kc=" + std::to_string(kc_table) + " m=" +
                                    std::to_string(m) + " k=" + std::to_string(k) + " offset=" + std::to_string(offset) +
                                    " threads=" + std::to_string(threads));
                            run(m, k, offset, threads);
                        }
                }
        }
    std::printf("    gemm B lead panel %s: %lld cases\n", nntest::dtype_name<T>(), cases);
}

// The table with one row tile only, its short one or its main one, in both places: the driver
// then takes that tile for every packed product.
template <class T>
KernelTable<T> one_tile(KernelTable<T> kt, bool use_short) {
    kt.tile = kt.tile_short = use_short ? kt.tile_short : kt.tile;
    return kt;
}

// The short tile runs each element's products in the same order as the main one, so the driver may
// pick either by shape: both give the same bits, on row counts either pads, A in place or packed,
// with several k blocks, on 1 and 2 threads.
template <class T>
void test_gemm_short_tile_same_bits(const KernelTable<T>& kt, Rng& rng) {
    Scope scope(std::string("gemm short tile ") + nntest::dtype_name<T>());
    const KernelTable<T> only_short = one_tile(kt, true), only_main = one_tile(kt, false);
    const index_t ms[] = {kt.tile_short.mr, kt.tile.mr, 2 * kt.tile_short.mr + 1, 32, 64, 61, kt.mc + kt.tile_short.mr + 3};
    for (index_t m : ms)
        for (int a_rows : {0, 1})
            for (int threads : {1, 2}) {
                const index_t n = 2 * kt.nr + 5, k = kt.kc + 7;
                Scope c("m=" + std::to_string(m) + (a_rows ? " A by rows" : " A by columns") + " threads=" +
                        std::to_string(threads));
                const std::vector<T> a = nntest::random_vector<T>(m * k, rng), b = nntest::random_vector<T>(2 * k * n, rng),
                                     bias = nntest::random_vector<T>(n, rng);
                const nncore::ConstMatrix<T> am = a_rows ? nncore::ConstMatrix<T>{a.data(), k, 1}
                                                         : nncore::ConstMatrix<T>{a.data(), 1, m};
                const nncore::ConstMatrix<T> bm{b.data(), 2 * n, 2};  // strided: the packed path
                Epilogue<T> ep;
                ep.bias = bias.data();
                ep.act = Act::tanh;
                std::vector<T> c_short(m * n), c_main(m * n);
                nncore::gemm(only_short, m, n, k, am, bm, c_short.data(), n, ep, threads);
                nncore::gemm(only_main, m, n, k, am, bm, c_main.data(), n, ep, threads);
                CHECK_MSG(nntest::same_bits(c_short, c_main), "the short tile's result differs from the main tile's");
            }
}

// The micro-kernel's transposed store (Epilogue::transposed) against its plain one: every
// partial tile size, beta, bias and activation, A packed and (full tiles) read in place.
template <class T>
void test_transposed_store(const KernelTable<T>& kt, Rng& rng) {
    Scope scope("transposed store");
    for (const nncore::GemmTile<T>* tile : {&kt.tile, &kt.tile_short}) {
        const int mr = tile->mr, nr = static_cast<int>(kt.nr);
        const index_t k = 7, ld = nr + 3;  // C's rows ld apart, C^T's too
        const std::vector<T> a = nntest::random_vector<T>(k * mr, rng), b = nntest::random_vector<T>(k * nr, rng),
                             c0 = nntest::random_vector<T>(ld * ld, rng);
        const std::vector<T> same_bias(static_cast<std::size_t>(ld), nntest::random_vector<T>(1, rng)[0]);
        for (int m_eff = 1; m_eff <= mr; ++m_eff)
            for (int n_eff = 1; n_eff <= nr; ++n_eff)
                for (int variant = 0; variant < 4; ++variant) {
                    Scope c("mr=" + std::to_string(mr) + " m_eff=" + std::to_string(m_eff) + " n_eff=" + std::to_string(n_eff) +
                            " variant=" + std::to_string(variant));
                    Epilogue<T> ep;
                    ep.beta = variant & 1;
                    ep.act = kActs[(m_eff + n_eff + variant) % nntest::kActCount];
                    ep.alpha = T(kLeakyAlpha);
                    std::vector<T> plain = c0, flipped(c0.size());
                    for (index_t i = 0; i < ld; ++i)
                        for (index_t j = 0; j < ld; ++j) flipped[j * ld + i] = c0[i * ld + j];
                    // One value in every place: the plain tile adds bias[j] to its column j, the
                    // transposed one bias[i] to its row i (check_gemm checks which value goes where).
                    ep.bias = variant & 2 ? same_bias.data() : nullptr;
                    tile->ukernel(k, a.data(), b.data(), nr, plain.data(), ld, m_eff, n_eff, ep);
                    ep.transposed = true;
                    tile->ukernel(k, a.data(), b.data(), nr, flipped.data(), ld, m_eff, n_eff, ep);
                    std::vector<T> back(c0.size());
                    for (index_t i = 0; i < ld; ++i)
                        for (index_t j = 0; j < ld; ++j) back[i * ld + j] = flipped[j * ld + i];
                    CHECK_MSG(nntest::same_bits(plain, back), "the transposed store differs from the plain one");
                    if (m_eff < mr) continue;
                    // A's mr rows by rows (k values each) instead of packed: the same products.
                    std::vector<T> a_rows(static_cast<std::size_t>(mr * k)), flipped_rows = flipped;
                    for (int i = 0; i < mr; ++i)
                        for (index_t q = 0; q < k; ++q) a_rows[i * k + q] = a[q * mr + i];
                    for (index_t i = 0; i < ld; ++i)
                        for (index_t j = 0; j < ld; ++j) flipped_rows[j * ld + i] = c0[i * ld + j];
                    tile->ukernel_rows(k, a_rows.data(), k, b.data(), nr, flipped_rows.data(), ld, n_eff, ep);
                    CHECK_MSG(nntest::same_bits(flipped_rows, flipped), "A in place: the transposed store differs");
                }
    }
}

// X W^T at a small batch runs as W X^T, each tile stored transposed (gemm.cpp: transposed_pays,
// for n >= 4 m, or n >= 2 m at k >= 512 with W's rows spread over L1, and m at most 1/16 short of
// whole column panels): checked against the reference on
// every epilogue, several k blocks (beta then applies to the transposed tiles), n' = m > nc and
// m' = n > mc, on 1-3 threads; and bit for bit against the same product with B strided, which the
// rule leaves to the direct form (the same sums in the same order).
template <class T>
void test_gemm_transposed(const KernelTable<T>& kt, Rng& rng) {
    Scope scope(std::string("gemm transposed ") + nntest::dtype_name<T>());
    const index_t nr = kt.nr, kc = kt.kc;
    test_transposed_store(kt, rng);
    // More than 64 rows (and more than k / 4, or B beyond L2) take the packed path whatever the
    // CPU (choose_path); 96 and 160 are whole panels for every nr, 95 one short.
    const index_t m_big = (kt.nc / nr + 1) * nr;  // n' = m > nc
    const index_t shapes[][3] = {{96, 389, 200}, {95, 384, 33}, {128, 4 * 128 + 1, kc + 5}, {96, 4 * 96, 17},
                                 {m_big, 4 * m_big + 3, 9}, {160, 2 * 160 + 5, 520}};
    long long cases = 0;
    for (const auto& shape : shapes) {
        if (shape[0] == m_big && kt.nc > 1024) continue;  // (AVX2 and the baseline: nc 4096, too slow here)
        const index_t m = shape[0], n = shape[1], k = shape[2];
        for (int variant = 0; variant < 4; ++variant) {
            GemmSpec s;
            s.m = m;
            s.n = n;
            s.k = k;
            s.b.trans = true;  // B = W^T with W stored by rows
            s.a.pad = variant % 2;
            s.b.pad = variant / 2;
            s.pad_c = variant;
            s.beta = variant & 1;
            s.bias = variant != 2;
            s.act = kActs[(variant + cases) % nntest::kActCount];
            check_gemm(kt, s, rng, {1, 2, 3});
            ++cases;

            Scope same("same bits as B strided, " + describe(s));
            const std::vector<T> a = nntest::random_vector<T>(m * k, rng), w = nntest::random_vector<T>(n * k, rng),
                                 bias = nntest::random_vector<T>(n, rng), c0 = nntest::random_vector<T>(m * n, rng);
            std::vector<T> w2(static_cast<std::size_t>(4 * n * k));
            for (index_t o = 0; o < n; ++o)
                for (index_t p = 0; p < k; ++p) w2[static_cast<std::size_t>(2 * o * 2 * k + 2 * p)] = w[o * k + p];
            Epilogue<T> ep;
            ep.beta = s.beta;
            ep.bias = s.bias ? bias.data() : nullptr;
            ep.act = s.act;
            ep.alpha = T(kLeakyAlpha);
            std::vector<T> c_t = c0, c_d = c0;
            nncore::gemm(kt, m, n, k, nncore::ConstMatrix<T>{a.data(), k, 1}, nncore::ConstMatrix<T>{w.data(), 1, k},
                         c_t.data(), n, ep, 2);
            nncore::gemm(kt, m, n, k, nncore::ConstMatrix<T>{a.data(), k, 1}, nncore::ConstMatrix<T>{w2.data(), 2, 4 * k},
                         c_d.data(), n, ep, 1);
            CHECK_MSG(nntest::same_bits(c_t, c_d), "W X^T stored transposed differs from X W^T");
        }
    }
    nncore::set_num_threads(1);
    std::printf("    gemm transposed %s: %lld cases\n", nntest::dtype_name<T>(), cases);
}

// nonzero_steps against a loop over the values: the steps of [0, k) at which any of `rows` rows is
// not +-0 (NaN, infinities and subnormals count), on edge sizes, with the room it may write past k.
template <class T>
void test_nonzero_steps(const KernelTable<T>& kt, Rng& rng) {
    Scope scope(std::string("nonzero_steps ") + nntest::dtype_name<T>());
    const T specials[] = {T(-0.0), std::numeric_limits<T>::quiet_NaN(), std::numeric_limits<T>::infinity(),
                          std::numeric_limits<T>::denorm_min(), -std::numeric_limits<T>::min()};
    long long cases = 0;
    for (index_t k : {0, 1, 2, 15, 16, 17, 31, 33, 37, 64, 101, 784})
        for (int rows = 1; rows <= kt.tile.mr; ++rows)
            for (double zeros : {0.0, 0.7, 1.0}) {
                const index_t lda = k + 3;
                std::vector<T> a(static_cast<std::size_t>(rows * lda + 1), T(0));
                for (index_t q = 0; q < k; ++q) {
                    const bool column_zero = rng.uniform() < zeros;  // zero in every row at step q
                    for (int i = 0; i < rows; ++i) {
                        T& v = a[i * lda + q];
                        if (column_zero || rng.uniform() < 0.8) v = rng.coin() ? T(0) : T(-0.0);
                        else v = rng.below(8) == 0 ? specials[rng.below(5)] : static_cast<T>(rng.uniform(-1, 1));
                    }
                }
                std::vector<std::int32_t> steps(static_cast<std::size_t>(k + 16), -1), want;
                for (index_t q = 0; q < k; ++q)
                    for (int i = 0; i < rows; ++i)
                        if (!(a[i * lda + q] == T(0))) {  // NaN compares unequal: counted
                            want.push_back(static_cast<std::int32_t>(q));
                            break;
                        }
                const index_t count = kt.nonzero_steps(a.data(), lda, rows, k, steps.data());
                CHECK_MSG(count == static_cast<index_t>(want.size()) && std::equal(want.begin(), want.end(), steps.begin()),
                          "k=" + std::to_string(k) + " rows=" + std::to_string(rows) + ": wrong steps");
                ++cases;
            }
    std::printf("    nonzero_steps %s: %lld cases\n", nntest::dtype_name<T>(), cases);
}

// The same bits, or both zeros, or both NaN: the differences zero-skipping may make (gemm.h). A
// NaN's sign is not fixed by IEEE 754; on x86 a sum of two NaNs returns its first operand, and the
// compiler orders the operands of a commutative addition as it likes in each kernel (the scalar
// build differed here when inf - inf met an input NaN).
template <class T>
bool same_values(const std::vector<T>& a, const std::vector<T>& b) {
    for (std::size_t i = 0; i < a.size(); ++i)
        if (!nntest::same_bits(a[i], b[i]) && !(a[i] == T(0) && b[i] == T(0)) && !(std::isnan(a[i]) && std::isnan(b[i])))
            return false;
    return true;
}

// gemm with skip_zero_steps gives the values of the full product when B is finite: A by rows with
// columns zero in whole tiles and zeros (+-0) scattered, NaN, infinities and subnormals among the
// rest; A in place (k-long rows) and packed (rows 4 KiB apart), partial tiles, several k blocks and
// m blocks, both row tiles, B packed and B by rows (read in place by the few-row products), 1 and
// 2 threads. A stored by columns ignores the flag.
template <class T>
void test_gemm_skip_zero_steps(const KernelTable<T>& kt, Rng& rng) {
    Scope scope(std::string("gemm skipping zero steps ") + nntest::dtype_name<T>());
    const index_t mr = kt.tile.mr, nr = kt.nr, page = 4096 / static_cast<index_t>(sizeof(T));
    const T specials[] = {std::numeric_limits<T>::quiet_NaN(), std::numeric_limits<T>::infinity(),
                          std::numeric_limits<T>::denorm_min(), T(-0.0)};
    long long cases = 0, skipped = 0;
    const index_t shapes[][3] = {{1, nr, 37},         {2, nr + 3, 17},       {mr - 1, 2 * nr, 64},     {mr, nr - 1, 1},
                                 {mr + 1, nr + 1, 101}, {37, 2 * nr + 5, 784}, {3 * mr, nr, kt.kc + 9}, {kt.mc + mr + 1, nr, 50}};
    for (const auto& shape : shapes)
        for (double zeros : {0.0, 0.6, 1.0})
            for (index_t lda_kind : {0, 1})
                for (int threads : {1, 2})
                    for (int variant = 0; variant < 3; ++variant) {
                        // 1: the short tile only; 2: B by rows, read in place where the driver may.
                        const bool only_short = variant == 1, b_rows = variant == 2;
                        const index_t m = shape[0], n = shape[1], k = shape[2];
                        const index_t lda = lda_kind ? std::max(k, page) : k;
                        Scope c("m=" + std::to_string(m) + " n=" + std::to_string(n) + " k=" + std::to_string(k) +
                                " zeros=" + std::to_string(zeros) + " lda=" + std::to_string(lda) +
                                " threads=" + std::to_string(threads) + (only_short ? " short tile" : "") +
                                (b_rows ? " B by rows" : ""));
                        KernelTable<T> table = only_short ? one_tile(kt, true) : kt;
                        if (b_rows) table.stream_max_rows = 0;  // the packed driver, not the direct kernel
                        std::vector<T> a(static_cast<std::size_t>(m * lda), T(0));
                        for (index_t q = 0; q < k; ++q) {
                            const bool column_zero = rng.uniform() < zeros;
                            for (index_t i = 0; i < m; ++i) {
                                T& v = a[i * lda + q];
                                if (column_zero || rng.uniform() < 0.5) v = rng.coin() ? T(0) : T(-0.0);
                                else if (rng.below(50) == 0) v = specials[rng.below(4)];
                                else v = static_cast<T>(rng.uniform(-1, 1));
                            }
                        }
                        const std::vector<T> b = nntest::random_vector<T>(2 * k * n, rng), bias = nntest::random_vector<T>(n, rng);
                        const nncore::ConstMatrix<T> bm = b_rows ? nncore::ConstMatrix<T>{b.data(), n, 1}
                                                                 : nncore::ConstMatrix<T>{b.data(), 2 * n, 2};
                        for (const T* bias_ptr : {bias.data(), static_cast<const T*>(nullptr)}) {
                            Epilogue<T> ep;
                            ep.bias = bias_ptr;
                            ep.act = Act::relu;
                            std::vector<T> full(m * n), skipping(m * n);
                            nncore::gemm(table, m, n, k, ConstMatrix<T>{a.data(), lda, 1}, bm, full.data(), n, ep, threads);
                            nncore::gemm(table, m, n, k, ConstMatrix<T>{a.data(), lda, 1}, bm, skipping.data(), n, ep, threads,
                                         true);
                            CHECK_MSG(same_values(full, skipping), "skipping zero steps changed a value");
                            // A by columns: the flag is ignored, the same bits.
                            std::vector<T> by_columns(k * m), c_columns(m * n), c_columns_skip(m * n);
                            for (index_t i = 0; i < m; ++i)
                                for (index_t q = 0; q < k; ++q) by_columns[q * m + i] = a[i * lda + q];
                            nncore::gemm(table, m, n, k, ConstMatrix<T>{by_columns.data(), 1, m}, bm, c_columns.data(), n, ep, threads);
                            nncore::gemm(table, m, n, k, ConstMatrix<T>{by_columns.data(), 1, m}, bm, c_columns_skip.data(), n, ep,
                                         threads, true);
                            CHECK_MSG(nntest::same_bits(c_columns, c_columns_skip), "A by columns: the flag changed a value");
                            ++cases;
                        }
                        skipped += zeros > 0;
                    }
    std::printf("    gemm skipping zero steps %s: %lld cases (%lld with zero columns)\n", nntest::dtype_name<T>(), cases,
                skipped);
}

int main() {
    nntest::for_each_isa([](nncore::Isa isa, const nncore::Tables& tables) {
        Rng rng(20240601);
        const index_t vector_bytes = isa == nncore::Isa::avx512 ? 64 : isa == nncore::Isa::avx2 ? 32 : 0;
        Rng pack_rng(20261201);
        test_pack_b(tables.f32, vector_bytes ? vector_bytes / 4 : 1, pack_rng);
        test_pack_b(tables.f64, vector_bytes ? vector_bytes / 8 : 1, pack_rng);
        test_gemm_kc(tables.f32);
        test_gemm_kc(tables.f64);
        test_gemm(tables.f32, rng);
        test_gemm(tables.f64, rng);
        // The short row tile through the same cases, where the table has one.
        if (tables.f32.tile_short.mr != tables.f32.tile.mr) test_gemm(one_tile(tables.f32, true), rng);
        if (tables.f64.tile_short.mr != tables.f64.tile.mr) test_gemm(one_tile(tables.f64, true), rng);
        test_gemm_short_tile_same_bits(tables.f32, rng);
        test_gemm_short_tile_same_bits(tables.f64, rng);
        test_gemm_transposed(tables.f32, rng);
        test_gemm_transposed(tables.f64, rng);
        // The unpacked kernels at every row count, whatever this CPU's stream_max_rows (on Intel
        // cores the driver packs from 17 rows on), then with the CPU's own limit where it has one.
        auto unpacked_paths = [&](auto table) {
            const index_t own = table.stream_max_rows;
            table.stream_max_rows = std::numeric_limits<index_t>::max();
            test_gemm_unpacked_paths(table, rng);
            if (own == table.stream_max_rows) return;
            table.stream_max_rows = own;
            test_gemm_unpacked_paths(table, rng);
        };
        unpacked_paths(tables.f32);
        unpacked_paths(tables.f64);
        test_gemm_dot_reads(tables.f32, rng);
        test_gemm_dot_reads(tables.f64, rng);
        test_gemm_direct_reads(tables.f32, rng);
        test_gemm_direct_reads(tables.f64, rng);
        test_gemm_a_in_place(tables.f32, rng);
        test_gemm_a_in_place(tables.f64, rng);
        test_gemm_b_in_place(tables.f32, rng);
        test_gemm_b_in_place(tables.f64, rng);
        test_gemm_b_lead(tables.f32, rng);
        test_gemm_b_lead(tables.f64, rng);
        test_gemm_nan_propagation(tables.f32, rng);
        test_gemm_nan_propagation(tables.f64, rng);
        test_linear(tables.f32, rng);
        test_linear(tables.f64, rng);
        test_batch1_sgd_sweep(tables.f32, isa != nncore::Isa::scalar, rng);
        test_batch1_sgd_sweep(tables.f64, isa != nncore::Isa::scalar, rng);
        test_nonzero_steps(tables.f32, rng);
        test_nonzero_steps(tables.f64, rng);
        test_gemm_skip_zero_steps(tables.f32, rng);
        test_gemm_skip_zero_steps(tables.f64, rng);
    });
    return nntest::finish("test_gemm");
}
