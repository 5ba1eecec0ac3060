// AVX2 + FMA build of the kernels (32-byte vectors); called only where the CPU reports both.
#define LSTMKIT_ISA isa_avx2
#define LSTMKIT_TABLE kernels_avx2
#define LSTMKIT_ISA_NAME "avx2"
#define LSTMKIT_VEC_BYTES 32
#define LSTMKIT_TARGET "avx2,fma"
#include "sequence/kernels_impl.h"
