// The sequence driver: every forward of a stacked, optionally bidirectional RNN — plain LSTM/GRU
// (cells/plain.h), the variant cell (cells/variant.h), int8 and bf16 weights (quant/quant_rnn.h), for
// inference or, with a tape, for training — is run_sequence over a cell adapter: haste's Run over a
// cell's Iterate. The same function as lstmkit/ref/rnn.py's forward (inter-layer dropout's masks an input,
// SequenceArgs::dropout), with torch's packed-sequence semantics for per-sequence lengths.
//
// How it runs:
//  * Sequences are sorted by length (longest first, stable), so at step t the sequences still running
//    are a prefix of the batch, batch_sizes[t] rows. Every layer works in that packed layout (as
//    torch's PackedSequence does): rows offsets[t] .. offsets[t] + batch_sizes[t] hold step t, and
//    N = Σ lengths rows in all. Work therefore follows the real steps; padding is never computed.
//  * Per layer and direction, the input projection of all steps is one GEMM over N rows.
//  * Per step, the cell's recurrent product over the running rows is fused with its gates and state
//    update. A finished sequence simply drops out of the prefix: its state stays frozen (forward
//    direction), and the reverse direction picks it up at step lengths[b] − 1 from the initial state,
//    because it only enters the prefix there.
//  * At the end, the packed output is scattered back to (T, B, D·P), zeros past each sequence's end,
//    and the final states back to the caller's batch order.
//
// The schedule (sequence/schedule.h), chosen here for every cell:
//  * row split: a batch of at least kSplitRows rows per thread (batch_split) runs the whole time
//    loop split by rows over the pool in equal shares (row_shares), each thread computing its rows' input
//    projection per step too; rows never interact, so the steps need no synchronisation.
//  * lockstep pair: a small batch with every row running every step, when the cell can split its step
//    by hidden units (lockstep_units), runs on two threads that each own half of the units and meet
//    once per step (units_through_time): B=1 H=128 T=100 plain LSTM 0.27 ms against 0.42 on one thread.
//  * otherwise step by step on the calling thread; a step may still split by units over the pool
//    (pool_step) or by rows (for_rows, above the cell's row_macs threshold).
// Every schedule computes each value with the same operations, so the bits do not depend on the
// thread count; one_row tells a cell whether the rows it gets are the whole product's only row (the
// GEMM's one-row kernel sums in another order).
//
// A cell adapter (one layer and direction, state rows packed; PlainCell is the reference) gives:
//   Local                   per-thread scratch of a step (the quantised rows; NoLocal for the float cells)
//   kUnitWidth              the granule of the unit split (a register panel)
//   kept_gates()            [N, G·H] where the cell keeps every row's gates itself (a tape), or null
//   project(N, in, ld_in, g, ldg)                          input projection of all N packed rows
//   project_rows(q0, n, in, ld_in, g, ldg, one_row, local) the same for rows q0.., on this thread
//   step(r0, n, q0, g, ldg, h, c, one_row, local)          state rows [r0, r0 + n) through a step
//   row_macs(nb)            a step's work for for_rows (0: a step always runs on the calling thread)
//   lockstep_units(B), step_units(q0, B, u0, u1, g, ldg, h_in, h_out, c, local)   the lockstep pair
//   pool_step(nb), step_pool(q0, nb, g, ldg, h, c)         one step split by units over the pool
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "cells/plain.h"
#include "core/packed_batch.h"
#include "sequence/schedule.h"

