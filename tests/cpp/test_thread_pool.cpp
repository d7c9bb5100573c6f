// The thread pool under churn: many short parallel regions back to back, as the conv layers issue
// them (one per GEMM and per group of samples). Every task of every region must run exactly once,
// and every region must return. The caller often finishes a region alone while a worker is
// descheduled mid-claim; a claim that could leak into the next region ran a task twice and left
// the caller waiting forever (a hang here is a failure too: CTest's timeout).
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <mutex>
#include <new>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "harness.h"
#include "fp_mode.h"
#include "thread_pool.h"
#include "workspace.h"

// Allocations by the calling thread (every C++ allocation goes through operator new).
thread_local long long thread_allocations = 0;
void* operator new(std::size_t size) {
    ++thread_allocations;
    if (void* p = std::malloc(size ? size : 1)) return p;
    throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void* operator new(std::size_t size, std::align_val_t align) {
    ++thread_allocations;
    const std::size_t a = static_cast<std::size_t>(align);
    if (void* p = std::aligned_alloc(a, (size + a - 1) / a * a)) return p;
    throw std::bad_alloc();
}
void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }

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

// Regions after an idle gap longer than the pool's polling (its workers then block and must be
// woken), and regions whose worker tasks outlast the caller's polling (the caller then blocks and
// must be woken by the last task): every task still runs exactly once and every region returns.
void blocking_handoffs() {
    nncore::set_num_threads(2);
    const std::thread::id caller = std::this_thread::get_id();
    long long wrong = 0;
    int on_worker = 0;
    for (int r = 0; r < 200; ++r) {
        if (r % 2 == 0) std::this_thread::sleep_for(std::chrono::microseconds(400));
        std::atomic<int> runs[2] = {{0}, {0}};
        std::atomic<bool> worker_took{false};
        nncore::parallel_for(2, [&](int i) {
            runs[i].fetch_add(1);
            if (std::this_thread::get_id() != caller) {
                worker_took.store(true);
                if (r % 2 == 1) std::this_thread::sleep_for(std::chrono::microseconds(400));
                return;
            }
            // The caller gives the (possibly sleeping) worker time to claim the other task.
            const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(100);
            while (runs[1 - i].load() == 0 && std::chrono::steady_clock::now() < deadline) std::this_thread::yield();
        });
        wrong += (runs[0].load() != 1) + (runs[1].load() != 1);
        on_worker += worker_took.load();
    }
    nntest::Scope scope("blocking handoffs");
    CHECK(wrong == 0);
    CHECK(on_worker >= 50);  // the worker took part (else only the caller's path ran)
}

// run_on_every_thread runs its function once on each of the pool's threads, and not from inside a
// task. share_thread_buffers grows on every thread the buffers that one thread grew, so that a
// task needing that size allocates nothing whichever thread runs it; a buffer grown after the last
// share still allocates on the other threads (the check can tell).
std::mutex seen_mutex;
std::multiset<std::thread::id> seen;
void record_thread() {
    std::lock_guard<std::mutex> lock(seen_mutex);
    seen.insert(std::this_thread::get_id());
}
struct Shared;
struct NotShared;
constexpr std::size_t kProbeValues = 1 << 16;
std::atomic<int> shared_grew{0}, not_shared_grew{0};
void probe_buffers() {
    const long long before = thread_allocations;
    nncore::thread_buffer<float, Shared>(kProbeValues);
    const long long between = thread_allocations;
    nncore::thread_buffer<float, NotShared>(kProbeValues);
    shared_grew.fetch_add(between != before);
    not_shared_grew.fetch_add(thread_allocations != between);
}

