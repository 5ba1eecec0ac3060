// AVX-512 build with VNNI (vpdpbusd zmm) and BF16 (vdpbf16ps), e.g. AMD Zen 4, Intel Cooper Lake and
// Sapphire Rapids. Dispatched only where the CPU reports all of avx512f/bw/vl/dq, avx512vnni and
// avx512bf16 (run on AMD Zen 4 and, below amx, on Intel Sapphire Rapids).
#define LSTMKIT_ISA qisa_avx512
#define LSTMKIT_QTABLE quant_avx512
#define LSTMKIT_ISA_NAME "avx512"
#define LSTMKIT_VEC_BYTES 64
#define LSTMKIT_QKIND 3
#define LSTMKIT_TARGET "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx512bf16,avx2,fma"
#include "quant/quant_impl.h"
