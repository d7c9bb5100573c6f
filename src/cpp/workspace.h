// Buffers the kernels read and write in 64-byte vectors start on a cache line: from malloc's
// 16-byte alignment every such access would touch two lines (the sparse-input kernels ran ~1.6x
// slower so). Not included by the kernel translation units (no std::vector code compiled with
// their ISA flags).
#pragma once

#include <atomic>
#include <cstddef>
#include <new>
#include <vector>

namespace nncore {

template <class T>
struct CacheLineAllocator {
    using value_type = T;
    CacheLineAllocator() = default;
    template <class U>
    CacheLineAllocator(const CacheLineAllocator<U>&) {}
    T* allocate(std::size_t n) { return static_cast<T*>(::operator new(n * sizeof(T), std::align_val_t{64})); }
    void deallocate(T* p, std::size_t) { ::operator delete(p, std::align_val_t{64}); }
    template <class U>
    bool operator==(const CacheLineAllocator<U>&) const { return true; }
    template <class U>
    bool operator!=(const CacheLineAllocator<U>&) const { return false; }
};

template <class T>
using Workspace = std::vector<T, CacheLineAllocator<T>>;

// The bookkeeping behind share_thread_buffers (workspace.cpp): each ThreadBuffer registers once how
// to grow the calling thread's buffer to the largest size asked for, and counts its growths.
bool register_thread_buffer(void (*grow_to_largest)());
void thread_buffer_grew();
// Grows every thread_buffer on every thread of the pool (thread_pool.h) to the largest size any
// thread has asked for, when one has grown since the last call; so that a run repeated with the
// same shapes (a training epoch) allocates nothing the second time, whichever thread ran which task
// the first time. (A worker whose share of a product the busy caller had taken grew its packing
// buffer in a later epoch: test_engine's steady-state check failed 3-6 runs in 10 under load.)
void share_thread_buffers() noexcept;

// Each thread's buffer for one Owner and Slot (see thread_buffer), and the largest size any thread
// has asked of it.
template <class T, class Owner, int Slot = 0>
class ThreadBuffer {
public:
    static T* get(std::size_t count) {
        static const bool registered = register_thread_buffer(&grow_to_largest);
        (void)registered;
        if (count == 0) count = 1;
        Workspace<T>& buffer = local();
        if (buffer.size() < count) {
            buffer.resize(count);
            std::size_t known = largest_.load();
            while (known < count && !largest_.compare_exchange_weak(known, count)) {
            }
            thread_buffer_grew();
        }
        return buffer.data();
    }

private:
    static Workspace<T>& local() {
        thread_local Workspace<T> buffer;
        return buffer;
    }
    static void grow_to_largest() {
        Workspace<T>& buffer = local();
        const std::size_t size = largest_.load();
        if (buffer.size() < size) buffer.resize(size);
    }
    static inline std::atomic<std::size_t> largest_{0};
};

// A buffer of at least `count` values (and never a null pointer) for the calling thread, one per
// Owner (a tag type of the caller) and Slot: grown when needed and then reused, so that a call
// repeated every training step does not allocate. Its contents after growing are unspecified.
template <class T, class Owner, int Slot = 0>
T* thread_buffer(std::size_t count) {
    return ThreadBuffer<T, Owner, Slot>::get(count);
}

}  // namespace nncore
