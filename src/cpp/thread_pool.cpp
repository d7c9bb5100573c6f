#include "thread_pool.h"

#include "fp_mode.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <exception>
#include <memory>
#include <mutex>
#include <pthread.h>
#include <sched.h>
#include <thread>
#include <utility>
#include <vector>

namespace nncore {

namespace {

constexpr int kMaxThreads = 1024;  // as nncore.runtime.MAX_THREADS

// CPUs this process may run on (its affinity mask, which taskset or a container's cpuset narrows),
// else the hardware's count (0 when unknown). Threads beyond it would only take turns on its CPUs.
unsigned usable_cpus() {
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof(set), &set) == 0) {
        const int count = CPU_COUNT(&set);
        if (count > 0) return static_cast<unsigned>(count);
    }
    return std::thread::hardware_concurrency();
}

int default_thread_count() {
    // Only a plain whole number from 1 to 1024 counts; the Python layer warns about anything else.
    if (const char* env = std::getenv("NNCORE_NUM_THREADS")) {
        char* end = nullptr;
        const long n = std::strtol(env, &end, 10);
        if (*env >= '0' && *env <= '9' && *end == '\0' && n >= 1 && n <= kMaxThreads) return static_cast<int>(n);
    }
    const unsigned cpus = usable_cpus();
    return cpus == 0 ? 1 : static_cast<int>(std::min<unsigned>(cpus, kMaxThreads));
}

class Pool {
public:
    // Tasks per region: the claim word holds the region's tag, then the first and one past the
    // last unclaimed task, each in kIndexBits bits (so at most 2^kIndexBits - 1 tasks).
    static constexpr int kIndexBits = 22, kTagBits = 64 - 2 * kIndexBits;
    static constexpr int kMaxTasks = (1 << kIndexBits) - 1;

    // As many workers as the system lets us start, up to n_workers (when it refuses a thread, the
    // regions run on those there are: every task is claimed by whoever is free).
    explicit Pool(int n_workers)
        : requested_(n_workers + 1),
          poll_through_regions_(static_cast<unsigned>(n_workers) + 1 <= usable_cpus()) {
        try {
            workers_.reserve(static_cast<std::size_t>(n_workers));
            for (int i = 0; i < n_workers; ++i) workers_.emplace_back([this] { worker_loop(); });
        } catch (const std::exception&) {  // std::system_error, or std::bad_alloc for the thread's state
        }
    }
    ~Pool() {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            stopping_ = true;
        }
        wake_.notify_all();
        for (auto& w : workers_) w.join();
    }
    int requested() const { return requested_; }

    // fn() on every thread of the pool: each task waits, after fn, until all have started, so no
    // thread can claim a second one.
    void run_on_each(void (*fn)()) {
        const int n = static_cast<int>(workers_.size()) + 1;
        std::atomic<int> arrived{0};
        const auto task = [&](int) {
            std::exception_ptr failure;
            try {
                fn();
            } catch (...) {
                failure = std::current_exception();
            }
            arrived.fetch_add(1);
            while (arrived.load() < n) std::this_thread::yield();
            if (failure) std::rethrow_exception(failure);
        };
        run(n, TaskRef(task), true);
    }

    // tasks_wait: the tasks wait for each other (run_on_each), so blocked workers are woken before
    // task 0 starts.
    void run(int n_tasks, const TaskRef& task, bool tasks_wait = false) {
        // The region is published with no locked instruction before task 0, which this thread
        // claims in the claim word it stores and runs at once: the stores (relaxed, generation_
        // last with release) reach the line while it works. (Stored under the mutex, the unlock
        // and each seq_cst store waited for the line to come back from the worker's core: task 0
        // started ~0.24 us later.) Workers blocked on wake_ are woken under the mutex: at once
        // when one is known to sleep, else after task 0 if one went to sleep meanwhile (the fence
        // there pairs with the worker's count in sleepers_, see worker_loop). MNIST-MLP predict of
        // one sample (its first layer a two-task region), 2 threads: ~6.85 -> ~6.55 us.
        const auto next = generation_.load(std::memory_order_relaxed) + 1;  // stored by this thread only
        const unsigned tag = static_cast<unsigned>(next) & kTagMask;
        pending_.store(n_tasks, std::memory_order_relaxed);
        claim_.store(pack(tag, 1, static_cast<unsigned>(n_tasks)), std::memory_order_relaxed);
        task_.store(&task, std::memory_order_relaxed);
        subnormals_.store(subnormal_mode(), std::memory_order_relaxed);
        n_tasks_.store(static_cast<unsigned>(n_tasks), std::memory_order_relaxed);
        generation_.store(next, std::memory_order_release);
        const bool woken = tasks_wait || sleepers_.load(std::memory_order_relaxed) > 0;
        if (woken) wake_workers();
        run_task(task, 0);
        pending_.fetch_sub(1);
        if (!woken) {
            std::atomic_thread_fence(std::memory_order_seq_cst);
            if (sleepers_.load(std::memory_order_relaxed) > 0) wake_workers();
        }
        drain(tag, task, false, claim_.load());
        if (!spin_until([this] { return pending_.load() == 0; }, [] { return false; })) {
            std::unique_lock<std::mutex> lock(mutex_);
            caller_blocked_.store(true);
            done_.wait(lock, [this] { return pending_.load() == 0; });
            caller_blocked_.store(false);
        }
        // Each task's failure_ was stored before its pending_ decrement, which this thread has seen.
        if (failure_) std::rethrow_exception(std::exchange(failure_, nullptr));
    }

