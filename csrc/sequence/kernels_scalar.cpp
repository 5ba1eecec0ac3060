// Baseline build of the kernels: 16-byte vectors (SSE2 on any x86-64), no target attribute.
#define LSTMKIT_ISA isa_scalar
#define LSTMKIT_TABLE kernels_scalar
#define LSTMKIT_ISA_NAME "scalar"
#define LSTMKIT_VEC_BYTES 16
#include "sequence/kernels_impl.h"
