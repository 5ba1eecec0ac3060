// AVX-512 build of the kernels (64-byte vectors); called only where the CPU reports AVX-512 F, BW,
// VL and DQ (with AVX2 and FMA).
#define LSTMKIT_ISA isa_avx512
#define LSTMKIT_TABLE kernels_avx512
#define LSTMKIT_ISA_NAME "avx512"
#define LSTMKIT_VEC_BYTES 64
#define LSTMKIT_TARGET "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma"
#include "sequence/kernels_impl.h"
