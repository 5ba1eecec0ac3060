// The quantised products C += A · Wᵀ of the int8 and bf16 formats (quant.h), with W packed once into
// column panels and A (float32 rows: x_t, h_t, the projection input) prepared per call.
//
// Compiled once per instruction set (quant_impl.h) with LSTMKIT_QKIND: 0 portable C++, 1 AVX2+FMA,
// 2 AVX-VNNI, 3 AVX-512 with VNNI and BF16, 4 the same with AMX (quant_amx.h: the products of prepared rows). Every
// path accumulates the int8 products exactly in int32 and dequantises them with the same float operations, so the int8
// results are the same bits on every path (tests/test_quantize.py checks it through QuantKernels::linear).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "core/common.h"
#include "core/gemm.h"  // CInit
#if LSTMKIT_QKIND == 4
#include "quant/quant_amx.h"
#endif

#ifndef LSTMKIT_QKIND
#define LSTMKIT_QKIND 0
#endif

namespace lstmkit {
namespace LSTMKIT_ISA {

// Columns per panel: one zmm of int32 / float32 accumulators, two ymm.
constexpr index_t kQNR = 16;
static_assert(kQNR <= CInit<float>::kMaxWidth, "CInit::row covers a panel");
// Rows per register tile (accumulators: rows × 16 columns), int8 and bf16.
constexpr int kQMR = LSTMKIT_QKIND >= 3 ? 8 : LSTMKIT_QKIND == 1 ? 2 : 4;
constexpr int kBMR = LSTMKIT_QKIND >= 3 ? 8 : 6;
// Row block of A kept in L2 while the panels sweep it.
constexpr index_t kQMC = 96;
// K in groups (an int8 quad, a bf16 pair) is padded with zeros to a multiple of this in the packed weights and
// the prepared rows: AMX multiplies whole tiles of 16 groups (quant_amx.h).
constexpr index_t kGroupPad = LSTMKIT_QKIND == 4 ? 16 : 1;
// Rows a prepared operand holds past its last: an AMX tile reads 16 rows from its first.
constexpr index_t kRowSlack = LSTMKIT_QKIND == 4 ? 16 : 0;
// Rows from which an int8 product runs on AMX tiles: one row streams the weights by vpdpbusd at twice a tile's
// rate. Int8 LSTM sequences on Sapphire Rapids, 1 thread, T=100, ms (vpdpbusd for every M / tiles from 2 rows):
// B=1 H=512 1.35 / 1.01 (the input projection's rows on tiles), B=4 H=256 2.15 / 0.98, B=8 H=256 2.21 / 1.69; on 2
// threads B=16 H=128 (8 rows each) 0.89–0.95 / 1.03, B=64 H=256 10.4 / 6.0. bf16 runs on tiles from one row
// (vdpbf16ps was the slower there at every batch: B=1 H=128 0.45 ms against 0.20 on tiles).
constexpr index_t kAmxInt8Rows = 2;

inline index_t pad_groups(index_t groups) { return (groups + kGroupPad - 1) / kGroupPad * kGroupPad; }

// Activations of M rows made ready for one product (reused across calls: no allocation per step once
// it has grown).
struct QuantRows {
  index_t M = 0;
  std::vector<uint8_t> q;    // int8: [M, Kp] 7-bit codes, Kp = K rounded up to 4 (zero padding)
  std::vector<float> scale;  // int8: [M] a ≈ scale · (q − zp)
  std::vector<int32_t> zp;   // int8: [M]
  // bf16 on AVX-512 BF16: pairs of inputs rounded to bf16, one 32-bit word a pair; prepared from rows,
  // row m's pair k2 at bf[m·rs + k2] (rs = K2); from the columns of a [K, M] matrix, in blocks of kBMR
  // rows (a register tile's), row m's pair k2 at bf[(m / kBMR)·kBMR·K2 + k2·kBMR + m % kBMR], so a tile
  // reads one contiguous stream. Elsewhere the float rows themselves: element (m, k) at a[m·rs + k·ks].
  std::vector<uint32_t> bf;
  const float* a = nullptr;
  index_t rs = 0, ks = 1;
  bool blocked = false;  // bf in row blocks (prepare_columns)
};

// float32 → bfloat16 bits, round to nearest even (NaN stays a quiet NaN).
inline uint16_t to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

inline float from_bf16(uint16_t b) {
  const uint32_t u = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

#if LSTMKIT_QKIND >= 3
// to_bf16 of 16 floats at once, each result in the low half of its 32-bit lane (the same bits as to_bf16).
inline __m512i to_bf16_x16(const float* a) {
  const __m512i u = _mm512_loadu_si512(a);
  const __mmask16 nan =
      _mm512_cmpgt_epu32_mask(_mm512_and_si512(u, _mm512_set1_epi32(0x7fffffff)), _mm512_set1_epi32(0x7f800000));
  const __m512i odd = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
  const __m512i r = _mm512_srli_epi32(_mm512_add_epi32(u, _mm512_add_epi32(_mm512_set1_epi32(0x7fff), odd)), 16);
  return _mm512_mask_mov_epi32(r, nan, _mm512_or_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(0x40)));
}
#endif

// dst[j] = to_bf16(a0[j]) | to_bf16(a1[j]) << 16 for j < n (a1 null: a zero high half): two rows of
// inputs as the pairs vdpbf16ps multiplies.
inline void round_pairs(const float* a0, const float* a1, index_t n, uint32_t* dst) {
  index_t j = 0;
#if LSTMKIT_QKIND >= 3
  for (; j + 16 <= n; j += 16) {
    const __m512i lo = to_bf16_x16(a0 + j);
    const __m512i hi = a1 ? _mm512_slli_epi32(to_bf16_x16(a1 + j), 16) : _mm512_setzero_si512();
    _mm512_storeu_si512(dst + j, _mm512_or_si512(lo, hi));
  }
#endif
  for (; j < n; ++j) dst[j] = to_bf16(a0[j]) | (a1 ? static_cast<uint32_t>(to_bf16(a1[j])) << 16 : 0u);
}

#if LSTMKIT_QKIND == 4
// The 16 × 16 matrix of 32-bit words b transposed in place.
inline void transpose_16x16(uint32_t (*b)[16]) {
  __m512i r[16], t[16];
  for (int i = 0; i < 16; ++i) r[i] = _mm512_load_si512(b[i]);
  for (int i = 0; i < 8; ++i) {  // per 128-bit lane: rows 2i, 2i + 1 interleaved by words
    t[2 * i] = _mm512_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
  }
  for (int i = 0; i < 4; ++i) {  // lane L of r[4i + j]: column 4L + j of rows 4i .. 4i + 3
    r[4 * i] = _mm512_unpacklo_epi64(t[4 * i], t[4 * i + 2]);
    r[4 * i + 1] = _mm512_unpackhi_epi64(t[4 * i], t[4 * i + 2]);
    r[4 * i + 2] = _mm512_unpacklo_epi64(t[4 * i + 1], t[4 * i + 3]);
    r[4 * i + 3] = _mm512_unpackhi_epi64(t[4 * i + 1], t[4 * i + 3]);
  }
  for (int j = 0; j < 4; ++j) {  // the lanes gathered: column 4L + j from lane L of r[j], r[4 + j], r[8 + j], r[12 + j]
    const __m512i x0 = _mm512_shuffle_i32x4(r[j], r[4 + j], 0x88), x1 = _mm512_shuffle_i32x4(r[j], r[4 + j], 0xdd);
    const __m512i y0 = _mm512_shuffle_i32x4(r[8 + j], r[12 + j], 0x88);
    const __m512i y1 = _mm512_shuffle_i32x4(r[8 + j], r[12 + j], 0xdd);
    _mm512_store_si512(b[j], _mm512_shuffle_i32x4(x0, y0, 0x88));
    _mm512_store_si512(b[4 + j], _mm512_shuffle_i32x4(x1, y1, 0x88));
    _mm512_store_si512(b[8 + j], _mm512_shuffle_i32x4(x0, y0, 0xdd));
    _mm512_store_si512(b[12 + j], _mm512_shuffle_i32x4(x1, y1, 0xdd));
  }
}
#endif

// dst[j] = to_bf16(a[j]) for j < n.
inline void round_row(const float* a, index_t n, uint16_t* dst) {
  index_t j = 0;
#if LSTMKIT_QKIND >= 3
  for (; j + 16 <= n; j += 16)
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + j), _mm512_cvtepi32_epi16(to_bf16_x16(a + j)));
#endif
  for (; j < n; ++j) dst[j] = to_bf16(a[j]);
}