private:
    static constexpr std::uint64_t kIndexMask = (std::uint64_t(1) << kIndexBits) - 1;
    static constexpr unsigned kTagMask = (1u << kTagBits) - 1;
    static std::uint64_t pack(unsigned tag, unsigned front, unsigned back) {
        return (static_cast<std::uint64_t>(tag) << (2 * kIndexBits)) | (static_cast<std::uint64_t>(front) << kIndexBits) |
               back;
    }

    void run_task(const TaskRef& task, int i) {
        try {
            task(i);
        } catch (...) {  // e.g. std::bad_alloc: the caller rethrows the first one after the region
            std::lock_guard<std::mutex> lock(mutex_);
            if (!failure_) failure_ = std::current_exception();
        }
    }

    // Wakes the workers blocked on wake_ (the mutex orders this after their check of generation_).
    void wake_workers() {
        { std::lock_guard<std::mutex> lock(mutex_); }
        wake_.notify_all();
    }

    // Claims and runs tasks of the region tagged `tag` until none is left: the caller from the
    // front (task 0 is its own from the start, see run), workers from the back. With one worker,
    // task 1 thus runs on the worker every time (unless it is descheduled and the caller takes it), so a
    // product repeated with the same split (a layer's weights, call after call) finds each part in
    // the same core's cache. (Both claiming from the front, the two raced for task 0: a one-row
    // 256 x 784 float32 product took 6-8 instead of ~5 us.) A claim is a compare-and-swap of the
    // whole word: a worker still draining an earlier region (descheduled between two claims while
    // the caller finished that region alone and started the next) can then never take, or skip,
    // a task of the new region, since the tag differs (it repeats only every 2^kTagBits regions,
    // and the stale claim would also have to match the new region's counts). (With a bare index
    // counter it could, and a task then ran twice and pending_ went below zero: the caller waited
    // forever.)
    // `claim`: the claim word as last seen, or as guessed (a failed compare-and-swap brings the
    // current one).
    void drain(unsigned tag, const TaskRef& task, bool from_back, std::uint64_t claim) {
        for (;;) {
            const auto front = static_cast<unsigned>((claim >> kIndexBits) & kIndexMask);
            const auto back = static_cast<unsigned>(claim & kIndexMask);
            if (static_cast<unsigned>(claim >> (2 * kIndexBits)) != tag || front >= back) return;
            const std::uint64_t next = from_back ? claim - 1 : claim + (std::uint64_t(1) << kIndexBits);
            if (!claim_.compare_exchange_weak(claim, next)) continue;
            run_task(task, static_cast<int>(from_back ? back - 1 : front));
            // The caller sets caller_blocked_ before it checks pending_ and blocks: it sees 0
            // there, or this thread sees the flag (both sequentially consistent).
            if (pending_.fetch_sub(1) == 1 && caller_blocked_.load()) {
                std::lock_guard<std::mutex> lock(mutex_);
                done_.notify_all();
            }
            // The word as this claim left it: if that shows no task left, none is (claims only
            // narrow the range), so a worker leaves without reading the line again.
            claim = next;
        }
    }

    // Waking a thread blocked on a condition variable takes tens of microseconds (more in a VM),
    // comparable to a whole mid-sized GEMM; so both the workers (waiting for work) and the caller
    // (waiting for the workers) first poll for up to kSpin (workers: after the region in progress,
    // see worker_loop) before they block. The blocking path still decides: the poll only makes it
    // return at once.
    static constexpr std::chrono::microseconds kSpin{100};
    // Whether `ready` became true while polling; the kSpin clock restarts while `busy` holds.
    template <class Ready, class Busy>
    static bool spin_until(Ready&& ready, Busy&& busy) {
        auto start = std::chrono::steady_clock::now();
        for (int i = 0; !ready(); ++i) {
            if ((i & 63) == 63) {
                const auto now = std::chrono::steady_clock::now();
                if (busy()) start = now;
                else if (now - start > kSpin) return false;
            }
#if defined(__x86_64__) || defined(__i386__)
            __builtin_ia32_pause();
#endif
        }
        return true;
    }

    void worker_loop() {
        unsigned long long seen = 0;
        for (;;) {
            // Polling goes on while a region still runs (pending_ > 0), and kSpin after it: a
            // worker that found every task taken (woken too late, the caller ran them all) used to
            // block again before the caller, busy with all of them, started the next region,
            // which it then missed too, and so on: two threads ran at one thread's speed for as
            // long as the caller kept issuing regions. Measured with a 256 x 256 x 784 float32
            // product, 60 calls per round, each round after a 0.15 s pause and turns of numpy's
            // OpenBLAS and PyTorch on 2 threads (as the benchmarks time it; Intel Xeon, KVM):
            // rounds at one thread's speed (~140-190 against ~300-345 GF/s) 13 of 28 before,
            // 5 of 30 after (those left come with OpenBLAS, whose threads poll on after its
            // turns). Not with more threads than cores, where a polling worker would take a core
            // from one that has work (OpenMP runtimes likewise poll less when oversubscribed).
            const auto region_running = [this] { return poll_through_regions_ && pending_.load() > 0; };
            if (!spin_until([&] { return generation_.load() != seen; }, region_running)) {
                // Counted before the check of generation_ (both sequentially consistent): a caller
                // that published a region after the check sees the count after its fence.
                std::unique_lock<std::mutex> lock(mutex_);
                sleepers_.fetch_add(1);
                wake_.wait(lock, [&] { return stopping_ || generation_.load() != seen; });
                sleepers_.fetch_sub(1, std::memory_order_relaxed);
                if (stopping_) return;
            }
            // A region newer than this one may have started meanwhile: its task_ then goes with
            // an older tag, whose claims fail in drain (task_ is null before the first region only).
            seen = generation_.load(std::memory_order_acquire);
            const TaskRef* task = task_.load(std::memory_order_relaxed);
            const unsigned subnormals = subnormals_.load(std::memory_order_relaxed);
            if (task == nullptr) continue;
            if (subnormal_mode() != subnormals) set_subnormal_mode(subnormals);  // the caller's, see thread_pool.h
            // The first claim guesses the word the caller stored (task 0 taken): one transfer of
            // its cache line rather than a read and then the compare-and-swap.
            const unsigned tag = static_cast<unsigned>(seen) & kTagMask;
            drain(tag, *task, true, pack(tag, 1, n_tasks_.load(std::memory_order_relaxed)));
        }
    }

    const int requested_;
    const bool poll_through_regions_;  // no more threads than the CPUs this process may run on
    std::vector<std::thread> workers_;
    std::mutex mutex_;
    std::condition_variable wake_, done_;
    std::exception_ptr failure_;                  // the first exception a task of the current region threw, under mutex_
    bool stopping_ = false;                       // under mutex_
    std::atomic<bool> caller_blocked_{false};     // the caller waits on done_
    // The region in one cache line: workers poll generation_, the caller polls pending_, both
    // claim in claim_. The caller's stores of a region reach it in one burst (see run), and a
    // worker that sees the new generation has the task, the claim word and pending_ at hand.
    // Measured, 2 threads, two tasks of 1 or 10 us busy-waiting, 30000 regions, TSC cycles (2.6
    // GHz) a region took beyond its task, medians: 1550-1960 with the stores under the mutex and
    // pending_ and claim_ on lines of their own (each seq_cst store then waited for its line),
    // 1200-1350 with relaxed stores on those three lines, 870-1270 on one line.
    alignas(64) std::atomic<unsigned long long> generation_{0};
    std::atomic<const TaskRef*> task_{nullptr};  // the latest region's task (drain's tag check keeps
                                                 // a late worker from calling an earlier one),
    std::atomic<unsigned> subnormals_{0};         // its caller's subnormal mode (fp_mode.h)
    std::atomic<unsigned> n_tasks_{0};            // and its number of tasks
    std::atomic<int> pending_{0};
    std::atomic<std::uint64_t> claim_{0};
    alignas(64) std::atomic<int> sleepers_{0};  // workers blocked on wake_, or about to block
};

