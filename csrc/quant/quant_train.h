// bfloat16 mixed-precision training of the plain LSTM/GRU (no projection): every product of the training
// forward and of BPTT — the input projection, h·W_hhᵀ per step, dG·W_hh per step, dGᵀ·X and dGᵀ·h_prev for
// the weight gradients, dG·W_ih for the input gradient — takes its operands rounded to bf16 (nearest even)
// and accumulates in float32 (vdpbf16ps on AVX-512 BF16, tdpbf16ps on AMX; elsewhere only the weight-side
// operand is rounded, and the float kernel widens it). Everything else is the float engine's: the state, the
// nonlinearities and their derivatives, the bias gradients (column sums), the master weights and every gradient are
// float32.
//
// The drivers are the float engine's (run_sequence, run_backward): the forward's adapter is the quantised
// inference cell's (quant_rnn.h's QuantStepper) with the plain tape, the backward's Bf16CellBackward below;
// the workspace is the float training's (sequence/backward.h's TrainWorkspace): only the products differ.
#pragma once

#include <memory>
#include <vector>

#include "quant/quant_rnn.h"
#include "sequence/backward.h"

namespace lstmkit {
namespace LSTMKIT_ISA {

// grad [M, width] = Aᵀ · in, a weight gradient summed over N rows: A [N, M] (row stride M: the gate
// gradients), in [N, width] (row stride width: the layer's input or h_prev). in's transpose is packed as the
// weights and A's columns, rounded, are the rows of the left operand, prepared into r (when prepare; else r
// holds them from a previous call with the same A). sums: null, or out [M]: A's column sums (a bias
// gradient, from the same pass over A, in column_sums' order). Each output element is one thread's, in one
// order: the bits do not depend on the thread count.
inline void bf16_gemm_tn(index_t N, index_t M, const float* A, const float* in, index_t width, float* grad,
                         QuantRows& r, bool prepare, float* sums) {
  std::fill(grad, grad + M * width, 0.f);
  if (N == 0) {
    if (sums) std::fill(sums, sums + M, 0.f);
    return;
  }
  const Bf16Weights in_t(in, width, N, width, true);
  const bool pool = !in_parallel() && num_threads() >= 2;
  if (prepare) {
    in_t.size_columns(M, r);
    auto columns = [&](index_t b, index_t e) { in_t.prepare_columns(A, M, r, b * kQNR, std::min(M, e * kQNR), sums); };
    const index_t blocks = (M + kQNR - 1) / kQNR;
    if (pool) parallel_for(blocks, columns);
    else columns(0, blocks);
  }
  if (!pool) return in_t.gemm_acc(0, M, r, grad, width, 0, in_t.panels());
  parallel_for(in_t.panels(), [&](index_t p0, index_t p1) { in_t.gemm_acc(0, M, r, grad, width, p0, p1); });
}

// C [M, Nc] = Aᵀ · Bm (A [K, M], Bm [K, Nc]) and sums [M] = A's column sums (or null) through bf16_gemm_tn:
// QuantKernels::linear_tn, the test hook of the weight-gradient product.
inline void bf16_linear_tn(index_t M, index_t Nc, index_t K, const float* A, const float* Bm, float* C, float* sums) {
  QuantRows r;
  bf16_gemm_tn(K, M, A, Bm, Nc, C, r, true, sums);
}

// One layer and direction of BPTT (run_backward's adapter): the float cell's output and gate gradients
// (PlainCellBackward), the products in bf16.
class Bf16CellBackward : public PlainCellBackward<float> {
 public:
  Bf16CellBackward(bool lstm, index_t In, index_t H, const CellWeights<float>& w, const PlainTape<float>& tape,
                   const CellGrads<float>& grads, const float* d_out, index_t ldo, PlainBackwardBuffers<float>& buf)
      : PlainCellBackward<float>(lstm, In, H, H, w, tape, grads, d_out, ldo, buf, false),
        w_hh_t_(w.w_hh, H, GH_, H, true),
        w_ih_t_(w.w_ih, In, GH_, In, true) {}

