#include "peak.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

namespace nncore {

namespace {

// One thread: after a warm-up (the clock ramps up under load), repeat runs of about 2 ms until
// `seconds` have passed and return the best rate in FLOP/s. The best run is the machine's limit;
// slower ones were interrupted or shared the core.
template <class T>
double best_rate(const KernelTable<T>& kt, double seconds, volatile T* sink) {
    using clock = std::chrono::steady_clock;
    const auto elapsed = [](clock::time_point t0) {
        return std::chrono::duration<double>(clock::now() - t0).count();
    };
    index_t iters = 1 << 12;
    // Calibrate: grow until one run takes >= 2 ms (this also warms up the FMA units).
    for (;;) {
        const auto t0 = clock::now();
        *sink = kt.fma_loop(iters, T(1));
        if (elapsed(t0) >= 2e-3 || iters >= (index_t(1) << 40)) break;
        iters *= 2;
    }
    double best = 0.0;
    const auto start = clock::now();
    int runs = 0;
    while (runs < 5 || elapsed(start) < seconds) {
        const auto t0 = clock::now();
        *sink = kt.fma_loop(iters, T(1 + runs % 3));
        const double t = elapsed(t0);
        if (t > 0) best = std::max(best, static_cast<double>(iters) * kt.fma_flops_per_iter / t);
        ++runs;
    }
    return best;
}

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
        rates[static_cast<std::size_t>(t)] = best_rate(kt, seconds, sinks.data() + 16 * t);
    };
    std::vector<std::thread> workers;
    for (int t = 1; t < threads; ++t) workers.emplace_back(body, t);
    body(0);
    for (auto& w : workers) w.join();
    double total = 0.0;
    for (double r : rates) total += r;
    return total / 1e9;
}

template double fma_peak_gflops<float>(const KernelTable<float>&, double, int);
template double fma_peak_gflops<double>(const KernelTable<double>&, double, int);

}  // namespace nncore
