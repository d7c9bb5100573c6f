// Exhaustive accuracy check of float32 tanh: every one of the 2^32 bit patterns through
// act_forward(tanh) on every ISA this CPU supports, against the double-precision std::tanh (whose
// own error is far below a float ulp). Prints per ISA the maximum error in ulp (subnormal results
// in units of the subnormal spacing, as in test_math_accuracy), where it occurs, and how many
// results are off by more than 0.5, 1, 2 and 3 ulp; checks +-0 (sign kept), +-inf (+-1) and NaN
// (NaN) on the way. Not part of CTest (it takes about a minute on 2 cores); run it after changing
// vtanh:  build/cpp-tests/tests/cpp/tanh_exhaustive [first_bits last_bits]
#include <algorithm>
#include <atomic>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "harness.h"

namespace {

struct Stats {
    long double max_ulp = 0;
    float worst_x = 0, worst_got = 0;
    double worst_ref = 0;
    std::uint64_t over[4] = {0, 0, 0, 0};  // > 0.5, > 1, > 2, > 3 ulp
    std::uint64_t special_failures = 0;
    void merge(const Stats& o) {
        if (o.max_ulp > max_ulp) {
            max_ulp = o.max_ulp;
            worst_x = o.worst_x, worst_got = o.worst_got, worst_ref = o.worst_ref;
        }
        for (int i = 0; i < 4; ++i) over[i] += o.over[i];
        special_failures += o.special_failures;
    }
};

bool special_ok(float x, float got) {
    if (std::isnan(x)) return std::isnan(got);
    if (std::isinf(x)) return got == std::copysign(1.0f, x);
    if (x == 0) return got == 0 && std::signbit(got) == std::signbit(x);
    return true;
}

}  // namespace

int main(int argc, char** argv) {
    const std::uint64_t first = argc > 2 ? std::strtoull(argv[1], nullptr, 0) : 0;
    const std::uint64_t last = argc > 2 ? std::strtoull(argv[2], nullptr, 0) : 0xFFFFFFFFull;
    std::vector<nncore::Isa> isas;
    for (int i = 0; i < nncore::kIsaCount; ++i)
        if (nncore::cpu_supports(static_cast<nncore::Isa>(i))) isas.push_back(static_cast<nncore::Isa>(i));
    const std::uint64_t chunk = 1u << 16;
    const std::uint64_t chunks = (last - first) / chunk + 1;
    std::atomic<std::uint64_t> next{0};
    std::vector<Stats> total(isas.size());
    std::mutex lock;
    auto worker = [&] {
        std::vector<float> x(chunk), y(chunk);
        std::vector<double> ref(chunk);
        std::vector<Stats> mine(isas.size());
        for (std::uint64_t c; (c = next++) < chunks;) {
            const std::uint64_t begin = first + c * chunk;
            const std::uint64_t count = std::min<std::uint64_t>(chunk, last - begin + 1);
            for (std::uint64_t i = 0; i < count; ++i) {
                const std::uint32_t bits = static_cast<std::uint32_t>(begin + i);
                std::memcpy(&x[i], &bits, 4);
                ref[i] = std::tanh(static_cast<double>(x[i]));
            }
            for (std::size_t k = 0; k < isas.size(); ++k) {
                nncore::tables_for(isas[k]).f32.act_forward(nncore::Act::tanh, 0.0f, x.data(), y.data(),
                                                             static_cast<nncore::index_t>(count));
                Stats& s = mine[k];
                for (std::uint64_t i = 0; i < count; ++i) {
                    if (!special_ok(x[i], y[i])) ++s.special_failures;
                    const long double e = nntest::ulp_error<float>(y[i], ref[i]);
                    if (e > 0.5L) ++s.over[0];
                    if (e > 1) ++s.over[1];
                    if (e > 2) ++s.over[2];
                    if (e > 3) ++s.over[3];
                    if (e > s.max_ulp || (std::isnan(e) && !std::isnan(s.max_ulp))) {
                        s.max_ulp = e;
                        s.worst_x = x[i], s.worst_got = y[i], s.worst_ref = ref[i];
                    }
                }
            }
        }
        std::lock_guard<std::mutex> guard(lock);
        for (std::size_t k = 0; k < isas.size(); ++k) total[k].merge(mine[k]);
    };
    const unsigned n_threads = std::max(1u, std::thread::hardware_concurrency());
    std::vector<std::thread> threads;
    for (unsigned t = 0; t < n_threads; ++t) threads.emplace_back(worker);
    for (auto& t : threads) t.join();
    int failures = 0;
    std::printf("float32 tanh, bit patterns 0x%08" PRIx64 "..0x%08" PRIx64 " (%" PRIu64 " inputs), bound %.0f ulp\n",
                first, last, last - first + 1, nntest::kTanhMaxUlp);
    for (std::size_t k = 0; k < isas.size(); ++k) {
        const Stats& s = total[k];
        const bool ok = s.max_ulp <= nntest::kTanhMaxUlp && s.special_failures == 0;
        failures += !ok;
        std::printf("  %-7s max %.3f ulp at x = %.9g (%a): got %.9g, exact %.12g;  > 0.5 ulp: %" PRIu64
                    ", > 1: %" PRIu64 ", > 2: %" PRIu64 ", > 3: %" PRIu64 "; special-value failures: %" PRIu64 "  %s\n",
                    nncore::isa_name(isas[k]), static_cast<double>(s.max_ulp), s.worst_x, s.worst_x, s.worst_got,
                    s.worst_ref, s.over[0], s.over[1], s.over[2], s.over[3], s.special_failures, ok ? "ok" : "FAIL");
    }
    return failures ? 1 : 0;
}