// ---- int8 -------------------------------------------------------------------------------------------

// One row a [K] → 7-bit codes q [Kp] (zero past K), scale and zero point: a ≈ scale · (q − zp), the
// range [min(a, 0), max(a, 0)] over 127 steps. The caller guarantees finite values (Python checks).
// Rounding is nearest-even of the float product a · (1/scale) on every path (no fused operations).
inline void quantize_row_u7(const float* a, index_t K, index_t Kp, uint8_t* q, float& scale, int32_t& zp) {
  float mn = 0.f, mx = 0.f;
  index_t k = 0;
#if LSTMKIT_QKIND >= 1
  __m256 vmn = _mm256_setzero_ps(), vmx = _mm256_setzero_ps();
  for (; k + 8 <= K; k += 8) {
    const __m256 v = _mm256_loadu_ps(a + k);
    vmn = _mm256_min_ps(vmn, v);
    vmx = _mm256_max_ps(vmx, v);
  }
  float tmn[8], tmx[8];
  _mm256_storeu_ps(tmn, vmn);
  _mm256_storeu_ps(tmx, vmx);
  for (int j = 0; j < 8; ++j) mn = std::min(mn, tmn[j]), mx = std::max(mx, tmx[j]);
#endif
  for (; k < K; ++k) mn = std::min(mn, a[k]), mx = std::max(mx, a[k]);
  scale = (mx - mn) / 127.f;
  if (!(scale > 1e-30f)) {  // an all-zero row (or one so tiny that 1/scale would overflow)
    scale = 1.f;
    zp = 0;
    std::fill(q, q + Kp, uint8_t(0));
    return;
  }
  const float inv = 1.f / scale;
  const float zf = std::nearbyint(-mn * inv);
  zp = static_cast<int32_t>(std::min(127.f, std::max(0.f, zf)));
  k = 0;
#if LSTMKIT_QKIND >= 1
  const __m256 vinv = _mm256_set1_ps(inv);
  const __m256i vzp = _mm256_set1_epi32(zp), lo = _mm256_setzero_si256(), hi = _mm256_set1_epi32(127);
  for (; k + 8 <= K; k += 8) {
    __m256i v = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(a + k), vinv));  // nearest even
    v = _mm256_min_epi32(_mm256_max_epi32(_mm256_add_epi32(v, vzp), lo), hi);
    // The 8 codes (0..127) narrowed to bytes in registers: per 128-bit lane, int32 -> int16 -> uint8 (each lane
    // then starts with its 4 codes), the two lanes' first dwords gathered into 8 bytes.
    const __m256i b = _mm256_packus_epi16(_mm256_packs_epi32(v, v), _mm256_setzero_si256());
    _mm_storel_epi64(reinterpret_cast<__m128i*>(q + k),
                     _mm256_castsi256_si128(_mm256_permutevar8x32_epi32(b, _mm256_setr_epi32(0, 4, 0, 0, 0, 0, 0, 0))));
  }
#endif
  for (; k < K; ++k) {
    const float p = a[k] * inv;
    const int32_t v = static_cast<int32_t>(std::nearbyint(p)) + zp;
    q[k] = static_cast<uint8_t>(std::min(127, std::max(0, v)));
  }
  std::fill(q + K, q + Kp, uint8_t(0));
}

