// The plain data types of the LSTM/GRU variants (docs/variants.md) that cross between the glue
// (bind_variants.cpp) and the per-instruction-set builds of cells/variant.h / sequence/variant_backward.h, like
// common.h does for the plain kernels. Nothing here is compiled with a target attribute.
#pragma once

#include <array>

#include "core/common.h"

namespace lstmkit {

// ONNX's activation functions; α/β are always given (the Python side fills ONNX's defaults).
enum class ActKind : int {
  Sigmoid,
  Tanh,
  Relu,
  HardSigmoid,
  LeakyRelu,
  ThresholdedRelu,
  ScaledTanh,
  Affine,
  Elu,
  Softsign,
  Softplus
};

struct Activation {
  ActKind kind = ActKind::Sigmoid;
  double alpha = 0, beta = 0;
};

// Every option of a variant forward; defaults are the plain cells.
struct VariantOptions {
  bool peephole = false;      // LSTM: p_i, p_f see c, p_o sees c̃
  bool input_forget = false;  // LSTM: f = 1 − i
  bool has_clip = false;      // every gate pre-activation clipped to [−clip, clip]
  double clip = 0;
  bool layer_norm = false;          // LN on W_ih x, W_hh h (and c̃ for the LSTM)
  bool linear_before_reset = true;  // GRU
  Activation gate{ActKind::Sigmoid, 0, 0}, cell{ActKind::Tanh, 0, 0}, hidden{ActKind::Tanh, 0, 0};
  // Zoneout probabilities: the constant masks used when no sampled zoneout mask is given (evaluation).
  double zoneout_c = 0, zoneout_h = 0;
};

// Whether the gate and cell activations' derivatives are functions of their outputs (σ: y(1 − y),
// tanh: 1 − y²), and whether the backward needs the gate pre-activations at all: for the clip's
// derivative, or for the other activations' (which read their clipped input).
inline bool grad_from_output(const VariantOptions& o) {
  auto by_output = [](const Activation& a) { return a.kind == ActKind::Sigmoid || a.kind == ActKind::Tanh; };
  return by_output(o.gate) && by_output(o.cell);
}
inline bool needs_zpre(const VariantOptions& o) { return o.has_clip || !grad_from_output(o); }

// The per-row buffers of one variant layer·direction (VariantRows in cells/variant.h), in their order in
// memory. With a tape they hold every packed row and live in the training workspace; without one they
// are B rows of scratch.
enum VariantField : int {
  kZpre,
  kAct,
  kHin,
  kHPrev,
  kCPrev,
  kCt,
  kHcIn,
  kHc,
  kXhatC,
  kRstdC,
  kM,
  kXhatHh,
  kRstdHh,
  kSn,
  kQ,
  kXhatIh,
  kRstdIh,
  kVariantFields
};

// Values per row of each field (0: not used by these options).
//   tape: kept for the backward (else forward scratch); recurrent_masks: recurrent-dropout masks given.
inline std::array<index_t, kVariantFields> variant_row_widths(const RnnShape& s, const VariantOptions& o, bool tape,
                                                              bool recurrent_masks) {
  const index_t H = s.H, P = s.P, GH = s.gates() * s.H;
  const bool lstm = s.lstm, ln = o.layer_norm, lbr = o.linear_before_reset;
  std::array<index_t, kVariantFields> w{};
  w[kZpre] = tape && needs_zpre(o) ? GH : 0;
  w[kAct] = GH;
  w[kHin] = tape || recurrent_masks ? P : 0;
  w[kHPrev] = tape && recurrent_masks && !lstm ? P : 0;
  w[kCPrev] = tape && lstm ? H : 0;
  w[kCt] = lstm ? H : 0;
  w[kHcIn] = lstm && ln ? H : 0;
  w[kHc] = lstm ? H : 0;
  w[kXhatC] = tape && lstm && ln ? H : 0;
  w[kRstdC] = lstm && ln ? 1 : 0;
  w[kM] = lstm && P != H ? H : 0;
  w[kXhatHh] = tape && ln ? GH : 0;
  w[kRstdHh] = ln ? 1 : 0;
  w[kSn] = !lstm && lbr ? H : 0;
  w[kQ] = !lstm && !lbr ? H : 0;
  w[kXhatIh] = tape && ln ? GH : 0;
  w[kRstdIh] = tape && ln ? 1 : 0;
  return w;
}

// Values per batch row and time step in a variant training workspace (variant_train_forward fills it,
// variant_backward reads it; it holds T·B times as many): every layer·direction's tape fields, then
// the inputs of the layers above the first [D·P].
inline index_t variant_workspace_row(const RnnShape& s, const VariantOptions& o, bool recurrent_masks) {
  index_t cell = 0;
  for (index_t w : variant_row_widths(s, o, true, recurrent_masks)) cell += w;
  return s.L * s.D * cell + (s.L - 1) * s.D * s.P;
}

// The extra parameters of one layer and direction (caller-owned), null when the option is off:
//   peephole [3H] (p_i, p_f, p_o); ln_ih_w/b, ln_hh_w/b [G·H]; ln_cell_w/b [H] (LSTM)
// Ptr is const T* for the parameters (VariantWeights) and T* for their gradient buffers (VariantGrads,
// shaped like them, overwritten), as CellPointers in common.h.
template <typename Ptr>
struct VariantPointers {
  Ptr peephole = nullptr;
  Ptr ln_ih_w = nullptr;
  Ptr ln_ih_b = nullptr;
  Ptr ln_hh_w = nullptr;
  Ptr ln_hh_b = nullptr;
  Ptr ln_cell_w = nullptr;
  Ptr ln_cell_b = nullptr;
};
template <typename T>
using VariantWeights = VariantPointers<const T*>;
template <typename T>
using VariantGrads = VariantPointers<T*>;

// Sampled masks of one layer and direction, in the caller's batch order; null: evaluation (no
// recurrent dropout, zoneout by its expectation VariantOptions::zoneout_c/_h).
//   recurrent [B, P]; zoneout_c [T, B, H]; zoneout_h [T, B, P]
template <typename T>
struct VariantMasks {
  const T* recurrent = nullptr;
  const T* zoneout_c = nullptr;
  const T* zoneout_h = nullptr;
};

// One instruction set's variant entry points for one dtype. Arguments as rnn_forward / rnn_backward
// (common.h; dropout: the inter-layer masks or null), plus the options, and per layer·direction (index layer·D +
// direction) the extra weights, masks and gradient buffers.
template <typename T>
struct VariantKernelSet {
  void (*forward)(const RnnShape& s, const VariantOptions& o, const T* x, const CellWeights<T>* weights,
                  const VariantWeights<T>* extra, const VariantMasks<T>* masks, const T* h0, const T* c0,
                  const int64_t* lengths, const T* const* dropout, T* out, T* h_n, T* c_n);
  // ws: [T·B·variant_workspace_row(s, o, masks have recurrent)], written by train_forward, read (never
  // written) by backward with the same arguments.
  void (*train_forward)(const RnnShape& s, const VariantOptions& o, const T* x, const CellWeights<T>* weights,
                        const VariantWeights<T>* extra, const VariantMasks<T>* masks, const T* h0, const T* c0,
                        const int64_t* lengths, const T* const* dropout, T* out, T* h_n, T* c_n, T* ws);
  void (*backward)(const RnnShape& s, const VariantOptions& o, const T* x, const CellWeights<T>* weights,
                   const VariantWeights<T>* extra, const VariantMasks<T>* masks, const int64_t* lengths,
                   const T* const* dropout, const T* ws, const T* d_out, const T* d_hn, const T* d_cn, T* dx, T* d_h0,
                   T* d_c0, const CellGrads<T>* grads, const VariantGrads<T>* extra_grads);
};

struct VariantKernels {
  VariantKernelSet<float> f32;
  VariantKernelSet<double> f64;
};

// Defined in kernels_<isa>.cpp (through kernels_impl.h), one per instruction-set namespace.
namespace isa_scalar {
extern const VariantKernels variant_kernels;
}
namespace isa_avx2 {
extern const VariantKernels variant_kernels;
}
namespace isa_avx512 {
extern const VariantKernels variant_kernels;
}

}  // namespace lstmkit
