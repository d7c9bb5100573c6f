// One persistent pool of worker threads for all kernels. Work is split by the drivers along
// output dimensions only (never a reduction), so results do not depend on the thread count.
#pragma once

#include <functional>

namespace nncore {

// Number of threads kernels may use (including the caller). Defaults to the hardware's count, or
// NNCORE_NUM_THREADS when set.
int get_num_threads();
// n >= 1. Takes effect for the next parallel region.
void set_num_threads(int n);

// Runs task(0) ... task(n_tasks - 1), possibly concurrently, and returns when all are done.
// Called from inside a task, or while another Python thread holds the pool, it runs the tasks
// serially on the calling thread instead of waiting.
void parallel_for(int n_tasks, const std::function<void(int)>& task);

}  // namespace nncore
