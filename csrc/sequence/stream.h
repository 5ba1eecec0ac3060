// Streaming inference: one time step of a unidirectional stacked LSTM/GRU per call, the state of
// every layer kept here between calls. Same arithmetic as one step of rnn_forward (cells/plain.h), so T
// calls give what a T-step sequence forward gives.
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
    for (index_t l = 0; l < s.L; ++l) cells_.emplace_back(s.lstm, l == 0 ? s.I : P, H, P, weights[l]);
    h_.assign(static_cast<size_t>(s.L * B * P), T(0));
    c_.assign(s.lstm ? static_cast<size_t>(s.L * B * H) : 0, T(0));
    gates_.assign(static_cast<size_t>(B * GH), T(0));
    scratch_.assign(static_cast<size_t>(B * (s.lstm ? H : GH)), T(0));
    h_new_.assign(static_cast<size_t>(B * P), T(0));
  }

  // x: [B, I]; out: [B, P].
  void step(const T* x, T* out) override {
    const auto start = ScheduleProbe::Clock::now();
    const bool may_split = probe_.split();
    const index_t B = s_.B, H = s_.H, P = s_.P, GH = s_.gates() * H;
    const T* in = x;
    index_t in_ld = s_.I;
    for (index_t l = 0; l < s_.L; ++l) {
      const PackedCell<T>& w = cells_[static_cast<size_t>(l)];
      T* h = h_.data() + l * B * P;
      if (may_split && unit_split(B, H, in_ld, w, s_.gates())) {  // one parallel region for both products and the gates
        if (s_.lstm)
          lstm_step_units(B, H, w, in, in_ld, h, P, c_.data() + l * B * H, H, gates_.data(), GH,
                          w.projected ? h : h_new_.data(), P, scratch_.data());
        else gru_step_units(B, H, w, in, in_ld, h, P, gates_.data(), GH, scratch_.data(), h_new_.data(), P);
        if (!w.projected) std::copy_n(h_new_.data(), B * P, h);
        in = h;
        in_ld = P;
        continue;
      }
      fill_rows(B, GH, w.input_bias(), gates_.data(), GH);
      gemm_acc(B, in, in_ld, w.w_ih, gates_.data(), GH);  // (B, G·H) += (B, In) · (In, G·H)
      if (s_.lstm) {
        T* c = c_.data() + l * B * H;
        lstm_step(B, H, w, h, P, c, H, gates_.data(), GH, h, P, c, H, scratch_.data());
      } else {
        gru_step(B, H, w, h, P, gates_.data(), GH, scratch_.data(), h, P);
      }
      in = h;
      in_ld = P;
    }
    std::copy_n(in, B * P, out);
    probe_.record(ScheduleProbe::Clock::now() - start);
  }

  void reset() override {
    std::fill(h_.begin(), h_.end(), T(0));
    std::fill(c_.begin(), c_.end(), T(0));
  }

  void get_state(T* h, T* c) const override {
    std::copy(h_.begin(), h_.end(), h);
    if (c) std::copy(c_.begin(), c_.end(), c);
  }

  void set_state(const T* h, const T* c) override {
    std::copy_n(h, h_.size(), h_.begin());
    if (c) std::copy_n(c, c_.size(), c_.begin());
  }

 private:
  RnnShape s_;
  std::vector<PackedCell<T>> cells_;
  std::vector<T> h_, c_;            // [L, B, P], [L, B, H] (LSTM)
  std::vector<T> gates_, scratch_;  // [B, G·H]; LSTM m [B, H] / GRU gh [B, 3H]
  std::vector<T> h_new_;            // [B, P] h' of a step split by units
  ScheduleProbe probe_;             // whether a step splits by units: the faster of the two, timed now and then
};

template <typename T>
StreamBase<T>* make_stream(const RnnShape& s, const CellWeights<T>* weights) {
  return new Stream<T>(s, weights);
}

}  // namespace LSTMKIT_ISA
}  // namespace lstmkit
