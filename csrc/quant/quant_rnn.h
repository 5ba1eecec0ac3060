// Sequence forward of a quantised stacked (bi)directional LSTM/GRU: the sequence driver
// (sequence/forward.h's run_sequence) over a cell whose products go through Int8Weights / Bf16Weights
// (quant_gemm.h). It reuses the float engine's fused nonlinearities (lstm_pointwise, gru_pointwise) and
// every schedule of the driver; only the products differ.
#pragma once

#include <algorithm>
#include <memory>
#include <vector>

#include "cells/plain.h"
#include "quant/quant.h"
#include "quant/quant_gemm.h"
#include "sequence/forward.h"

namespace lstmkit {
namespace LSTMKIT_ISA {

// One layer and direction: weights packed in format W, biases as PackedCell keeps them.
template <typename W>
struct QuantCell {
  W w_ih, w_hh, w_hr;          // w_hr: n = 0 without projection
  std::vector<float> bias_in;  // LSTM b_ih + b_hh, GRU b_ih; empty without bias
  std::vector<float> b_hh;     // GRU only
  bool projected = false;

  QuantCell(bool lstm, index_t in, index_t H, index_t P, const CellWeights<float>& w)
      : w_ih(w.w_ih, (lstm ? 4 : 3) * H, in, in), w_hh(w.w_hh, (lstm ? 4 : 3) * H, P, P) {
    const index_t GH = (lstm ? 4 : 3) * H;
    if (w.w_hr) {
      w_hr = W(w.w_hr, P, H, H);
      projected = true;
    }
    if (w.b_ih) {
      bias_in.assign(w.b_ih, w.b_ih + GH);
      if (lstm)
        for (index_t j = 0; j < GH; ++j) bias_in[j] += w.b_hh[j];
      else b_hh.assign(w.b_hh, w.b_hh + GH);
    }
  }
  const float* input_bias() const { return bias_in.empty() ? nullptr : bias_in.data(); }
  const float* hidden_bias() const { return b_hh.empty() ? nullptr : b_hh.data(); }
};

// C [M, N] += A [M, K] · Wᵀ: rows prepared once into r, then the panels split over the pool when the
// product is large enough (each output element is computed the same way whatever the split); or, with init
// set, C = init's row + A · Wᵀ (gemm.h's CInit).
template <typename W>
void quant_gemm(const W& w, index_t M, const float* A, index_t lda, float* C, index_t ldc, QuantRows& r,
                CInit<float> init = {}) {
  if (M <= 0) return;
  w.prepare(M, A, lda, r);
  const double macs = double(M) * double(w.n()) * double(w.k());
  if (macs < kParallelMacs || in_parallel() || num_threads() < 2)
    return w.gemm_acc(0, M, r, C, ldc, 0, w.panels(), init);
  parallel_for(w.panels(), [&](index_t b, index_t e) { w.gemm_acc(0, M, r, C, ldc, b, e, init); });
}

// C = bias + A · Wᵀ (bias: a row [N], broadcast; null for zeros): an input projection. The product's epilogue
// starts from the bias row (no fill pass over C; the same bits as filling first).
template <typename W>
void quant_project(const W& w, index_t M, const float* A, index_t lda, float* C, index_t ldc, QuantRows& r,
                   const float* bias) {
  quant_gemm(w, M, A, lda, C, ldc, r, CInit<float>{true, bias});
}

// A large product (the input projection of all steps) C += A · Wᵀ, or C = init's row + A · Wᵀ (CInit): row
// blocks over the pool, each thread preparing its own rows.
template <typename W>
void quant_gemm_rows(const W& w, index_t M, const float* A, index_t lda, float* C, index_t ldc,
                     CInit<float> init = {}) {
  constexpr index_t kBlock = 64;
  const index_t blocks = (M + kBlock - 1) / kBlock;
  parallel_for(blocks, [&](index_t b, index_t e) {
    QuantRows r;
    for (index_t blk = b; blk < e; ++blk) {
      const index_t m0 = blk * kBlock, mb = std::min(kBlock, M - m0);
      w.prepare(mb, A + m0 * lda, lda, r);
      w.gemm_acc(0, mb, r, C + m0 * ldc, ldc, 0, w.panels(), init);
    }
  });
}

// One step of n rows whose input projection is already in gates (cells/plain.h's lstm_step / gru_step with
// the quantised products):
//   gates [n, G·H] ld ldg (clobbered); h [n, P] and c [n, H] (LSTM, else null) updated in place;
//   scratch: LSTM [n, H] (the projection's input m), GRU [n, 3H] (h·W_hhᵀ);
//   act, aux: a training step's caches (lstm_pointwise's act / tanh_c, gru_pointwise's act / gh_n; act may be
//   gates itself), or null (no projection with them).
template <typename W>
void quant_step(bool lstm, index_t n, index_t H, index_t P, const QuantCell<W>& cell, float* gates, index_t ldg,
                float* h, float* c, float* scratch, QuantRows& qr, float* act = nullptr, float* aux = nullptr) {
  if (lstm) {
    quant_gemm(cell.w_hh, n, h, P, gates, ldg, qr);
    if (cell.projected) {
      lstm_pointwise(n, H, gates, ldg, c, H, c, H, scratch, H);
      quant_gemm(cell.w_hr, n, scratch, H, h, P, qr, CInit<float>{true, nullptr});
    } else {
      lstm_pointwise(n, H, gates, ldg, c, H, c, H, h, P, act, aux);
    }
  } else {
    quant_gemm(cell.w_hh, n, h, P, scratch, 3 * H, qr, CInit<float>{true, nullptr});
    gru_pointwise(n, H, gates, ldg, scratch, 3 * H, cell.hidden_bias(), h, P, h, P, act, aux);
  }
}

// Whether a pass of B rows through a quantised cell runs on the lockstep pair, split by units: as unit_split
// (cells/plain.h) with the quantised products' panel width, and a step's work counted in float
// multiply-adds: an int8 product does about four in the time of one (vpdpbusd), a bf16 one two, so the pair's
// meeting per step costs as much against a quarter or half the work. int8 B=1 H=128 LSTM (1.8 µs a step) ran
// 0.18 ms on one thread against 0.22 on the pair (load 3.5). bf16 on AMX tiles does about sixteen: B=1 LSTM,
// T=100, 2 threads, ms, with 2 / 16: H=128 0.27 / 0.22, H=256 1.06 / 0.80–0.84 (one thread 0.20 and 0.65); H=512
// 2.2 either way, against 4.1 on one thread, whose L2 holds half the weights, not all (Sapphire Rapids).
template <typename W>
bool quant_lockstep(index_t B, index_t H, index_t GH, index_t P, bool projected) {
  constexpr double kSpeedup = std::is_same<W, Int8Weights>::value ? 4.0 : LSTMKIT_QKIND == 4 ? 16.0 : 2.0;
  if (projected || H % kQNR != 0 || H / kQNR < 2 || in_parallel() || num_threads() < 2) return false;
  return double(B) * double(GH) * double(P) >= kSpeedup * kUnitSplitMacs;
}

// A quantised cell of one layer and direction as the sequence driver's adapter (sequence/forward.h),
// for B rows of state; the cell itself (its packed weights) belongs to the caller (the QuantRnn). With a
// tape (bf16 mixed-precision training, quant_train.h; no projection) it keeps what the backward needs, as
// cells/plain.h's PlainCell does.
template <typename W>
class QuantStepper {
 public:
  using Local = QuantRows;  // the rows of a product prepared (quantised / rounded), per thread
  static constexpr index_t kUnitWidth = kQNR;

