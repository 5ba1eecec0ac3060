// A small cache-blocked GEMM for the one product every RNN kernel needs: C += A · Wᵀ, where W is a
// weight matrix in torch's layout (one output unit per row), repacked once into column panels.
//
// Why our own: the wheel must not depend on a system BLAS, and the shapes here are narrow (the
// recurrent product is (B, P) · (P, G·H) with B often 1), so a simple kernel with packed weights is
// close to what a BLAS would do on them. The code is portable C++ (no intrinsics): the micro-kernel
// uses gcc/clang vector types LSTMKIT_VEC_BYTES wide, and kernels_<isa>.cpp compiles it once per
// instruction set (16 bytes for the SSE2 baseline, 32 under target("avx2,fma"), 64 under AVX-512),
// each build in its own namespace LSTMKIT_ISA (see kernels_impl.h).
//
// Large products are split over the thread pool (common.h): by rows of A when there are enough of
// them, else by column panels of W. Every split computes each output element with the same sequence
// of operations, so results do not depend on the number of threads.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <utility>
#include <vector>

#include "core/common.h"
#include "core/simd.h"

namespace lstmkit {
namespace LSTMKIT_ISA {

// Register tile: MR rows of A times NR columns of Wᵀ. NR spans two SIMD registers, so with 16-byte
// vectors 4 × 2 accumulators, with 32-byte ones (16 ymm registers) 6 × 2, with 64-byte ones (32 zmm
// registers) 8 × 2, plus the panel row and the broadcast, fit the register file. 8 rows on AVX-512: the row
// split gives each of two threads 8 rows at B = 16, one whole tile instead of 6 + 2 (a 2-row tile has 4
// accumulators, half of what hides the FMA latency).
template <typename T>
struct Tile {
  static constexpr int MR = LSTMKIT_VEC_BYTES == 16 ? 4 : LSTMKIT_VEC_BYTES == 32 ? 6 : 8;
  static constexpr int NR = static_cast<int>(2 * LSTMKIT_VEC_BYTES / sizeof(T));
};

// Cache blocks: a panel slice (KC × NR) stays in L1 while it sweeps an A block (MC × KC) held in L2.
constexpr index_t kKC = 256;
constexpr index_t kMC = 96;

namespace detail {

// transpose_block: dst[c·ldd + r] = src[r·lds + c] for a kTransposeBlock² block (32-byte rows: 8 floats or
// 4 doubles; every panel width NR is a multiple). In registers with shuffles where the compiler has
// __builtin_shufflevector (packing the weights is on every forward call's path: a scalar transpose
// took ~25 µs of a 0.3 ms B=1 sequence), else element by element.
template <typename T>
constexpr index_t kTransposeBlock = static_cast<index_t>(32 / sizeof(T));

#if defined(__clang__) || (defined(__GNUC__) && __GNUC__ >= 12)
inline void transpose_block(const float* src, index_t lds, float* dst, index_t ldd) {
  typedef float v8 __attribute__((vector_size(32)));
  v8 r[8], t[8], u[8];
  for (int i = 0; i < 8; ++i) std::memcpy(&r[i], src + i * lds, sizeof(v8));
  for (int i = 0; i < 8; i += 2) {  // interleave row pairs: (r0_0, r1_0, r0_1, r1_1 | r0_4, r1_4, r0_5, r1_5), ...
    t[i] = __builtin_shufflevector(r[i], r[i + 1], 0, 8, 1, 9, 4, 12, 5, 13);
    t[i + 1] = __builtin_shufflevector(r[i], r[i + 1], 2, 10, 3, 11, 6, 14, 7, 15);
  }
  for (int i = 0; i < 8; i += 4)  // four rows of columns (0 | 4), (1 | 5), (2 | 6), (3 | 7)
    for (int h = 0; h < 2; ++h) {
      u[i + 2 * h] = __builtin_shufflevector(t[i + h], t[i + h + 2], 0, 1, 8, 9, 4, 5, 12, 13);
      u[i + 2 * h + 1] = __builtin_shufflevector(t[i + h], t[i + h + 2], 2, 3, 10, 11, 6, 7, 14, 15);
    }
  for (int c = 0; c < 4; ++c) {  // rows 0-3 and 4-7 of columns c and c + 4
    const v8 lo = __builtin_shufflevector(u[c], u[c + 4], 0, 1, 2, 3, 8, 9, 10, 11);
    const v8 hi = __builtin_shufflevector(u[c], u[c + 4], 4, 5, 6, 7, 12, 13, 14, 15);
    std::memcpy(dst + c * ldd, &lo, sizeof(v8));
    std::memcpy(dst + (c + 4) * ldd, &hi, sizeof(v8));
  }
}

inline void transpose_block(const double* src, index_t lds, double* dst, index_t ldd) {
  typedef double v4 __attribute__((vector_size(32)));
  v4 r[4];
  for (int i = 0; i < 4; ++i) std::memcpy(&r[i], src + i * lds, sizeof(v4));
  const v4 t0 = __builtin_shufflevector(r[0], r[1], 0, 4, 2, 6), t1 = __builtin_shufflevector(r[0], r[1], 1, 5, 3, 7);
  const v4 t2 = __builtin_shufflevector(r[2], r[3], 0, 4, 2, 6), t3 = __builtin_shufflevector(r[2], r[3], 1, 5, 3, 7);
  const v4 out[4] = {__builtin_shufflevector(t0, t2, 0, 1, 4, 5), __builtin_shufflevector(t1, t3, 0, 1, 4, 5),
                     __builtin_shufflevector(t0, t2, 2, 3, 6, 7), __builtin_shufflevector(t1, t3, 2, 3, 6, 7)};
  for (int c = 0; c < 4; ++c) std::memcpy(dst + c * ldd, &out[c], sizeof(v4));
}
#else
template <typename T>
inline void transpose_block(const T* src, index_t lds, T* dst, index_t ldd) {
  for (index_t c = 0; c < kTransposeBlock<T>; ++c)
    for (index_t r = 0; r < kTransposeBlock<T>; ++r) dst[c * ldd + r] = src[r * lds + c];
}
#endif

}  // namespace detail

// A weight matrix W: [N, K] (torch layout: N outputs, K inputs), repacked for C += A · Wᵀ.
//   data_: [ceil(N / NR), K, NR] panel p holds columns [p·NR, p·NR + NR) of Wᵀ, one K-row of NR
//          contiguous values after another, zero-padded past N (so the micro-kernel never branches
//          on the edge while accumulating).
// Owns its copy; the source W is read once in the constructor and not kept.
template <typename T>
class PackedWeights {
 public:
  static constexpr int NR = Tile<T>::NR;

