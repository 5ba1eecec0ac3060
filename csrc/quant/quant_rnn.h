// Sequence forward of a quantised stacked (bi)directional LSTM/GRU: rnn_forward (sequence/forward.h) with the
// products through Int8Weights / Bf16Weights (quant_gemm.h). It reuses the float engine's packed
// batch layout (PackedBatch, batch_split), its fused nonlinearities (lstm_pointwise, gru_pointwise)
// and thread pool; only the products differ.
#pragma once

#include <algorithm>
#include <memory>
#include <vector>

#include "cells/plain.h"
#include "quant/quant.h"
#include "quant/quant_gemm.h"
#include "sequence/schedule.h"

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
// product is large enough (each output element is computed the same way whatever the split).
template <typename W>
void quant_gemm(const W& w, index_t M, const float* A, index_t lda, float* C, index_t ldc, QuantRows& r) {
  if (M <= 0) return;
  w.prepare(M, A, lda, r);
  const double macs = double(M) * double(w.n()) * double(w.k());
  if (macs < kParallelMacs || in_parallel() || num_threads() < 2) return w.gemm_acc(0, M, r, C, ldc, 0, w.panels());
  parallel_for(w.panels(), [&](index_t b, index_t e) { w.gemm_acc(0, M, r, C, ldc, b, e); });
}

// A large product (the input projection of all steps): row blocks over the pool, each thread
// preparing its own rows.
template <typename W>
void quant_gemm_rows(const W& w, index_t M, const float* A, index_t lda, float* C, index_t ldc) {
  constexpr index_t kBlock = 64;
  const index_t blocks = (M + kBlock - 1) / kBlock;
  parallel_for(blocks, [&](index_t b, index_t e) {
    QuantRows r;
    for (index_t blk = b; blk < e; ++blk) {
      const index_t m0 = blk * kBlock, mb = std::min(kBlock, M - m0);
      w.prepare(mb, A + m0 * lda, lda, r);
      w.gemm_acc(0, mb, r, C + m0 * ldc, ldc, 0, w.panels());
    }
  });
}

