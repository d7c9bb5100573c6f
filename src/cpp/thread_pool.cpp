#include "thread_pool.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace nncore {

namespace {

int default_thread_count() {
    // Only a plain whole number from 1 to 1024 counts; the Python layer warns about anything else.
    if (const char* env = std::getenv("NNCORE_NUM_THREADS")) {
        char* end = nullptr;
        const long n = std::strtol(env, &end, 10);
        if (*env >= '0' && *env <= '9' && *end == '\0' && n >= 1 && n <= 1024) return static_cast<int>(n);
    }
    const unsigned hw = std::thread::hardware_concurrency();
    return hw == 0 ? 1 : static_cast<int>(hw);
}

class Pool {
public:
    explicit Pool(int n_workers) {
        for (int i = 0; i < n_workers; ++i) workers_.emplace_back([this] { worker_loop(); });
    }
    ~Pool() {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            stopping_ = true;
        }
        wake_.notify_all();
        for (auto& w : workers_) w.join();
    }
    int size() const { return static_cast<int>(workers_.size()) + 1; }

    void run(int n_tasks, const TaskRef& task) {
        unsigned tag;
        {
            std::lock_guard<std::mutex> lock(mutex_);
            task_ = &task;
            n_tasks_ = n_tasks;
            pending_.store(n_tasks);
            tag = static_cast<unsigned>(generation_.fetch_add(1) + 1);
            claim_.store(static_cast<std::uint64_t>(tag) << 32);
        }
        wake_.notify_all();
        drain(tag, n_tasks, task);
        spin_until([this] { return pending_.load() == 0; });
        std::unique_lock<std::mutex> lock(mutex_);
        done_.wait(lock, [this] { return pending_.load() == 0; });
        task_ = nullptr;
    }

private:
    // Claims and runs tasks of the region tagged `tag` until none is left. claim_ holds the tag of
    // the current region (high 32 bits) next to its next task index, and a claim is a
    // compare-and-swap of both: a worker still draining an earlier region (descheduled between
    // two claims while the caller finished that region alone and started the next) can then
    // never take, or skip, a task of the new region. (With a bare index counter it could, and a
    // task then ran twice and pending_ went below zero: the caller waited forever.)
    void drain(unsigned tag, int n_tasks, const TaskRef& task) {
        std::uint64_t claim = claim_.load();
        for (;;) {
            const auto index = static_cast<int>(claim & 0xffffffffu);
            if (static_cast<unsigned>(claim >> 32) != tag || index >= n_tasks) return;
            if (!claim_.compare_exchange_weak(claim, claim + 1)) continue;
            task(index);
            if (pending_.fetch_sub(1) == 1) {
                std::lock_guard<std::mutex> lock(mutex_);
                done_.notify_all();
            }
            claim = claim_.load();
        }
    }

    // Waking a thread blocked on a condition variable takes tens of microseconds (more in a VM),
    // comparable to a whole mid-sized GEMM; so both the workers (waiting for work) and the caller
    // (waiting for the workers) first poll for up to kSpin before they block. The blocking path
    // below is unchanged and still decides: the poll only makes it return at once.
    static constexpr std::chrono::microseconds kSpin{100};
    template <class Ready>
    static void spin_until(Ready&& ready) {
        const auto start = std::chrono::steady_clock::now();
        for (int i = 0; !ready(); ++i) {
            if ((i & 63) == 63 && std::chrono::steady_clock::now() - start > kSpin) return;
#if defined(__x86_64__) || defined(__i386__)
            __builtin_ia32_pause();
#endif
        }
    }

    void worker_loop() {
        unsigned long long seen = 0;
        for (;;) {
            spin_until([&] { return generation_.load() != seen; });
            unsigned tag;
            int n_tasks;
            const TaskRef* task;
            {
                std::unique_lock<std::mutex> lock(mutex_);
                wake_.wait(lock, [&] { return stopping_ || generation_.load() != seen; });
                if (stopping_) return;
                seen = generation_.load();
                tag = static_cast<unsigned>(seen);
                n_tasks = n_tasks_;
                task = task_;
            }
            if (task != nullptr) drain(tag, n_tasks, *task);
        }
    }

    std::vector<std::thread> workers_;
    std::mutex mutex_;
    std::condition_variable wake_, done_;
    const TaskRef* task_ = nullptr;  // task_ and n_tasks_ of the current region, under mutex_
    int n_tasks_ = 0;
    std::atomic<int> pending_{0};
    std::atomic<std::uint64_t> claim_{0};
    std::atomic<unsigned long long> generation_{0};
    bool stopping_ = false;
};

std::mutex pool_mutex;  // held while a parallel region runs, and while the pool is replaced
std::unique_ptr<Pool> pool;
std::atomic<int> requested_threads{0};
thread_local bool inside_task = false;

}  // namespace

int get_num_threads() {
    int n = requested_threads.load();
    if (n == 0) {
        requested_threads.compare_exchange_strong(n, default_thread_count());
        n = requested_threads.load();
    }
    return n;
}

void set_num_threads(int n) { requested_threads.store(n < 1 ? 1 : n); }

void parallel_for(int n_tasks, TaskRef task) {
    const int wanted = get_num_threads();
    std::unique_lock<std::mutex> lock(pool_mutex, std::defer_lock);
    if (n_tasks <= 1 || wanted <= 1 || inside_task || !lock.try_lock()) {
        for (int i = 0; i < n_tasks; ++i) task(i);
        return;
    }
    if (!pool || pool->size() != wanted) {
        pool.reset();
        pool = std::make_unique<Pool>(wanted - 1);
    }
    const auto guarded = [&task](int i) {
        inside_task = true;
        task(i);
        inside_task = false;
    };
    pool->run(n_tasks, TaskRef(guarded));
}

}  // namespace nncore
