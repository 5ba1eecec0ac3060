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
#include <vector>

#include "common.h"
#include "simd.h"

namespace lstmkit {
namespace LSTMKIT_ISA {

// Register tile: MR rows of A times NR columns of Wᵀ. NR spans two SIMD registers, so with 16-byte
// vectors 4 × 2 accumulators, with 32-byte ones (16 ymm registers) 6 × 2, plus the panel row and the
// broadcast, fit the register file.
template <typename T>
struct Tile {
  static constexpr int MR = LSTMKIT_VEC_BYTES == 16 ? 4 : 6;
  static constexpr int NR = static_cast<int>(2 * LSTMKIT_VEC_BYTES / sizeof(T));
};

// Cache blocks: a panel slice (KC × NR) stays in L1 while it sweeps an A block (MC × KC) held in L2.
constexpr index_t kKC = 256;
constexpr index_t kMC = 96;

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
  PackedWeights(const T* w, index_t n, index_t k, index_t row_stride, index_t col_stride) : n_(n), k_(k) {
    const index_t panels = (n + NR - 1) / NR;
    data_.assign(static_cast<size_t>(panels * k * NR), T(0));
    auto pack = [&](index_t p_begin, index_t p_end) {
      if (row_stride == 1) {  // packing a transpose: read each source row once, across the panels
        for (index_t kk = 0; kk < k; ++kk)
          for (index_t p = p_begin; p < p_end; ++p) {
            const index_t cols = std::min<index_t>(NR, n - p * NR);
            T* dst = data_.data() + (p * k + kk) * NR;
            const T* src = w + p * NR + kk * col_stride;
            for (index_t j = 0; j < cols; ++j) dst[j] = src[j];
          }
        return;
      }
      for (index_t p = p_begin; p < p_end; ++p) {
        T* dst = data_.data() + p * k * NR;
        const index_t cols = std::min<index_t>(NR, n - p * NR);
        for (index_t kk = 0; kk < k; ++kk)
          for (index_t j = 0; j < cols; ++j) dst[kk * NR + j] = w[(p * NR + j) * row_stride + kk * col_stride];
      }
    };
    if (double(n) * double(k) >= double(1 << 20)) parallel_for(panels, pack);  // large (gradient) matrices
    else pack(0, panels);
  }

  index_t n() const { return n_; }
  index_t k() const { return k_; }
  index_t panels() const { return (n_ + NR - 1) / NR; }
  // Panel p starting at inner index k0: [K - k0, NR].
  const T* panel(index_t p, index_t k0) const { return data_.data() + (p * k_ + k0) * NR; }