// Held while a parallel region runs, and while the pool is replaced. Both are pointers so that a
// forked child can drop them: only the forking thread exists there, the pool's workers are gone
// and either lock may have been held by a thread of the parent. Destroying that pool would join
// threads that do not exist (the child hung at exit, or when it changed the thread count), so it
// is left behind, and the child starts a pool of its own when it first needs one. A child runs on
// one thread unless NNCORE_NUM_THREADS or set_num_threads says otherwise: forked workers (a
// multiprocessing pool) each starting all the cores' threads would oversubscribe the machine.
std::mutex* pool_mutex = new std::mutex;
Pool* pool = nullptr;
std::atomic<int> requested_threads{0};
thread_local bool inside_task = false;

// What a child left behind stays reachable from here, so that LeakSanitizer does not report it
// (it did, now and then, at the exit of test_thread_pool's forked child).
std::mutex* volatile abandoned_mutex = nullptr;  // volatile: stores to them must stay
Pool* volatile abandoned_pool = nullptr;

void forget_pool_in_child() {
    abandoned_mutex = pool_mutex;
    abandoned_pool = pool;
    pool_mutex = new std::mutex;
    pool = nullptr;
    requested_threads.store(std::getenv("NNCORE_NUM_THREADS") ? 0 : 1);  // 0: the environment's default
}
const int fork_handler_registered = pthread_atfork(nullptr, nullptr, forget_pool_in_child);

