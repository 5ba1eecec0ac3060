// Intel AMX (Advanced Matrix Extensions: Sapphire Rapids and later) for the quantised products of
// quant_gemm.h: the same packed weights and prepared rows, multiplied 16 rows × 16 columns × 64 bytes of K
// at a time in tile registers (tdpbf16ps: bf16 pairs into float32; tdpbusd: u7 × s8 quads into exact int32).
// Compiled only into the amx build (LSTMKIT_QKIND 4, quant_amx.cpp); bind_quant.cpp chooses it where the CPU
// has AMX-TILE/BF16/INT8 and Linux grants the process the tile state (arch_prctl ARCH_REQ_XCOMP_PERM).
//
// Operands as AMX reads them, which are the AVX-512 build's layouts with K padded to whole tiles:
//  * B (weights): a panel of 16 columns is [K groups, 16 columns, 4 bytes] (a bf16 pair or an int8 quad per
//    column), so 16 groups are one tile of 16 rows × 64 bytes, 1 KB, contiguous. The panels pad K to a
//    multiple of 16 groups with zeros (kGroupPad).
//  * A (the prepared rows): row m's 4-byte groups contiguous, row stride a multiple of 64 bytes, zero past K.
//    A tile reads 16 rows from its first; rows past the product's last are read (the buffer has room: kRowSlack)
//    and their sums dropped.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "core/common.h"