  QuantStepper(const QuantCell<W>& cell, bool lstm, index_t B, index_t H, index_t P, PlainTape<float> tape = {})
      : cell_(cell),
        tape_(tape),
        lstm_(lstm),
        H_(H),
        P_(P),
        GH_((lstm ? 4 : 3) * H),
        scratch_(static_cast<size_t>(B * GH_)) {}
  QuantStepper(const QuantStepper&) = delete;
  QuantStepper& operator=(const QuantStepper&) = delete;

  // With a tape, the driver projects into its rows and the steps turn them into activations in place.
  float* kept_gates() const { return tape_.act; }
  // A large product (the input projection of all steps): row blocks over the pool.
  void project(index_t N, const float* in, index_t ld_in, float* g, index_t ldg) const {
    quant_gemm_rows(cell_.w_ih, N, in, ld_in, g, ldg, CInit<float>{true, cell_.input_bias()});  // g = bias + x·W_ihᵀ
  }
  // The quantised products have no one-row kernel: each value is the same for any row blocking.
  void project_rows(index_t q0, index_t n, const float* in, index_t ld_in, float* g, index_t ldg, bool,
                    QuantRows& qr) const {
    cell_.w_ih.prepare(n, in + q0 * ld_in, ld_in, qr);
    cell_.w_ih.gemm_acc(0, n, qr, g, ldg, 0, cell_.w_ih.panels(), CInit<float>{true, cell_.input_bias()});
  }
  void step(index_t r0, index_t n, index_t q0, float* g, index_t ldg, float* h, float* c, bool, QuantRows& qr) {
    float* cr = lstm_ ? c + r0 * H_ : nullptr;
    tape_.keep_state(q0, n, h + r0 * P_, cr, P_, H_, 0, P_, H_);
    quant_step(lstm_, n, H_, P_, cell_, g, ldg, h + r0 * P_, cr, scratch_.data() + r0 * (lstm_ ? H_ : GH_), qr, act(g),
               aux(q0));
  }
  // A step's rows stay on the calling thread (quant_gemm splits a large product by panels).
  double row_macs(index_t) const { return 0; }
  bool lockstep_units(index_t B) const { return quant_lockstep<W>(B, H_, GH_, P_, cell_.projected); }
  // Units [u0, u1) of all B rows: each thread prepares all of h_in (its own copy of the quantised rows)
  // and computes its units' panels of every gate; the values are those of quant_step's whole product.
  void step_units(index_t q0, index_t B, index_t u0, index_t u1, float* g, index_t ldg, const float* h_in, float* h_out,
                  float* c, QuantRows& qr) {
    const index_t n = u1 - u0, G = lstm_ ? 4 : 3;
    tape_.keep_state(q0, B, h_in, lstm_ ? c : nullptr, P_, H_, u0, n, n);
    cell_.w_hh.prepare(B, h_in, P_, qr);
    for (index_t gate = 0; gate < G; ++gate) {
      const index_t c0 = gate * H_ + u0, p0 = c0 / kQNR, p1 = (gate * H_ + u1) / kQNR;
      if (lstm_) cell_.w_hh.gemm_acc(0, B, qr, g, ldg, p0, p1);
      else cell_.w_hh.gemm_acc(0, B, qr, scratch_.data(), GH_, p0, p1, CInit<float>{true, nullptr});
    }
    const float* none = nullptr;
    float* a = act(g) ? g + u0 : nullptr;
    float* x = aux(q0) ? aux(q0) + u0 : nullptr;
    if (lstm_) {
      lstm_pointwise(B, n, g + u0, ldg, c + u0, H_, c + u0, H_, h_out + u0, P_, a, x, H_);
    } else {
      const float* b_hh = cell_.hidden_bias();
      gru_pointwise(B, n, g + u0, ldg, scratch_.data() + u0, GH_, b_hh ? b_hh + u0 : none, h_in + u0, P_, h_out + u0,
                    P_, a, x, H_);
    }
  }
  bool pool_step(index_t) const { return false; }
  void step_pool(index_t, index_t, float*, index_t, float*, float*) {}

