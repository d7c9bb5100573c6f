// Which instruction sets this CPU and OS can run, decided once (CPUID + XGETBV).
#pragma once

#include <string>

#include "common.h"

namespace nncore {

// True when the CPU has the ISA's instructions and the OS saves the registers it needs.
bool cpu_supports(Isa isa);
Isa best_supported_isa();

// The ISA chosen at start-up: the best supported one, capped by the NNCORE_ISA environment variable
// (scalar|avx2|avx512). An unknown or unsupported value falls back to the best available ISA and is
// reported through isa_request_note() so the Python layer can warn.
struct IsaChoice {
    Isa isa;
    std::string requested;  // the raw NNCORE_ISA value, empty when unset
    std::string note;       // why the request was not honoured exactly; empty when it was
};
const IsaChoice& isa_choice();

bool parse_isa(const std::string& name, Isa* out);

// CPUID's vendor string ("GenuineIntel", "AuthenticAMD", ...); empty off x86.
const std::string& cpu_vendor();

}  // namespace nncore
