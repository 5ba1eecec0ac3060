// AVX-VNNI build (256-bit vpdpbusd, e.g. Alder Lake and later client cores, Zen 5): int8 products in one
// instruction; bf16 as on AVX2. Dispatched only where the CPU reports avxvnni; not run on the
// development machine (AMD Zen 2).
#define LSTMKIT_ISA qisa_avxvnni
#define LSTMKIT_QTABLE quant_avxvnni
#define LSTMKIT_ISA_NAME "avxvnni"
#define LSTMKIT_VEC_BYTES 32
#define LSTMKIT_QKIND 2
#define LSTMKIT_TARGET "avx2,fma,avxvnni"
#include "quant/quant_impl.h"
