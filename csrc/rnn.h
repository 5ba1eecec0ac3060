// Whole-sequence inference forward of a stacked, optionally bidirectional LSTM/GRU, with torch's
// packed-sequence semantics for per-sequence lengths — the same function as lstmkit/ref/rnn.py's
// forward (without dropout).
//
// How it runs:
//  * Sequences are sorted by length (longest first, stable), so at step t the sequences still running
//    are a prefix of the batch, batch_sizes[t] rows. Every layer works in that packed layout (as
//    torch's PackedSequence does): rows offsets[t] .. offsets[t] + batch_sizes[t] hold step t, and
//    N = Σ lengths rows in all. Work therefore follows the real steps; padding is never computed.
//  * Per layer, the input projection of all steps and both directions is one GEMM over N rows.
//  * Per step, the recurrent GEMM over the running rows is fused with the gate nonlinearities and the
//    state update (cells.h). A finished sequence simply drops out of the prefix: its state stays frozen
//    (forward direction), and the reverse direction picks it up at step lengths[b] − 1 from the initial
//    state, because it only enters the prefix there.
//  * At the end, the packed output is scattered back to (T, B, D·P), zeros past each sequence's end,
//    and the final states back to the caller's batch order.
#pragma once

#include <algorithm>
#include <cstdint>
#include <numeric>
#include <stdexcept>
#include <vector>

#include "cells.h"

namespace lstmkit {
namespace LSTMKIT_ISA {

// The packed layout of a batch with per-sequence lengths (torch's PackedSequence).
//   order:       [B] caller's batch index of packed row r, longest sequence first (stable)
//   batch_sizes: [T] rows still running at step t (a prefix of the sorted batch)
//   offsets:     [T + 1] first packed row of step t; offsets[T] = N = Σ lengths
struct PackedBatch {
  std::vector<index_t> order, batch_sizes, offsets;
  index_t N = 0;

  // lengths: [B] in [0, T], or null for all T. Throws std::invalid_argument outside [0, T].
  PackedBatch(index_t T, index_t B, const int64_t* lengths)
      : order(static_cast<size_t>(B)), batch_sizes(static_cast<size_t>(T), 0), offsets(static_cast<size_t>(T) + 1, 0) {
    std::iota(order.begin(), order.end(), index_t(0));
    std::vector<index_t> len(static_cast<size_t>(B), T);
    if (lengths) {
      for (index_t b = 0; b < B; ++b) {
        if (lengths[b] < 0 || lengths[b] > T) throw std::invalid_argument("lengths: expected values in [0, T]");
        len[b] = static_cast<index_t>(lengths[b]);
      }
      std::stable_sort(order.begin(), order.end(), [&](index_t a, index_t b) { return len[a] > len[b]; });
    }
    for (index_t t = 0; t < T; ++t) {
      index_t n = 0;
      while (n < B && len[order[n]] > t) ++n;
      batch_sizes[t] = n;
      offsets[t + 1] = offsets[t] + n;
    }
    N = offsets[T];
  }

  // dst[offsets[t] + r, :] = src[t, order[r], :] for the running rows; rows of `width` values.
  template <typename T_>
  void pack(const T_* src, index_t B, index_t width, T_* dst) const {
    for (size_t t = 0; t < batch_sizes.size(); ++t)
      for (index_t r = 0; r < batch_sizes[t]; ++r)
        std::copy_n(src + (static_cast<index_t>(t) * B + order[r]) * width, width, dst + (offsets[t] + r) * width);
  }