 private:
  index_t n_ = 0, k_ = 0;
  std::vector<T> data_;
};

namespace detail {

#if defined(__GNUC__) || defined(__clang__)
// Simd<T> (simd.h) is written out explicitly because left to itself the auto-vectoriser vectorises
// the micro-kernel along k (the reduction) and spends its time shuffling.

// c[ROWS, cols] += a[ROWS, kc] · panel[kc, NR], ROWS ≤ MR, cols ≤ NR.
//   a: row stride lda (AT: element (r, k) at a[r + k·lda], a transposed matrix read in place);
//   panel: [kc, NR] contiguous; c: row stride ldc.
// ROWS is a template argument so the accumulators are a fixed set of registers (MR × NR/W of them).
template <typename T, int ROWS, bool AT = false>
inline void micro_kernel(index_t kc, const T* a, index_t lda, const T* panel, T* c, index_t ldc, int cols) {
  using S = Simd<T>;
  using V = typename S::vec;
  constexpr int NR = Tile<T>::NR, NV = NR / S::W;
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
    if (cols == NR) {
      for (int v = 0; v < NV; ++v) S::store(cr + v * S::W, S::load(cr + v * S::W) + acc[r][v]);
    } else {
      T tmp[NR];
      for (int v = 0; v < NV; ++v) S::store(tmp + v * S::W, acc[r][v]);
      for (int j = 0; j < cols; ++j) cr[j] += tmp[j];
    }
  }
}

// One row (the B = 1 matrix-vector case of the recurrent step): a single row gives only NR/W
// independent add chains, so split k four ways to keep the adder pipeline full.
template <typename T>
inline void row_kernel(index_t kc, const T* a, const T* panel, T* c, int cols) {
  using S = Simd<T>;
  using V = typename S::vec;
  constexpr int NR = Tile<T>::NR, NV = NR / S::W, U = 4;
  V acc[U][NV];
  for (int u = 0; u < U; ++u)
    for (int v = 0; v < NV; ++v) acc[u][v] = V{};
  index_t k = 0;
  for (; k + U <= kc; k += U)
    for (int u = 0; u < U; ++u) {
      const T av = a[k + u];
      for (int v = 0; v < NV; ++v) acc[u][v] += av * S::load(panel + (k + u) * NR + v * S::W);
    }
  for (; k < kc; ++k)
    for (int v = 0; v < NV; ++v) acc[0][v] += a[k] * S::load(panel + k * NR + v * S::W);
  T tmp[NR];
  for (int v = 0; v < NV; ++v) S::store(tmp + v * S::W, (acc[0][v] + acc[1][v]) + (acc[2][v] + acc[3][v]));
  for (int j = 0; j < cols; ++j) c[j] += tmp[j];
}

#else  // portable scalar fallback (e.g. MSVC): same blocking, the compiler vectorises what it can

template <typename T, int ROWS, bool AT = false>
inline void micro_kernel(index_t kc, const T* a, index_t lda, const T* panel, T* c, index_t ldc, int cols) {
  constexpr int NR = Tile<T>::NR;
  T acc[ROWS][NR] = {};
  for (index_t k = 0; k < kc; ++k)
    for (int r = 0; r < ROWS; ++r)
      for (int j = 0; j < NR; ++j) acc[r][j] += (AT ? a[r + k * lda] : a[r * lda + k]) * panel[k * NR + j];
  for (int r = 0; r < ROWS; ++r)
    for (int j = 0; j < cols; ++j) c[r * ldc + j] += acc[r][j];
}

template <typename T>
inline void row_kernel(index_t kc, const T* a, const T* panel, T* c, int cols) {
  micro_kernel<T, 1>(kc, a, 0, panel, c, 0, cols);
}

#endif

}  // namespace detail

