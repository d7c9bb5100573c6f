// The thread pool under churn: many short parallel regions back to back, as the conv layers issue
// them (one per GEMM and per group of samples). Every task of every region must run exactly once,
// and every region must return. The caller often finishes a region alone while a worker is
// descheduled mid-claim; a claim that could leak into the next region ran a task twice and left
// the caller waiting forever (a hang here is a failure too: CTest's timeout).
#include <atomic>
#include <thread>
#include <vector>

#include "harness.h"
#include "thread_pool.h"

namespace {

void churn(int threads, int regions) {
    nncore::set_num_threads(threads);
    std::vector<std::atomic<int>> runs(64);
    long long wrong = 0;
    for (int r = 0; r < regions; ++r) {
        const int n_tasks = 2 + r % 37;
        for (int i = 0; i < n_tasks; ++i) runs[i].store(0);
        nncore::parallel_for(n_tasks, [&](int i) {
            runs[i].fetch_add(1);
            if ((i + r) % 7 == 0) std::this_thread::yield();  // invite the untimely deschedule
        });
        for (int i = 0; i < n_tasks; ++i) wrong += runs[i].load() != 1;
    }
    nntest::Scope scope("threads=" + std::to_string(threads));
    CHECK(wrong == 0);
}

}  // namespace

int main() {
    for (int threads : {2, 3}) churn(threads, 30000);
    // A nested region (a task calling parallel_for) runs serially on that thread.
    nncore::set_num_threads(2);
    std::atomic<int> inner{0};
    nncore::parallel_for(4, [&](int) { nncore::parallel_for(5, [&](int) { inner.fetch_add(1); }); });
    CHECK(inner.load() == 20);
    // More tasks than one region's claim word counts (2^22 - 1) still run exactly once each.
    {
        const int n_tasks = (1 << 22) + 3;
        std::vector<unsigned char> runs(n_tasks, 0);
        nncore::parallel_for(n_tasks, [&](int i) { ++runs[i]; });
        long long wrong = 0;
        for (unsigned char r : runs) wrong += r != 1;
        CHECK(wrong == 0);
    }
    return nntest::finish("test_thread_pool");
}