  PackedWeights() = default;

  // w: [n, k] row-major, row stride ldw (≥ k).
  PackedWeights(const T* w, index_t n, index_t k, index_t ldw) : PackedWeights(w, n, k, ldw, 1) {}

  // Element (i, kk) of the [n, k] matrix is w[i·row_stride + kk·col_stride]; with row_stride 1 and
  // col_stride = the row stride of M, this packs Mᵀ (used by the backward pass: dh = dG · W_hh).
  PackedWeights(const T* w, index_t n, index_t k, index_t row_stride, index_t col_stride)
      : n_(n), k_(k), data_((n + NR - 1) / NR * k * NR) {
    const index_t panels = (n + NR - 1) / NR;
    auto pack = [&](index_t p_begin, index_t p_end) {
      if (row_stride == 1) {  // packing a transpose: read each source row once, across the panels
        for (index_t kk = 0; kk < k; ++kk)
          for (index_t p = p_begin; p < p_end; ++p) {
            const index_t cols = std::min<index_t>(NR, n - p * NR);
            T* dst = data_.data() + (p * k + kk) * NR;
            const T* src = w + p * NR + kk * col_stride;
            if (cols == NR) {  // a fixed-size copy: a few vector moves
              std::memcpy(dst, src, sizeof(T) * NR);
              continue;
            }
            for (index_t j = 0; j < cols; ++j) dst[j] = src[j];
            std::fill(dst + cols, dst + NR, T(0));
          }
        return;
      }
      for (index_t p = p_begin; p < p_end; ++p) {
        T* dst = data_.data() + p * k * NR;
        const index_t cols = std::min<index_t>(NR, n - p * NR);
        index_t kk = 0;
        if (cols == NR && col_stride == 1)  // whole panel of rows read along k: square blocks transposed in registers
          for (; kk + detail::kTransposeBlock<T> <= k; kk += detail::kTransposeBlock<T>)
            for (index_t j = 0; j < NR; j += detail::kTransposeBlock<T>)
              detail::transpose_block(w + (p * NR + j) * row_stride + kk, row_stride, dst + kk * NR + j, NR);
        for (; kk < k; ++kk) {
          for (index_t j = 0; j < cols; ++j) dst[kk * NR + j] = w[(p * NR + j) * row_stride + kk * col_stride];
          std::fill(dst + kk * NR + cols, dst + (kk + 1) * NR, T(0));
        }
      }
    };
    // Every forward call packs its weights; from a recurrent matrix's size up, both threads share it
    // (B=1 H=128: 320 KB of weights, ~25 µs on one thread, a tenth of the whole sequence).
    if (double(n) * double(k) >= double(1 << 15)) parallel_for(panels, pack);
    else pack(0, panels);
  }

  index_t n() const { return n_; }
  index_t k() const { return k_; }
  index_t panels() const { return (n_ + NR - 1) / NR; }
  // Panel p starting at inner index k0: [K - k0, NR].
  const T* panel(index_t p, index_t k0) const { return data_.data() + (p * k_ + k0) * NR; }