// C += A · Wᵀ over rows [0, M) and column panels [p_begin, p_end) of W, on the calling thread.
// The one-row kernel (a different summation order) is used only when M is 1 and one_row_kernel is
// set, so a row split over threads gives the same bits as one thread; a caller that computes a
// product row block by row block (whose blocks may have one row) clears it to get the bits of one call.
// AT: A is given transposed, element (m, k) at A[m + k·lda] (the weight gradients' dGᵀ), copied block by block.
template <typename T, bool AT = false>
void gemm_acc_serial(index_t M, const T* A, index_t lda, const PackedWeights<T>& w, T* C, index_t ldc,
                     index_t p_begin, index_t p_end, bool one_row_kernel = true) {
  constexpr int MR = Tile<T>::MR, NR = Tile<T>::NR;
  const index_t K = w.k(), N = w.n();
  if (M <= 0 || N <= 0 || K <= 0) return;
  // AT: each (k, m) block of A is first copied into strips of MR rows, (r, k) at strip[k·MR + r], which
  // the micro-kernel reads as a transposed A with lda = MR. Read in place instead, A's rows lie G·H
  // values apart (a multiple of 4 KB), all on one L1 set, and every panel would fetch them again.
  std::vector<T> strips(AT ? static_cast<size_t>(kMC * kKC) : 0);
  for (index_t k0 = 0; k0 < K; k0 += kKC) {
    const index_t kc = std::min(kKC, K - k0);
    for (index_t m0 = 0; m0 < M; m0 += kMC) {
      const index_t mc = std::min(kMC, M - m0);
      if (AT) {
        for (index_t i = 0; i < mc; i += MR) {
          const index_t rows = std::min<index_t>(MR, mc - i);
          T* strip = strips.data() + i * kc;
          for (index_t k = 0; k < kc; ++k) {
            const T* src = A + m0 + i + (k0 + k) * lda;
            for (index_t r = 0; r < rows; ++r) strip[k * MR + r] = src[r];
          }
        }
      }
      for (index_t p = p_begin; p < p_end; ++p) {
        const T* panel = w.panel(p, k0);
        const index_t n0 = p * NR;
        const int cols = static_cast<int>(std::min<index_t>(NR, N - n0));
        T* c = C + m0 * ldc + n0;
        if (M == 1 && !AT && one_row_kernel) {
          detail::row_kernel<T>(kc, A + k0, panel, c, cols);
          continue;
        }
        // Rows i.. of the block: A's rows in place, or (AT) strip i / MR with lda MR.
        const index_t ld = AT ? MR : lda;
        auto a = [&](index_t i) { return AT ? strips.data() + i * kc : A + (m0 + i) * lda + k0; };
        index_t i = 0;
        for (; i + MR <= mc; i += MR) detail::micro_kernel<T, MR, AT>(kc, a(i), ld, panel, c + i * ldc, ldc, cols);
        static_assert(MR <= 6, "remainder cases below cover MR ≤ 6");
        switch (mc - i) {
          case 5: detail::micro_kernel<T, 5, AT>(kc, a(i), ld, panel, c + i * ldc, ldc, cols); break;
          case 4: detail::micro_kernel<T, 4, AT>(kc, a(i), ld, panel, c + i * ldc, ldc, cols); break;
          case 3: detail::micro_kernel<T, 3, AT>(kc, a(i), ld, panel, c + i * ldc, ldc, cols); break;
          case 2: detail::micro_kernel<T, 2, AT>(kc, a(i), ld, panel, c + i * ldc, ldc, cols); break;
          case 1: detail::micro_kernel<T, 1, AT>(kc, a(i), ld, panel, c + i * ldc, ldc, cols); break;
          default: break;
        }
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
template <typename T, bool AT = false>
void gemm_acc(index_t M, const T* A, index_t lda, const PackedWeights<T>& w, T* C, index_t ldc) {
  constexpr int MR = Tile<T>::MR;
  const index_t panels = w.panels();
  if (M <= 0 || w.n() <= 0 || w.k() <= 0) return;
  const double macs = double(M) * double(w.n()) * double(w.k());
  if (macs < kParallelMacs || in_parallel() || num_threads() < 2)
    return gemm_acc_serial<T, AT>(M, A, lda, w, C, ldc, 0, panels);
  if (M >= 4 * MR && (M + MR - 1) / MR >= 2 * num_threads()) {  // by rows, in whole register tiles (≥ 2 per chunk)
    const index_t tiles = (M + MR - 1) / MR;
    parallel_for(tiles, [&](index_t b, index_t e) {
      const index_t m0 = b * MR, m1 = std::min(M, e * MR);
      gemm_acc_serial<T, AT>(m1 - m0, AT ? A + m0 : A + m0 * lda, lda, w, C + m0 * ldc, ldc, 0, panels);
    });
  } else {  // few rows: by column panels
    parallel_for(panels, [&](index_t b, index_t e) { gemm_acc_serial<T, AT>(M, A, lda, w, C, ldc, b, e); });
  }
}

// C = A · Wᵀ (overwrites C's [M, N] block).
template <typename T>
void gemm_set(index_t M, const T* A, index_t lda, const PackedWeights<T>& w, T* C, index_t ldc) {
  for (index_t m = 0; m < M; ++m) std::fill(C + m * ldc, C + m * ldc + w.n(), T(0));
  gemm_acc(M, A, lda, w, C, ldc);
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

// C[m, :] = bias (or 0 when bias is null) for m < M: the starting value of a gate pre-activation.
//   bias: [N] or nullptr; C: [M, N] row stride ldc.
template <typename T>
void fill_rows(index_t M, index_t N, const T* bias, T* C, index_t ldc) {
  for (index_t m = 0; m < M; ++m) {
    T* row = C + m * ldc;
    if (bias)
      std::memcpy(row, bias, static_cast<size_t>(N) * sizeof(T));
    else
      std::fill(row, row + N, T(0));
  }
}

}  // namespace LSTMKIT_ISA
}  // namespace lstmkit
