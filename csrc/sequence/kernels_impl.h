// The body of kernels_<isa>.cpp: every kernel header compiled for one instruction set into namespace
// lstmkit::LSTMKIT_ISA, and the table of its entry points (lstmkit::LSTMKIT_TABLE, see common.h).
//
// The including file defines LSTMKIT_ISA (namespace), LSTMKIT_TABLE (table name), LSTMKIT_ISA_NAME
// (string), LSTMKIT_VEC_BYTES (16, 32, 64) and LSTMKIT_TARGET (a gcc target string, or none for
// the baseline). The standard headers are included first, outside the target region: their inline
// functions and templates are then compiled for the baseline in every translation unit, so the
// linker's choice among identical copies can never pull AVX code into a baseline caller. Only what is
// defined between push and pop (our kernels, all in a namespace of their own) gets the target.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <numeric>
#include <stdexcept>
#include <type_traits>
#include <vector>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>  // simd.h's min/max
#endif

#include "cells/variant_api.h"  // its inline functions are shared with the glue: baseline code
#include "core/common.h"

// gcc gives implicit instantiations the target of the region they are instantiated from, so the
// std::vector members the kernels need out of line would be AVX code under a shared (weak) symbol.
// Instantiated here, before the region, they are baseline code in every translation unit. After a
// build, `nm -C kernels_avx2.cpp.o | grep " W " | grep -v isa_` must list nothing compiled here.
template class std::vector<float>;
template class std::vector<double>;
template class std::vector<std::ptrdiff_t>;
template class lstmkit::RawBuffer<float>;
template class lstmkit::RawBuffer<double>;

#include "core/target_begin.h"

#include "cells/plain.h"
#include "cells/plain_backward.h"
#include "sequence/forward.h"
#include "sequence/backward.h"
#include "sequence/stream.h"
#include "sequence/variant_backward.h"

namespace lstmkit {
namespace LSTMKIT_ISA {
template <typename T>
KernelSet<T> kernel_set() {
  return KernelSet<T>{&cell_forward<T>,      &cell_backward<T>, &rnn_forward<T>,
                      &rnn_train_forward<T>, &rnn_backward<T>,  &make_stream<T>};
}
template <typename T>
VariantKernelSet<T> variant_kernel_set() {
  return VariantKernelSet<T>{&variant_forward<T>, &variant_train_forward<T>, &variant_backward<T>};
}
}  // namespace LSTMKIT_ISA
}  // namespace lstmkit

#include "core/target_end.h"

namespace lstmkit {
extern const Kernels LSTMKIT_TABLE;
const Kernels LSTMKIT_TABLE = {LSTMKIT_ISA_NAME, LSTMKIT_ISA::kernel_set<float>(), LSTMKIT_ISA::kernel_set<double>()};
// The variants' table (cells/variant_api.h), by namespace: lstmkit::isa_<name>::variant_kernels.
const VariantKernels LSTMKIT_ISA::variant_kernels = {LSTMKIT_ISA::variant_kernel_set<float>(),
                                                     LSTMKIT_ISA::variant_kernel_set<double>()};
}  // namespace lstmkit
