// The plain data types of the LSTM/GRU variants (docs/variants.md) that cross between the glue
// (bind_variants.cpp) and the per-instruction-set builds of variants.h / variants_backward.h, like
// common.h does for the plain kernels. Nothing here is compiled with a target attribute.
#pragma once

#include "common.h"

namespace lstmkit {

// ONNX's activation functions; α/β are always given (the Python side fills ONNX's defaults).
enum class ActKind : int {
  Sigmoid, Tanh, Relu, HardSigmoid, LeakyRelu, ThresholdedRelu, ScaledTanh, Affine, Elu, Softsign, Softplus
};

struct Activation {
  ActKind kind = ActKind::Sigmoid;
  double alpha = 0, beta = 0;
};

// Every option of a variant forward; defaults are the plain cells.
struct VariantOptions {
  bool peephole = false;             // LSTM: p_i, p_f see c, p_o sees c̃
  bool input_forget = false;         // LSTM: f = 1 − i
  bool has_clip = false;             // every gate pre-activation clipped to [−clip, clip]
  double clip = 0;
  bool layer_norm = false;           // LN on W_ih x, W_hh h (and c̃ for the LSTM)
  bool linear_before_reset = true;   // GRU
  Activation gate{ActKind::Sigmoid, 0, 0}, cell{ActKind::Tanh, 0, 0}, hidden{ActKind::Tanh, 0, 0};
  // Zoneout probabilities: the constant masks used when no sampled zoneout mask is given (evaluation).
  double zoneout_c = 0, zoneout_h = 0;
};

// The extra parameters of one layer and direction (caller-owned), null when the option is off:
//   peephole [3H] (p_i, p_f, p_o); ln_ih_w/b, ln_hh_w/b [G·H]; ln_cell_w/b [H] (LSTM)
template <typename T>
struct VariantWeights {
  const T* peephole = nullptr;
  const T* ln_ih_w = nullptr;
  const T* ln_ih_b = nullptr;
  const T* ln_hh_w = nullptr;
  const T* ln_hh_b = nullptr;
  const T* ln_cell_w = nullptr;
  const T* ln_cell_b = nullptr;
};

// Gradient buffers shaped like VariantWeights (overwritten), null where the parameter does not exist.
template <typename T>
struct VariantGrads {
  T* peephole = nullptr;
  T* ln_ih_w = nullptr;
  T* ln_ih_b = nullptr;
  T* ln_hh_w = nullptr;
  T* ln_hh_b = nullptr;
  T* ln_cell_w = nullptr;
  T* ln_cell_b = nullptr;
};

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
// (common.h), plus the options, and per layer·direction (index layer·D + direction) the extra
// weights, masks and gradient buffers.
template <typename T>
struct VariantKernelSet {
  void (*forward)(const RnnShape& s, const VariantOptions& o, const T* x, const CellWeights<T>* weights,
                  const VariantWeights<T>* extra, const VariantMasks<T>* masks, const T* h0, const T* c0,
                  const int64_t* lengths, T* out, T* h_n, T* c_n);
  void (*backward)(const RnnShape& s, const VariantOptions& o, const T* x, const CellWeights<T>* weights,
                   const VariantWeights<T>* extra, const VariantMasks<T>* masks, const T* h0, const T* c0,
                   const int64_t* lengths, const T* d_out, const T* d_hn, const T* d_cn, T* dx, T* d_h0, T* d_c0,
                   const CellGrads<T>* grads, const VariantGrads<T>* extra_grads);
};

struct VariantKernels {
  VariantKernelSet<float> f32;
  VariantKernelSet<double> f64;
};

// Defined in kernels_<isa>.cpp (through kernels_impl.h), one per instruction-set namespace.
namespace isa_scalar { extern const VariantKernels variant_kernels; }
namespace isa_avx2 { extern const VariantKernels variant_kernels; }
namespace isa_avx512 { extern const VariantKernels variant_kernels; }

}  // namespace lstmkit
