// Streaming inference: one time step of a unidirectional stacked LSTM/GRU per call, the state of
// every layer kept here between calls. The cells' equations of cells/plain.h, so T calls give what a
// T-step sequence forward gives (a GRU bit for bit; an LSTM up to the rounding of one sum, below).
//
// The recurrent product ahead of the input: a step's h·W_hhᵀ needs only the state, which is known when the
// step before returns, so each step hands the next one's products to the pool's threads (post_ahead) and
// returns; they run while the caller is away (between two calls from Python: most of a step's weight
// reads), and the next step collects them (join_ahead), doing itself whatever part no thread has started.
// What is left for the step is the input's product and the gates. An LSTM's gates are therefore summed
// as (bias + x·W_ihᵀ) + h·W_hhᵀ, the two products apart (the sequence forward adds the second into the
// first term by term): the same on every schedule and thread count here, within a rounding of the
// sequence's. Whether a step uses the pool at all is timed now and then against the caller alone
// (ScheduleProbe): every schedule gives the same bits.
#pragma once

#include <algorithm>
#include <vector>

#include "cells/plain.h"
#include "core/schedule_probe.h"

namespace lstmkit {
namespace LSTMKIT_ISA {

template <typename T>
class Stream final : public StreamBase<T> {
 public:
  // s: lstm, B, I, H, P, L (D must be 1, T unused); weights: [L] (layer l > 0 has In = P).
  Stream(const RnnShape& s, const CellWeights<T>* weights) : s_(s) {
    const index_t B = s.B, H = s.H, P = s.P, GH = s.gates() * H;
    cells_.reserve(static_cast<size_t>(s.L));
    for (index_t l = 0; l < s.L; ++l) {
      cells_.emplace_back(s.lstm, l == 0 ? s.I : P, H, P, weights[l]);
      panels_ += cells_.back().w_hh.panels();
    }
    h_.assign(static_cast<size_t>(s.L * B * P), T(0));
    c_.assign(s.lstm ? static_cast<size_t>(s.L * B * H) : 0, T(0));
    gates_.assign(static_cast<size_t>(B * GH), T(0));
    recurrent_.assign(static_cast<size_t>(s.L * B * GH), T(0));
    m_.assign(static_cast<size_t>(B * H), T(0));
    h_new_.assign(static_cast<size_t>(B * P), T(0));
  }

  ~Stream() override { settle(); }

  // x: [B, I]; out: [B, P].
  void step(const T* x, T* out) override {
    const auto start = ScheduleProbe::Clock::now();
    const bool split = probe_.split();
    if (split && by_units()) step_by_units(x, out);
    else step_apart(split, x, out);
    probe_.record(ScheduleProbe::Clock::now() - start);
  }

  void reset() override {
    settle();
    std::fill(h_.begin(), h_.end(), T(0));
    std::fill(c_.begin(), c_.end(), T(0));
  }

  void get_state(T* h, T* c) const override {
    std::copy(h_.begin(), h_.end(), h);  // the products running ahead only read h_
    if (c) std::copy(c_.begin(), c_.end(), c);
  }

  void set_state(const T* h, const T* c) override {
    settle();
    std::copy_n(h, h_.size(), h_.begin());
    if (c) std::copy_n(c, c_.size(), c_.begin());
  }

 private:
  // Whether a product of k multiply-adds per row is worth the pool's threads (as the unit split's rule).
  bool worth_splitting(index_t k_per_row) const {
    return !in_parallel() && num_threads() >= 2 && double(s_.B) * double(k_per_row) >= kUnitSplitMacs;
  }

  // A step whose products are large beside the caller's time away between two calls (from kAheadMaxMacs on)
  // gains little from running them ahead, and the two meetings of a step that does (the input's product,
  // then handing the next products over) cost more there than the one of splitting each layer's step by
  // hidden units (measured: B=8 H=256, 0.89x of the unit split; B=1 H=128, 1.2-1.3x).
  static constexpr double kAheadMaxMacs = 1 << 18;

  bool by_units() const {
    constexpr int NR = Tile<T>::NR;
    return s_.H % NR == 0 && s_.H / NR >= 2 && double(s_.B) * double(recurrent_macs()) >= kAheadMaxMacs &&
           worth_splitting(s_.P * s_.gates() * s_.H);
  }

