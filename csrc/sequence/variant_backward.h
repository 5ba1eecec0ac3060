// Backpropagation through time for the LSTM/GRU variants (cells/variant.h): the same function as
// lstmkit/ref/rnn.py's backward with variant_masks. As sequence/backward.h's rnn_backward, it reads what
// the training forward kept in the workspace (VariantTape) instead of recomputing the forward, and runs
// the one BPTT driver (run_backward) over the variant cell's backward adapter (cells/variant_backward.h).
#pragma once

#include "cells/variant_backward.h"
#include "sequence/backward.h"
#include "sequence/variant_forward.h"

namespace lstmkit {
namespace LSTMKIT_ISA {

// Sequence backward of the variants; arguments as rnn_backward (sequence/backward.h) and variant_forward;
// ws: what variant_train_forward wrote for the same arguments (read only); extra_grads: [L·D] gradients of the variant
// parameters (overwritten).
template <typename T>
void variant_backward(const RnnShape& s, const VariantOptions& o, const T* x, const CellWeights<T>* weights,
                      const VariantWeights<T>* extra, const VariantMasks<T>* masks, const int64_t* lengths,
                      const T* const* dropout, const T* ws, const T* d_out, const T* d_hn, const T* d_cn, T* dx,
                      T* d_h0, T* d_c0, const CellGrads<T>* grads, const VariantGrads<T>* extra_grads) {
  const PackedBatch pk(s.T, s.B, lengths);
  // The tape's views are writable in type only: nothing below writes through them.
  VariantTape<T> tape(s, o, pk, masks, const_cast<T*>(ws), false);
  VariantBackwardBuffers<T> buffers(s, o, pk.N);
  auto layer_input = [&](index_t layer) -> const T* { return tape.inputs[layer]; };
  run_backward(s, pk, lengths == nullptr, x, d_out, d_hn, d_cn, dx, d_h0, d_c0, dropout, layer_input,
               [&](index_t layer, index_t d, const T* d_layer_out, index_t ldo) {
                 const index_t k = layer * s.D + d;
                 return VariantCellBackward<T>(s, o, weights[k], extra[k], tape.rows[k], grads[k], extra_grads[k],
                                               d_layer_out + d * s.P, ldo, buffers);
               });
}

}  // namespace LSTMKIT_ISA
}  // namespace lstmkit
