// AVX2 + FMA build of the quantised kernels: int8 through vpmaddubsw + vpmaddwd, bf16 weights widened
// to float32 by a shift in the kernel.
#define LSTMKIT_ISA qisa_avx2
#define LSTMKIT_QTABLE quant_avx2
#define LSTMKIT_ISA_NAME "avx2"
#define LSTMKIT_VEC_BYTES 32
#define LSTMKIT_QKIND 1
#define LSTMKIT_TARGET "avx2,fma"
#include "quant/quant_impl.h"
