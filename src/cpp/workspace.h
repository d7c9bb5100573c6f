// Buffers the kernels read and write in 64-byte vectors start on a cache line: from malloc's
// 16-byte alignment every such access would touch two lines (the sparse-input kernels ran ~1.6x
// slower so). Not included by the kernel translation units (no std::vector code compiled with
// their ISA flags).
#pragma once

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

// A buffer of at least `count` values (and never a null pointer) for the calling thread, one per
// Owner (a tag type of the caller) and Slot: grown when needed and then reused, so that a call
// repeated every training step does not allocate. Its contents after growing are unspecified.
template <class T, class Owner, int Slot = 0>
T* thread_buffer(std::size_t count) {
    thread_local Workspace<T> buffer;
    if (count == 0) count = 1;
    if (buffer.size() < count) buffer.resize(count);
    return buffer.data();
}

}  // namespace nncore
