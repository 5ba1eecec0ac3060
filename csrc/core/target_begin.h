// Opens the target region of a per-instruction-set build (kernels_impl.h, quant_impl.h): every function
// defined until target_end.h is compiled for LSTMKIT_TARGET (a gcc/clang target string; none: the
// baseline). No include guard: included once per region.
#if defined(LSTMKIT_TARGET)
#define LSTMKIT_STR_(x) #x
#define LSTMKIT_STR(x) LSTMKIT_STR_(x)
#if defined(__clang__)
_Pragma(LSTMKIT_STR(clang attribute push(__attribute__((target(LSTMKIT_TARGET))), apply_to = function)))
#elif defined(__GNUC__)
#pragma GCC push_options
_Pragma(LSTMKIT_STR(GCC target(LSTMKIT_TARGET)))
#endif
#endif