 private:
  index_t n_ = 0, k_ = 0;
  RawBuffer<T> data_;  // written in full by the constructor
};

namespace detail {

#if defined(__GNUC__) || defined(__clang__)
// Simd<T> (simd.h) is written out explicitly because left to itself the auto-vectoriser vectorises
// the micro-kernel along k (the reduction) and spends its time shuffling.

// c[ROWS, cols] += a[ROWS, kc] · panel[kc, NR], ROWS ≤ MR, cols ≤ NV·W (NV of the panel's NR/W vectors,
// counted from the left: a panel whose columns fit in fewer skips the multiply-adds of its zero padding,
// e.g. the last panel of H = 200 outputs, 8 columns of 32; each column's sum is the same either way).
//   a: row stride lda (AT: element (r, k) at a[r + k·lda], a transposed matrix read in place);
//   panel: [kc, NR] contiguous; c: row stride ldc; init: null, or a row [cols] that every row of c starts from
//   instead of its own values (c = init + a · panel: CInit).
// ROWS is a template argument so the accumulators are a fixed set of registers (MR × NR/W of them).
template <typename T, int ROWS, bool AT = false, int NV = Tile<T>::NR / Simd<T>::W>
inline void micro_kernel(index_t kc, const T* a, index_t lda, const T* panel, T* c, index_t ldc, int cols,
                         const T* init) {
  using S = Simd<T>;
  using V = typename S::vec;
  constexpr int NR = Tile<T>::NR;
  V acc[ROWS][NV];
  for (int r = 0; r < ROWS; ++r)
    for (int v = 0; v < NV; ++v) acc[r][v] = V{};
  for (index_t k = 0; k < kc; ++k) {
    V b[NV];
    for (int v = 0; v < NV; ++v) b[v] = S::load(panel + k * NR + v * S::W);
    for (int r = 0; r < ROWS; ++r) {
      const T av = AT ? a[r + k * lda] : a[r * lda + k];
      for (int v = 0; v < NV; ++v) acc[r][v] += av * b[v];
    }
  }
  for (int r = 0; r < ROWS; ++r) {
    T* cr = c + r * ldc;
    const T* from = init ? init : cr;
    if (cols == NV * S::W) {
      for (int v = 0; v < NV; ++v) S::store(cr + v * S::W, S::load(from + v * S::W) + acc[r][v]);
    } else {
      T tmp[NV * S::W];
      for (int v = 0; v < NV; ++v) S::store(tmp + v * S::W, acc[r][v]);
      for (int j = 0; j < cols; ++j) cr[j] = from[j] + tmp[j];
    }
  }
}

// One row (the B = 1 matrix-vector case of the recurrent step), NP panels side by side (1 or 2):
// c_q[0, :cols_q] += a[0, :kc] · panel_q[kc, NR]. A single row gives each panel only NR/W independent
// add chains, so k is split two ways (even, odd) to keep the adder pipeline full; two panels share
// each broadcast of a[k] (one load fewer per two FMAs: ~13% faster from L2 than one panel at a time).
// Each panel's sums are the same operations whether it runs alone or paired, so a split of the
// panels over threads gives the same bits. init[q]: null, or the row c_q starts from (as micro_kernel's).
template <typename T, int NP>
inline void row_kernel(index_t kc, const T* a, const T* const* panels, T* const* c, const int* cols,
                       const T* const* init) {
  using S = Simd<T>;
  using V = typename S::vec;
  constexpr int NR = Tile<T>::NR, NV = NR / S::W, U = 2;
  V acc[U][NP][NV];
  for (int u = 0; u < U; ++u)
    for (int q = 0; q < NP; ++q)
      for (int v = 0; v < NV; ++v) acc[u][q][v] = V{};
  index_t k = 0;
  for (; k + U <= kc; k += U)
    for (int u = 0; u < U; ++u) {
      const T av = a[k + u];
      for (int q = 0; q < NP; ++q)
        for (int v = 0; v < NV; ++v) acc[u][q][v] += av * S::load(panels[q] + (k + u) * NR + v * S::W);
    }
  for (; k < kc; ++k)
    for (int q = 0; q < NP; ++q)
      for (int v = 0; v < NV; ++v) acc[0][q][v] += a[k] * S::load(panels[q] + k * NR + v * S::W);
  for (int q = 0; q < NP; ++q) {
    T tmp[NR];
    for (int v = 0; v < NV; ++v) S::store(tmp + v * S::W, acc[0][q][v] + acc[1][q][v]);
    const T* from = init[q] ? init[q] : c[q];
    for (int j = 0; j < cols[q]; ++j) c[q][j] = from[j] + tmp[j];
  }
}

#else  // portable scalar fallback (e.g. MSVC): same blocking, the compiler vectorises what it can

template <typename T, int ROWS, bool AT = false, int NV = 0>
inline void micro_kernel(index_t kc, const T* a, index_t lda, const T* panel, T* c, index_t ldc, int cols,
                         const T* init) {
  constexpr int NR = Tile<T>::NR;
  T acc[ROWS][NR] = {};
  for (index_t k = 0; k < kc; ++k)
    for (int r = 0; r < ROWS; ++r)
      for (int j = 0; j < NR; ++j) acc[r][j] += (AT ? a[r + k * lda] : a[r * lda + k]) * panel[k * NR + j];
  for (int r = 0; r < ROWS; ++r)
    for (int j = 0; j < cols; ++j) c[r * ldc + j] = (init ? init[j] : c[r * ldc + j]) + acc[r][j];
}

template <typename T, int NP>
inline void row_kernel(index_t kc, const T* a, const T* const* panels, T* const* c, const int* cols,
                       const T* const* init) {
  for (int q = 0; q < NP; ++q) micro_kernel<T, 1>(kc, a, 0, panels[q], c[q], 0, cols[q], init[q]);
}

#endif

#if defined(__GNUC__) || defined(__clang__)
template <typename T>
constexpr int kPanelVectors = Tile<T>::NR / Simd<T>::W;  // SIMD vectors across one panel
#else
template <typename T>
constexpr int kPanelVectors = 1;
#endif

// c[rows, cols] += a(i)… · panel for rows [i, i + rows) of a block, rows ≤ 8, in one register tile.
template <typename T, bool AT, int NV, typename RowsAt>
inline void tile_rows(index_t rows, index_t i, index_t kc, RowsAt&& a, index_t ld, const T* panel, T* c, index_t ldc,
                      int cols, const T* init) {
  switch (rows) {
    case 8: micro_kernel<T, 8, AT, NV>(kc, a(i), ld, panel, c + i * ldc, ldc, cols, init); break;
    case 7: micro_kernel<T, 7, AT, NV>(kc, a(i), ld, panel, c + i * ldc, ldc, cols, init); break;
    case 6: micro_kernel<T, 6, AT, NV>(kc, a(i), ld, panel, c + i * ldc, ldc, cols, init); break;
    case 5: micro_kernel<T, 5, AT, NV>(kc, a(i), ld, panel, c + i * ldc, ldc, cols, init); break;
    case 4: micro_kernel<T, 4, AT, NV>(kc, a(i), ld, panel, c + i * ldc, ldc, cols, init); break;
    case 3: micro_kernel<T, 3, AT, NV>(kc, a(i), ld, panel, c + i * ldc, ldc, cols, init); break;
    case 2: micro_kernel<T, 2, AT, NV>(kc, a(i), ld, panel, c + i * ldc, ldc, cols, init); break;
    case 1: micro_kernel<T, 1, AT, NV>(kc, a(i), ld, panel, c + i * ldc, ldc, cols, init); break;
    default: break;
  }
}

// c[mc, cols] += a(i)… · panel for rows [0, mc) of a block in register tiles of MR rows (split_tiles: the last
// two nearly equal where the remainder is small), with the kernel of NV vectors. a(i): rows i.. of the block (AT:
// strip i / MR), row stride ld. Under AT the strips hold whole tiles of MR rows, so its remainder stays one tile.
template <typename T, bool AT, int NV, typename RowsAt>
inline void panel_rows(index_t mc, index_t kc, RowsAt&& a, index_t ld, const T* panel, T* c, index_t ldc, int cols,
                       const T* init) {
  constexpr int MR = Tile<T>::MR;
  static_assert(MR <= 8, "tile_rows covers tiles of up to 8 rows");
  const TileSplit t = split_tiles(mc, MR, !AT);
  index_t i = 0;
  for (; i < t.whole; i += MR) micro_kernel<T, MR, AT, NV>(kc, a(i), ld, panel, c + i * ldc, ldc, cols, init);
  tile_rows<T, AT, NV>(t.first, i, kc, a, ld, panel, c, ldc, cols, init);
  tile_rows<T, AT, NV>(t.second, i + t.first, kc, a, ld, panel, c, ldc, cols, init);
}

}  // namespace detail

// C[m, :] = bias (or 0 when bias is null) for m < M: the starting value of a gate pre-activation.
//   bias: [N] or nullptr; C: [M, N] row stride ldc.
template <typename T>
void fill_rows(index_t M, index_t N, const T* bias, T* C, index_t ldc) {
  for (index_t m = 0; m < M; ++m) {
    T* row = C + m * ldc;
    if (bias) std::memcpy(row, bias, static_cast<size_t>(N) * sizeof(T));
    else std::fill(row, row + N, T(0));
  }
}

// What C holds before a product: kept (C += A · Wᵀ), or `set` to the row vector `bias` in every row, zeros where
// it is null (C = 1 · biasᵀ + A · Wᵀ). A set C is never written first: the micro-kernels add their sums to the
// row itself (`init` below) where they would add them to C, so each value is the same sum as bias-then-add, with
// no pass over C (a separate pass over a T·B-row input projection wrote megabytes out of the cache, and the product
// read them back; quant_gemm.h's products take the same row).
template <typename T>
struct CInit {
  bool set = false;
  const T* bias = nullptr;

