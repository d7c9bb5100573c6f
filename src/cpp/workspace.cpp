#include "workspace.h"

#include <algorithm>
#include <array>
#include <stdexcept>

#include "thread_pool.h"

namespace nncore {

namespace {

// One entry per ThreadBuffer instantiation (a handful: packing buffers, partial sums, ...).
constexpr std::size_t kMaxThreadBuffers = 64;
std::array<std::atomic<void (*)()>, kMaxThreadBuffers> growers{};
std::atomic<std::size_t> registered{0};
std::atomic<unsigned long long> growths{0}, shared_growths{0};

void grow_all_on_this_thread() {
    const std::size_t n = std::min(registered.load(), kMaxThreadBuffers);
    for (std::size_t i = 0; i < n; ++i)
        if (void (*grow)() = growers[i].load()) grow();
}

}  // namespace

bool register_thread_buffer(void (*grow_to_largest)()) {
    const std::size_t i = registered.fetch_add(1);
    if (i >= kMaxThreadBuffers) throw std::logic_error("nncore: more ThreadBuffer kinds than kMaxThreadBuffers");
    growers[i].store(grow_to_largest);
    return true;
}

void thread_buffer_grew() { growths.fetch_add(1); }

void share_thread_buffers() noexcept {
    const unsigned long long now = growths.load();
    if (now == shared_growths.load()) return;
    try {
        if (run_on_every_thread(grow_all_on_this_thread)) shared_growths.store(now);
    } catch (...) {  // std::bad_alloc: the threads grow their buffers when they need them, as before
    }
}

}  // namespace nncore
