#include "peak.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include "workspace.h"

namespace nncore {

namespace {

// One thread: after a warm-up (the clock ramps up under load), repeat runs of about 2 ms until
// `seconds` have passed and return the best rate in FLOP/s. The best run is the machine's limit;
// slower ones were interrupted or shared the core. run(iters, r) does `iters` rounds (its r-th
// run) and returns their floating-point operations.
template <class Run>
double best_rate(double seconds, Run&& run) {
    using clock = std::chrono::steady_clock;
    const auto elapsed = [](clock::time_point t0) {
        return std::chrono::duration<double>(clock::now() - t0).count();
    };
    index_t iters = 1;
    // Calibrate: grow until one run takes >= 2 ms (this also warms up the FMA units).
    for (;;) {
        const auto t0 = clock::now();
        run(iters, 0);
        if (elapsed(t0) >= 2e-3 || iters >= (index_t(1) << 40)) break;
        iters *= 2;
    }
    double best = 0.0;
    const auto start = clock::now();
    int runs = 0;
    while (runs < 5 || elapsed(start) < seconds) {
        const auto t0 = clock::now();
        const double flops = run(iters, runs);
        const double t = elapsed(t0);
        if (t > 0) best = std::max(best, flops / t);
        ++runs;
    }
    return best;
}

template <class T>
double fma_rate(const KernelTable<T>& kt, double seconds, volatile T* sink) {
    return best_rate(seconds, [&](index_t iters, int run) {
        *sink = kt.fma_loop(iters, T(1 + run % 3));
        return static_cast<double>(iters) * kt.fma_flops_per_iter;
    });
}

// The register tile's k steps per call in tile_peak_gflops: its A and B panels then take
// (MR + NR) * kTileSteps values, 22 KiB for float32 12 x 32 and 38 KiB for float64 6 x 32, and stay
// in a 48 KiB L1 (float32 also in 32 KiB). Each call zeroes and stores its tile of C, as the GEMM's
// calls do once per block of k (512-1024 steps there): ~3% of this call's time for float32.
constexpr index_t kTileSteps = 128;

}  // namespace

template <class T>
double fma_peak_gflops(const KernelTable<T>& kt, double seconds, int threads) {
    threads = std::max(1, threads);
    std::vector<double> rates(static_cast<std::size_t>(threads), 0.0);
    std::vector<T> sinks(static_cast<std::size_t>(threads) * 16);
    // All threads start together and run for the same time, so their best runs overlap.
    std::atomic<int> ready{0};
    auto body = [&](int t) {
        ready.fetch_add(1);
        while (ready.load() < threads) std::this_thread::yield();
        rates[static_cast<std::size_t>(t)] = fma_rate(kt, seconds, sinks.data() + 16 * t);
    };
    std::vector<std::thread> workers;
    for (int t = 1; t < threads; ++t) workers.emplace_back(body, t);
    body(0);
    for (auto& w : workers) w.join();
    double total = 0.0;
    for (double r : rates) total += r;
    return total / 1e9;
}

template <class T>
double tile_peak_gflops(const KernelTable<T>& kt, double seconds) {
    const GemmTile<T>& tile = kt.tile;
    const auto steps = static_cast<std::size_t>(kTileSteps);
    Workspace<T> a(steps * static_cast<std::size_t>(tile.mr)), b(steps * static_cast<std::size_t>(kt.nr));
    Workspace<T> c(static_cast<std::size_t>(tile.mr) * static_cast<std::size_t>(kt.nr));
    // Values of modest size that stay normal through any number of calls (C is overwritten).
    for (std::size_t i = 0; i < a.size(); ++i) a[i] = T(1) + T(i % 7) / T(8);
    for (std::size_t i = 0; i < b.size(); ++i) b[i] = T(1) - T(i % 5) / T(8);
    const Epilogue<T> ep{};
    const double flops_per_call = 2.0 * static_cast<double>(tile.mr) * kt.nr * kTileSteps;
    return best_rate(seconds, [&](index_t iters, int) {
               for (index_t i = 0; i < iters; ++i)
                   tile.ukernel(kTileSteps, a.data(), b.data(), kt.nr, c.data(), kt.nr, tile.mr, kt.nr, ep);
               return static_cast<double>(iters) * flops_per_call;
           }) /
           1e9;
}

template double tile_peak_gflops<float>(const KernelTable<float>&, double);
template double tile_peak_gflops<double>(const KernelTable<double>&, double);
template double fma_peak_gflops<float>(const KernelTable<float>&, double, int);
template double fma_peak_gflops<double>(const KernelTable<double>&, double, int);

}  // namespace nncore