#if LSTMKIT_QKIND == 1 || LSTMKIT_QKIND == 2
// acc[i][j] = Σ_k q[i·Kp + k] · panel's column j for ROWS rows on ymm registers, two of 8 columns a row, each
// group of 4 inputs added by dot(v, a, w): v + the four u7·s8 products of a's broadcast bytes and w's, per lane.
template <int ROWS, typename Dot>
inline void ymm_sums(const uint8_t* q, index_t Kp, index_t k4n, const int8_t* panel, int32_t (*acc)[kQNR], Dot dot) {
  __m256i v[ROWS][2];
  for (int i = 0; i < ROWS; ++i) v[i][0] = v[i][1] = _mm256_setzero_si256();
  for (index_t k4 = 0; k4 < k4n; ++k4) {
    const __m256i w0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(panel + k4 * 64));
    const __m256i w1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(panel + k4 * 64 + 32));
    for (int i = 0; i < ROWS; ++i) {
      int32_t a4;
      std::memcpy(&a4, q + i * Kp + 4 * k4, 4);
      const __m256i a = _mm256_set1_epi32(a4);
      v[i][0] = dot(v[i][0], a, w0);
      v[i][1] = dot(v[i][1], a, w1);
    }
  }
  for (int i = 0; i < ROWS; ++i) {
    _mm256_store_si256(reinterpret_cast<__m256i*>(acc[i]), v[i][0]);
    _mm256_store_si256(reinterpret_cast<__m256i*>(acc[i] + 8), v[i][1]);
  }
}
#endif

#if LSTMKIT_QKIND == 1
// The AVX2 int8 integer sums: acc[i][j] = Σ_k q[i·Kp + k] · panel's column j, over k4 groups of 4 inputs, for
// ROWS rows (u7 codes times s8 weights). Two kernels, the same integers (exact sums, modulo 2^32 in either):
//  * madd: vpmaddubsw (two u7·s8 products a 16-bit lane, which never saturates: 2·127·127 < 2^15) widened by
//    vpmaddwd(·, 1) into 32-bit sums: two multiplies and an add per 32 products. Where the CPU runs both
//    multiplies on two pipes (Intel; AMD from Zen 3) the multiplies bound it: 4 rows a tile share each panel
//    load. On a Zen 3 the products alone ran 1.6–1.8x as fast as the pairs kernel's, a 4-row tile with its panel
//    in L2 at 31 products a cycle (the bound of two multiplies a cycle), and whole int8 sequences 1.03–1.57x
//    (`benchmarks/bench_int8_kernels.py`, docs/benchmarks.md).
//  * pairs: on Zen 1 and 2 (AMD family 17h) both multiplies share one pipe, so the widening multiply is
//    replaced by adds and shifts that run on the other pipes (below). 2 rows a tile (8 accumulators).
enum class Int8Kernel { madd, pairs };

// The kernel this process runs: LSTMKIT_INT8_KERNEL=madd|pairs if set (tests run both on every CPU), else
// pairs on AMD family 17h and madd elsewhere. Both give the same bits; only the time differs.
inline Int8Kernel int8_kernel() {
  static const Int8Kernel chosen = [] {
    const char* env = std::getenv("LSTMKIT_INT8_KERNEL");
    if (env && std::strcmp(env, "madd") == 0) return Int8Kernel::madd;
    if (env && std::strcmp(env, "pairs") == 0) return Int8Kernel::pairs;
    __builtin_cpu_init();
    return __builtin_cpu_is("amdfam17h") ? Int8Kernel::pairs : Int8Kernel::madd;
  }();
  return chosen;
}

template <int ROWS>
inline void madd_sums(const uint8_t* q, index_t Kp, index_t k4n, const int8_t* panel, int32_t (*acc)[kQNR]) {
  ymm_sums<ROWS>(q, Kp, k4n, panel, acc, [](__m256i v, __m256i a, __m256i w) {
    return _mm256_add_epi32(v, _mm256_madd_epi16(_mm256_maddubs_epi16(a, w), _mm256_set1_epi16(1)));
  });
}

template <int ROWS>
inline void pair_sums(const uint8_t* q, index_t Kp, index_t k4n, const int8_t* panel, int32_t (*acc)[kQNR]) {
  // vpmaddubsw gives two int16 sums per 32-bit lane, hi (bits 31..16) and lo (15..0), both signed. Keep two int32
  // sums per lane, with adds and shifts: Σ (t >> 16) = Σ hi (arithmetic shift), and Σ (t ^ 2^15) = 2^16·Σ hi +
  // Σ lo + 2^15·K4 modulo 2^32 (the xor turns lo into lo + 2^15 ≥ 0 without a carry), from which Σ lo follows
  // modulo 2^32. The lane's sum is Σ hi + Σ lo.
  static_assert(ROWS <= 2, "the pairs kernel has named accumulators for 2 rows");
  __m256i hs[ROWS][2], ts[ROWS][2];
  const __m256i flip = _mm256_set1_epi32(1 << 15);
  {
    // Named accumulators (at most 2 rows): gcc keeps them in registers, arrays it spills.
    __m256i h00 = _mm256_setzero_si256(), h01 = h00, h10 = h00, h11 = h00, t00 = h00, t01 = h00, t10 = h00, t11 = h00;
    const uint8_t* q1 = q + (ROWS > 1 ? Kp : 0);
    for (index_t k4 = 0; k4 < k4n; ++k4) {
      const __m256i w0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(panel + k4 * 64));
      const __m256i w1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(panel + k4 * 64 + 32));
      int32_t a4;
      std::memcpy(&a4, q + 4 * k4, 4);
      __m256i a = _mm256_set1_epi32(a4);
      __m256i x0 = _mm256_maddubs_epi16(a, w0), x1 = _mm256_maddubs_epi16(a, w1);
      t00 = _mm256_add_epi32(t00, _mm256_xor_si256(x0, flip));
      t01 = _mm256_add_epi32(t01, _mm256_xor_si256(x1, flip));
      h00 = _mm256_add_epi32(h00, _mm256_srai_epi32(x0, 16));
      h01 = _mm256_add_epi32(h01, _mm256_srai_epi32(x1, 16));
      if (ROWS > 1) {
        std::memcpy(&a4, q1 + 4 * k4, 4);
        a = _mm256_set1_epi32(a4);
        x0 = _mm256_maddubs_epi16(a, w0), x1 = _mm256_maddubs_epi16(a, w1);
        t10 = _mm256_add_epi32(t10, _mm256_xor_si256(x0, flip));
        t11 = _mm256_add_epi32(t11, _mm256_xor_si256(x1, flip));
        h10 = _mm256_add_epi32(h10, _mm256_srai_epi32(x0, 16));
        h11 = _mm256_add_epi32(h11, _mm256_srai_epi32(x1, 16));
      }
    }
    hs[0][0] = h00, hs[0][1] = h01, ts[0][0] = t00, ts[0][1] = t01;
    if (ROWS > 1) hs[ROWS - 1][0] = h10, hs[ROWS - 1][1] = h11, ts[ROWS - 1][0] = t10, ts[ROWS - 1][1] = t11;
  }
  // Unsigned arithmetic: the sums wrap modulo 2^32 by design.
  const __m256i bias = _mm256_set1_epi32(static_cast<int32_t>(static_cast<uint32_t>(k4n) << 15));
  for (int i = 0; i < ROWS; ++i)
    for (int u = 0; u < 2; ++u) {
      const __m256i lo = _mm256_sub_epi32(_mm256_sub_epi32(ts[i][u], _mm256_slli_epi32(hs[i][u], 16)), bias);
      _mm256_store_si256(reinterpret_cast<__m256i*>(acc[i] + 8 * u), _mm256_add_epi32(hs[i][u], lo));
    }
}
#endif

