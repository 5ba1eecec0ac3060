// Quantised inference (int8 and bf16 weights): what every instruction-set build of the quantised
// kernels shares. The kernels themselves (quant_gemm.h, quant_rnn.h) are compiled once per
// instruction set by quant_<isa>.cpp (through quant_impl.h), each into its own namespace, like the
// float kernels (kernels_impl.h); only what is declared here crosses between builds.
//
// Formats (lstmkit/quantize.py is the Python side and documents the numbers):
//  * int8: weights int8 per output channel (symmetric, scale max|w|/127), activations (the rows of
//    x_t, h_t and the projection input) quantised per row at each product to 7-bit unsigned codes
//    with a zero point, products accumulated exactly in int32, then float32 dequantisation, bias,
//    nonlinearities and state. 7 bits (not 8) for activations keep vpmaddubsw's int16 pair sums from
//    saturating (2·127·127 < 2^15), so the AVX2, VNNI and scalar paths give the same integers.
//  * bf16: weights rounded to bfloat16 (nearest even), float32 accumulation, state and outputs.
#pragma once

#include <cstddef>
#include <cstdint>

#include "core/common.h"

namespace lstmkit {

enum class QuantType { int8 = 0, bf16 = 1 };

// A quantised stacked (bi)directional LSTM/GRU, its weights packed at construction (a copy).
class QuantRnnBase {
 public:
  virtual ~QuantRnnBase() = default;
  // Sequence forward with rnn_forward's contract (sequence/forward.h), shapes from the construction's RnnShape
  // with T and B given here:
  //   x [T, B, I]; h0, h_n [L·D, B, P]; c0, c_n [L·D, B, H] (LSTM, else null); lengths [B] or null;
  //   out [T, B, D·P]. All float32, caller-owned; outputs must not alias inputs.
  virtual void forward(index_t T, index_t B, const float* x, const float* h0, const float* c0, const int64_t* lengths,
                       float* out, float* h_n, float* c_n) const = 0;
  // Bytes of the packed weights (what the recurrent steps stream from cache or memory).
  virtual std::size_t weight_bytes() const = 0;
};

struct QuantKernels {
  const char* name;  // "scalar", "avx2", "avxvnni", "avx512", "amx"
  // weights: [L·D] (T and B of s unused). The caller owns (deletes) the result.
  QuantRnnBase* (*make_rnn)(const RnnShape& s, const CellWeights<float>* weights, QuantType type);
  // Streaming state (common.h's StreamBase) of a unidirectional model: s.D = 1, weights [L].
  StreamBase<float>* (*make_stream)(const RnnShape& s, const CellWeights<float>* weights, QuantType type);
  // y [M, N] = x [M, K] · wᵀ (w [N, K]) through the quantised product alone (no bias): the test hook
  // that shows every path computes the same integers.
  void (*linear)(QuantType type, index_t M, index_t K, index_t N, const float* x, const float* w, float* y);
  // bf16 mixed-precision training (quant_train.h) of a model without projection: rnn_train_forward's and
  // rnn_backward's contracts (common.h's Kernels<float>), the same workspace, the products in bf16.
  void (*train_forward)(const RnnShape& s, const float* x, const CellWeights<float>* weights, const float* h0,
                        const float* c0, const int64_t* lengths, const float* const* dropout, float* out, float* h_n,
                        float* c_n, float* ws);
  void (*backward)(const RnnShape& s, const float* x, const CellWeights<float>* weights, const int64_t* lengths,
                   const float* const* dropout, const float* ws, const float* d_out, const float* d_hn,
                   const float* d_cn, float* dx, float* d_h0, float* d_c0, const CellGrads<float>* grads);
  // C [M, Nc] = Aᵀ · Bm (A [K, M], Bm [K, Nc]) and sums [M] = A's column sums (or null) through the bf16
  // weight-gradient product: the test hook of that product.
  void (*linear_tn)(index_t M, index_t Nc, index_t K, const float* A, const float* Bm, float* C, float* sums);
  // The int8 products' inner loop this process runs: "madd" or "pairs" (AVX2, quant_gemm.h's int8_kernel),
  // "vnni", "amx", or "portable".
  const char* (*int8_kernel)();
};

// The quantised kernels chosen at import (bind_quant.cpp).
const QuantKernels& quant_kernels();

// Defined in quant_<isa>.cpp; each runs only where the CPU has its instructions (bind_quant.cpp).
extern const QuantKernels quant_scalar;   // portable C++
extern const QuantKernels quant_avx2;     // AVX2+FMA: vpmaddubsw (+ vpmaddwd), bf16 → f32 by a shift
extern const QuantKernels quant_avxvnni;  // AVX-VNNI (256-bit vpdpbusd); bf16 as AVX2
extern const QuantKernels quant_avx512;   // AVX-512 with VNNI (vpdpbusd) and BF16 (vdpbf16ps)
#if defined(LSTMKIT_HAVE_AMX)
extern const QuantKernels quant_amx;  // quant_avx512 with the products of prepared rows on AMX tiles
#endif

}  // namespace lstmkit
