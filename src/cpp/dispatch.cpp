#include "dispatch.h"

#include <stdexcept>
#include <string>

#include "cpu_features.h"

namespace nncore {

namespace {
struct AllTables {
    Tables by_isa[kIsaCount];
    bool filled[kIsaCount] = {};
    AllTables() {
        fill_tables_scalar(by_isa[0]);
        filled[0] = true;
#if defined(NNCORE_HAVE_X86_KERNELS)
        if (cpu_supports(Isa::avx2)) {
            fill_tables_avx2(by_isa[1]);
            filled[1] = true;
        }
        if (cpu_supports(Isa::avx512)) {
            fill_tables_avx512(by_isa[2]);
            filled[2] = true;
        }
#endif
    }
};

const AllTables& all_tables() {
    static const AllTables tables;
    return tables;
}
}  // namespace

const Tables& tables_for(Isa isa) {
    const AllTables& all = all_tables();
    const int i = static_cast<int>(isa);
    if (!all.filled[i]) throw std::runtime_error(std::string("ISA not available: ") + isa_name(isa));
    return all.by_isa[i];
}

const Tables& active_tables() {
    static const Tables& active = tables_for(isa_choice().isa);
    return active;
}

}  // namespace nncore