// The name of the int8 products' inner loop (QuantKernels::int8_kernel).
inline const char* int8_kernel_name() {
#if LSTMKIT_QKIND == 1
  return int8_kernel() == Int8Kernel::madd ? "madd" : "pairs";
#elif LSTMKIT_QKIND == 4
  return "amx";
#elif LSTMKIT_QKIND >= 2
  return "vnni";
#else
  return "portable";
#endif
}

// W [N, K] float32 → int8 per output channel (symmetric: w ≈ scale[n] · w_q, |w_q| ≤ 127), packed.
//   data: [panels, K4, 16, 4] panel p holds columns [16p, 16p + 16): for each group of 4 inputs, the 4
//         codes of each column contiguous (the vpdpbusd / vpmaddubsw operand), zero past N and K.
//   colsum: [N] Σ_k w_q[n, k], which removes the activations' zero point from the integer sum.
class Int8Weights {
 public:
  static constexpr int MR = kQMR;
  Int8Weights() = default;
  // w: [n, k] row-major, row stride ldw.
  Int8Weights(const float* w, index_t n, index_t k, index_t ldw) : n_(n), k_(k), k4_(pad_groups((k + 3) / 4)) {
    const index_t P = panels();
    data_.assign(static_cast<size_t>(P * k4_ * kQNR * 4), int8_t(0));
    scale_.assign(static_cast<size_t>(P * kQNR), 0.f);
    colsum_.assign(static_cast<size_t>(P * kQNR), 0);
    for (index_t i = 0; i < n; ++i) {
      const float* row = w + i * ldw;
      float amax = 0.f;
      for (index_t kk = 0; kk < k; ++kk) amax = std::max(amax, std::fabs(row[kk]));
      const float s = amax / 127.f;
      scale_[i] = s;
      int32_t sum = 0;
      int8_t* dst = data_.data() + (i / kQNR) * k4_ * kQNR * 4 + (i % kQNR) * 4;
      for (index_t kk = 0; kk < k; ++kk) {
        const float v = s > 0.f ? std::nearbyint(row[kk] / s) : 0.f;
        const int8_t qv = static_cast<int8_t>(std::min(127.f, std::max(-127.f, v)));
        dst[(kk / 4) * kQNR * 4 + kk % 4] = qv;
        sum += qv;
      }
      colsum_[i] = sum;
    }
  }
  index_t n() const { return n_; }
  index_t k() const { return k_; }
  index_t padded_k() const { return 4 * k4_; }
  index_t panels() const { return (n_ + kQNR - 1) / kQNR; }
  std::size_t bytes() const { return data_.size() + 8 * scale_.size(); }

  // Quantise rows [0, M) of A [M, K] (row stride lda) into r.
  void prepare(index_t M, const float* A, index_t lda, QuantRows& r) const {
    const index_t Kp = padded_k();
    r.M = M;
    if (r.q.size() < static_cast<size_t>((M + kRowSlack) * Kp)) r.q.resize(static_cast<size_t>((M + kRowSlack) * Kp));
    if (r.scale.size() < static_cast<size_t>(M))
      r.scale.resize(static_cast<size_t>(M)), r.zp.resize(static_cast<size_t>(M));
    for (index_t m = 0; m < M; ++m) quantize_row_u7(A + m * lda, k_, Kp, r.q.data() + m * Kp, r.scale[m], r.zp[m]);
  }

  // C [M, N] (row stride ldc) += A · Wᵀ dequantised, over rows [m0, m0 + M) of r and panels [p0, p1); or, with
  // init set, C = init's row + A · Wᵀ (gemm.h's CInit: the bits of filling C first, without the pass over C).
  void gemm_acc(index_t m0, index_t M, const QuantRows& r, float* C, index_t ldc, index_t p0, index_t p1,
                CInit<float> init = {}) const;

 private:
  template <int ROWS>
  void tile(const QuantRows& r, index_t m, const int8_t* panel, index_t p, float* c, index_t ldc,
            const float* init) const;
  template <int ROWS>
  void dequantize(const int32_t (*acc)[kQNR], const QuantRows& r, index_t m, index_t p, float* c, index_t ldc,
                  const float* init) const;
#if LSTMKIT_QKIND == 4
  void gemm_amx(index_t m0, index_t M, const QuantRows& r, float* C, index_t ldc, index_t p0, index_t p1,
                CInit<float> init) const;
#endif

  index_t n_ = 0, k_ = 0, k4_ = 0;
  std::vector<int8_t> data_;
  std::vector<float> scale_;     // [panels·16], zero past N
  std::vector<int32_t> colsum_;  // [panels·16]
};