namespace lstmkit {
namespace LSTMKIT_ISA {

// A compiler barrier: gcc's AMX intrinsics are asm statements that do not tell the compiler they read or write
// memory (ldtilecfg is told of 8 bytes of its 64), so stores before them could be dropped or moved past them,
// and loads of what a tile store wrote moved before it.
inline void amx_memory_barrier() { __asm__ __volatile__("" ::: "memory"); }

constexpr index_t kAmxRows = 16;         // rows of an A or C tile
constexpr index_t kAmxTileBytes = 1024;  // a B tile: 16 groups × 16 columns × 4 bytes

// The tiles a product uses, configured for the calling thread for the life of the object and released after
// (other code on the same thread, oneDNN's in a torch program, configures its own: nothing is assumed between
// calls). Every tile 16 rows × 64 bytes: C tiles 0–3 (16 × 16 sums), A tile 4 (and 5 for a second row tile),
// B tiles 5–7 (6–7 beside two row tiles).
class AmxTiles {
 public:
  AmxTiles() {
    struct alignas(64) Config {
      uint8_t palette, start_row, reserved[14];
      uint16_t colsb[16];
      uint8_t rows[16];
    } cfg;
    std::memset(&cfg, 0, sizeof cfg);
    cfg.palette = 1;
    for (int t = 0; t < 8; ++t) cfg.colsb[t] = 64, cfg.rows[t] = kAmxRows;
    amx_memory_barrier();
    _tile_loadconfig(&cfg);
  }
  ~AmxTiles() { _tile_release(); }
  AmxTiles(const AmxTiles&) = delete;
  AmxTiles& operator=(const AmxTiles&) = delete;
};

// out[t] (16 × 16 four-byte sums of C tile t, 1 KB apart) = Σ over K tiles [kt0, kt1) of A's tiles times each
// panel's, for MT row tiles (A at a, row stride lda bytes; the second 16 rows below the first) and NT panels
// (B at b[j]). The C tile of row tile i and panel j is amx_c_tile's: MT = 1: j; MT = 2: 2i + j.
// INT8: tdpbusd, else tdpbf16ps.
// Tile numbers are literals (the intrinsics name registers in their asm), hence the spelled-out cases.
template <bool INT8, int MT, int NT>
inline void amx_block(const uint8_t* a, index_t lda, const uint8_t* const* b, index_t kt0, index_t kt1, void* out) {
  static_assert((MT == 1 && NT >= 1 && NT <= 3) || (MT == 2 && NT >= 1 && NT <= 2), "at most 8 tiles");
#define LSTMKIT_AMX_DP(c, x, y)                \
  do {                                         \
    if constexpr (INT8) _tile_dpbusd(c, x, y); \
    else _tile_dpbf16ps(c, x, y);              \
  } while (0)
  amx_memory_barrier();  // the operands written
  // C tile t is used where amx_c_tile gives it: (MT = 1) t < NT, (MT = 2) t % 2 < NT.
  constexpr bool c1 = NT > 1, c2 = MT == 2 || NT > 2, c3 = MT == 2 && NT > 1;
  _tile_zero(0);
  if constexpr (c1) _tile_zero(1);
  if constexpr (c2) _tile_zero(2);
  if constexpr (c3) _tile_zero(3);
  for (index_t t = kt0; t < kt1; ++t) {
    const uint8_t* at = a + t * 64;
    const index_t bt = t * kAmxTileBytes;
    _tile_loadd(4, at, lda);
    if constexpr (MT == 1) {
      _tile_loadd(5, b[0] + bt, 64);
      LSTMKIT_AMX_DP(0, 4, 5);
      if constexpr (NT > 1) {
        _tile_loadd(6, b[1] + bt, 64);
        LSTMKIT_AMX_DP(1, 4, 6);
      }
      if constexpr (NT > 2) {
        _tile_loadd(7, b[2] + bt, 64);
        LSTMKIT_AMX_DP(2, 4, 7);
      }
    } else {
      _tile_loadd(5, at + kAmxRows * lda, lda);
      _tile_loadd(6, b[0] + bt, 64);
      LSTMKIT_AMX_DP(0, 4, 6);
      LSTMKIT_AMX_DP(2, 5, 6);
      if constexpr (NT > 1) {
        _tile_loadd(7, b[1] + bt, 64);
        LSTMKIT_AMX_DP(1, 4, 7);
        LSTMKIT_AMX_DP(3, 5, 7);
      }
    }
  }
#undef LSTMKIT_AMX_DP
  char* o = static_cast<char*>(out);
  _tile_stored(0, o, 64);
  if constexpr (c1) _tile_stored(1, o + kAmxTileBytes, 64);
  if constexpr (c2) _tile_stored(2, o + 2 * kAmxTileBytes, 64);
  if constexpr (c3) _tile_stored(3, o + 3 * kAmxTileBytes, 64);
  amx_memory_barrier();  // the sums stored
}

// The sums of a block of MT row tiles × nt panels (nt ≤ the kernel's), as amx_block.
template <bool INT8, int MT>
inline void amx_sums(index_t nt, const uint8_t* a, index_t lda, const uint8_t* const* b, index_t kt0, index_t kt1,
                     void* out) {
  if constexpr (MT == 1) {
    if (nt == 3) return amx_block<INT8, 1, 3>(a, lda, b, kt0, kt1, out);
    if (nt == 2) return amx_block<INT8, 1, 2>(a, lda, b, kt0, kt1, out);
    return amx_block<INT8, 1, 1>(a, lda, b, kt0, kt1, out);
  } else {
    if (nt == 2) return amx_block<INT8, 2, 2>(a, lda, b, kt0, kt1, out);
    return amx_block<INT8, 2, 1>(a, lda, b, kt0, kt1, out);
  }
}

// The product over rows [0, M) of A (row stride lda bytes) and panels [p0, p1) (panel p's tiles at
// panel(p)), K tiles [kt0, kt1), in blocks of up to 2 row tiles × 2 panels (1 × 3 where M ≤ 16); each block's
// sums handed to done(row0, rows, p, nt, sums): rows ≤ 32 valid rows from row0, nt panels from p, sums
// [C tile][16][16] as amx_block's. Panels outside, rows inside: a panel's tiles are read once from wherever the
// weights are, then from cache for the other row blocks.
template <bool INT8, typename Panel, typename Done>
inline void amx_product(index_t M, const uint8_t* a, index_t lda, index_t p0, index_t p1, index_t kt0, index_t kt1,
                        Panel&& panel, Done&& done) {
  alignas(64) int32_t sums[4][kAmxRows * 16];
  const index_t step = M > kAmxRows ? 2 : 3;
  for (index_t p = p0; p < p1; p += step) {
    const index_t nt = std::min(step, p1 - p);
    const uint8_t* b[3] = {panel(p), nt > 1 ? panel(p + 1) : nullptr, nt > 2 ? panel(p + 2) : nullptr};
    for (index_t m = 0; m < M; m += 2 * kAmxRows) {
      const index_t rows = std::min(2 * kAmxRows, M - m);
      if (rows > kAmxRows) amx_sums<INT8, 2>(nt, a + m * lda, lda, b, kt0, kt1, sums);
      else amx_sums<INT8, 1>(nt, a + m * lda, lda, b, kt0, kt1, sums);
      done(m, rows, p, nt, sums);
    }
  }
}

// The C tile holding row tile i, panel j of a block (amx_block's numbering).
inline int amx_c_tile(bool two_row_tiles, index_t i, index_t j) {
  return static_cast<int>(two_row_tiles ? 2 * i + j : j);
}

}  // namespace LSTMKIT_ISA
}  // namespace lstmkit