  void step(index_t q0, index_t r0, index_t n, bool, float* dh, float* dc) {
    add_d_out(q0, r0, n, 0, H_, dh);
    gate_grads(q0, r0, n, 0, H_, dh + r0 * H_, H_, dh, dc);
    thread_local QuantRows qr;  // the rows of a step's product, per thread (the row split runs two at once)
    float* dhb = dh + r0 * H_;
    if (lstm_) {  // dh_prev = dG · W_hh; the GRU adds dGh · W_hh onto its direct path
      quant_gemm(w_hh_t_, n, b_.dG.data() + q0 * GH_, GH_, dhb, H_, qr, CInit<float>{true, nullptr});
    } else {
      quant_gemm(w_hh_t_, n, b_.dGh.data() + q0 * GH_, GH_, dhb, H_, qr);
    }
  }
  double row_macs(index_t) const { return 0; }
  bool lockstep_units(index_t B) const { return quant_lockstep<Bf16Weights>(B, H_, GH_, H_, false); }
  // Units [u0, u1) of dh_prev for all nb rows (packed q0..) on the lockstep pair: the panels of those units
  // of dG · W_hh (each thread rounds its own copy of the gate gradients); step_units, the pointwise part, is
  // the float cell's.
  void product_units(index_t q0, index_t nb, index_t u0, index_t u1, bool, float* dh) {
    thread_local QuantRows qr;
    w_hh_t_.prepare(nb, (lstm_ ? b_.dG.data() : b_.dGh.data()) + q0 * GH_, GH_, qr);
    w_hh_t_.gemm_acc(0, nb, qr, dh, H_, u0 / kQNR, u1 / kQNR, CInit<float>{lstm_, nullptr});  // the LSTM sets dh
  }

  // The weight gradients dW = dGᵀ · inputs (each one product over all N rows), the bias gradients (float
  // column sums, from the pass that rounds dGᵀ), and d_in += dG · W_ih.
  void finish(index_t N, const float* layer_in, index_t In, float* d_in) const {
    const float* dG = b_.dG.data();
    QuantRows r;  // dGᵀ as the left operand: the LSTM's both gradients multiply it
    bf16_gemm_tn(N, GH_, dG, layer_in, In, gr_.w_ih, r, true, gr_.b_ih);
    if (lstm_) {
      bf16_gemm_tn(N, GH_, dG, tape_.h_prev, H_, gr_.w_hh, r, false, nullptr);
      if (gr_.b_ih) std::copy_n(gr_.b_ih, GH_, gr_.b_hh);  // both biases add to the same gates
    } else {
      bf16_gemm_tn(N, GH_, b_.dGh.data(), tape_.h_prev, H_, gr_.w_hh, r, true, gr_.b_hh);
    }
    quant_gemm_rows(w_ih_t_, N, dG, GH_, d_in, In);
  }

 private:
  Bf16Weights w_hh_t_;  // W_hhᵀ [H, G·H]
  Bf16Weights w_ih_t_;  // W_ihᵀ [In, G·H]
};

// rnn_train_forward (sequence/backward.h) with the bf16 products: quant_rnn.h's QuantStepper with the plain
// tape, over bf16 cells packed here; the same workspace. No projection.
inline void bf16_train_forward(const RnnShape& s, const float* x, const CellWeights<float>* weights, const float* h0,
                               const float* c0, const int64_t* lengths, const float* const* dropout, float* out,
                               float* h_n, float* c_n, float* ws_base) {
  std::vector<std::unique_ptr<QuantCell<Bf16Weights>>> cells;
  train_sequence(s, x, h0, c0, lengths, dropout, out, h_n, c_n, ws_base,
                 [&](index_t k, index_t in, PlainTape<float> tape) {
                   cells.emplace_back(new QuantCell<Bf16Weights>(s.lstm, in, s.H, s.H, weights[k]));
                   return QuantStepper<Bf16Weights>(*cells.back(), s.lstm, s.B, s.H, s.H, tape);
                 });
}

// rnn_backward (sequence/backward.h) with the bf16 products, from bf16_train_forward's workspace.
inline void bf16_backward(const RnnShape& s, const float* x, const CellWeights<float>* weights, const int64_t* lengths,
                          const float* const* dropout, const float* ws_base, const float* d_out, const float* d_hn,
                          const float* d_cn, float* dx, float* d_h0, float* d_c0, const CellGrads<float>* grads) {
  backward_from_tape(s, x, lengths, dropout, ws_base, d_out, d_hn, d_cn, dx, d_h0, d_c0,
                     [&](index_t k, index_t In, const PlainTape<float>& tape, const float* d_layer_out, index_t ldo,
                         PlainBackwardBuffers<float>& buffers) {
                       return Bf16CellBackward(s.lstm, In, s.H, weights[k], tape, grads[k], d_layer_out, ldo, buffers);
                     });
}

}  // namespace LSTMKIT_ISA
}  // namespace lstmkit