// C[m, p·16 .. +cols] += dequantised integer dot products of rows [m, m + ROWS) with panel p (init: the
// row, at this panel's columns, that C starts from instead of its own values; or null).
template <int ROWS>
void Int8Weights::tile(const QuantRows& r, index_t m, const int8_t* panel, index_t p, float* c, index_t ldc,
                       const float* init) const {
  const index_t Kp = padded_k();
  const uint8_t* q = r.q.data() + m * Kp;
  alignas(64) int32_t acc[ROWS][kQNR];
#if LSTMKIT_QKIND >= 3
  __m512i v[ROWS];
  for (int i = 0; i < ROWS; ++i) v[i] = _mm512_setzero_si512();
  for (index_t k4 = 0, k4n = (k_ + 3) / 4; k4 < k4n; ++k4) {  // not the padding (zeros)
    const __m512i w = _mm512_loadu_si512(panel + k4 * 64);
    for (int i = 0; i < ROWS; ++i) {
      int32_t a4;
      std::memcpy(&a4, q + i * Kp + 4 * k4, 4);
      v[i] = _mm512_dpbusd_epi32(v[i], _mm512_set1_epi32(a4), w);
    }
  }
  for (int i = 0; i < ROWS; ++i) _mm512_store_si512(acc[i], v[i]);
#elif LSTMKIT_QKIND == 2
  ymm_sums<ROWS>(q, Kp, k4_, panel, acc,
                 [](__m256i v, __m256i a, __m256i w) { return _mm256_dpbusd_avx_epi32(v, a, w); });
#elif LSTMKIT_QKIND == 1
  if constexpr (ROWS > 2) madd_sums<ROWS>(q, Kp, k4_, panel, acc);  // only the madd kernel tiles 4 rows
  else if (int8_kernel() == Int8Kernel::madd) madd_sums<ROWS>(q, Kp, k4_, panel, acc);
  else pair_sums<ROWS>(q, Kp, k4_, panel, acc);
#else
  for (int i = 0; i < ROWS; ++i)
    for (index_t j = 0; j < kQNR; ++j) acc[i][j] = 0;
  for (index_t k4 = 0; k4 < k4_; ++k4) {
    const int8_t* w = panel + k4 * 64;
    for (int i = 0; i < ROWS; ++i) {
      const uint8_t* a = q + i * Kp + 4 * k4;
      for (index_t j = 0; j < kQNR; ++j)
        acc[i][j] += a[0] * w[4 * j] + a[1] * w[4 * j + 1] + a[2] * w[4 * j + 2] + a[3] * w[4 * j + 3];
    }
  }
#endif
  dequantize<ROWS>(acc, r, m, p, c, ldc, init);
}

// C[m + i, p·16 .. +cols] = (init, or C's own row) + the dequantised sums acc[i] of rows [m, m + ROWS) with panel p:
// the same float operations on every path, (s_a · s_w) · float(Σ q·w − zp·colsum).
template <int ROWS>
void Int8Weights::dequantize(const int32_t (*acc)[kQNR], const QuantRows& r, index_t m, index_t p, float* c,
                             index_t ldc, const float* init) const {
  const int cols = static_cast<int>(std::min<index_t>(kQNR, n_ - p * kQNR));
  const float* sw = scale_.data() + p * kQNR;
  const int32_t* cs = colsum_.data() + p * kQNR;
#if LSTMKIT_QKIND >= 1
  if (cols == kQNR) {  // whole panels: every row's values first, then the stores (C's rows may lie 4 KB apart,
                       // where a load after another row's store waits on it as if it were the same address)
    __m256 out[ROWS][2];
    for (int i = 0; i < ROWS; ++i) {
      const float* from = init ? init : c + i * ldc;
      const __m256 sa = _mm256_set1_ps(r.scale[m + i]);
      const __m256i zp = _mm256_set1_epi32(r.zp[m + i]);
      for (int u = 0; u < 2; ++u) {
        const __m256i iv =
            _mm256_sub_epi32(_mm256_load_si256(reinterpret_cast<const __m256i*>(acc[i] + 8 * u)),
                             _mm256_mullo_epi32(zp, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(cs + 8 * u))));
        const __m256 s = _mm256_mul_ps(sa, _mm256_loadu_ps(sw + 8 * u));
        out[i][u] = _mm256_add_ps(_mm256_loadu_ps(from + 8 * u), _mm256_mul_ps(s, _mm256_cvtepi32_ps(iv)));
      }
    }
    for (int i = 0; i < ROWS; ++i)
      for (int u = 0; u < 2; ++u) _mm256_storeu_ps(c + i * ldc + 8 * u, out[i][u]);
    return;
  }
#endif
  for (int i = 0; i < ROWS; ++i) {
    const float sa = r.scale[m + i];
    const int32_t zp = r.zp[m + i];
    float* ci = c + i * ldc;
    const float* from = init ? init : ci;
    for (int j = 0; j < cols; ++j) ci[j] = from[j] + (sa * sw[j]) * static_cast<float>(acc[i][j] - zp * cs[j]);
  }
}

#if LSTMKIT_QKIND == 4
// gemm_acc on AMX tiles: the same integer sums (tdpbusd), dequantised by the same epilogue.
inline void Int8Weights::gemm_amx(index_t m0, index_t M, const QuantRows& r, float* C, index_t ldc, index_t p0,
                                  index_t p1, CInit<float> init) const {
  if (M <= 0 || p0 >= p1) return;
  const AmxTiles tiles;
  const index_t Kp = padded_k(), panel_size = k4_ * kQNR * 4;
  auto panel = [&](index_t p) { return reinterpret_cast<const uint8_t*>(data_.data() + p * panel_size); };
  amx_product<true>(M, r.q.data() + m0 * Kp, Kp, p0, p1, 0, k4_ / kGroupPad, panel,
                    [&](index_t m, index_t rows, index_t p, index_t nt, auto sums) {
                      const bool two = rows > kAmxRows;
                      for (index_t i = 0; i * kAmxRows < rows; ++i)
                        for (index_t j = 0; j < nt; ++j) {
                          const auto* acc = reinterpret_cast<const int32_t (*)[kQNR]>(sums[amx_c_tile(two, i, j)]);
                          const index_t row0 = m + i * kAmxRows, n = std::min(kAmxRows, rows - i * kAmxRows);
                          float* c = C + row0 * ldc + (p + j) * kQNR;
                          const float* from = init.row((p + j) * kQNR);
                          if (n == kAmxRows) dequantize<kAmxRows>(acc, r, m0 + row0, p + j, c, ldc, from);
                          else
                            for (index_t k = 0; k < n; ++k)
                              dequantize<1>(acc + k, r, m0 + row0 + k, p + j, c + k * ldc, ldc, from);
                        }
                    });
}
#endif