namespace lstmkit {
namespace LSTMKIT_ISA {

// The arrays of one sequence call (caller-owned, used only during the call; outputs must not alias inputs).
//   x: [T, B, I]; h0: [L·D, B, P]; c0: [L·D, B, H] (LSTM, else null); lengths: [B] in [0, T] or null
//   out: [T, B, D·P], zero past each sequence's end; h_n: [L·D, B, P]; c_n: [L·D, B, H] (LSTM). out and
//   h_n may be null (not wanted).
//   layer_inputs: a tape's [L] buffers [T·B, D·P] where layer l ≥ 1 keeps its packed input (the output
//   of layer l − 1 is written there), or null.
//   dropout: [L − 1] inter-layer dropout masks [T, B, D·P] (scaled by 1/(1 − p)): layer l's output times
//   mask l is what layer l + 1 reads (and what a tape keeps), or null for none.
template <typename T>
struct SequenceArgs {
  const T* x = nullptr;
  const T* h0 = nullptr;
  const T* c0 = nullptr;
  const int64_t* lengths = nullptr;
  T* out = nullptr;
  T* h_n = nullptr;
  T* c_n = nullptr;
  T* const* layer_inputs = nullptr;
  const T* const* dropout = nullptr;
};

// out[q, j] *= mask[t, b, j] for every packed row q (step t, sequence b) and j < width: mask in the
// caller's layout [T, B, width], packed into `scratch` first unless the layout is the caller's own (plain).
template <typename T>
void multiply_packed(const PackedBatch& pk, bool plain, index_t B, index_t width, const T* mask, T* out,
                     std::vector<T>& scratch) {
  if (!plain) {
    scratch.resize(static_cast<size_t>(pk.N * width));
    pk.pack(mask, B, width, scratch.data());
    mask = scratch.data();
  }
  for (index_t i = 0, n = pk.N * width; i < n; ++i) out[i] *= mask[i];
}

// One direction's time loop over the packed batch, on the schedule chosen for it (see the top).
//   cell: the adapter; h [B, P], c [B, H] the state in packed order (in: initial, out: final)
//   gates_at(q0, r0): where the gate pre-activations of packed row q0 (state row r0) are, and ldg
//   emit(q0, r0, n, j0, nj): copies columns [j0, j0 + nj) of state rows [r0, r0 + n) to the layer output
template <typename T, typename Cell, typename GatesAt, typename Emit>
void run_direction(Cell& cell, const PackedBatch& pk, bool reverse, bool split, index_t H, index_t P, const T* layer_in,
                   index_t in_size, index_t ldg, T* h, T* c, T* h_spare, GatesAt&& gates_at, Emit&& emit) {
  using Local = typename Cell::Local;
  const index_t steps = static_cast<index_t>(pk.batch_sizes.size()), B = static_cast<index_t>(pk.order.size());
  auto time = [&](index_t step) { return reverse ? steps - 1 - step : step; };
  if (split) {
    row_shares(B, [&](index_t r0, index_t r1) {
      Local local;
      for (index_t step = 0; step < steps; ++step) {
        const index_t t = time(step), n = std::min(pk.batch_sizes[t], r1) - r0;
        if (n <= 0) continue;
        const index_t q0 = pk.offsets[t] + r0;
        T* g = gates_at(q0, r0);
        cell.project_rows(q0, n, layer_in, in_size, g, ldg, pk.N == 1, local);
        cell.step(r0, n, q0, g, ldg, h, c, pk.batch_sizes[t] == 1, local);
        emit(q0, r0, n, index_t(0), P);
      }
    });
  } else if (pk.N == steps * B && cell.lockstep_units(B)) {
    Local locals[2];
    units_through_time<Cell::kUnitWidth>(
        steps, H, h, h_spare, B * P, [&](index_t step, index_t u0, index_t u1, const T* h_in, T* h_out) {
          const index_t q0 = pk.offsets[time(step)];
          cell.step_units(q0, B, u0, u1, gates_at(q0, 0), ldg, h_in, h_out, c, locals[u0 == 0 ? 0 : 1]);
          emit(q0, index_t(0), B, u0, u1 - u0, h_out);
        });
  } else {
    Local local;
    for (index_t step = 0; step < steps; ++step) {
      const index_t t = time(step), nb = pk.batch_sizes[t], q0 = pk.offsets[t];
      if (nb == 0) continue;
      T* g = gates_at(q0, 0);
      if (cell.pool_step(nb)) {
        cell.step_pool(q0, nb, g, ldg, h, c);
      } else {
        for_rows(nb, cell.row_macs(nb), [&](index_t r0, index_t r1) {
          Local own;  // for_rows runs only the cells whose Local is empty on several threads (row_macs 0 else)
          cell.step(r0, r1 - r0, q0 + r0, g + r0 * ldg, ldg, h, c, true, r1 - r0 == nb ? local : own);
        });
      }
      emit(q0, index_t(0), nb, index_t(0), P);
    }
  }
}

// Sequence forward of L layers × D directions: make_cell(layer, direction, input size, packed batch)
// returns the adapter of that layer and direction (a prvalue: adapters need not be movable). With
// keeps_gates the cells keep their gates themselves (kept_gates(), a training tape) and no projection
// buffer is made. Throws std::invalid_argument for a length outside [0, T].
template <typename T, typename MakeCell>
void run_sequence(const RnnShape& s, const SequenceArgs<T>& a, bool keeps_gates, MakeCell&& make_cell) {
  const index_t B = s.B, H = s.H, P = s.P, D = s.D, G = s.gates(), GH = G * H;
  const PackedBatch pk(s.T, B, a.lengths);
  const index_t N = pk.N;
  // Without lengths the packed layout is x's and out's own ([T·B, width], order the identity): layer 0
  // reads x in place and the last layer writes out directly, no copies.
  const bool plain = a.lengths == nullptr;
  const bool split = batch_split(B, H, G, P);
  std::vector<T> x_packed(plain ? 0 : static_cast<size_t>(N * s.I));
  if (!plain) pk.pack(a.x, B, s.I, x_packed.data());
  const T* layer_in = plain ? a.x : x_packed.data();
  index_t in_size = s.I;
  // [N, D·G·H] a layer's input projections, written in full per layer; not needed when the row split
  // projects each step's rows (into step_gates [B, G·H]) or the cells keep their gates.
  RawBuffer<T> proj(split || keeps_gates ? 0 : N * D * GH);
  std::vector<T> step_gates(split && !keeps_gates ? static_cast<size_t>(B * GH) : 0);
  std::vector<T> outs[2];  // [N, D·P] layer outputs, alternating between layers (the last may be out itself)
  std::vector<T> h(static_cast<size_t>(B * P)), c(s.lstm ? static_cast<size_t>(B * H) : 0);  // state, packed order
  std::vector<T> h_spare(static_cast<size_t>(B * P));  // the lockstep pair's other h
  std::vector<T> mask_packed;                          // a dropout mask in the packed layout (with lengths)

  for (index_t layer = 0; layer < s.L; ++layer) {
    const index_t ldo = D * P;
    const bool last = layer + 1 == s.L;
    T* layer_out;  // [N, D·P]; every row is written below
    if (last && plain && a.out) {
      layer_out = a.out;
    } else if (!last && a.layer_inputs) {
      layer_out = a.layer_inputs[layer + 1];  // the next layer's input, kept for the backward
    } else {
      outs[layer % 2].resize(static_cast<size_t>(N * ldo));
      layer_out = outs[layer % 2].data();
    }
    for (index_t d = 0; d < D; ++d) {
      const index_t k = layer * D + d;
      auto cell = make_cell(layer, d, in_size, pk);
      T* kept = cell.kept_gates();
      const index_t ldg = kept || split ? GH : D * GH;
      auto gates_at = [&](index_t q0, index_t r0) {
        return kept ? kept + q0 * GH : split ? step_gates.data() + r0 * GH : proj.data() + q0 * ldg + d * GH;
      };
      if (!split) cell.project(N, layer_in, in_size, gates_at(0, 0), ldg);
      for (index_t r = 0; r < B; ++r) {
        std::copy_n(a.h0 + (k * B + pk.order[r]) * P, P, h.data() + r * P);
        if (s.lstm) std::copy_n(a.c0 + (k * B + pk.order[r]) * H, H, c.data() + r * H);
      }
      // Columns [j0, j0 + nj) of rows [r0, r0 + n) of src (the state, or the lockstep pair's h_out) into
      // this direction's half of the layer output.
      auto emit = [&](index_t q0, index_t r0, index_t n, index_t j0, index_t nj, const T* src = nullptr) {
        const T* from = (src ? src : h.data()) + r0 * P + j0;
        T* y = layer_out + q0 * ldo + d * P + j0;
        for (index_t r = 0; r < n; ++r) std::copy_n(from + r * P, nj, y + r * ldo);
      };
      run_direction<T>(cell, pk, d == 1, split, H, P, layer_in, in_size, ldg, h.data(), c.data(), h_spare.data(),
                       gates_at, emit);
      if (a.h_n)
        for (index_t r = 0; r < B; ++r) {
          std::copy_n(h.data() + r * P, P, a.h_n + (k * B + pk.order[r]) * P);
          if (s.lstm) std::copy_n(c.data() + r * H, H, a.c_n + (k * B + pk.order[r]) * H);
        }
    }
    if (!last && a.dropout) multiply_packed(pk, plain, B, ldo, a.dropout[layer], layer_out, mask_packed);
    layer_in = layer_out;
    in_size = D * P;
  }
  if (a.out && !plain) pk.unpack(layer_in, B, D * P, a.out);  // zero where a sequence has ended
}

// Sequence forward of the plain LSTM/GRU (lstmkit._engine.forward).
//   weights: [L·D] one CellWeights per layer and direction, index layer·D + direction; layer 0 has
//            In = I, the others In = D·P; the other arrays as SequenceArgs.
template <typename T>
void rnn_forward(const RnnShape& s, const T* x, const CellWeights<T>* weights, const T* h0, const T* c0,
                 const int64_t* lengths, const T* const* dropout, T* out, T* h_n, T* c_n) {
  SequenceArgs<T> a;
  a.x = x, a.h0 = h0, a.c0 = c0, a.lengths = lengths, a.out = out, a.h_n = h_n, a.c_n = c_n;
  a.dropout = dropout;
  run_sequence(s, a, false, [&](index_t layer, index_t d, index_t in, const PackedBatch&) {
    return PlainCell<T>(s.lstm, in, s.B, s.H, s.P, weights[layer * s.D + d]);
  });
}

}  // namespace LSTMKIT_ISA
}  // namespace lstmkit
