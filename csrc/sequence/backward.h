// Training of the whole stacked (bi)directional RNN: a forward that keeps what the backward needs in a
// caller-owned workspace (rnn_train_forward: run_sequence with the plain cells' tape), and the one
// backpropagation-through-time driver, run_backward over a backward cell adapter — plain LSTM/GRU
// (cells/plain_backward.h, rnn_backward below) and the variant cell (cells/variant_backward.h,
// sequence/variant_backward.h). The same functions as lstmkit/ref/rnn.py's forward and backward, with the
// inter-layer dropout masks an input of both, and torch's packed-sequence semantics for lengths.
//
// How it runs:
//  * The workspace replaces recomputing the forward in the backward: a training step is one forward and
//    one backward, as in torch's autograd. Both run in the packed layout of sequence/forward.h
//    (N = Σ lengths rows); rows past a sequence's end never enter it, which is exactly the reference's
//    mask: their state gradient passes through unchanged, and dx there is zero.
//  * The layers from the last; per direction the state gradient is gathered from d_h_n / d_c_n, walked
//    back through the steps in the opposite order of the forward (run_direction_backward), and
//    scattered to d_h0 / d_c0. Only the product through the recurrent weights (dh_prev = dG · W_hh,
//    fused with the gate derivatives) is per step.
//  * After a direction's loop, the cell's parameter gradients are one product or column sum each over
//    all N rows (dW = dGᵀ · inputs), and the input gradient one GEMM (d_in += dG · W_ih), summed over
//    the directions into the gradient of the layer's input (dx for layer 0).
//
// The schedule (sequence/schedule.h), chosen in run_direction_backward for every cell:
//  * row split: a batch of at least kSplitRows rows per thread (batch_split) runs the whole loop
//    split by rows over the pool in equal shares (row_shares), each thread walking all steps for its own
//    rows (rows never interact: no synchronisation).
//  * lockstep pair: a small batch, when the cell can split its step by hidden units (lockstep_units),
//    runs on two threads that each own half of the units and meet once per step: a thread runs
//    "dh_prev of the later step, then the pointwise part of this one" on its own units, and only the
//    product reads all of the gate gradients (the later step's, finished by both before this step).
//  * otherwise step by step on the calling thread; a step may still split by rows (for_rows, above the
//    cell's row_macs), and a cell may split a large step's product over the pool itself.
// Every schedule computes each value with the same operations, so the bits do not depend on the
// thread count; one_row tells a cell whether the rows it gets are the whole step's only row.
//
// A backward cell adapter (one layer and direction, state-gradient rows in packed order; the cell owns
// its gradient buffers over all N packed rows and its parameter gradients) gives:
//   kUnitWidth                          the unit split's granule (a register panel; H is a multiple of it)
//   step(q0, r0, n, one_row, dh, dc)    state rows [r0, r0 + n) (packed rows q0..) back through a step:
//                                       dh' += the output's gradient, gate gradients, dh ← dh_prev, dc ← dc_prev
//   row_macs(nb)                        a step's work for for_rows (0: a step's rows stay on one thread)
//   lockstep_units(B)                   whether a pass of B rows runs on the lockstep pair, and then
//     product_units(q0, nb, u0, u1, one_row, dh)  units [u0, u1) of dh_prev, the product through W_hh of
//                                       the step before in the backward's order (its gate gradients done)
//     step_units(q0, nb, u0, u1, dh, dc)          units [u0, u1) of a step's pointwise part (the
//                                       output's gradient, gate gradients, dc ← dc_prev), its units only
//   finish(N, layer_in, In, d_in)       after the loop: the parameter gradients (overwritten) and the
//                                       input's gradient added into d_in [N, In]
#pragma once

#include <vector>

#include "cells/plain_backward.h"
#include "sequence/forward.h"

namespace lstmkit {
namespace LSTMKIT_ISA {

// Where each part of the training workspace lies (sizes: common.h's train_workspace_row). Every part is
// [rows, width] row-major with rows = T·B (the packed layout uses the first N of them):
//   per (layer, direction) k = layer·D + d, one block after another:
//     act    [rows, G·H]  LSTM (i, f, g, o), GRU (r, z, n), after σ / tanh
//     aux    [rows, H]    LSTM tanh(c'), GRU W_hn h + b_hn
//     h_prev [rows, P]    h before the step
//     c_prev [rows, H]    LSTM only: c before the step
//     m      [rows, H]    LSTM with projection only: o ⊙ tanh(c'), the projection's input
//   then per layer l ≥ 1: input [rows, D·P], the packed output of layer l − 1.
template <typename T>
struct TrainWorkspace {
  T* base;
  index_t rows, GH, H, P, D, L, cell;
  bool lstm, projected;