// One step of n rows whose input projection is already in gates (cells/plain.h's lstm_step / gru_step with
// the quantised products):
//   gates [n, G·H] ld ldg (clobbered); h [n, P] and c [n, H] (LSTM, else null) updated in place;
//   scratch: LSTM [n, H] (the projection's input m), GRU [n, 3H] (h·W_hhᵀ).
template <typename W>
void quant_step(bool lstm, index_t n, index_t H, index_t P, const QuantCell<W>& cell, float* gates, index_t ldg,
                float* h, float* c, float* scratch, QuantRows& qr) {
  if (lstm) {
    quant_gemm(cell.w_hh, n, h, P, gates, ldg, qr);
    if (cell.projected) {
      lstm_pointwise(n, H, gates, ldg, c, H, c, H, scratch, H);
      fill_rows(n, P, static_cast<const float*>(nullptr), h, P);
      quant_gemm(cell.w_hr, n, scratch, H, h, P, qr);
    } else {
      lstm_pointwise(n, H, gates, ldg, c, H, c, H, h, P);
    }
  } else {
    fill_rows(n, 3 * H, static_cast<const float*>(nullptr), scratch, 3 * H);
    quant_gemm(cell.w_hh, n, h, P, scratch, 3 * H, qr);
    gru_pointwise(n, H, gates, ldg, scratch, 3 * H, cell.hidden_bias(), h, P, h, P);
  }
}

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

  void forward(index_t T, index_t B, const float* x, const float* h0, const float* c0, const int64_t* lengths,
               float* out, float* h_n, float* c_n) const override {
    const bool lstm = s_.lstm;
    const index_t H = s_.H, P = s_.P, D = s_.D, G = s_.gates(), GH = G * H;
    const PackedBatch pk(T, B, lengths);
    const index_t N = pk.N;
    // As rnn_forward: without lengths the packed layout is x's and out's own (no copies), and a large
    // batch computes each step's input projection in the thread's rows (no [N, G·H] buffer).
    const bool plain = lengths == nullptr;
    const bool split = batch_split(B, H, G, P);
    // Large buffers left uninitialised (every element is written before it is read): zeroing the
    // input projection alone took about 4 % of a forward.
    auto buffer = [](index_t n) { return std::unique_ptr<float[]>(new float[static_cast<size_t>(n)]); };
    std::unique_ptr<float[]> x_packed = plain ? nullptr : buffer(N * s_.I);
    std::unique_ptr<float[]> outs[2];  // [N, D·P] layer outputs, alternating (the last may be out itself)
    std::unique_ptr<float[]> proj = split ? nullptr : buffer(N * D * GH);
    std::unique_ptr<float[]> step_gates = split ? buffer(B * GH) : nullptr;  // [B, G·H] one step's
    if (!plain) pk.pack(x, B, s_.I, x_packed.get());
    const float* layer_in = plain ? x : x_packed.get();
    index_t in_size = s_.I;
    std::vector<float> h(static_cast<size_t>(B * P)), c(lstm ? static_cast<size_t>(B * H) : 0);
    // LSTM with projection: m = o ⊙ tanh(c') [B, H]; GRU: h·W_hhᵀ [B, 3H].
    std::vector<float> scratch(static_cast<size_t>(B * (lstm ? H : GH)));

    for (index_t layer = 0; layer < s_.L; ++layer) {
      const index_t ldp = D * GH, ldo = D * P;
      const bool direct = plain && layer + 1 == s_.L;
      if (!direct && !outs[layer % 2]) outs[layer % 2] = buffer(N * D * P);
      float* layer_out = direct ? out : outs[layer % 2].get();
      for (index_t d = 0; d < D && !split; ++d) {
        const QuantCell<W>& cell = *cells_[static_cast<size_t>(layer * D + d)];
        fill_rows(N, GH, cell.input_bias(), proj.get() + d * GH, ldp);
        quant_gemm_rows(cell.w_ih, N, layer_in, in_size, proj.get() + d * GH, ldp);
      }
      for (index_t d = 0; d < D; ++d) {
        const QuantCell<W>& cell = *cells_[static_cast<size_t>(layer * D + d)];
        const index_t k = layer * D + d;
        for (index_t r = 0; r < B; ++r) {
          std::copy_n(h0 + (k * B + pk.order[r]) * P, P, h.data() + r * P);
          if (lstm) std::copy_n(c0 + (k * B + pk.order[r]) * H, H, c.data() + r * H);
        }
        // Rows [r0, r1) through every step (rows never interact).
        auto run_rows = [&](index_t r0, index_t r1) {
          QuantRows qr;
          for (index_t step = 0; step < T; ++step) {
            const index_t t = d == 0 ? step : T - 1 - step;
            const index_t n = std::min(pk.batch_sizes[t], r1) - r0;
            if (n <= 0) continue;
            const index_t q0 = pk.offsets[t] + r0;
            float* gates = split ? step_gates.get() + r0 * GH : proj.get() + q0 * ldp + d * GH;
            const index_t ldg = split ? GH : ldp;
            if (split) {  // this step's input projection of the thread's rows (rows are quantised one by one)
              fill_rows(n, GH, cell.input_bias(), gates, ldg);
              cell.w_ih.prepare(n, layer_in + q0 * in_size, in_size, qr);
              cell.w_ih.gemm_acc(0, n, qr, gates, ldg, 0, cell.w_ih.panels());
            }
            float* hr = h.data() + r0 * P;
            quant_step(lstm, n, H, P, cell, gates, ldg, hr, lstm ? c.data() + r0 * H : nullptr,
                       scratch.data() + r0 * (lstm ? H : GH), qr);
            float* y = layer_out + q0 * ldo + d * P;
            for (index_t r = 0; r < n; ++r) std::copy_n(hr + r * P, P, y + r * ldo);
          }
        };
        if (split) {
          constexpr index_t MR = W::MR;
          parallel_for((B + MR - 1) / MR, [&](index_t b, index_t e) { run_rows(b * MR, std::min(B, e * MR)); });
        } else {
          run_rows(0, B);
        }
        for (index_t r = 0; r < B; ++r) {
          std::copy_n(h.data() + r * P, P, h_n + (k * B + pk.order[r]) * P);
          if (lstm) std::copy_n(c.data() + r * H, H, c_n + (k * B + pk.order[r]) * H);
        }
      }
      layer_in = layer_out;
      in_size = D * P;
    }
    if (!plain) pk.unpack(layer_in, B, D * P, out);
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
      fill_rows(B, GH, cell.input_bias(), gates_.data(), GH);
      quant_gemm(cell.w_ih, B, in, in_ld, gates_.data(), GH, qr_);
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

// y [M, N] = x [M, K] · wᵀ through one quantised product (QuantKernels::linear).
inline void quant_linear(QuantType type, index_t M, index_t K, index_t N, const float* x, const float* w, float* y) {
  std::fill(y, y + M * N, 0.f);
  QuantRows r;
  if (type == QuantType::int8) quant_gemm(Int8Weights(w, N, K, K), M, x, K, y, N, r);
  else quant_gemm(Bf16Weights(w, N, K, K), M, x, K, y, N, r);
}

}  // namespace LSTMKIT_ISA
}  // namespace lstmkit