  // Multiply-adds per row of the recurrent products of all layers.
  index_t recurrent_macs() const { return s_.L * s_.P * s_.gates() * s_.H; }

  // gates_[:, g·H + u0 .. g·H + u1) += rec's for every gate g: an LSTM's recurrent product added to the input's.
  void add_recurrent(const T* rec, index_t u0, index_t u1) {
    const index_t H = s_.H, GH = s_.gates() * H;
    for (index_t r = 0; r < s_.B; ++r)
      for (index_t g = 0; g < s_.gates(); ++g) {
        T* gate = gates_.data() + r * GH + g * H;
        const T* add = rec + r * GH + g * H;
        for (index_t j = u0; j < u1; ++j) gate[j] += add[j];
      }
  }

  // The step with the recurrent products apart from the gates: collected from the products run ahead after
  // the last step (or computed now), and the next ones handed to the pool when `split`.
  void step_apart(bool split, const T* x, T* out) {
    const index_t B = s_.B, H = s_.H, P = s_.P, GH = s_.gates() * H;
    // x's product first when it is too small to split: the threads finish the recurrent products meanwhile.
    const bool input_first = !worth_splitting(GH * s_.I);
    if (input_first) input_product(false, 0, x, s_.I);
    collect_recurrent(split);
    const T* in = x;
    index_t in_ld = s_.I;
    for (index_t l = 0; l < s_.L; ++l) {
      const PackedCell<T>& w = cells_[static_cast<size_t>(l)];
      T* h = h_.data() + l * B * P;
      const T* rec = recurrent_.data() + l * B * GH;
      if (l > 0 || !input_first) input_product(split, l, in, in_ld);
      if (s_.lstm) {
        add_recurrent(rec, 0, H);
        T* c = c_.data() + l * B * H;
        T* dst = w.projected ? m_.data() : h;
        lstm_pointwise(B, H, gates_.data(), GH, c, H, c, H, dst, w.projected ? H : P);
        if (w.projected) project(split, w, h);
      } else {
        gru_pointwise(B, H, gates_.data(), GH, rec, GH, w.b_hh, h, P, h, P);
      }
      in = h;
      in_ld = P;
    }
    std::copy_n(in, B * P, out);
    if (split && worth_splitting(recurrent_macs())) ahead_ = post_ahead(panels_, &Stream::recurrent_panels, this);
  }

  // The step with each layer split by hidden units over the pool: a thread computes its units' columns of both
  // products (the recurrent one apart, as step_apart does, so the same bits) and their gates; one meeting per layer.
  void step_by_units(const T* x, T* out) {
    constexpr int NR = Tile<T>::NR;
    settle();  // a product the other schedule ran ahead is not used here
    const index_t B = s_.B, H = s_.H, P = s_.P, G = s_.gates(), GH = G * H;
    const T* in = x;
    index_t in_ld = s_.I;
    for (index_t l = 0; l < s_.L; ++l) {
      const PackedCell<T>& w = cells_[static_cast<size_t>(l)];
      T* h = h_.data() + l * B * P;
      T* rec = recurrent_.data() + l * B * GH;
      T* c = s_.lstm ? c_.data() + l * B * H : nullptr;
      T* dst = w.projected ? m_.data() : h_new_.data();  // not h: the other threads still read it
      const index_t ldd = w.projected ? H : P;
      parallel_for(H / NR, [&](index_t b, index_t e) {
        const index_t u0 = b * NR, u1 = e * NR, n = u1 - u0;
        unit_products(B, G, H, w, in, in_ld, h, P, gates_.data(), GH, rec, GH, u0, u1);
        if (!s_.lstm)
          return gru_pointwise(B, n, gates_.data() + u0, GH, rec + u0, GH, w.b_hh ? w.b_hh + u0 : nullptr, h + u0, P,
                               dst + u0, ldd, static_cast<T*>(nullptr), static_cast<T*>(nullptr), H);
        add_recurrent(rec, u0, u1);
        lstm_pointwise(B, n, gates_.data() + u0, GH, c + u0, H, c + u0, H, dst + u0, ldd, static_cast<T*>(nullptr),
                       static_cast<T*>(nullptr), H);
      });
      if (w.projected) project(true, w, h);
      else std::copy_n(h_new_.data(), B * P, h);
      in = h;
      in_ld = P;
    }
    std::copy_n(in, B * P, out);
  }