  TrainWorkspace(const RnnShape& s, T* ws)
      : base(ws),
        rows(s.T * s.B),
        GH(s.gates() * s.H),
        H(s.H),
        P(s.P),
        D(s.D),
        L(s.L),
        cell(s.gates() * s.H + s.H + s.P + (s.lstm ? s.H : 0) + (s.P != s.H ? s.H : 0)),
        lstm(s.lstm),
        projected(s.P != s.H) {}

  T* act(index_t k) const { return base + k * rows * cell; }
  T* aux(index_t k) const { return act(k) + rows * GH; }
  T* h_prev(index_t k) const { return aux(k) + rows * H; }
  T* c_prev(index_t k) const { return h_prev(k) + rows * P; }
  T* m(index_t k) const { return c_prev(k) + (lstm ? rows * H : 0); }
  T* input(index_t layer) const { return base + L * D * rows * cell + (layer - 1) * rows * D * P; }  // layer ≥ 1

  // Zeroes rows [n, rows) of every part: the packed layout uses only n of them, and the workspace is
  // then fully defined (the same bits from the same call, as torch's op checks expect).
  void clear_unused(index_t n) const {
    auto clear = [&](T* part, index_t width) { std::fill(part + n * width, part + rows * width, T(0)); };
    for (index_t k = 0; k < L * D; ++k) {
      clear(act(k), GH), clear(aux(k), H), clear(h_prev(k), P);
      if (lstm) clear(c_prev(k), H);
      if (projected) clear(m(k), H);
    }
    for (index_t layer = 1; layer < L; ++layer) clear(input(layer), D * P);
  }
};

// The tape of layer·direction k in the workspace.
template <typename T>
PlainTape<T> tape_of(const TrainWorkspace<T>& ws, index_t k) {
  return PlainTape<T>{ws.act(k), ws.aux(k), ws.h_prev(k), ws.c_prev(k), ws.m(k)};
}

// A training forward with the plain tape, over the cells make_cell(k, in, tape) gives (k = layer·D + direction,
// in the layer's input width): run_sequence keeping each layer's input and every step's tape in the workspace.
//   x, h0, c0, lengths, out, h_n, c_n: as rnn_forward; ws: [T·B·train_workspace_row(s)] out, see TrainWorkspace
template <typename T, typename MakeCell>
void train_sequence(const RnnShape& s, const T* x, const T* h0, const T* c0, const int64_t* lengths,
                    const T* const* dropout, T* out, T* h_n, T* c_n, T* ws_base, MakeCell&& make_cell) {
  const TrainWorkspace<T> ws(s, ws_base);
  ws.clear_unused(PackedBatch(s.T, s.B, lengths).N);
  std::vector<T*> inputs(static_cast<size_t>(s.L), nullptr);
  for (index_t layer = 1; layer < s.L; ++layer) inputs[layer] = ws.input(layer);
  SequenceArgs<T> a;
  a.x = x, a.h0 = h0, a.c0 = c0, a.lengths = lengths, a.out = out, a.h_n = h_n, a.c_n = c_n;
  a.layer_inputs = inputs.data();
  a.dropout = dropout;
  run_sequence(s, a, true, [&](index_t layer, index_t d, index_t in, const PackedBatch&) {
    const index_t k = layer * s.D + d;
    return make_cell(k, in, tape_of(ws, k));
  });
}

// Training forward: rnn_forward's results plus the workspace (run_sequence with the plain cells' tape).
//   x, weights, h0, c0, lengths, out, h_n, c_n: as rnn_forward
//   ws: [T·B·train_workspace_row(s)] out, see TrainWorkspace
template <typename T>
void rnn_train_forward(const RnnShape& s, const T* x, const CellWeights<T>* weights, const T* h0, const T* c0,
                       const int64_t* lengths, const T* const* dropout, T* out, T* h_n, T* c_n, T* ws_base) {
  train_sequence(s, x, h0, c0, lengths, dropout, out, h_n, c_n, ws_base, [&](index_t k, index_t in, PlainTape<T> tape) {
    return PlainCell<T>(s.lstm, in, s.B, s.H, s.P, weights[k], tape);
  });
}

// The gradient of layer `layer`'s packed input [N, In] (size = N·In values), zeroed for the directions
// to add into: dx itself for layer 0 when the packed layout is x's own (plain: no lengths), else one of
// two buffers that alternate between layers (the layer above's is still being read).
template <typename T>
T* layer_input_grad(index_t layer, bool plain, T* dx, std::vector<T> (&buffers)[2], index_t size) {
  T* grad = dx;
  if (layer != 0 || !plain) {
    buffers[layer % 2].resize(static_cast<size_t>(size));
    grad = buffers[layer % 2].data();
  }
  std::fill(grad, grad + size, T(0));
  return grad;
}

// One direction's pass backwards through time (the mirror of forward.h's run_direction), on the
// schedule chosen for it (see the top).
//   cell: the adapter; reverse: the forward ran this direction from the last step (so the backward
//   walks from the first); split: batch_split() for the call; dh [B, P], dc [B, H]: the state gradient
//   in packed order (in: of the final state, out: of the initial state)
template <typename T, typename Cell>
void run_direction_backward(Cell& cell, const PackedBatch& pk, bool reverse, bool split, index_t H, T* dh, T* dc) {
  const std::vector<index_t>&sizes = pk.batch_sizes, &offsets = pk.offsets;
  const index_t steps = static_cast<index_t>(sizes.size()), B = static_cast<index_t>(pk.order.size());
  auto time = [&](index_t i) { return reverse ? i : steps - 1 - i; };  // the backward's i-th step
  if (split) {
    rows_through_time(B, sizes, !reverse, [&](index_t t, index_t r0, index_t n) {
      cell.step(offsets[t] + r0, r0, n, sizes[t] == 1, dh, dc);
    });
  } else if (cell.lockstep_units(B)) {
    constexpr index_t NR = Cell::kUnitWidth;
    const index_t half = H / NR / 2 * NR;
    std::vector<index_t> order;  // the steps that run, in the backward's order
    for (index_t i = 0; i < steps; ++i)
      if (sizes[time(i)] > 0) order.push_back(time(i));
    const index_t n = static_cast<index_t>(order.size());
    lockstep_pair(
        n + 1,
        [&](index_t i, int part0, int part1) {
          const index_t u0 = part0 == 0 ? 0 : half, u1 = part1 == 2 ? H : half;
          if (i > 0) {
            const index_t later = order[i - 1];
            cell.product_units(offsets[later], sizes[later], u0, u1, sizes[later] == 1, dh);
          }
          if (i < n) cell.step_units(offsets[order[i]], sizes[order[i]], u0, u1, dh, dc);
        },
        lockstep_key(H, B));
  } else {
    for (index_t i = 0; i < steps; ++i) {
      const index_t t = time(i), nb = sizes[t];
      if (nb == 0) continue;
      for_rows(nb, cell.row_macs(nb),
               [&](index_t r0, index_t r1) { cell.step(offsets[t] + r0, r0, r1 - r0, nb == 1, dh, dc); });
    }
  }
}

// The sequence backward over backward cells: the packed layout (x and d_out packed unless there are no
// lengths), the layers from the last, per direction the state gradient gathered from d_h_n / d_c_n, the
// direction's pass (run_direction_backward, then the cell's finish) and d_h0 / d_c0 scattered, and the
// gradient of each layer's input (dx for layer 0) summed over its directions, times the dropout mask
// between it and the layer below (dropout: as SequenceArgs, or null).
//   layer_input(layer): layer ≥ 1's packed input [N, D·P], as the training forward kept it
//   make_cell(layer, d, d_layer_out, ldo): the adapter of that layer and direction (a prvalue), where
//     d_layer_out [N, D·P] ld ldo is the gradient of the layer's packed output
//   the other arrays: as rnn_backward
template <typename T, typename LayerInput, typename MakeCell>
void run_backward(const RnnShape& s, const PackedBatch& pk, bool plain, const T* x, const T* d_out, const T* d_hn,
                  const T* d_cn, T* dx, T* d_h0, T* d_c0, const T* const* dropout, LayerInput&& layer_input,
                  MakeCell&& make_cell) {
  const index_t B = s.B, H = s.H, P = s.P, D = s.D, N = pk.N, ldo = D * P;
  const bool split = batch_split(B, H, s.gates(), P);
  std::vector<T> x_packed(plain ? 0 : static_cast<size_t>(N * s.I));
  if (!plain) pk.pack(x, B, s.I, x_packed.data());
  std::vector<T> d_out_packed(plain ? 0 : static_cast<size_t>(N * ldo));
  if (!plain) pk.pack(d_out, B, ldo, d_out_packed.data());
  const T* d_layer_out = plain ? d_out : d_out_packed.data();  // d of the current layer's output [N, D·P]
  std::vector<T> d_ins[2];  // gradients of the layers' packed inputs, alternating (layer 0's: dx when plain)
  std::vector<T> dh(static_cast<size_t>(B * P)), dc(static_cast<size_t>(B * H));  // state grads, packed order
  std::vector<T> mask_packed;  // a dropout mask in the packed layout (with lengths)
  for (index_t layer = s.L - 1; layer >= 0; --layer) {
    const index_t In = layer == 0 ? s.I : D * P;
    const T* layer_in = layer > 0 ? layer_input(layer) : plain ? x : x_packed.data();
    T* d_in = layer_input_grad(layer, plain, dx, d_ins, N * In);  // summed over the directions
    for (index_t d = 0; d < D; ++d) {
      const index_t k = layer * D + d;
      for (index_t r = 0; r < B; ++r) {
        std::copy_n(d_hn + (k * B + pk.order[r]) * P, P, dh.data() + r * P);
        if (s.lstm) std::copy_n(d_cn + (k * B + pk.order[r]) * H, H, dc.data() + r * H);
      }
      auto cell = make_cell(layer, d, d_layer_out, ldo);
      run_direction_backward<T>(cell, pk, d == 1, split, H, dh.data(), dc.data());
      cell.finish(N, layer_in, In, d_in);
      for (index_t r = 0; r < B; ++r) {
        std::copy_n(dh.data() + r * P, P, d_h0 + (k * B + pk.order[r]) * P);
        if (s.lstm) std::copy_n(dc.data() + r * H, H, d_c0 + (k * B + pk.order[r]) * H);
      }
    }
    if (layer > 0 && dropout) multiply_packed(pk, plain, B, ldo, dropout[layer - 1], d_in, mask_packed);
    d_layer_out = d_in;
  }
  if (!plain) pk.unpack(d_layer_out, B, s.I, dx);
}

// Sequence backward from the workspace of rnn_train_forward called with the same s, x, weights and
// lengths (and initial state, which the workspace holds).
//   d_out: [T, B, D·P] gradient of the output (entries past a sequence's end are ignored)
//   d_hn:  [L·D, B, P] gradient of the final h; d_cn: [L·D, B, H] of the final c (LSTM), null for GRU
//   dx:    [T, B, I] out, zero past each sequence's end
//   d_h0:  [L·D, B, P] out; d_c0: [L·D, B, H] out (LSTM), null for GRU
//   grads: [L·D] CellGrads, index layer·D + direction, every buffer overwritten
// All pointers are caller-owned and only used during the call; outputs must not alias inputs.
// BPTT from the plain tape of a train_sequence call, over the backward cells make_cell(k, In, tape, d_out, ldo,
// buffers) gives (k = layer·D + direction, In the layer's input width, d_out [N, ·] ld ldo this direction's
// columns of the layer output's gradient, buffers the gradient buffers all cells share). Arrays as rnn_backward.
template <typename T, typename MakeCell>
void backward_from_tape(const RnnShape& s, const T* x, const int64_t* lengths, const T* const* dropout,
                        const T* ws_base, const T* d_out, const T* d_hn, const T* d_cn, T* dx, T* d_h0, T* d_c0,
                        MakeCell&& make_cell) {
  const PackedBatch pk(s.T, s.B, lengths);
  const TrainWorkspace<T> ws(s, const_cast<T*>(ws_base));  // read only here
  PlainBackwardBuffers<T> buffers(s.lstm, s.P != s.H, pk.N, s.B, s.H, s.P, s.gates() * s.H);
  auto layer_input = [&](index_t layer) -> const T* { return ws.input(layer); };
  run_backward(s, pk, lengths == nullptr, x, d_out, d_hn, d_cn, dx, d_h0, d_c0, dropout, layer_input,
               [&](index_t layer, index_t d, const T* d_layer_out, index_t ldo) {
                 const index_t k = layer * s.D + d, In = layer == 0 ? s.I : s.D * s.P;
                 return make_cell(k, In, tape_of(ws, k), d_layer_out + d * s.P, ldo, buffers);
               });
}

template <typename T>
void rnn_backward(const RnnShape& s, const T* x, const CellWeights<T>* weights, const int64_t* lengths,
                  const T* const* dropout, const T* ws_base, const T* d_out, const T* d_hn, const T* d_cn, T* dx,
                  T* d_h0, T* d_c0, const CellGrads<T>* grads) {
  backward_from_tape(s, x, lengths, dropout, ws_base, d_out, d_hn, d_cn, dx, d_h0, d_c0,
                     [&](index_t k, index_t In, const PlainTape<T>& tape, const T* d_layer_out, index_t ldo,
                         PlainBackwardBuffers<T>& buffers) {
                       return PlainCellBackward<T>(s.lstm, In, s.H, s.P, weights[k], tape, grads[k], d_layer_out, ldo,
                                                   buffers);
                     });
}

}  // namespace LSTMKIT_ISA
}  // namespace lstmkit