 private:
  float* act(float* g) const { return tape_.act ? g : nullptr; }  // with a tape, g is the tape's act rows
  float* aux(index_t q0) const { return tape_.act ? tape_.aux + q0 * H_ : nullptr; }

  const QuantCell<W>& cell_;
  PlainTape<float> tape_;
  bool lstm_;
  index_t H_, P_, GH_;
  std::vector<float> scratch_;  // LSTM m [B, H] (projection), GRU h·W_hhᵀ [B, 3H]
};

template <typename W>
class QuantRnn final : public QuantRnnBase {
 public:
  QuantRnn(const RnnShape& s, const CellWeights<float>* weights) : s_(s) {
    for (index_t l = 0; l < s.L; ++l)
      for (index_t d = 0; d < s.D; ++d)
        cells_.emplace_back(new QuantCell<W>(s.lstm, l == 0 ? s.I : s.D * s.P, s.H, s.P, weights[l * s.D + d]));
  }

  std::size_t weight_bytes() const override {
    std::size_t n = 0;
    for (const auto& c : cells_) n += c->w_ih.bytes() + c->w_hh.bytes() + (c->projected ? c->w_hr.bytes() : 0);
    return n;
  }

  // run_sequence (sequence/forward.h) over the quantised cells.
  void forward(index_t T, index_t B, const float* x, const float* h0, const float* c0, const int64_t* lengths,
               float* out, float* h_n, float* c_n) const override {
    RnnShape s = s_;
    s.T = T, s.B = B;
    SequenceArgs<float> a;
    a.x = x, a.h0 = h0, a.c0 = c0, a.lengths = lengths, a.out = out, a.h_n = h_n, a.c_n = c_n;
    run_sequence(s, a, false, [&](index_t layer, index_t d, index_t, const PackedBatch&) {
      return QuantStepper<W>(*cells_[static_cast<size_t>(layer * s.D + d)], s.lstm, B, s.H, s.P);
    });
  }

