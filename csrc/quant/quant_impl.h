// The body of quant_<isa>.cpp: the quantised kernels (quant_gemm.h, quant_rnn.h, with the float
// engine's cells/plain.h and sequence/forward.h they reuse) compiled for one instruction set into namespace
// lstmkit::LSTMKIT_ISA, and its QuantKernels table (LSTMKIT_QTABLE). The same scheme as
// kernels_impl.h: standard headers first, outside the target region; our code inside it.
//
// The including file defines LSTMKIT_ISA (a namespace of its own: qisa_*), LSTMKIT_QTABLE,
// LSTMKIT_ISA_NAME, LSTMKIT_VEC_BYTES, LSTMKIT_QKIND (quant_gemm.h) and LSTMKIT_TARGET (or none).
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <numeric>
#include <stdexcept>
#include <type_traits>
#include <vector>
#if LSTMKIT_QKIND >= 1
#include <immintrin.h>
#endif

#include "core/common.h"
#include "quant/quant.h"

// Baseline instantiations of what the kernels use out of line (see kernels_impl.h).
template class std::vector<float>;
template class std::vector<std::ptrdiff_t>;
template class std::vector<int8_t>;
template class std::vector<uint8_t>;
template class std::vector<uint16_t>;
template class std::vector<uint32_t>;
template class std::vector<int32_t>;
template class lstmkit::RawBuffer<float>;

#include "core/target_begin.h"

#include "quant/quant_rnn.h"
#include "quant/quant_train.h"

#include "core/target_end.h"

namespace lstmkit {
extern const QuantKernels LSTMKIT_QTABLE;
const QuantKernels LSTMKIT_QTABLE = {LSTMKIT_ISA_NAME,
                                     &LSTMKIT_ISA::make_quant_rnn,
                                     &LSTMKIT_ISA::make_quant_stream,
                                     &LSTMKIT_ISA::quant_linear,
                                     &LSTMKIT_ISA::bf16_train_forward,
                                     &LSTMKIT_ISA::bf16_backward,
                                     &LSTMKIT_ISA::bf16_linear_tn,
                                     &LSTMKIT_ISA::int8_kernel_name};
}  // namespace lstmkit
