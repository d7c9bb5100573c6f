// One persistent pool of worker threads for all kernels. Work is split by the drivers along output
// dimensions, or a reduction into groups fixed by the shape alone and added in a fixed order, so
// results do not depend on the thread count.
#pragma once

#include <cstddef>
#include <memory>
#include <type_traits>
#include <utility>

namespace nncore {

// A non-owning reference to a callable. Unlike std::function it never allocates (a lambda
// capturing more than two references would be heap-allocated by std::function on every parallel
// region, i.e. every training step). The callable must outlive the reference, which
// parallel_for guarantees for its task by returning only when all tasks are done.
template <class Signature>
class FunctionRef;

template <class R, class... Args>
class FunctionRef<R(Args...)> {
public:
    template <class F, class = std::enable_if_t<!std::is_same_v<std::decay_t<F>, FunctionRef>>>
    FunctionRef(F&& f)  // NOLINT: implicit, so parallel_for(n, [&](int i) {...}) reads naturally
        : object_(const_cast<void*>(static_cast<const void*>(std::addressof(f)))),
          call_([](void* object, Args... args) -> R {
              return (*static_cast<std::remove_reference_t<F>*>(object))(std::forward<Args>(args)...);
          }) {}
    R operator()(Args... args) const { return call_(object_, std::forward<Args>(args)...); }

private:
    void* object_;
    R (*call_)(void*, Args...);
};

// A parallel_for task: called with the task index.
using TaskRef = FunctionRef<void(int)>;

// Number of threads kernels may use (including the caller). Defaults to the number of CPUs the
// process may run on (its affinity mask; the hardware's count where there is none), or
// NNCORE_NUM_THREADS when set.
int get_num_threads();
// n >= 1. Takes effect for the next parallel region.
void set_num_threads(int n);

// Runs task(0) ... task(n_tasks - 1), possibly concurrently, and returns when all are done. Workers
// run the tasks in the caller's subnormal mode (fp_mode.h), so a region computes as the caller's
// thread would.
// Called from inside a task, or while another Python thread holds the pool, it runs the tasks
// serially on the calling thread instead of waiting.
void parallel_for(int n_tasks, TaskRef task);

// Runs fn() once on each thread of the pool, the caller included (only on the caller when one
// thread is asked for and no pool was started), and returns true; or, called from inside a task or while another thread
// holds the pool, returns false without running it. For per-thread state that a region's tasks
// may need whichever thread runs them (workspace.h's share_thread_buffers).
bool run_on_every_thread(void (*fn)());

// body(lo, hi) over [0, units) in `parts` contiguous ranges, part p taking
// [units p / parts, units (p + 1) / parts) (empty ones skipped): on the pool when parts > 1, else
// one call on the calling thread. The ranges depend on units and parts only.
template <class Body>
void parallel_ranges(std::ptrdiff_t units, int parts, Body&& body) {
    if (parts <= 1) {
        body(std::ptrdiff_t(0), units);
        return;
    }
    parallel_for(parts, [&](int part) {
        const std::ptrdiff_t lo = units * part / parts, hi = units * (part + 1) / parts;
        if (hi > lo) body(lo, hi);
    });
}

}  // namespace nncore