  // h (B, P) = m_ (B, H) · W_hrᵀ: the projection of layer w's o ⊙ tanh(c).
  void project(bool split, const PackedCell<T>& w, T* h) {
    product(split, s_.B, m_.data(), s_.H, w.w_hr, h, s_.P, CInit<T>{true, nullptr});
  }

  // gates_ = bias + in·W_ihᵀ of layer l: (B, G·H) = (B, In) · (In, G·H).
  void input_product(bool split, index_t l, const T* in, index_t in_ld) {
    const PackedCell<T>& w = cells_[static_cast<size_t>(l)];
    const index_t GH = s_.gates() * s_.H;
    product(split, s_.B, in, in_ld, w.w_ih, gates_.data(), GH, CInit<T>{true, w.input_bias()});
  }

  // C (B, N) = init + A (B, K) · Wᵀ (gemm.h's CInit), by column panels over the pool when `split` and large enough.
  void product(bool split, index_t B, const T* A, index_t lda, const PackedWeights<T>& w, T* C, index_t ldc,
               CInit<T> init) const {
    const index_t panels = w.panels();
    if (split && worth_splitting(w.n() * w.k()))
      parallel_for(panels, [&](index_t b, index_t e) { gemm_acc_serial(B, A, lda, w, C, ldc, b, e, true, init); });
    else gemm_acc_serial(B, A, lda, w, C, ldc, 0, panels, true, init);
  }

  // recurrent_ = h·W_hhᵀ of every layer from the current state: collected from the threads it was handed to
  // after the last step, or computed now (the first step, after reset/set_state, or when the pool was busy).
  void collect_recurrent(bool split) {
    const AheadTicket t = ahead_;
    ahead_ = AheadTicket{};
    if (t && join_ahead(t)) return;
    if (split && worth_splitting(recurrent_macs()))
      parallel_for(panels_, [&](index_t b, index_t e) { recurrent_panels(this, b, e); });
    else recurrent_panels(this, 0, panels_);
  }

  // Waits for the products running ahead (they read h_ and write recurrent_); they are recomputed at the next step.
  void settle() {
    if (ahead_) join_ahead(ahead_);
    ahead_ = AheadTicket{};
  }

  // Panels [b, e) of the recurrent products, counted over the layers in order: each layer's W_hh column panels.
  static void recurrent_panels(void* self, index_t b, index_t e) {
    Stream& st = *static_cast<Stream*>(self);
    const index_t B = st.s_.B, P = st.s_.P, GH = st.s_.gates() * st.s_.H;
    index_t first = 0;  // the layer's first panel in the count
    for (index_t l = 0; l < st.s_.L && first < e; ++l) {
      const PackedWeights<T>& w = st.cells_[static_cast<size_t>(l)].w_hh;
      const index_t p0 = std::max(b, first) - first, p1 = std::min(e, first + w.panels()) - first;
      first += w.panels();
      if (p0 >= p1) continue;
      T* rec = st.recurrent_.data() + l * B * GH;
      gemm_acc_serial(B, st.h_.data() + l * B * P, P, w, rec, GH, p0, p1, true, CInit<T>{true, nullptr});
    }
  }

  RnnShape s_;
  std::vector<PackedCell<T>> cells_;
  index_t panels_ = 0;        // W_hh column panels of all layers (the products running ahead)
  std::vector<T> h_, c_;      // [L, B, P], [L, B, H] (LSTM)
  std::vector<T> gates_;      // [B, G·H]
  std::vector<T> recurrent_;  // [L, B, G·H] h·W_hhᵀ of each layer's current h
  std::vector<T> m_;          // [B, H] LSTM with projection: o ⊙ tanh(c) before W_hr
  std::vector<T> h_new_;      // [B, P] h' of a step split by units (the threads read h until all are done)
  AheadTicket ahead_;         // the recurrent products handed to the pool after the last step
  ScheduleProbe probe_;       // whether a step uses the pool: the faster of the two, timed now and then
};

template <typename T>
StreamBase<T>* make_stream(const RnnShape& s, const CellWeights<T>* weights) {
  return new Stream<T>(s, weights);
}

}  // namespace LSTMKIT_ISA
}  // namespace lstmkit