  // The row the sums of a panel's columns [n0, n0 + width) start from: null to keep C, bias + n0, or zeros
  // (a panel of at most kMaxWidth columns: gemm.h's NR, quant_gemm.h's kQNR).
  static constexpr int kMaxWidth = 64;
  const T* row(index_t n0) const {
    alignas(64) static const T zeros[kMaxWidth] = {};
    return !set ? nullptr : bias ? bias + n0 : zeros;
  }

  // C's rows [0, M), columns [n0, n1) set to the row, where it is set: a product with no sums (K = 0).
  void fill(index_t M, index_t n0, index_t n1, T* C, index_t ldc) const {
    if (set && n1 > n0) fill_rows(M, n1 - n0, bias ? bias + n0 : nullptr, C + n0, ldc);
  }
};

// C += A · Wᵀ (or C = bias + A · Wᵀ: init) over rows [0, M) and column panels [p_begin, p_end) of W, on the
// calling thread.
// The one-row kernel (a different summation order) is used only when M is 1 and one_row_kernel is
// set, so a row split over threads gives the same bits as one thread; a caller that computes a
// product row block by row block (whose blocks may have one row) clears it to get the bits of one call.
// AT: A is given transposed, element (m, k) at A[m + k·lda] (the weight gradients' dGᵀ), copied block by block.
template <typename T, bool AT = false>
void gemm_acc_serial(index_t M, const T* A, index_t lda, const PackedWeights<T>& w, T* C, index_t ldc, index_t p_begin,
                     index_t p_end, bool one_row_kernel = true, CInit<T> init = {}) {
  constexpr int MR = Tile<T>::MR, NR = Tile<T>::NR;
  static_assert(NR <= CInit<T>::kMaxWidth, "CInit::row covers a panel");
  // A panel of at most half its width (the last one, when N is not a multiple of NR) runs the kernel of
  // half the vectors, where there are two or more (the SIMD builds; the scalar fallback has one kernel).
  constexpr int kNV = detail::kPanelVectors<T>, kHalfPanel = kNV >= 2 ? NR / 2 : 0;
  const index_t K = w.k(), N = w.n();
  if (M <= 0 || N <= 0) return;
  if (K <= 0) return init.fill(M, p_begin * NR, std::min(N, p_end * NR), C, ldc);
  // AT: each (k, m) block of A is first copied into strips of MR rows, (r, k) at strip[k·MR + r], which
  // the micro-kernel reads as a transposed A with lda = MR. Read in place instead, A's rows lie G·H
  // values apart (a multiple of 4 KB), all on one L1 set, and every panel would fetch them again.
  // Sized to the product (a small one must not pay for zeroing a whole 96 × 256 block), uninitialised:
  // the micro-kernel reads only the rows a block copies in.
  const RawBuffer<T> strips(AT ? (std::min(kMC, M) + MR - 1) / MR * MR * std::min(kKC, K) : 0);
  for (index_t k0 = 0; k0 < K; k0 += kKC) {
    const index_t kc = std::min(kKC, K - k0);
    for (index_t m0 = 0; m0 < M; m0 += kMC) {
      const index_t mc = std::min(kMC, M - m0);
      // The first block of K starts from C's initial row (when set); the later ones add to C.
      auto from = [&](index_t p) { return k0 == 0 ? init.row(p * NR) : nullptr; };
      if (AT) {
        // Row by row of the stored A (mc contiguous values at each k), so each of its lines is read once;
        // strip by strip instead, every strip re-read from L2 the kc lines its neighbours had just read.
        for (index_t k = 0; k < kc; ++k) {
          const T* src = A + m0 + (k0 + k) * lda;
          index_t i = 0;
          for (; i + MR <= mc; i += MR) std::memcpy(strips.data() + i * kc + k * MR, src + i, sizeof(T) * MR);
          for (index_t r = 0; i + r < mc; ++r) strips.data()[i * kc + k * MR + r] = src[i + r];
        }
      }
      if (M == 1 && !AT && one_row_kernel) {
        index_t p = p_begin;
        auto cols = [&](index_t q) { return static_cast<int>(std::min<index_t>(NR, N - q * NR)); };
        for (; p + 2 <= p_end; p += 2) {
          const T* panels[2] = {w.panel(p, k0), w.panel(p + 1, k0)};
          T* cs[2] = {C + p * NR, C + (p + 1) * NR};
          const int ncols[2] = {cols(p), cols(p + 1)};
          const T* rows[2] = {from(p), from(p + 1)};
          detail::row_kernel<T, 2>(kc, A + k0, panels, cs, ncols, rows);
        }
        if (p < p_end) {
          const T* panels[1] = {w.panel(p, k0)};
          T* cs[1] = {C + p * NR};
          const int ncols[1] = {cols(p)};
          const T* rows[1] = {from(p)};
          detail::row_kernel<T, 1>(kc, A + k0, panels, cs, ncols, rows);
        }
        continue;
      }
      for (index_t p = p_begin; p < p_end; ++p) {
        const T* panel = w.panel(p, k0);
        const index_t n0 = p * NR;
        const int cols = static_cast<int>(std::min<index_t>(NR, N - n0));
        T* c = C + m0 * ldc + n0;
        // Rows i.. of the block: A's rows in place, or (AT) strip i / MR with lda MR.
        const index_t ld = AT ? MR : lda;
        auto a = [&](index_t i) { return AT ? strips.data() + i * kc : A + (m0 + i) * lda + k0; };
        if (cols <= kHalfPanel) detail::panel_rows<T, AT, kNV / 2>(mc, kc, a, ld, panel, c, ldc, cols, from(p));
        else detail::panel_rows<T, AT, kNV>(mc, kc, a, ld, panel, c, ldc, cols, from(p));
      }
    }
  }
}

// Multiply-adds below which a product stays on one thread (a pool round trip costs a few µs).
constexpr double kParallelMacs = 1 << 18;

// C += A · Wᵀ.
//   A: [M, K] row stride lda (K = w.k()), or with AT its transpose [K, M] row stride lda;
//   C: [M, N] row stride ldc (N = w.n()).
// C must not overlap A. Nothing is allocated; nothing is kept. Split over the pool when large.
// one_row_kernel as gemm_acc_serial's: a caller computing one thread's rows of a larger product clears it.
template <typename T, bool AT = false>
void gemm_acc(index_t M, const T* A, index_t lda, const PackedWeights<T>& w, T* C, index_t ldc,
              bool one_row_kernel = true, CInit<T> init = {}) {
  constexpr int MR = Tile<T>::MR;
  const index_t panels = w.panels();
  if (M <= 0 || w.n() <= 0) return;
  const double macs = double(M) * double(w.n()) * double(w.k());
  if (macs < kParallelMacs || in_parallel() || num_threads() < 2)
    return gemm_acc_serial<T, AT>(M, A, lda, w, C, ldc, 0, panels, one_row_kernel, init);
  if (M >= 4 * MR && (M + MR - 1) / MR >= 2 * num_threads()) {  // by rows, in whole register tiles (≥ 2 per chunk)
    const index_t tiles = (M + MR - 1) / MR;
    parallel_for(tiles, [&](index_t b, index_t e) {
      const index_t m0 = b * MR, m1 = std::min(M, e * MR);
      gemm_acc_serial<T, AT>(m1 - m0, AT ? A + m0 : A + m0 * lda, lda, w, C + m0 * ldc, ldc, 0, panels, true, init);
    });
  } else {  // few rows: by column panels
    parallel_for(panels, [&](index_t b, index_t e) {
      gemm_acc_serial<T, AT>(M, A, lda, w, C, ldc, b, e, one_row_kernel, init);
    });
  }
}

// C = A · Wᵀ (overwrites C's [M, N] block).
template <typename T>
void gemm_set(index_t M, const T* A, index_t lda, const PackedWeights<T>& w, T* C, index_t ldc,
              bool one_row_kernel = true) {
  gemm_acc(M, A, lda, w, C, ldc, one_row_kernel, CInit<T>{true, nullptr});
}

// C = 1 · biasᵀ + A · Wᵀ (overwrites C's [M, N] block; bias [N], or null for zeros): an input projection.
template <typename T>
void gemm_bias(index_t M, const T* A, index_t lda, const PackedWeights<T>& w, const T* bias, T* C, index_t ldc,
               bool one_row_kernel = true) {
  gemm_acc(M, A, lda, w, C, ldc, one_row_kernel, CInit<T>{true, bias});
}

// C += Aᵀ · Bm: a weight gradient summed over all K rows (steps × batch) in one product.
//   A: [K, M] row stride lda; Bm: [K, Nc] row stride ldb; C: [M, Nc] row stride ldc.
// A (the large gate gradients, M = G·H wide) is read in place as the transposed left operand; only
// Bm (Nc ≤ a layer's input width) is packed, as the weight matrix Bmᵀ [Nc, K]. Allocates that for the call.
template <typename T>
void gemm_tn_acc(index_t M, index_t Nc, index_t K, const T* A, index_t lda, const T* Bm, index_t ldb, T* C,
                 index_t ldc) {
  if (M <= 0 || Nc <= 0 || K <= 0) return;
  const PackedWeights<T> bt(Bm, Nc, K, 1, ldb);  // element (n, k) = Bm[k·ldb + n]
  gemm_acc<T, true>(M, A, lda, bt, C, ldc);
}

// out[j] = Σ_n A[n, j] · (Bm ? Bm[n, j] : 1) for j < width (overwritten): a bias (or peephole) gradient
// summed over all N rows, as gemm_tn_acc sums a weight gradient. Rows summed in order, columns split over
// the pool when large, so the bits do not depend on the thread count.
template <typename T>
void column_sums(index_t N, index_t width, const T* A, index_t lda, const T* Bm, index_t ldb, T* out) {
  auto sums = [&](index_t j0, index_t j1) {
    std::fill(out + j0, out + j1, T(0));
    for (index_t n = 0; n < N; ++n) {
      const T* a = A + n * lda;
      if (Bm) {
        const T* b = Bm + n * ldb;
        for (index_t j = j0; j < j1; ++j) out[j] += a[j] * b[j];
      } else {
        for (index_t j = j0; j < j1; ++j) out[j] += a[j];
      }
    }
  };
  if (double(N) * double(width) >= kParallelMacs) parallel_for(width, sums);
  else sums(0, width);
}

// ---- Few rows, the weights read in place ----------------------------------------------------------
// A single cell step at a small batch (a decoder loop's LSTMCell call) reads each weight once: packing W
// first (a transpose of every value, through a fresh buffer) costs more than the product itself (B = 1,
// H = 128: ~15 of a native call's ~24 µs). Up to kInPlaceRows rows, the product is instead a dot product of
// each row of A with each row of W in torch's layout (both contiguous along k). The bound is where packing
// starts to pay, measured on a Zen 4 (one LSTM step, I = 64 / 128, H = 256 / 512): in place 1.5–1.8× faster
// at B = 8, even at B = 16 and 32, packed 1.1–1.3× faster from B = 64.
constexpr index_t kInPlaceRows = 16;

namespace detail {

// Σ of a vector's lanes by halves (upper half added to the lower, in registers), the same tree for every
// output, so the bits do not depend on the tiling.
#if defined(__clang__) || (defined(__GNUC__) && __GNUC__ >= 12)
template <typename T, int N>
struct LaneSum {
  typedef T vec __attribute__((vector_size(N * sizeof(T))));
  typedef T half __attribute__((vector_size(N / 2 * sizeof(T))));
  template <std::size_t... I>
  static half lower(vec v, std::index_sequence<I...>) {
    return __builtin_shufflevector(v, v, I...);
  }
  template <std::size_t... I>
  static half upper(vec v, std::index_sequence<I...>) {
    return __builtin_shufflevector(v, v, (I + N / 2)...);
  }
  static T of(vec v) {
    const auto lanes = std::make_index_sequence<N / 2>();
    return LaneSum<T, N / 2>::of(lower(v, lanes) + upper(v, lanes));
  }
};
template <typename T>
struct LaneSum<T, 1> {
  typedef T vec __attribute__((vector_size(sizeof(T))));
  static T of(vec v) { return v[0]; }
};
template <typename T, typename V>
inline T lane_sum(V v) {
  return LaneSum<T, Simd<T>::W>::of(v);
}

// Four lane sums at once: c[q] += Σ lanes of v[q] for q < 4, by the same halving tree as lane_sum (so the same
// bits), two vectors' halves added in one vector at each level: ~12 shuffles and adds for four sums instead of
// ~32. Needs N ≥ 4 lanes. merge: out = (first halves of u's groups, then v's) + (their second halves), u and v
// each N / g groups of g lanes (g partial sums of one output).
template <typename T, int N>
struct LaneSums4 {
  typedef T vec __attribute__((vector_size(N * sizeof(T))));
  typedef T quad __attribute__((vector_size(4 * sizeof(T))));
  template <int g, bool second>
  struct Pick {
    static constexpr int at(int lane) {  // output lane -> index into (u, v)
      const int half = g / 2, j = lane / half, groups = N / g, q = j % groups;
      return (j < groups ? 0 : N) + q * g + lane % half + (second ? half : 0);
    }
  };
  template <int g, std::size_t... L>
  static vec merge(vec u, vec v, std::index_sequence<L...>) {
    return __builtin_shufflevector(u, v, Pick<g, false>::at(L)...) +
           __builtin_shufflevector(u, v, Pick<g, true>::at(L)...);
  }
  template <int g>
  static vec down(vec m) {  // m: groups of g lanes, the first four valid; down to groups of one lane
    if constexpr (g == 1) return m;
    else return down<g / 2>(merge<g>(m, m, std::make_index_sequence<N>()));
  }
  static void add_to(const vec* v, T* c) {
    const auto lanes = std::make_index_sequence<N>();
    const vec m = merge<N / 2>(merge<N>(v[0], v[1], lanes), merge<N>(v[2], v[3], lanes), lanes);
    const vec sums = down<N / 4>(m);  // lanes 0..3: the four sums
    quad c4;
    std::memcpy(&c4, c, sizeof c4);
    c4 += __builtin_shufflevector(sums, sums, 0, 1, 2, 3);
    std::memcpy(c, &c4, sizeof c4);
  }
};
#elif defined(__GNUC__)
template <typename T, typename V>
inline T lane_sum(V v) {  // the same tree through memory (older gcc has no __builtin_shufflevector)
  constexpr int W = Simd<T>::W;
  T t[W];
  Simd<T>::store(t, v);
  for (int s = W / 2; s > 0; s /= 2)
    for (int i = 0; i < s; ++i) t[i] += t[i + s];
  return t[0];
}
#endif

// SIMD lanes of T (1 where the compiler has no vector types).
#if defined(__GNUC__) || defined(__clang__)
template <typename T>
constexpr index_t kLanes = Simd<T>::W;
#else
template <typename T>
constexpr index_t kLanes = 1;
#endif

// f(m, rows) for the rows [m0, m1) of a product in fours, rows a std::integral_constant (1 to 4), so that each
// tile's row count is a template argument (a fixed set of accumulators).
template <typename F>
inline void by_four_rows(index_t m0, index_t m1, F&& f) {
  for (index_t m = m0; m < m1; m += 4) switch (std::min<index_t>(4, m1 - m)) {
      case 1: f(m, std::integral_constant<int, 1>()); break;
      case 2: f(m, std::integral_constant<int, 2>()); break;
      case 3: f(m, std::integral_constant<int, 3>()); break;
      default: f(m, std::integral_constant<int, 4>()); break;
    }
}

// c[r·ldc + q] += Σ_k a[r·lda + k] · w[q·ldw + k] for r < ROWS, q < Q: Q rows of W against ROWS rows of A,
// vectors along k (the last partial vector zero-padded: products of zeros add nothing).
template <typename T, int ROWS, int Q>
inline void dot_tile(index_t K, const T* a, index_t lda, const T* w, index_t ldw, T* c, index_t ldc) {
#if defined(__GNUC__) || defined(__clang__)
  using S = Simd<T>;
  using V = typename S::vec;
  constexpr int W = S::W;
  V acc[ROWS][Q];
  for (int r = 0; r < ROWS; ++r)
    for (int q = 0; q < Q; ++q) acc[r][q] = V{};
  index_t k = 0;
  for (; k + W <= K; k += W) {  // (written out, not through a lambda: gcc then keeps acc in memory)
    V wv[Q];
    for (int q = 0; q < Q; ++q) wv[q] = S::load(w + q * ldw + k);
    for (int r = 0; r < ROWS; ++r) {
      const V av = S::load(a + r * lda + k);
      for (int q = 0; q < Q; ++q) acc[r][q] += av * wv[q];
    }
  }
  if (k < K) {
    const int n = static_cast<int>(K - k);
    V wv[Q];
    for (int q = 0; q < Q; ++q) wv[q] = S::load_part(w + q * ldw + k, n);
    for (int r = 0; r < ROWS; ++r) {
      const V av = S::load_part(a + r * lda + k, n);
      for (int q = 0; q < Q; ++q) acc[r][q] += av * wv[q];
    }
  }
#if defined(__clang__) || (defined(__GNUC__) && __GNUC__ >= 12)
  if constexpr (Q == 4 && S::W >= 4) {
    for (int r = 0; r < ROWS; ++r) LaneSums4<T, S::W>::add_to(acc[r], c + r * ldc);
    return;
  }
#endif
  for (int r = 0; r < ROWS; ++r)
    for (int q = 0; q < Q; ++q) c[r * ldc + q] += lane_sum<T>(acc[r][q]);
#else
  for (int r = 0; r < ROWS; ++r)
    for (int q = 0; q < Q; ++q) {
      T s = T(0);
      for (index_t k = 0; k < K; ++k) s += a[r * lda + k] * w[q * ldw + k];
      c[r * ldc + q] += s;
    }
#endif
}

// Rows [n0, n1) of W against all ROWS rows of A: tiles of 4 rows of W, then one at a time.
template <typename T, int ROWS>
inline void dot_rows(index_t K, const T* a, index_t lda, const T* w, index_t ldw, T* c, index_t ldc, index_t n0,
                     index_t n1) {
  index_t n = n0;
  for (; n + 4 <= n1; n += 4) dot_tile<T, ROWS, 4>(K, a, lda, w + n * ldw, ldw, c + n, ldc);
  for (; n < n1; ++n) dot_tile<T, ROWS, 1>(K, a, lda, w + n * ldw, ldw, c + n, ldc);
}

}  // namespace detail

// C += A · Wᵀ with W read in place.
//   A: [M, K] row stride lda (meant for M ≤ kInPlaceRows); W: [N, K] row stride ldw (torch's layout); C: [M, N] row
//   stride ldc.
// Split over the pool by rows of W (in multiples of 4) when large; each output is the same sum either way.
template <typename T>
void gemm_acc_in_place(index_t M, index_t N, index_t K, const T* A, index_t lda, const T* W, index_t ldw, T* C,
                       index_t ldc) {
  if (M <= 0 || N <= 0 || K <= 0) return;
  auto rows = [&](index_t n0, index_t n1) {
    detail::by_four_rows(0, M, [&](index_t m, auto r) {
      detail::dot_rows<T, decltype(r)::value>(K, A + m * lda, lda, W, ldw, C + m * ldc, ldc, n0, n1);
    });
  };
  if (double(M) * double(N) * double(K) < kParallelMacs || in_parallel() || num_threads() < 2) return rows(0, N);
  const index_t quads = (N + 3) / 4;
  parallel_for(quads, [&](index_t b, index_t e) { rows(4 * b, std::min(N, 4 * e)); });
}

namespace detail {

// c[r·ldc + k] (+)= Σ_n a(r, n) · w[n·ldw + k] for r < ROWS and the NV·W columns k from k0 (PART: the first
// cols < W columns, NV = 1): rows of W scaled and summed, vectors along k, n in order; ACC: added to c, else
// stored (c not read). A template argument each, so that each instance's loop keeps acc in registers.
//   a(r, n) = a[r·ar + n·an] (A as stored, or transposed: the weight gradients' dGᵀ)
template <typename T, int ROWS, int NV, bool ACC, bool PART = false>
inline void axpy_tile(index_t N, const T* a, index_t ar, index_t an, const T* w, index_t ldw, T* c, index_t ldc,
                      int cols) {
#if defined(__GNUC__) || defined(__clang__)
  using S = Simd<T>;
  using V = typename S::vec;
  static_assert(!PART || NV == 1, "a partial tile is one vector");
  V acc[ROWS][NV];
  for (int r = 0; r < ROWS; ++r)
    for (int v = 0; v < NV; ++v) acc[r][v] = V{};
  for (index_t n = 0; n < N; ++n) {
    V wv[NV];
    for (int v = 0; v < NV; ++v) wv[v] = PART ? S::load_part(w + n * ldw, cols) : S::load(w + n * ldw + v * S::W);
    for (int r = 0; r < ROWS; ++r) {
      const T av = a[r * ar + n * an];
      for (int v = 0; v < NV; ++v) acc[r][v] += av * wv[v];
    }
  }
  for (int r = 0; r < ROWS; ++r) {
    T* cr = c + r * ldc;
    if (PART) S::store_part(cr, ACC ? S::load_part(cr, cols) + acc[r][0] : acc[r][0], cols);
    else
      for (int v = 0; v < NV; ++v) S::store(cr + v * S::W, ACC ? S::load(cr + v * S::W) + acc[r][v] : acc[r][v]);
  }
#else
  for (int r = 0; r < ROWS; ++r)
    for (int j = 0; j < cols; ++j) {
      T s = T(0);
      for (index_t n = 0; n < N; ++n) s += a[r * ar + n * an] * w[n * ldw + j];
      c[r * ldc + j] = ACC ? c[r * ldc + j] + s : s;
    }
#endif
}

// Rows ROWS of C over columns [k0, k1): chunks of two vectors, then one, then the partial last one.
template <typename T, int ROWS, bool ACC>
inline void axpy_rows(index_t N, const T* a, index_t ar, index_t an, const T* w, index_t ldw, T* c, index_t ldc,
                      index_t k0, index_t k1) {
  constexpr index_t W = kLanes<T>;
  index_t k = k0;
  for (; k + 2 * W <= k1; k += 2 * W) axpy_tile<T, ROWS, 2, ACC>(N, a, ar, an, w + k, ldw, c + k, ldc, 2 * W);
  for (; k + W <= k1; k += W) axpy_tile<T, ROWS, 1, ACC>(N, a, ar, an, w + k, ldw, c + k, ldc, W);
  if (k < k1) axpy_tile<T, ROWS, 1, ACC, true>(N, a, ar, an, w + k, ldw, c + k, ldc, static_cast<int>(k1 - k));
}

}  // namespace detail

// C += A · W (ACC) or C = A · W with W read in place (the backward's products through a weight, and its
// gradients):
//   C [M, K] row stride ldc; A (m, n) at A[m·ar + n·an], M × N; W [N, K] row stride ldw (torch's layout).
// Each C element is Σ over n in order, whatever the split: over the pool by rows of C in fours when M ≥ 8,
// else by columns in whole vectors.
template <typename T, bool ACC = true>
void gemm_nn_in_place(index_t M, index_t K, index_t N, const T* A, index_t ar, index_t an, const T* W, index_t ldw,
                      T* C, index_t ldc) {
  if (M <= 0 || K <= 0) return;
  if (N <= 0) {  // an empty sum
    if (!ACC)
      for (index_t m = 0; m < M; ++m) std::fill(C + m * ldc, C + m * ldc + K, T(0));
    return;
  }
  auto block = [&](index_t m0, index_t m1, index_t k0, index_t k1) {
    detail::by_four_rows(m0, m1, [&](index_t m, auto r) {
      detail::axpy_rows<T, decltype(r)::value, ACC>(N, A + m * ar, ar, an, W, ldw, C + m * ldc, ldc, k0, k1);
    });
  };
  if (double(M) * double(N) * double(K) < kParallelMacs || in_parallel() || num_threads() < 2) return block(0, M, 0, K);
  if (M >= 8) return parallel_for((M + 3) / 4, [&](index_t b, index_t e) { block(4 * b, std::min(M, 4 * e), 0, K); });
  constexpr index_t V = detail::kLanes<T>;
  parallel_for((K + V - 1) / V, [&](index_t b, index_t e) { block(0, M, b * V, std::min(K, e * V)); });
}

}  // namespace LSTMKIT_ISA
}  // namespace lstmkit
