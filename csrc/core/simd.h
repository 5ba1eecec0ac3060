// SIMD vectors LSTMKIT_VEC_BYTES wide through the gcc/clang vector extension, and the vectorised
// float32 tanh / sigmoid of the cell nonlinearities. Compiled once per instruction set (kernels_impl.h)
// into namespace LSTMKIT_ISA: with 16-byte vectors this is SSE2 code, under target("avx2,fma") AVX2
// with fused multiply-adds, under the AVX-512 target zmm code.
//
// Both rest on one e^y: y = n·ln2 + r with |r| ≤ ln2/2, e^r − 1 = r + r²·P(r) (Cephes expf's degree-5
// P), 2^n put in a float's exponent field. They run once per gate per step (five per hidden unit of an
// LSTM; an eighth of B=16 H=128's one-thread time on a Zen 3), so they are written for few instructions:
//   σ(x)    = 1 / (1 + e^{−x})
//   tanh(x) = sign(x)·E / (E + 2), E = e^{2|x|} − 1 = 2^n·(e^r − 1) + (2^n − 1)
// E keeps tanh's relative accuracy near 0 (n = 0: E = e^r − 1, no cancellation), so one formula serves
// every x (Cephes' tanhf adds a polynomial for |x| ≤ 0.625 and a select, 40 % more instructions).
// tests/test_simd_functions.py sweeps 2 M points of [−12, 12] against float64 on every ISA path
// (through a one-step GRU cell, which isolates each function): σ within 2 ulp (measured 1.96: e^r's
// ulp, 1 + e's rounding and the division's), tanh within 2.5 ulp (measured 2.15, at small |x| where
// E + 2 rounds off E's low bits: E's ulp, E + 2's half ulp of 2 (up to one ulp of the result) and the
// division's half).
// float64 stays on libm (std::tanh), the simple and exact-enough path.
#pragma once

#include <cstdint>
#include <cstring>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>  // (included first, outside the target region, by kernels_impl.h and quant_impl.h)
#define LSTMKIT_X86 1
#else
#define LSTMKIT_X86 0
#endif

#ifndef LSTMKIT_VEC_BYTES
#define LSTMKIT_VEC_BYTES 16
#endif
#ifndef LSTMKIT_ISA
#define LSTMKIT_ISA isa_scalar
#endif

namespace lstmkit {
namespace LSTMKIT_ISA {
namespace detail {

#if defined(__GNUC__) || defined(__clang__)
#define LSTMKIT_HAVE_VECTORS 1

template <typename T>
struct Simd {
  typedef T vec __attribute__((vector_size(LSTMKIT_VEC_BYTES)));
  static constexpr int W = static_cast<int>(LSTMKIT_VEC_BYTES / sizeof(T));
  static vec load(const T* p) {
    vec v;
    std::memcpy(&v, p, sizeof v);  // unaligned load
    return v;
  }
  static void store(T* p, vec v) { std::memcpy(p, &v, sizeof v); }
  // The first n < W lanes from p, the others zero.
  static vec load_part(const T* p, int n) {
    T tmp[W] = {};
    std::memcpy(tmp, p, static_cast<size_t>(n) * sizeof(T));
    return load(tmp);
  }
  static void store_part(T* p, vec v, int n) {
    T tmp[W];
    store(tmp, v);
    std::memcpy(p, tmp, static_cast<size_t>(n) * sizeof(T));
  }
  static vec set1(T x) { return vec{} + x; }
};

using VF = Simd<float>::vec;
typedef int32_t VI __attribute__((vector_size(LSTMKIT_VEC_BYTES)));

inline VF select(VI mask, VF a, VF b) {  // mask lanes all-ones: a, else b
  return (VF)((mask & (VI)a) | (~mask & (VI)b));
}

// Lane-wise min(a, b) and max(a, b): one instruction where the ISA has it (minps/maxps), else compare
// and select; either way b where a lane is NaN, so a clamp written vmin(limit, x) keeps a NaN x.
#if LSTMKIT_X86 && LSTMKIT_VEC_BYTES == 64
#define LSTMKIT_LANEWISE(op, a, b) (VF) _mm512_##op##_ps((__m512)(a), (__m512)(b))
#elif LSTMKIT_X86 && LSTMKIT_VEC_BYTES == 32
#define LSTMKIT_LANEWISE(op, a, b) (VF) _mm256_##op##_ps((__m256)(a), (__m256)(b))
#elif LSTMKIT_X86 && LSTMKIT_VEC_BYTES == 16
#define LSTMKIT_LANEWISE(op, a, b) (VF) _mm_##op##_ps((__m128)(a), (__m128)(b))
#else
inline VF lanewise_min(VF a, VF b) { return select(a < b, a, b); }
inline VF lanewise_max(VF a, VF b) { return select(a > b, a, b); }
#define LSTMKIT_LANEWISE(op, a, b) lanewise_##op(a, b)
#endif
inline VF vmin(VF a, VF b) { return LSTMKIT_LANEWISE(min, a, b); }
inline VF vmax(VF a, VF b) { return LSTMKIT_LANEWISE(max, a, b); }
#undef LSTMKIT_LANEWISE

// e^y = 2^n · (1 + em1) for y in [−87, 87] (the caller bounds it): em1 = e^r − 1, r = y − n·ln2.
struct ExpParts {
  VF em1;    // e^r − 1, |r| ≤ ln2/2
  VF two_n;  // 2^n, exact
};
inline ExpParts exp_parts(VF y) {
  const VF magic = Simd<float>::set1(12582912.0f);  // 1.5·2^23: adding it rounds to an integer
  const VF k = y * 1.44269504088896341f + magic;    // n in the low mantissa bits
  const VF n = k - magic;
  VF r = y - n * 0.693359375f;  // ln2 in two parts, the first exact in a product with n
  r = r - n * -2.12194440e-4f;
  VF p = Simd<float>::set1(1.9875691500e-4f);
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  // n's bits shifted into the exponent field (k's own exponent bits shift out) plus the bias of 2^0
  return {p * (r * r) + r, (VF)(((VI)k << 23) + 0x3f800000)};
}

inline VF tanh_ps(VF x) {
  const VI sign = (VI)x & static_cast<int32_t>(0x80000000u);
  const VF ax = (VF)((VI)x & 0x7fffffff);
  // |x| clamped at 9, where E / (E + 2) is 1 within a float32 step (tanh(9) = 1 − 3e−8)
  const VF a = vmin(Simd<float>::set1(9.0f), ax);
  const ExpParts e = exp_parts(a + a);
  const VF big_e = e.em1 * e.two_n + (e.two_n - 1.0f);  // e^{2|x|} − 1
  return (VF)((VI)(big_e / (big_e + 2.0f)) | sign);
}

// e^{−x} is taken with −x clamped to [−80, 80] (σ is 1 or below 2e−35 beyond; no subnormals); NaN
// stays NaN.
inline VF sigmoid_ps(VF x) {
  const VF t = vmax(Simd<float>::set1(-80.0f), vmin(Simd<float>::set1(80.0f), -x));
  const ExpParts e = exp_parts(t);
  return 1.0f / ((e.em1 + 1.0f) * e.two_n + 1.0f);
}

#else
#define LSTMKIT_HAVE_VECTORS 0
#endif

}  // namespace detail
}  // namespace LSTMKIT_ISA
}  // namespace lstmkit
