// The calling thread's handling of subnormal floats in SSE/AVX arithmetic: MXCSR's flush-to-zero
// (subnormal results become zero) and denormals-are-zero (subnormal inputs read as zero) bits.
// On Intel cores every operation that produces or reads a subnormal takes a microcode assist of
// about a hundred cycles or more. Off x86 these are no-ops.
#pragma once

#if defined(__x86_64__) || defined(__i386__)
#include <xmmintrin.h>
#endif

namespace nncore {

#if defined(__x86_64__) || defined(__i386__)
constexpr unsigned kFlushSubnormalBits = 0x8040;  // FTZ (bit 15) and DAZ (bit 6)
inline unsigned subnormal_mode() { return _mm_getcsr() & kFlushSubnormalBits; }
inline void set_subnormal_mode(unsigned bits) { _mm_setcsr((_mm_getcsr() & ~kFlushSubnormalBits) | (bits & kFlushSubnormalBits)); }
#else
constexpr unsigned kFlushSubnormalBits = 0;
inline unsigned subnormal_mode() { return 0; }
inline void set_subnormal_mode(unsigned) {}
#endif

// Flushes subnormals on the calling thread for its lifetime when `on` (the pool's workers follow
// the caller in each parallel region, see thread_pool.h), then restores the mode it found.
class FlushSubnormals {
public:
    explicit FlushSubnormals(bool on) : saved_(subnormal_mode()), on_(on) {
        if (on_) set_subnormal_mode(kFlushSubnormalBits);
    }
    ~FlushSubnormals() {
        if (on_) set_subnormal_mode(saved_);
    }
    FlushSubnormals(const FlushSubnormals&) = delete;
    FlushSubnormals& operator=(const FlushSubnormals&) = delete;

private:
    unsigned saved_;
    bool on_;
};

}  // namespace nncore