void every_thread_and_shared_buffers() {
    for (int threads : {2, 3}) {
        nntest::Scope scope("run_on_every_thread, threads=" + std::to_string(threads));
        nncore::set_num_threads(threads);
        seen.clear();
        CHECK(nncore::run_on_every_thread(record_thread));
        std::set<std::thread::id> distinct(seen.begin(), seen.end());
        CHECK_MSG(seen.size() == static_cast<std::size_t>(threads) && distinct.size() == seen.size(),
                  seen.size() << " calls on " << distinct.size() << " threads");
        bool inner = true;
        seen.clear();
        nncore::parallel_for(2, [&](int i) {
            if (i == 0) inner = nncore::run_on_every_thread(record_thread);
        });
        CHECK(!inner && seen.empty());
    }
    nntest::Scope scope("share_thread_buffers");
    nncore::set_num_threads(3);
    nncore::thread_buffer<float, Shared>(kProbeValues);  // grown on this thread only
    nncore::share_thread_buffers();
    nncore::thread_buffer<float, NotShared>(kProbeValues);
    CHECK(nncore::run_on_every_thread(probe_buffers));
    CHECK_MSG(shared_grew.load() == 0, shared_grew.load() << " threads grew the shared buffer");
    CHECK_MSG(not_shared_grew.load() == 2, not_shared_grew.load() << " threads grew the buffer not shared, want the 2 workers");
}

}  // namespace

int main() {
    every_thread_and_shared_buffers();
    for (int threads : {2, 3}) churn(threads, 30000);
    blocking_handoffs();
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
    // A task that throws, on the caller or on a worker: every other task still runs, the region
    // returns, the first exception reaches the caller, and the pool keeps working (a worker's
    // exception used to end the process). The worker case retries until a worker took a task.
    const std::thread::id caller = std::this_thread::get_id();
    for (bool on_worker : {false, true}) {
        nntest::Scope scope(on_worker ? "a worker's task throws" : "the caller's task throws");
        bool thrown = false, caught = false, all_ran = true;
        for (int attempt = 0; attempt < 10000 && !thrown; ++attempt) {
            std::atomic<int> ran{0};
            std::atomic<bool> threw{false};
            try {
                nncore::parallel_for(4, [&](int) {
                    ran.fetch_add(1);
                    std::this_thread::sleep_for(std::chrono::microseconds(50));
                    if ((std::this_thread::get_id() != caller) == on_worker && !threw.exchange(true))
                        throw std::runtime_error("task failed");
                });
            } catch (const std::runtime_error& error) {
                caught = std::string(error.what()) == "task failed";
            }
            thrown = threw.load();
            all_ran = all_ran && ran.load() == 4;
        }
        CHECK(thrown && caught && all_ran);
        std::atomic<int> after{0};
        nncore::parallel_for(8, [&](int) { after.fetch_add(1); });
        CHECK(after.load() == 8);
    }
    // After a fork, the child (where only the forking thread exists) runs regions on a pool of its
    // own and exits; destroying the parent's pool there would join threads that do not exist.
    {
        nncore::set_num_threads(3);
        std::atomic<int> warm{0};
        nncore::parallel_for(6, [&](int) { warm.fetch_add(1); });
        const pid_t child = fork();
        if (child == 0) {
            std::atomic<int> ran{0};
            nncore::parallel_for(6, [&](int) { ran.fetch_add(1); });
            nncore::set_num_threads(2);  // a new pool in the child, the parent's left alone
            nncore::parallel_for(6, [&](int) { ran.fetch_add(1); });
            std::exit(ran.load() == 12 ? 0 : 1);
        }
        int status = -1;
        waitpid(child, &status, 0);
        CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    // Workers compute in the caller's subnormal mode (fp_mode.h), flushed or not, region by region;
    // tasks sleep so that the workers take some of them.
    if (nncore::kFlushSubnormalBits != 0) {
        nncore::set_num_threads(3);
        const std::thread::id caller = std::this_thread::get_id();
        for (bool flush : {true, false, true, false}) {
            const nncore::FlushSubnormals scope(flush);
            std::atomic<int> wrong{0}, on_workers{0};
            nncore::parallel_for(12, [&](int) {
                std::this_thread::sleep_for(std::chrono::milliseconds(1));
                volatile float a = 1e-30f, b = 1e-10f;  // a * b = 1e-40, subnormal
                const float product = a * b;
                if ((product == 0.0f) != flush) wrong.fetch_add(1);
                if (std::this_thread::get_id() != caller) on_workers.fetch_add(1);
            });
            CHECK(wrong.load() == 0);
            CHECK(on_workers.load() > 0);
        }
        volatile float a = 1e-30f, b = 1e-10f;
        CHECK(a * b != 0.0f);  // the scope restored the caller's mode
    }
    return nntest::finish("test_thread_pool");
}