inline void Int8Weights::gemm_acc(index_t m0, index_t M, const QuantRows& r, float* C, index_t ldc, index_t p0,
                                  index_t p1, CInit<float> init) const {
  const index_t panel_size = k4_ * kQNR * 4;
#if LSTMKIT_QKIND == 4
  if (M >= kAmxInt8Rows) return gemm_amx(m0, M, r, C, ldc, p0, p1, init);
#endif
  for (index_t b0 = 0; b0 < M; b0 += kQMC) {
    const index_t mb = std::min(kQMC, M - b0);
    for (index_t p = p0; p < p1; ++p) {
      const int8_t* panel = data_.data() + p * panel_size;
      float* c = C + b0 * ldc + p * kQNR;
      const float* from = init.row(p * kQNR);
      index_t i = 0;
#if LSTMKIT_QKIND == 1
      if (int8_kernel() == Int8Kernel::madd)  // 4 rows a tile (its 8 accumulators fit beside the operands)
        for (; i + 4 <= mb; i += 4) tile<4>(r, m0 + b0 + i, panel, p, c + i * ldc, ldc, from);
#endif
      for (; i + kQMR <= mb; i += kQMR) tile<kQMR>(r, m0 + b0 + i, panel, p, c + i * ldc, ldc, from);
      for (; i < mb; ++i) tile<1>(r, m0 + b0 + i, panel, p, c + i * ldc, ldc, from);
    }
  }
}

// ---- bf16 -------------------------------------------------------------------------------------------

// W [N, K] float32 → bfloat16 (nearest even), packed in panels of 16 columns, zero past N and K:
//   AVX-512 BF16: [panels, K2, 16, 2] for each pair of inputs the 2 values of each column contiguous
//                 (the vdpbf16ps operand; K2 = K rounded up to 2, halved);
//   otherwise:    [panels, K, 16] like the float panels (gemm.h), widened to float32 in the kernel by a
//                 zero-extension and a 16-bit shift.
// The activations (QuantRows) come as rows, or as the columns of a [K, M] matrix (prepare_columns: the
// left operand of a weight gradient dGᵀ · X), and the products are blocked over K (kKC groups) so that a
// long K (a gradient's T·B) keeps a row block's slice in L2 and a panel's in L1.
class Bf16Weights {
 public:
  static constexpr int MR = kBMR;
  static constexpr index_t kPair = LSTMKIT_QKIND >= 3 ? 2 : 1;  // inputs per column group
  static constexpr index_t kKC = 512 / kPair;                   // groups per K block

  Bf16Weights() = default;
  // w: [n, k] row-major with row stride ldw; transposed: w is [k, n] (row stride ldw) and W = its transpose.
  Bf16Weights(const float* w, index_t n, index_t k, index_t ldw, bool transposed = false)
      : n_(n), k_(k), kg_((k + kPair - 1) / kPair), kgs_(pad_groups(kg_)) {
    data_.assign(static_cast<size_t>(panels() * kgs_ * kQNR * kPair), uint16_t(0));
    if (!transposed) {
      for (index_t i = 0; i < n; ++i) {
        uint16_t* dst = data_.data() + (i / kQNR) * kgs_ * kQNR * kPair + (i % kQNR) * kPair;
        for (index_t kk = 0; kk < k; ++kk) dst[(kk / kPair) * kQNR * kPair + kk % kPair] = to_bf16(w[i * ldw + kk]);
      }
      return;
    }
    // Rows of w (a group of kPair of them) fill one group of every panel: contiguous reads and writes.
    for (index_t g = 0; g < kg_; ++g) {
      const float* w0 = w + g * kPair * ldw;
      const float* w1 = kPair == 2 && g * kPair + 1 < k ? w0 + ldw : nullptr;
      for (index_t p = 0; p < panels(); ++p) {
        const index_t c0 = p * kQNR, cols = std::min(kQNR, n - c0);
        uint16_t* dst = data_.data() + (p * kgs_ + g) * kQNR * kPair;
        if (kPair == 2) round_pairs(w0 + c0, w1 ? w1 + c0 : nullptr, cols, reinterpret_cast<uint32_t*>(dst));
        else round_row(w0 + c0, cols, dst);
      }
    }
  }
  index_t n() const { return n_; }
  index_t k() const { return k_; }
  index_t panels() const { return (n_ + kQNR - 1) / kQNR; }
  std::size_t bytes() const { return 2 * data_.size(); }

  // Rows [0, M) of A [M, K] (row stride lda) as the product's left operand.
  void prepare(index_t M, const float* A, index_t lda, QuantRows& r) const {
    r.M = M;
#if LSTMKIT_QKIND >= 3  // vdpbf16ps multiplies bf16 by bf16: round the rows too
    const size_t size = static_cast<size_t>((M + kRowSlack) * kgs_);
    if (r.bf.size() < size) r.bf.resize(size);
    for (index_t m = 0; m < M; ++m) {
      uint16_t* dst = reinterpret_cast<uint16_t*>(r.bf.data() + m * kgs_);
      round_row(A + m * lda, k_, dst);
      std::fill(dst + k_, dst + 2 * kgs_, uint16_t(0));  // the pair's other half, and AMX's padding
    }
    r.rs = kgs_, r.ks = 1, r.blocked = false;
#else
    r.a = A, r.rs = lda, r.ks = 1;
#endif
  }

