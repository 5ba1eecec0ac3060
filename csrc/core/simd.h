// SIMD vectors LSTMKIT_VEC_BYTES wide through the gcc/clang vector extension, and the vectorised
// float32 tanh / sigmoid of the cell nonlinearities. Compiled once per instruction set (kernels_impl.h)
// into namespace LSTMKIT_ISA: with 16-byte vectors this is SSE2 code, under target("avx2,fma") AVX2
// with fused multiply-adds, under the AVX-512 target zmm code.
//
// tanh (float32): Cephes' tanhf scheme. |x| ≤ 0.625: the odd minimax polynomial x + x³·P(x²);
// above: 1 − 2 / (e^{2|x|} + 1) with e^y from a degree-6 polynomial on [−ln2/2, ln2/2] scaled by 2^n
// (Cephes expf); |x| is clamped at 9, where the result is 1 − 2^-24, one float32 step below ±1.
// tests/test_simd_functions.py sweeps 2 M points of [−12, 12] against float64 on every ISA path
// (through a one-step GRU cell, which isolates each function): tanh within 1.3 ulp, σ(x) =
// 1 / (1 + e^{−x}) (below) within 2 ulp.
// float64 stays on libm (std::tanh), the simple and exact-enough path.
#pragma once

#include <cstdint>
#include <cstring>

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

// e^x for x in [−87, 88] (the caller bounds it).
inline VF exp_ps(VF x) {
  const VF fx = x * 1.44269504088896341f;
  const VF magic = Simd<float>::set1(12582912.0f);  // 1.5·2^23: adding it rounds to an integer
  const VF n = (fx + magic) - magic;
  VF r = x - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  const VF z = r * r;
  VF y = Simd<float>::set1(1.9875691500e-4f);
  y = y * r + 1.3981999507e-3f;
  y = y * r + 8.3334519073e-3f;
  y = y * r + 4.1665795894e-2f;
  y = y * r + 1.6666665459e-1f;
  y = y * r + 5.0000001201e-1f;
  y = y * z + r + 1.0f;
  const VI ni = __builtin_convertvector(n, VI);
  const VI bits = (ni + 127) << 23;
  return y * (VF)bits;
}

inline VF tanh_ps(VF x) {
  const VI sign = (VI)x & static_cast<int32_t>(0x80000000u);
  const VF ax = (VF)((VI)x & 0x7fffffff);
  // |x| > 0.625: 1 − 2 / (e^{2|x|} + 1)
  const VF a = select(ax < 9.0f, ax, Simd<float>::set1(9.0f));
  const VF e = exp_ps(a + a);
  const VF big = 1.0f - 2.0f / (e + 1.0f);
  // |x| ≤ 0.625: odd polynomial
  const VF z = ax * ax;
  VF p = Simd<float>::set1(-5.70498872745e-3f);
  p = p * z + 2.06390887954e-2f;
  p = p * z - 5.37397155531e-2f;
  p = p * z + 1.33314422036e-1f;
  p = p * z - 3.33332819422e-1f;
  const VF small = p * z * ax + ax;
  const VF r = select(ax > 0.625f, big, small);  // NaN compares false: NaN from the polynomial
  return (VF)((VI)r | sign);
}

// σ(x) = 1 / (1 + e^{−x}): one exp and one division, against two of each and a polynomial through
// tanh. e^{−x} is taken with −x clamped to [−80, 80] (σ is 1 or below 2e−35 beyond; no subnormals); NaN
// compares false, stays NaN.
inline VF sigmoid_ps(VF x) {
  VF t = -x;
  t = select(t > 80.0f, Simd<float>::set1(80.0f), t);
  t = select(t < -80.0f, Simd<float>::set1(-80.0f), t);
  return 1.0f / (1.0f + exp_ps(t));
}

#else
#define LSTMKIT_HAVE_VECTORS 0
#endif

}  // namespace detail
}  // namespace LSTMKIT_ISA
}  // namespace lstmkit
