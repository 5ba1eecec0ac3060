// Portable build of the quantised kernels (integer and bf16 products in plain C++).
#define LSTMKIT_ISA qisa_scalar
#define LSTMKIT_QTABLE quant_scalar
#define LSTMKIT_ISA_NAME "scalar"
#define LSTMKIT_VEC_BYTES 16
#define LSTMKIT_QKIND 0
#include "quant/quant_impl.h"