 private:
  RnnShape s_;
  std::vector<std::unique_ptr<QuantCell<W>>> cells_;  // [L·D]
};

// Streaming inference of a quantised unidirectional stacked RNN: one step of every layer per call,
// the state kept here (stream.h's contract: x [B, I] → out [B, P]; state h [L, B, P], c [L, B, H]).
template <typename W>
class QuantStream final : public StreamBase<float> {
 public:
  QuantStream(const RnnShape& s, const CellWeights<float>* weights) : s_(s) {
    const index_t B = s.B, H = s.H, P = s.P, GH = s.gates() * H;
    for (index_t l = 0; l < s.L; ++l) cells_.emplace_back(new QuantCell<W>(s.lstm, l == 0 ? s.I : P, H, P, weights[l]));
    h_.assign(static_cast<size_t>(s.L * B * P), 0.f);
    c_.assign(s.lstm ? static_cast<size_t>(s.L * B * H) : 0, 0.f);
    gates_.assign(static_cast<size_t>(B * GH), 0.f);
    scratch_.assign(static_cast<size_t>(B * (s.lstm ? H : GH)), 0.f);
  }
  void step(const float* x, float* out) override {
    const index_t B = s_.B, H = s_.H, P = s_.P, GH = s_.gates() * H;
    const float* in = x;
    index_t in_ld = s_.I;
    for (index_t l = 0; l < s_.L; ++l) {
      const QuantCell<W>& cell = *cells_[static_cast<size_t>(l)];
      float* h = h_.data() + l * B * P;
      quant_project(cell.w_ih, B, in, in_ld, gates_.data(), GH, qr_, cell.input_bias());
      quant_step(s_.lstm, B, H, P, cell, gates_.data(), GH, h, s_.lstm ? c_.data() + l * B * H : nullptr,
                 scratch_.data(), qr_);
      in = h;
      in_ld = P;
    }
    std::copy_n(in, B * P, out);
  }
  void reset() override {
    std::fill(h_.begin(), h_.end(), 0.f);
    std::fill(c_.begin(), c_.end(), 0.f);
  }
  void get_state(float* h, float* c) const override {
    std::copy(h_.begin(), h_.end(), h);
    if (c) std::copy(c_.begin(), c_.end(), c);
  }
  void set_state(const float* h, const float* c) override {
    std::copy_n(h, h_.size(), h_.begin());
    if (c) std::copy_n(c, c_.size(), c_.begin());
  }

 private:
  RnnShape s_;
  std::vector<std::unique_ptr<QuantCell<W>>> cells_;  // [L]
  std::vector<float> h_, c_, gates_, scratch_;
  QuantRows qr_;
};

inline QuantRnnBase* make_quant_rnn(const RnnShape& s, const CellWeights<float>* weights, QuantType type) {
  if (type == QuantType::int8) return new QuantRnn<Int8Weights>(s, weights);
  return new QuantRnn<Bf16Weights>(s, weights);
}

inline StreamBase<float>* make_quant_stream(const RnnShape& s, const CellWeights<float>* weights, QuantType type) {
  if (type == QuantType::int8) return new QuantStream<Int8Weights>(s, weights);
  return new QuantStream<Bf16Weights>(s, weights);
}

// y [M, N] = x [M, K] · wᵀ through one quantised product (QuantKernels::linear); y is set, not read.
inline void quant_linear(QuantType type, index_t M, index_t K, index_t N, const float* x, const float* w, float* y) {
  QuantRows r;
  const CInit<float> zeros{true, nullptr};
  if (type == QuantType::int8) quant_gemm(Int8Weights(w, N, K, K), M, x, K, y, N, r, zeros);
  else quant_gemm(Bf16Weights(w, N, K, K), M, x, K, y, N, r, zeros);
}

}  // namespace LSTMKIT_ISA
}  // namespace lstmkit