  // The columns of A [K, M] (row stride lda) as the product's M rows, C += Aᵀ · Wᵀ: r sized for them by
  // size_columns, then columns [m0, m1) prepared (m0 a multiple of kQNR: threads may split the columns).
  // sums: null, or sums[m] = Σ_k A[k, m] for m in [m0, m1), the rows added in order (gemm.h's column_sums'
  // bits): a bias gradient from the same pass over A.
  void size_columns(index_t M, QuantRows& r) const {
    r.M = M;
#if LSTMKIT_QKIND == 4
    const index_t size = (M + kRowSlack) * kgs_;  // rows, as prepare() makes them
    if (r.bf.size() < static_cast<size_t>(size)) r.bf.resize(static_cast<size_t>(size));
#elif LSTMKIT_QKIND >= 3
    const index_t size = (M + kBMR - 1) / kBMR * kBMR * kg_;
    if (r.bf.size() < static_cast<size_t>(size)) r.bf.resize(static_cast<size_t>(size));
#endif
  }
  void prepare_columns(const float* A, index_t lda, QuantRows& r, index_t m0, index_t m1, float* sums) const {
    if (sums) std::fill(sums + m0, sums + m1, 0.f);
#if LSTMKIT_QKIND == 4
    // Rows as prepare() makes them (row m's pairs contiguous, kgs_ a row), for the AMX product: A's columns
    // transposed in blocks of 16 pairs × 16 columns, so that each row's 16 pairs are one 64-byte store.
    alignas(64) uint32_t block[16][kQNR];
    for (index_t g0 = 0; g0 < kg_; g0 += 16) {
      const index_t ng = std::min<index_t>(16, kg_ - g0);
      for (index_t m = m0; m < m1; m += kQNR) {
        const index_t n = std::min(kQNR, m1 - m);
        for (index_t i = 0; i < 16; ++i) {
          const float* a0 = A + 2 * (g0 + i) * lda;
          if (i < ng) round_pairs(a0 + m, 2 * (g0 + i) + 1 < k_ ? a0 + lda + m : nullptr, n, block[i]);
          else std::fill(block[i], block[i] + kQNR, 0u);  // past K: the padding's zeros
        }
        transpose_16x16(block);
        for (index_t j = 0; j < n; ++j) std::memcpy(r.bf.data() + (m + j) * kgs_ + g0, block[j], 64);
      }
      if (sums)
        for (index_t k = 2 * g0; k < std::min(k_, 2 * (g0 + ng)); ++k)
          for (index_t m = m0; m < m1; ++m) sums[m] += A[k * lda + m];
    }
    for (index_t m = m0; m < m1; ++m) std::fill(r.bf.data() + m * kgs_ + kg_, r.bf.data() + (m + 1) * kgs_, 0u);
    r.rs = kgs_, r.ks = 1, r.blocked = false;
#elif LSTMKIT_QKIND >= 3
    alignas(64) uint32_t row[kQNR];
    for (index_t g = 0; g < kg_; ++g) {
      const float* a0 = A + 2 * g * lda;
      const float* a1 = 2 * g + 1 < k_ ? a0 + lda : nullptr;
      for (index_t m = m0; m < m1; m += kQNR) {
        const index_t n = std::min(kQNR, m1 - m);
        round_pairs(a0 + m, a1 ? a1 + m : nullptr, n, row);
        if (n == kQNR && kQNR == 2 * kBMR) {  // two whole blocks' rows: two contiguous runs
          uint32_t* dst = r.bf.data() + (m / kBMR) * kBMR * kg_ + g * kBMR;
          std::memcpy(dst, row, kBMR * 4);
          std::memcpy(dst + kBMR * kg_, row + kBMR, kBMR * 4);
        } else {
          for (index_t j = 0; j < n; ++j) {
            const index_t mm = m + j;
            r.bf[static_cast<size_t>((mm / kBMR) * kBMR * kg_ + g * kBMR + mm % kBMR)] = row[j];
          }
        }
      }
      if (sums) {
        for (index_t m = m0; m < m1; ++m) sums[m] += a0[m];
        if (a1)
          for (index_t m = m0; m < m1; ++m) sums[m] += a1[m];
      }
    }
    r.rs = 1, r.ks = kBMR, r.blocked = true;
#else
    r.a = A, r.rs = 1, r.ks = lda;
    if (sums)
      for (index_t k = 0; k < k_; ++k)
        for (index_t m = m0; m < m1; ++m) sums[m] += A[k * lda + m];
#endif
  }

  // C [M, N] (row stride ldc) += A · Wᵀ over rows [m0, m0 + M) of r and panels [p0, p1), or C = init's row +
  // A · Wᵀ (as Int8Weights::gemm_acc).
  void gemm_acc(index_t m0, index_t M, const QuantRows& r, float* C, index_t ldc, index_t p0, index_t p1,
                CInit<float> init = {}) const {
    if (kg_ == 0) return init.fill(M, p0 * kQNR, std::min(n_, p1 * kQNR), C, ldc);  // no sums
#if LSTMKIT_QKIND == 4
    return gemm_amx(m0, M, r, C, ldc, p0, p1, init);  // every operand is in rows here (prepare_columns' too)
#else
    const index_t panel_size = kgs_ * kQNR * kPair;
    for (index_t g0 = 0; g0 < kg_; g0 += kKC) {
      const index_t g1 = std::min(kg_, g0 + kKC);
      for (index_t b0 = 0; b0 < M; b0 += kQMC) {
        const index_t mb = std::min(kQMC, M - b0);
        for (index_t p = p0; p < p1; ++p) {
          const uint16_t* panel = data_.data() + p * panel_size;
          float* c = C + b0 * ldc + p * kQNR;
          const float* from = g0 == 0 ? init.row(p * kQNR) : nullptr;  // later K blocks add to C
          const int cols = static_cast<int>(std::min<index_t>(kQNR, n_ - p * kQNR));
          // The last two tiles nearly equal where the remainder is small (split_tiles), except where the rows lie
          // in blocks of kBMR (r.blocked: a tile reads one block).
          const TileSplit t = split_tiles(mb, kBMR, !r.blocked);
          index_t i = 0;
          for (; i < t.whole; i += kBMR) tile<kBMR>(r, m0 + b0 + i, panel, c + i * ldc, ldc, cols, g0, g1, from);
          for (const index_t rows : {t.first, t.second}) {
            if (rows > 0)
              tail<kBMR - 1>(static_cast<int>(rows), r, m0 + b0 + i, panel, c + i * ldc, ldc, cols, g0, g1, from);
            i += rows;
          }
        }
      }
    }
#endif
  }

