// Sequence forward of the LSTM/GRU variants (cells/variant.h's VariantCell): inference, and with a
// tape (VariantTape, in the caller's training workspace) the training forward that keeps per packed row
// what sequence/variant_backward.h needs.
#pragma once

#include <vector>

#include "cells/variant.h"
#include "sequence/forward.h"

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

// Sequence forward of the variants: run_sequence (sequence/forward.h) over the variant cell; arguments
// as rnn_forward plus
//   o: the options; extra: [L·D] the variant parameters; masks: [L·D] sampled masks (fields null:
//   evaluation); tape: null for inference, else filled for sequence/variant_backward.h (out, h_n, c_n may
//   then be null).
template <typename T>
void variant_forward_impl(const RnnShape& s, const VariantOptions& o, const T* x, const CellWeights<T>* weights,
                          const VariantWeights<T>* extra, const VariantMasks<T>* masks, const T* h0, const T* c0,
                          const int64_t* lengths, const T* const* dropout, T* out, T* h_n, T* c_n,
                          VariantTape<T>* tape) {
  SequenceArgs<T> a;
  a.x = x, a.h0 = h0, a.c0 = c0, a.lengths = lengths, a.out = out, a.h_n = h_n, a.c_n = c_n;
  a.dropout = dropout;
  a.layer_inputs = tape ? tape->inputs.data() : nullptr;
  run_sequence(s, a, false, [&](index_t layer, index_t d, index_t in, const PackedBatch& pk) {
    const index_t k = layer * s.D + d;
    return VariantStepper<T>(s, o, in, weights[k], extra[k], pk, masks[k], tape ? &tape->rows[k] : nullptr);
  });
}

template <typename T>
void variant_forward(const RnnShape& s, const VariantOptions& o, const T* x, const CellWeights<T>* weights,
                     const VariantWeights<T>* extra, const VariantMasks<T>* masks, const T* h0, const T* c0,
                     const int64_t* lengths, const T* const* dropout, T* out, T* h_n, T* c_n) {
  variant_forward_impl<T>(s, o, x, weights, extra, masks, h0, c0, lengths, dropout, out, h_n, c_n, nullptr);
}

// variant_forward plus the tape in ws: [T·B·variant_workspace_row(s, o, masks[0].recurrent given)].
template <typename T>
void variant_train_forward(const RnnShape& s, const VariantOptions& o, const T* x, const CellWeights<T>* weights,
                           const VariantWeights<T>* extra, const VariantMasks<T>* masks, const T* h0, const T* c0,
                           const int64_t* lengths, const T* const* dropout, T* out, T* h_n, T* c_n, T* ws) {
  const PackedBatch pk(s.T, s.B, lengths);
  VariantTape<T> tape(s, o, pk, masks, ws, true);
  variant_forward_impl<T>(s, o, x, weights, extra, masks, h0, c0, lengths, dropout, out, h_n, c_n, &tape);
}

}  // namespace LSTMKIT_ISA
}  // namespace lstmkit
