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
//    state update (cells/plain.h). A finished sequence simply drops out of the prefix: its state stays frozen
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

#include "cells/plain.h"
#include "sequence/schedule.h"

namespace lstmkit {
namespace LSTMKIT_ISA {

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
