#include "cpu_features.h"

#include <cstdlib>

#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__)
#define NNCORE_X86 1
#include <cpuid.h>
#endif

namespace nncore {

const char* isa_name(Isa isa) {
    switch (isa) {
        case Isa::scalar: return "scalar";
        case Isa::avx2: return "avx2";
        case Isa::avx512: return "avx512";
    }
    return "unknown";
}

bool parse_isa(const std::string& name, Isa* out) {
    for (int i = 0; i < kIsaCount; ++i) {
        if (name == isa_name(static_cast<Isa>(i))) {
            *out = static_cast<Isa>(i);
            return true;
        }
    }
    return false;
}

namespace {

#if defined(NNCORE_X86) && defined(NNCORE_HAVE_X86_KERNELS)
unsigned long long read_xcr0() {
    unsigned int eax, edx;
    __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
    return (static_cast<unsigned long long>(edx) << 32) | eax;
}

struct X86Features {
    bool avx2_fma = false;
    bool avx512 = false;
};

X86Features detect_x86() {
    X86Features f;
    unsigned int eax, ebx, ecx, edx;
    if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) return f;
    const bool fma = ecx & (1u << 12);
    const bool osxsave = ecx & (1u << 27);
    const bool avx = ecx & (1u << 28);
    if (!osxsave || !avx) return f;
    const unsigned long long xcr0 = read_xcr0();
    const bool os_ymm = (xcr0 & 0x6) == 0x6;             // XMM and YMM state
    const bool os_zmm = (xcr0 & 0xE6) == 0xE6;           // plus opmask, ZMM_Hi256, Hi16_ZMM
    if (__get_cpuid_max(0, nullptr) < 7) return f;
    __cpuid_count(7, 0, eax, ebx, ecx, edx);
    const bool avx2 = ebx & (1u << 5);
    const bool avx512f = ebx & (1u << 16), avx512dq = ebx & (1u << 17);
    const bool avx512bw = ebx & (1u << 30), avx512vl = ebx & (1u << 31);
    f.avx2_fma = os_ymm && avx2 && fma;
    f.avx512 = f.avx2_fma && os_zmm && avx512f && avx512dq && avx512bw && avx512vl;
    return f;
}
#endif

}  // namespace

bool cpu_supports(Isa isa) {
    if (isa == Isa::scalar) return true;
#if defined(NNCORE_X86) && defined(NNCORE_HAVE_X86_KERNELS)
    static const X86Features features = detect_x86();
    if (isa == Isa::avx2) return features.avx2_fma;
    if (isa == Isa::avx512) return features.avx512;
#endif
    return false;
}

const std::string& cpu_vendor() {
    static const std::string vendor = [] {
        std::string v;
#if defined(NNCORE_X86) && defined(NNCORE_HAVE_X86_KERNELS)
        unsigned int eax, regs[3];
        if (__get_cpuid(0, &eax, &regs[0], &regs[2], &regs[1]))  // EBX, EDX, ECX spell the name
            v.assign(reinterpret_cast<const char*>(regs), sizeof(regs));
#endif
        return v;
    }();
    return vendor;
}

Isa best_supported_isa() {
    for (int i = kIsaCount - 1; i > 0; --i)
        if (cpu_supports(static_cast<Isa>(i))) return static_cast<Isa>(i);
    return Isa::scalar;
}

const IsaChoice& isa_choice() {
    static const IsaChoice choice = [] {
        IsaChoice c{best_supported_isa(), "", ""};
        const char* env = std::getenv("NNCORE_ISA");
        if (env == nullptr || *env == '\0') return c;
        c.requested = env;
        Isa wanted;
        if (!parse_isa(c.requested, &wanted)) {
            c.note = "NNCORE_ISA='" + c.requested +
                     "' is not one of scalar, avx2, avx512; using the best available ISA '" +
                     isa_name(c.isa) + "'";
        } else if (!cpu_supports(wanted)) {
            c.note = std::string("NNCORE_ISA='") + c.requested +
                     "' is not supported by this CPU/OS; using the best available ISA '" +
                     isa_name(c.isa) + "'";
        } else if (static_cast<int>(wanted) < static_cast<int>(c.isa)) {
            c.isa = wanted;
        }
        return c;
    }();
    return choice;
}

}  // namespace nncore
