// AMX build: the AVX-512 build (quant_avx512.cpp) with the products of prepared rows on tiles (quant_amx.h),
// e.g. Intel Sapphire Rapids and later. Dispatched only where the CPU reports AMX-TILE/BF16/INT8 beside the
// AVX-512 build's features and Linux grants the process the tile state (bind.cpp's cpu_has_amx).
#define LSTMKIT_ISA qisa_amx
#define LSTMKIT_QTABLE quant_amx
#define LSTMKIT_ISA_NAME "amx"
#define LSTMKIT_VEC_BYTES 64
#define LSTMKIT_QKIND 4
#define LSTMKIT_TARGET "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx512bf16,avx2,fma,amx-tile,amx-bf16,amx-int8"
#include "quant/quant_impl.h"