 private:
#if LSTMKIT_QKIND == 4
  // gemm_acc of rows prepared by prepare() or prepare_columns() on AMX: K in blocks of kKC pairs (a block's sums added
  // to C, the first's to init's row where set).
  void gemm_amx(index_t m0, index_t M, const QuantRows& r, float* C, index_t ldc, index_t p0, index_t p1,
                CInit<float> init) const {
    if (M <= 0 || p0 >= p1) return;
    const AmxTiles tiles;
    const index_t panel_size = kgs_ * kQNR * kPair, lda = r.rs * 4;
    auto panel = [&](index_t p) { return reinterpret_cast<const uint8_t*>(data_.data() + p * panel_size); };
    const uint8_t* a = reinterpret_cast<const uint8_t*>(r.bf.data() + m0 * r.rs);
    for (index_t g0 = 0; g0 < kgs_; g0 += kKC) {
      const index_t g1 = std::min(kgs_, g0 + kKC);
      amx_product<false>(
          M, a, lda, p0, p1, g0 / kGroupPad, g1 / kGroupPad, panel,
          [&](index_t m, index_t rows, index_t p, index_t nt, auto sums) {
            const bool two = rows > kAmxRows;
            for (index_t j = 0; j < nt; ++j) {
              const index_t col0 = (p + j) * kQNR;
              const __mmask16 keep = static_cast<__mmask16>((1u << std::min(kQNR, n_ - col0)) - 1u);
              const float* from = g0 == 0 ? init.row(col0) : nullptr;
              for (index_t i = 0; i < rows; ++i) {
                const float* s =
                    reinterpret_cast<const float*>(sums[amx_c_tile(two, i / kAmxRows, j)] + (i % kAmxRows) * kQNR);
                float* ci = C + (m + i) * ldc + col0;
                _mm512_mask_storeu_ps(ci, keep,
                                      _mm512_add_ps(_mm512_maskz_loadu_ps(keep, from ? from : ci), _mm512_load_ps(s)));
              }
            }
          });
    }
  }
#endif

  // The last rows < MR of a block in one tile of their own (a 1-row tile would be latency bound).
  template <int R>
  void tail(int rows, const QuantRows& r, index_t m, const uint16_t* panel, float* c, index_t ldc, int cols, index_t g0,
            index_t g1, const float* init) const {
    if constexpr (R > 0) {
      if (rows == R) return tile<R>(r, m, panel, c, ldc, cols, g0, g1, init);
      tail<R - 1>(rows, r, m, panel, c, ldc, cols, g0, g1, init);
    }
  }

  // c[0..ROWS) × [0, cols) += rows [m, m + ROWS) of r times the panel, over input groups [g0, g1); with
  // init, each row of c starts from init[0, cols) instead of its own values.
  template <int ROWS>
  void tile(const QuantRows& r, index_t m, const uint16_t* panel, float* c, index_t ldc, int cols, index_t g0,
            index_t g1, const float* init) const {
    const index_t rs = r.rs, ks = r.ks;
#if LSTMKIT_QKIND >= 3
    const uint32_t* a = r.bf.data() + (r.blocked ? (m / kBMR) * kBMR * kg_ + m % kBMR : m * rs);
    __m512 v[ROWS];
    for (int i = 0; i < ROWS; ++i) v[i] = _mm512_setzero_ps();
    for (index_t k2 = g0; k2 < g1; ++k2) {
      const __m512i w = _mm512_loadu_si512(panel + k2 * 32);
      const uint32_t* ak = a + k2 * ks;
      for (int i = 0; i < ROWS; ++i)
        v[i] = _mm512_dpbf16_ps(v[i], (__m512bh)_mm512_set1_epi32(static_cast<int>(ak[i * rs])), (__m512bh)w);
    }
    // c += the sums straight from the registers: one masked add per row, not a round trip through memory
    // and a scalar loop over the columns (the same one add per element as the other paths).
    const __mmask16 keep = static_cast<__mmask16>((1u << cols) - 1u);
    for (int i = 0; i < ROWS; ++i) {
      float* ci = c + i * ldc;
      _mm512_mask_storeu_ps(ci, keep, _mm512_add_ps(_mm512_maskz_loadu_ps(keep, init ? init : ci), v[i]));
    }
    return;
#elif LSTMKIT_QKIND >= 1
    // The float micro-kernel (gemm.h) with each panel row widened from bf16 first.
    const float* a = r.a + m * rs;
    __m256 v[ROWS][2];
    for (int i = 0; i < ROWS; ++i) v[i][0] = v[i][1] = _mm256_setzero_ps();
    for (index_t k = g0; k < g1; ++k) {
      const __m128i* src = reinterpret_cast<const __m128i*>(panel + k * kQNR);
      const __m256 w0 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128(src)), 16));
      const __m256 w1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128(src + 1)), 16));
      const float* ak = a + k * ks;
      for (int i = 0; i < ROWS; ++i) {
        const __m256 av = _mm256_set1_ps(ak[i * rs]);
        v[i][0] = _mm256_fmadd_ps(av, w0, v[i][0]);
        v[i][1] = _mm256_fmadd_ps(av, w1, v[i][1]);
      }
    }
    if (cols == kQNR) {
      for (int i = 0; i < ROWS; ++i) {
        float* ci = c + i * ldc;
        const float* from = init ? init : ci;
        _mm256_storeu_ps(ci, _mm256_add_ps(_mm256_loadu_ps(from), v[i][0]));
        _mm256_storeu_ps(ci + 8, _mm256_add_ps(_mm256_loadu_ps(from + 8), v[i][1]));
      }
      return;
    }
    alignas(64) float acc[ROWS][kQNR];
    for (int i = 0; i < ROWS; ++i) _mm256_store_ps(acc[i], v[i][0]), _mm256_store_ps(acc[i] + 8, v[i][1]);
#else
    const float* a = r.a + m * rs;
    float acc[ROWS][kQNR];
    for (int i = 0; i < ROWS; ++i)
      for (index_t j = 0; j < kQNR; ++j) acc[i][j] = 0.f;
    for (index_t kk = g0; kk < g1; ++kk) {
      const uint16_t* w = panel + kk * kQNR;
      for (int i = 0; i < ROWS; ++i) {
        const float av = a[i * rs + kk * ks];
        for (index_t j = 0; j < kQNR; ++j) acc[i][j] += av * from_bf16(w[j]);
      }
    }
#endif
#if LSTMKIT_QKIND < 3
    for (int i = 0; i < ROWS; ++i)
      for (int j = 0; j < cols; ++j) c[i * ldc + j] = (init ? init[j] : c[i * ldc + j]) + acc[i][j];
#endif
  }

  index_t n_ = 0, k_ = 0, kg_ = 0, kgs_ = 0;  // kg_: groups of kPair inputs; kgs_: as stored, padded
  std::vector<uint16_t> data_;
};

}  // namespace LSTMKIT_ISA
}  // namespace lstmkit
