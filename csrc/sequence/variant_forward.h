// Sequence forward of the LSTM/GRU variants (cells/variant.h's VariantCell): inference, and with a
// tape (VariantTape, in the caller's training workspace) the training forward that keeps per packed row
// what sequence/variant_backward.h needs.
#pragma once

#include <vector>

#include "cells/variant.h"
#include "sequence/schedule.h"

namespace lstmkit {
namespace LSTMKIT_ISA {

// What the backward needs from a variant forward, as views into a training workspace ws of
// T·B·variant_workspace_row values: per layer·direction k its tape fields (T·B rows each, in
// VariantField order), then per layer above the first its packed input [T·B, D·P]. Rows past the
// packed N are zeros (zeroed by the training forward, so the workspace is fully defined).
template <typename T>
struct VariantTape {
  std::vector<VariantRows<T>> rows;  // [L·D]; masks read in place from the call's (PackedMasks)
  std::vector<T*> inputs;            // [L]: views into ws for the layers above the first (layer 0 reads x)

  // ws is written only when `fill` (the training forward); the backward reads it through these views.
  VariantTape(const RnnShape& s, const VariantOptions& o, const PackedBatch& pk, const VariantMasks<T>* masks, T* ws,
              bool fill)
      : rows(static_cast<size_t>(s.L * s.D)), inputs(static_cast<size_t>(s.L), nullptr) {
    const index_t rows_max = s.T * s.B, LD = s.L * s.D;
    const auto widths = variant_row_widths(s, o, true, masks[0].recurrent != nullptr);
    T* at = ws;
    for (index_t k = 0; k < LD; ++k) {
      rows[k].masks = PackedMasks<T>(pk, s.B, s.H, s.P, masks[k]);
      const index_t used = rows[k].place(widths, rows_max, at);
      if (fill) rows[k].zero_tail(widths, rows_max, pk.N, at);
      at += used;
    }
    for (index_t layer = 1; layer < s.L; ++layer) {
      inputs[layer] = at;
      if (fill) std::fill(at + pk.N * s.D * s.P, at + rows_max * s.D * s.P, T(0));
      at += rows_max * s.D * s.P;
    }
  }
};

// Sequence forward of the variants; arguments as rnn_forward (sequence/forward.h) plus
//   o: the options; extra: [L·D] the variant parameters; masks: [L·D] sampled masks (fields null:
//   evaluation); tape: null for inference, else filled for sequence/variant_backward.h (out, h_n, c_n may
//   then be null).
template <typename T>
void variant_forward_impl(const RnnShape& s, const VariantOptions& o, const T* x, const CellWeights<T>* weights,
                          const VariantWeights<T>* extra, const VariantMasks<T>* masks, const T* h0, const T* c0,
                          const int64_t* lengths, T* out, T* h_n, T* c_n, VariantTape<T>* tape) {
  const index_t T_steps = s.T, B = s.B, H = s.H, P = s.P, D = s.D, G = s.gates(), GH = G * H;
  const PackedBatch pk(T_steps, B, lengths);
  const index_t N = pk.N;
  const bool training = tape != nullptr;
  // As rnn_forward: without lengths the packed layout is x's and out's own (no copies), and a large
  // batch runs each thread's rows through the time loop computing each step's input projection there.
  const bool plain = lengths == nullptr;
  const bool split = batch_split(B, H, G, P);

  std::vector<T> x_packed(plain ? 0 : static_cast<size_t>(N * s.I));
  if (!plain) pk.pack(x, B, s.I, x_packed.data());
  const T* layer_in = plain ? x : x_packed.data();
  index_t in_size = s.I;
  RawBuffer<T> proj(split ? 0 : N * D * GH);  // [N, D·G·H] a layer's input projections, written in full (project)
  std::vector<T> step_gates(split ? static_cast<size_t>(B * GH) : 0);  // [B, G·H] one step's, split by rows
  std::vector<T> outs[2];  // [N, D·P] layer outputs, alternating (the last may be out, a tape's input its own)
  std::vector<T> h(static_cast<size_t>(B * P)), c(s.lstm ? static_cast<size_t>(B * H) : 0);
  std::vector<T> s_scr(static_cast<size_t>(B * GH)), ht(static_cast<size_t>(B * P));
  VariantRows<T> scratch_rows;

  for (index_t layer = 0; layer < s.L; ++layer) {
    const index_t ldp = D * GH, ldo = D * P;
    const bool last = layer + 1 == s.L;
    T* layer_out;  // every row is written below, so nothing needs zeroing
    if (last && plain && out) {
      layer_out = out;
    } else if (!last && training) {
      layer_out = tape->inputs[layer + 1];  // the next layer's input, kept for the backward
    } else {
      outs[layer % 2].resize(static_cast<size_t>(N * D * P));
      layer_out = outs[layer % 2].data();
    }
    for (index_t d = 0; d < D; ++d) {
      const index_t k = layer * D + d;
      const VariantCell<T> cell(s, o, in_size, weights[k], extra[k]);
      VariantRows<T>& rw = training ? tape->rows[k] : scratch_rows;
      if (!training) {
        rw.masks = PackedMasks<T>(pk, B, H, P, masks[k]);
        cell.scratch_rows(rw, B);
      }
      if (!split) cell.project(N, layer_in, in_size, proj.data() + d * GH, ldp, rw, training);
      for (index_t r = 0; r < B; ++r) {
        std::copy_n(h0 + (k * B + pk.order[r]) * P, P, h.data() + r * P);
        if (s.lstm) std::copy_n(c0 + (k * B + pk.order[r]) * H, H, c.data() + r * H);
      }
      // Step t for rows [r0, r0 + n) (all running rows, or one thread's share of a large batch).
      auto step_rows = [&](index_t t, index_t r0, index_t n) {
        const index_t q0 = pk.offsets[t] + r0;
        T* gates = split ? step_gates.data() + r0 * GH : proj.data() + q0 * ldp + d * GH;
        const index_t ldg = split ? GH : ldp;
        if (split) cell.project_rows(q0, q0 + n, layer_in, in_size, gates, ldg, rw, training);
        cell.step(r0, n, q0, gates, ldg, h.data(), c.data(), rw, training, s_scr.data(), ht.data());
        T* y = layer_out + q0 * ldo + d * P;
        for (index_t r = 0; r < n; ++r) std::copy_n(h.data() + (r0 + r) * P, P, y + r * ldo);
      };
      rows_through_time<T>(B, pk.batch_sizes, d == 1, step_rows, split);
      if (h_n)
        for (index_t r = 0; r < B; ++r) {
          std::copy_n(h.data() + r * P, P, h_n + (k * B + pk.order[r]) * P);
          if (s.lstm) std::copy_n(c.data() + r * H, H, c_n + (k * B + pk.order[r]) * H);
        }
    }
    layer_in = layer_out;
    in_size = D * P;
  }
  if (out && !plain) pk.unpack(layer_in, B, D * P, out);
}

template <typename T>
void variant_forward(const RnnShape& s, const VariantOptions& o, const T* x, const CellWeights<T>* weights,
                     const VariantWeights<T>* extra, const VariantMasks<T>* masks, const T* h0, const T* c0,
                     const int64_t* lengths, T* out, T* h_n, T* c_n) {
  variant_forward_impl<T>(s, o, x, weights, extra, masks, h0, c0, lengths, out, h_n, c_n, nullptr);
}

// variant_forward plus the tape in ws: [T·B·variant_workspace_row(s, o, masks[0].recurrent given)].
template <typename T>
void variant_train_forward(const RnnShape& s, const VariantOptions& o, const T* x, const CellWeights<T>* weights,
                           const VariantWeights<T>* extra, const VariantMasks<T>* masks, const T* h0, const T* c0,
                           const int64_t* lengths, T* out, T* h_n, T* c_n, T* ws) {
  const PackedBatch pk(s.T, s.B, lengths);
  VariantTape<T> tape(s, o, pk, masks, ws, true);
  variant_forward_impl<T>(s, o, x, weights, extra, masks, h0, c0, lengths, out, h_n, c_n, &tape);
}

}  // namespace LSTMKIT_ISA
}  // namespace lstmkit
