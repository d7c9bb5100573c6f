// Portable kernels: built with the compiler's baseline flags, on every architecture.
#define NNCORE_ISA_NS isa_scalar
#define NNCORE_VEC_HEADER "vec_scalar.h"
#include "isa_impl.inc"

namespace nncore {
void fill_tables_scalar(Tables& tables) {
    tables.isa = Isa::scalar;
    isa_scalar::fill_table<float, 4, 4, 4>(tables.f32, 256, 256, 16, 4096, 4, isa_scalar::ConvTiles<5, 2, 3, 3, 7, 1>{});
    isa_scalar::fill_table<double, 4, 4, 4>(tables.f64, 128, 128, 16, 4096, 4, isa_scalar::ConvTiles<5, 2, 3, 3, 7, 1>{});
}
}  // namespace nncore