// The pool of `wanted` threads (pool_mutex held): the current one, or a new one when it has another size.
Pool& pool_of(int wanted) {
    if (!pool || pool->requested() != wanted) {
        delete pool;
        pool = nullptr;
        pool = new Pool(wanted - 1);
    }
    return *pool;
}

}  // namespace

int get_num_threads() {
    int n = requested_threads.load();
    if (n == 0) {
        requested_threads.compare_exchange_strong(n, default_thread_count());
        n = requested_threads.load();
    }
    return n;
}

void set_num_threads(int n) { requested_threads.store(n < 1 ? 1 : (n > kMaxThreads ? kMaxThreads : n)); }

void parallel_for(int n_tasks, TaskRef task) {
    const int wanted = get_num_threads();
    std::unique_lock<std::mutex> lock(*pool_mutex, std::defer_lock);
    if (n_tasks <= 1 || wanted <= 1 || inside_task || !lock.try_lock()) {
        for (int i = 0; i < n_tasks; ++i) task(i);
        return;
    }
    Pool& threads = pool_of(wanted);
    for (int first = 0; first < n_tasks;) {  // regions of at most kMaxTasks
        const int count = std::min(n_tasks - first, Pool::kMaxTasks);
        const auto guarded = [&task, first](int i) {
            inside_task = true;
            struct Reset {
                ~Reset() { inside_task = false; }
            } reset;
            task(first + i);
        };
        threads.run(count, TaskRef(guarded));
        first += count;
    }
}

bool run_on_every_thread(void (*fn)()) {
    const int wanted = get_num_threads();
    std::unique_lock<std::mutex> lock(*pool_mutex, std::defer_lock);
    if (inside_task || !lock.try_lock()) return false;
    if (wanted > 1) pool_of(wanted).run_on_each(fn);
    else if (pool) pool->run_on_each(fn);  // its workers serve again if the count goes back up
    else fn();
    return true;
}

}  // namespace nncore