  // dst [T, B, width] = src scattered back, zero where a sequence has ended.
  template <typename T_>
  void unpack(const T_* src, index_t B, index_t width, T_* dst) const {
    const index_t T = static_cast<index_t>(batch_sizes.size());
    std::fill(dst, dst + T * B * width, T_(0));
    for (index_t t = 0; t < T; ++t)
      for (index_t r = 0; r < batch_sizes[t]; ++r)
        std::copy_n(src + (offsets[t] + r) * width, width, dst + (t * B + order[r]) * width);
  }
};

// f(r0, r1) over rows [0, n): on the pool in chunks of at least 2 rows when `macs` (the work) is
// large enough, else f(0, n) here. Chunks of ≥ 2 rows keep the GEMM on the multi-row kernel, so the
// bits are the same as one call over all rows.
template <typename F>
void for_rows(index_t n, double macs, F&& f) {
  if (n < 4 || macs < kParallelMacs || in_parallel() || num_threads() < 2) return f(index_t(0), n);
  const index_t pairs = n / 2;
  parallel_for(pairs, [&](index_t b, index_t e) { f(2 * b, e == pairs ? n : 2 * e); });
}

// Whether a sequence pass splits the batch over the pool for the whole time loop: at least two whole
// register tiles of rows per thread and enough work per step. Below that, small batches split each
// step by hidden units instead (units_through_time; the backward's lockstep loop), which keeps the
// threads' shares equal: B=16 training by rows ran 6 rows on one thread and 10 on the other
// (7.46 ms a step at H=128 T=100, 7.04 by units).
inline bool batch_split(index_t B, index_t H, index_t G, index_t P) {
  const index_t MR = LSTMKIT_VEC_BYTES == 16 ? 4 : 6;  // Tile<T>::MR
  const int n = num_threads();
  return n >= 2 && !in_parallel() && B >= 2 * MR * n && double(B) * double(G * H) * double(P) >= kParallelMacs;
}

// The time loop over every row, step_rows(t, r0, n) for the rows r0 .. r0 + n still running at step t,
// over every step in time order or (reverse) from the last step back. With `split` (batch_split() true)
// the pool's threads each take whole register tiles of rows; without, the calling thread takes them all.
template <typename T, typename F>
void rows_through_time(index_t B, const std::vector<index_t>& batch_sizes, bool reverse, F&& step_rows,
                       bool split = true) {
  constexpr int MR = Tile<T>::MR;
  const index_t steps = static_cast<index_t>(batch_sizes.size());
  auto rows = [&](index_t r0, index_t r1) {
    for (index_t step = 0; step < steps; ++step) {
      const index_t t = reverse ? steps - 1 - step : step;
      const index_t n = std::min(batch_sizes[t], r1) - r0;
      if (n > 0) step_rows(t, r0, n);
    }
  };
  if (split) parallel_for((B + MR - 1) / MR, [&](index_t b, index_t e) { rows(b * MR, std::min(B, e * MR)); });
  else rows(0, B);
}

// The time loop of a small batch split by hidden units over two threads (lockstep_pair): part(step,
// u0, u1, h_in, h_out) computes units [u0, u1) of every row at `step` (0 .. steps − 1, the caller maps
// it to t), reading all of h_in and writing its units of h_out. The two threads each own half of the
// units (whole register panels), so the weights each reads stay in its core's cache; they meet once
// per step, and h alternates between h and h_spare (`size` values each, rows of P = H) because a
// step reads what both halves wrote the step before. On return h holds the last step's h.
template <typename T, typename F>
void units_through_time(index_t steps, index_t H, T* h, T* h_spare, index_t size, F&& part) {
  constexpr int NR = Tile<T>::NR;
  const index_t half = H / NR / 2 * NR;
  T* const hb[2] = {h, h_spare};
  lockstep_pair(steps, [&](index_t step, int part0, int part1) {
    part(step, part0 == 0 ? index_t(0) : half, part1 == 2 ? H : half, hb[step % 2], hb[(step + 1) % 2]);
  });
  if (steps % 2) std::copy_n(h_spare, size, h);
}

// Sequence forward.
//   x:       [T, B, I]
//   weights: [L·D] one CellWeights per layer and direction, index layer·D + direction; layer 0 has
//            In = I, the others In = D·P
//   h0:      [L·D, B, P] initial h
//   c0:      [L·D, B, H] initial c (LSTM), null for GRU
//   lengths: [B] steps of each sequence, each in [0, T], any order; null means all T
//   out:     [T, B, D·P] the last layer's h at every step, zero past each sequence's end
//   h_n:     [L·D, B, P] final h; c_n: [L·D, B, H] final c (LSTM), null for GRU
// All pointers are caller-owned and only used during the call; outputs must not alias inputs.
// Throws std::invalid_argument for a length outside [0, T] (the Python layer checks it first).
template <typename T_>
void rnn_forward(const RnnShape& s, const T_* x, const CellWeights<T_>* weights, const T_* h0, const T_* c0,
                 const int64_t* lengths, T_* out, T_* h_n, T_* c_n) {
  using T = T_;
  const index_t T_steps = s.T, B = s.B, H = s.H, P = s.P, D = s.D, G = s.gates(), GH = G * H;

  const PackedBatch pk(T_steps, B, lengths);
  const std::vector<index_t>&order = pk.order, &batch_sizes = pk.batch_sizes, &offsets = pk.offsets;
  const index_t N = pk.N;
  // Without lengths the packed layout is x's and out's own ([T·B, width], order the identity): layer 0
  // reads x in place and the last layer writes out directly, no copies.
  const bool plain = lengths == nullptr;
  // Large batches split by rows (see below) and compute each step's input projection there, into
  // `step_gates`; the others keep the input projections of every step (`proj`).
  const bool split = batch_split(B, H, G, P);

  // Packed layer input: [N, In]; layer 0 gathers x (unless plain).
  std::vector<T> x_packed(plain ? 0 : static_cast<size_t>(N * s.I));
  if (!plain) pk.pack(x, B, s.I, x_packed.data());
  const T* layer_in = plain ? x : x_packed.data();
  index_t in_size = s.I;

  RawBuffer<T> proj(split ? 0 : N * D * GH);  // [N, D·G·H] input projections of one layer, written in full per layer
  std::vector<T> step_gates(split ? static_cast<size_t>(B * GH) : 0);  // [B, G·H] one step's, split by rows
  std::vector<T> outs[2];  // [N, D·P] layer outputs, alternating between layers (the last may be out itself)
  std::vector<T> h(static_cast<size_t>(B * P)), c(s.lstm ? static_cast<size_t>(B * H) : 0);  // state, packed order
  std::vector<T> scratch(static_cast<size_t>(B * (s.lstm ? H : GH)));  // LSTM m [B, H] / GRU gh [B, 3H]
  std::vector<T> h_new(static_cast<size_t>(B * P));                    // h' of a step split by units (unit_split)

  for (index_t layer = 0; layer < s.L; ++layer) {
    std::vector<PackedCell<T>> cells;
    cells.reserve(static_cast<size_t>(D));
    for (index_t d = 0; d < D; ++d) cells.emplace_back(s.lstm, in_size, H, P, weights[layer * D + d]);
    const bool direct = plain && layer + 1 == s.L;
    std::vector<T>& out_buf = outs[layer % 2];
    if (!direct) out_buf.resize(static_cast<size_t>(N * D * P));
    T* layer_out = direct ? out : out_buf.data();

    // Input projection of every step and direction: proj[:, d·GH : (d+1)·GH] = bias + layer_in · W_ihᵀ.
    const index_t ldp = D * GH;
    for (index_t d = 0; d < D && !split; ++d) {
      fill_rows(N, GH, cells[d].input_bias(), proj.data() + d * GH, ldp);
      gemm_acc(N, layer_in, in_size, cells[d].w_ih, proj.data() + d * GH, ldp);
    }

    const index_t ldo = D * P;
    for (index_t d = 0; d < D; ++d) {
      const index_t k = layer * D + d;
      for (index_t r = 0; r < B; ++r) {
        std::copy_n(h0 + (k * B + order[r]) * P, P, h.data() + r * P);
        if (s.lstm) std::copy_n(c0 + (k * B + order[r]) * H, H, c.data() + r * H);
      }
      // Large batches: each thread runs the whole time loop for its own rows (rows never interact), so
      // the steps need no synchronisation at all. Each step's input projection is computed there too,
      // into the thread's rows of `step_gates`: the same operations as the whole-sequence product (never
      // the one-row kernel), with no [N, G·H] buffer to fill and read back from memory.
      if (split) {
        const PackedCell<T>& cell = cells[d];
        rows_through_time<T>(B, batch_sizes, d == 1, [&](index_t t, index_t r0, index_t n) {
          T* g = step_gates.data() + r0 * GH;
          fill_rows(n, GH, cell.input_bias(), g, GH);
          gemm_acc_serial(n, layer_in + (offsets[t] + r0) * in_size, in_size, cell.w_ih, g, GH, 0, cell.w_ih.panels(),
                          false);
          if (s.lstm)
            lstm_step(n, H, cell, h.data() + r0 * P, P, c.data() + r0 * H, H, g, GH, h.data() + r0 * P, P,
                      c.data() + r0 * H, H, scratch.data() + r0 * H);
          else gru_step(n, H, cell, h.data() + r0 * P, P, g, GH, scratch.data() + r0 * GH, h.data() + r0 * P, P);
          T* y = layer_out + (offsets[t] + r0) * ldo + d * P;
          for (index_t r = 0; r < n; ++r) std::copy_n(h.data() + (r0 + r) * P, P, y + r * ldo);
        });
      } else if (!cells[d].projected && N == T_steps * B && unit_split(B, H, 0, cells[d], G)) {
        // Small batches, every row running every step: the time loop split by hidden units over two
        // threads (units_through_time), the same operations as lstm_step / gru_step. From
        // kUnitSplitMacs per step (unit_split; B=1 from H=128): B=1 H=128 T=100 back to back, 0.27 ms
        // here against 0.42 on one thread (each core streams half of W_hh from its own L2 per step).
        const PackedCell<T>& cell = cells[d];
        units_through_time(T_steps, H, h.data(), h_new.data(), B * P,
                           [&](index_t step, index_t u0, index_t u1, const T* h_in, T* h_out) {
                             const index_t t = d == 0 ? step : T_steps - 1 - step, n = u1 - u0;
                             T* g = proj.data() + offsets[t] * ldp + d * GH;
                             if (s.lstm) {
                               unit_products(B, G, H, cell, static_cast<const T*>(nullptr), 0, h_in, P, g, ldp,
                                             static_cast<T*>(nullptr), 0, u0, u1);
                               lstm_pointwise(B, n, g + u0, ldp, c.data() + u0, H, c.data() + u0, H, h_out + u0, P,
                                              static_cast<T*>(nullptr), static_cast<T*>(nullptr), H);
                             } else {
                               unit_products(B, G, H, cell, static_cast<const T*>(nullptr), 0, h_in, P, g, ldp,
                                             scratch.data(), GH, u0, u1);
                               gru_pointwise(B, n, g + u0, ldp, scratch.data() + u0, GH,
                                             cell.b_hh ? cell.b_hh + u0 : nullptr, h_in + u0, P, h_out + u0, P,
                                             static_cast<T*>(nullptr), static_cast<T*>(nullptr), H);
                             }
                             T* y = layer_out + offsets[t] * ldo + d * P + u0;
                             for (index_t r = 0; r < B; ++r) std::copy_n(h_out + r * P + u0, n, y + r * ldo);
                           });
      } else {
        for (index_t step = 0; step < T_steps; ++step) {
          const index_t t = d == 0 ? step : T_steps - 1 - step;
          const index_t nb = batch_sizes[t];
          if (nb == 0) continue;
          T* gates = proj.data() + offsets[t] * ldp + d * GH;  // [nb, G·H] ld ldp
          // Rows [r0, r1) of the step; every row is independent, so large steps split by rows.
          auto step_rows = [&](index_t r0, index_t r1) {
            const index_t n = r1 - r0;
            if (s.lstm)
              lstm_step(n, H, cells[d], h.data() + r0 * P, P, c.data() + r0 * H, H, gates + r0 * ldp, ldp,
                        h.data() + r0 * P, P, c.data() + r0 * H, H, scratch.data() + r0 * H);
            else
              gru_step(n, H, cells[d], h.data() + r0 * P, P, gates + r0 * ldp, ldp, scratch.data() + r0 * GH,
                       h.data() + r0 * P, P);
          };
          if (unit_split(nb, H, 0, cells[d], G)) {  // split by hidden units: h' goes to h_new first
            const bool proj = cells[d].projected;
            if (s.lstm)
              lstm_step_units(nb, H, cells[d], static_cast<const T*>(nullptr), 0, h.data(), P, c.data(), H, gates, ldp,
                              proj ? h.data() : h_new.data(), P, scratch.data());
            else
              gru_step_units(nb, H, cells[d], static_cast<const T*>(nullptr), 0, h.data(), P, gates, ldp,
                             scratch.data(), h_new.data(), P);
            if (!proj) std::copy_n(h_new.data(), nb * P, h.data());
          } else {
            for_rows(nb, double(nb) * double(GH) * double(P), step_rows);
          }
          // This step's output: the running rows' new h, into this direction's half of the layer output.
          T* y = layer_out + offsets[t] * ldo + d * P;
          for (index_t r = 0; r < nb; ++r) std::copy_n(h.data() + r * P, P, y + r * ldo);
        }
      }
      for (index_t r = 0; r < B; ++r) {
        std::copy_n(h.data() + r * P, P, h_n + (k * B + order[r]) * P);
        if (s.lstm) std::copy_n(c.data() + r * H, H, c_n + (k * B + order[r]) * H);
      }
    }
    layer_in = layer_out;
    in_size = D * P;
  }

  // Scatter back to [T, B, D·P], zero where a sequence has ended.
  if (!plain) pk.unpack(layer_in, B, D * P, out);
}

}  // namespace LSTMKIT_ISA
}  // namespace lstmkit
