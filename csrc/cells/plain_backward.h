// The plain LSTM/GRU's backward step as an adapter of the BPTT driver (sequence/backward.h lists what an
// adapter gives): ref/lstm.py's and ref/gru.py's cell_backward over the rows (or units) of one step, read
// from what the training forward kept (PlainTape), and the products over all N packed rows after the
// time loop (dW_ih, dW_hh, dW_hr, the biases, the input gradient).
#pragma once

#include <algorithm>
#include <vector>

#include "cells/plain.h"

namespace lstmkit {
namespace LSTMKIT_ISA {

// One row's LSTM gate gradients over units [j0, j1) (ref/lstm.py's cell_backward):
//   a: [4H] (i, f, g, o) after σ / tanh; tc: [H] tanh(c'); c_prev: [H]; dm: [H] dL/dm (m = o ⊙ tanh(c'))
//   dc: [H] in: dL/dc' from the later step, out: dL/dc_prev; dg: [4H] out: the pre-activation gradients
// On SIMD vectors for both dtypes (the same operations on every lane, the last vector masked): a
// scalar loop here took a tenth of a B=16 training step.
template <typename T>
void lstm_gate_grads(index_t H, index_t j0, index_t j1, const T* a, const T* tc, const T* c_prev, const T* dm, T* dc,
                     T* dg) {
#if LSTMKIT_HAVE_VECTORS
  using S = detail::Simd<T>;
  using V = typename S::vec;
  constexpr int W = S::W;
  const V one = S::set1(T(1));
  for (index_t j = j0; j < j1; j += W) {
    const int n = static_cast<int>(std::min<index_t>(W, j1 - j));
    auto ld = [&](const T* p) { return n == W ? S::load(p + j) : S::load_part(p + j, n); };
    auto st = [&](T* p, V v) {
      if (n == W) S::store(p + j, v);
      else S::store_part(p + j, v, n);
    };
    const V i = ld(a), f = ld(a + H), g = ld(a + 2 * H), o = ld(a + 3 * H), t = ld(tc), dmj = ld(dm);
    const V d_o = dmj * t;
    const V dct = ld(dc) + dmj * o * (one - t * t);
    st(dg, (dct * g) * i * (one - i));
    st(dg + H, (dct * ld(c_prev)) * f * (one - f));
    st(dg + 2 * H, (dct * i) * (one - g * g));
    st(dg + 3 * H, d_o * o * (one - o));
    st(dc, dct * f);  // dc_prev
  }
#else
  for (index_t j = j0; j < j1; ++j) {
    const T i = a[j], f = a[H + j], g = a[2 * H + j], o = a[3 * H + j];
    const T d_o = dm[j] * tc[j];
    const T dct = dc[j] + dm[j] * o * (T(1) - tc[j] * tc[j]);
    dg[j] = (dct * g) * i * (T(1) - i);
    dg[H + j] = (dct * c_prev[j]) * f * (T(1) - f);
    dg[2 * H + j] = (dct * i) * (T(1) - g * g);
    dg[3 * H + j] = d_o * o * (T(1) - o);
    dc[j] = dct * f;  // dc_prev
  }
#endif
}

// One row's GRU gate gradients over units [j0, j1) (ref/gru.py's cell_backward):
//   a: [3H] (r, z, n) after σ / tanh; ghn: [H] W_hn h + b_hn; h_prev: [H]; dh: [H] dL/dh'
//   dg: [3H] out: d(gi); dgh: [3H] out: d(gh); dh_direct: [H] out: dh'·z, the direct path to h_prev (may alias dh)
template <typename T>
void gru_gate_grads(index_t H, index_t j0, index_t j1, const T* a, const T* ghn, const T* h_prev, const T* dh, T* dg,
                    T* dgh, T* dh_direct) {
  for (index_t j = j0; j < j1; ++j) {
    const T rr = a[j], z = a[H + j], n = a[2 * H + j], dht = dh[j];
    const T dn_pre = dht * (T(1) - z) * (T(1) - n * n);
    const T dr_pre = dn_pre * ghn[j] * rr * (T(1) - rr);
    const T dz_pre = dht * (h_prev[j] - n) * z * (T(1) - z);
    dg[j] = dgh[j] = dr_pre;
    dg[H + j] = dgh[H + j] = dz_pre;
    dg[2 * H + j] = dn_pre;
    dgh[2 * H + j] = dn_pre * rr;
    dh_direct[j] = dht * z;  // the product through W_hh is added after
  }
}

// The per-row gradients of a plain backward, shared by its layers and directions (each row is written
// before it is read: uninitialised, since zeroing them cost 3 % of a backward).
template <typename T>
struct PlainBackwardBuffers {
  RawBuffer<T> dG;    // LSTM d(gates), GRU d(gi): pre-activation gradients [N, G·H]
  RawBuffer<T> dGh;   // GRU d(gh) [N, 3H]
  RawBuffer<T> dH;    // LSTM projection: total dh' per row [N, P]
  std::vector<T> dm;  // LSTM projection: dL/dm [B, H]
  PlainBackwardBuffers(bool lstm, bool projected, index_t N, index_t B, index_t H, index_t P, index_t GH)
      : dG(N * GH), dGh(lstm ? 0 : N * GH), dH(projected ? N * P : 0), dm(static_cast<size_t>(B * H)) {}
};

// The backward of the LSTM/GRU of one layer and direction (the driver's adapter).
template <typename T>
class PlainCellBackward {
 public:
  static constexpr index_t kUnitWidth = Tile<T>::NR;  // the unit split's granule (a register panel)

  //   w: the weights; tape: what the training forward kept (read only); grads: this cell's gradients
  //   (overwritten by finish); d_out: [N, ·] ld ldo, this direction's columns of the layer output's gradient
  //   packed: whether to pack the float products' weights (a cell with products of its own, quant/quant_train.h's
  //   bf16 cell, reuses the rest and packs its own)
  PlainCellBackward(bool lstm, index_t In, index_t H, index_t P, const CellWeights<T>& w, const PlainTape<T>& tape,
                    const CellGrads<T>& grads, const T* d_out, index_t ldo, PlainBackwardBuffers<T>& buf,
                    bool packed = true)
      : lstm_(lstm),
        H_(H),
        P_(P),
        GH_((lstm ? 4 : 3) * H),
        projected_(w.w_hr != nullptr),
        tape_(tape),
        gr_(grads),
        d_out_(d_out),
        ldo_(ldo),
        b_(buf) {
    if (!packed) return;
    w_hh_t_ = PackedWeights<T>(w.w_hh, P, GH_, 1, P);
    w_ih_t_ = PackedWeights<T>(w.w_ih, In, GH_, 1, In);
    if (projected_) w_hr_t_ = PackedWeights<T>(w.w_hr, H, P, 1, H);
  }
  PlainCellBackward(const PlainCellBackward&) = delete;
  PlainCellBackward& operator=(const PlainCellBackward&) = delete;

  // State rows [r0, r0 + n) (packed rows q0..) back through one step: dh' (+ the output's gradient) →
  // gate gradients → dh_prev; dh [·, P], dc [·, H] updated in place; one_row: whether the step has one row.
  void step(index_t q0, index_t r0, index_t n, bool one_row, T* dh, T* dc) {
    add_d_out(q0, r0, n, 0, P_, dh);
    const T* dmp = dh + r0 * P_;  // dL/dm, [n, H] ld P (P = H without projection)
    index_t ldm = P_;
    if (projected_) {
      std::copy_n(dh + r0 * P_, n * P_, b_.dH.data() + q0 * P_);
      gemm_set(n, dh + r0 * P_, P_, w_hr_t_, b_.dm.data() + r0 * H_, H_, one_row);  // (n, H) = (n, P) · (P, H)
      dmp = b_.dm.data() + r0 * H_;
      ldm = H_;
    }
    gate_grads(q0, r0, n, 0, H_, dmp, ldm, dh, dc);
    if (in_parallel() || row_macs(n) < kParallelMacs) recurrent_grads(q0, r0, n, 0, w_hh_t_.panels(), one_row, dh);
    else  // a large step on its own: the product split over the pool by panels
      parallel_for(w_hh_t_.panels(), [&](index_t p0, index_t p1) { recurrent_grads(q0, r0, n, p0, p1, one_row, dh); });
  }

  // Work of a step of nb rows, for the driver's row split within a step (for_rows).
  double row_macs(index_t nb) const { return double(nb) * double(GH_) * double(P_); }

  // Whether a whole pass of B rows runs on the lockstep pair, split by units (no projection: dm needs
  // all of a row's dh').
  bool lockstep_units(index_t B) const { return !projected_ && unit_split<T>(B, H_, GH_ / H_, P_); }

  // Units [u0, u1) of dh_prev for all nb rows (packed q0..) of the step backwards before the current
  // one: the product through W_hh of that step's gate gradients (which both threads finished).
  void product_units(index_t q0, index_t nb, index_t u0, index_t u1, bool one_row, T* dh) {
    recurrent_grads(q0, 0, nb, u0 / kUnitWidth, u1 / kUnitWidth, one_row, dh);
  }

  // Units [u0, u1) of all nb rows (packed q0..) back through a step's pointwise part: dh' (+ the output's
  // gradient) → gate gradients, dc ← dc_prev; reads and writes only those units.
  void step_units(index_t q0, index_t nb, index_t u0, index_t u1, T* dh, T* dc) {
    add_d_out(q0, 0, nb, u0, u1, dh);
    gate_grads(q0, 0, nb, u0, u1, dh, P_, dh, dc);
  }

  // After the time loop: the weight gradients, each one product over all N rows, and the gradient of
  // the layer's input layer_in [N, In] added into d_in [N, In].
  void finish(index_t N, const T* layer_in, index_t In, T* d_in) const {
    const T* dG = b_.dG.data();
    const T* dg_hh = lstm_ ? dG : b_.dGh.data();  // what multiplies h in the forward
    std::fill(gr_.w_ih, gr_.w_ih + GH_ * In, T(0));
    std::fill(gr_.w_hh, gr_.w_hh + GH_ * P_, T(0));
    gemm_tn_acc(GH_, In, N, dG, GH_, layer_in, In, gr_.w_ih, In);         // dW_ih = dGᵀ · input
    gemm_tn_acc(GH_, P_, N, dg_hh, GH_, tape_.h_prev, P_, gr_.w_hh, P_);  // dW_hh = dGᵀ · h_prev
    if (gr_.b_ih) {
      column_sums(N, GH_, dG, GH_, static_cast<const T*>(nullptr), 0, gr_.b_ih);
      if (dg_hh == dG) std::copy_n(gr_.b_ih, GH_, gr_.b_hh);  // the LSTM: both biases add to the same gates
      else column_sums(N, GH_, dg_hh, GH_, static_cast<const T*>(nullptr), 0, gr_.b_hh);
    }
    if (gr_.w_hr) {
      std::fill(gr_.w_hr, gr_.w_hr + P_ * H_, T(0));
      gemm_tn_acc(P_, H_, N, b_.dH.data(), P_, tape_.m, H_, gr_.w_hr, H_);  // dW_hr = dh'ᵀ · m
    }
    gemm_acc(N, dG, GH_, w_ih_t_, d_in, In);  // d_in += dG (N, G·H) · W_ih (G·H, In)
  }

 protected:
  // dh'[rows [r0, r0 + nr), columns [j0, j1)] += the gradient of the step's output (packed rows q0..).
  void add_d_out(index_t q0, index_t r0, index_t nr, index_t j0, index_t j1, T* dh) const {
    for (index_t r = 0; r < nr; ++r) {
      const T* dy = d_out_ + (q0 + r) * ldo_;
      T* dhr = dh + (r0 + r) * P_;
      for (index_t j = j0; j < j1; ++j) dhr[j] += dy[j];
    }
  }

  // Gate gradients of rows [r0, r0 + nr) (packed q0..) and units [j0, j1), from dL/dm (dmp, ld ldm; for
  // the GRU dL/dh' is dh itself): dG (and dGh), dc ← dc_prev; the GRU's dh ← its direct path dh'·z.
  void gate_grads(index_t q0, index_t r0, index_t nr, index_t j0, index_t j1, const T* dmp, index_t ldm, T* dh, T* dc) {
    const index_t H = H_, GH = GH_;
    T* dg = b_.dG.data() + q0 * GH;  // [nr, G·H]
    const T* act = tape_.act + q0 * GH;
    const T* aux = tape_.aux + q0 * H;
    if (lstm_) {
      const T* cp = tape_.c_prev + q0 * H;
      for (index_t r = 0; r < nr; ++r)
        lstm_gate_grads(H, j0, j1, act + r * GH, aux + r * H, cp + r * H, dmp + r * ldm, dc + (r0 + r) * H,
                        dg + r * GH);
      return;
    }
    T* dgh = b_.dGh.data() + q0 * GH;
    for (index_t r = 0; r < nr; ++r) {
      T* dhr = dh + (r0 + r) * P_;
      gru_gate_grads(H, j0, j1, act + r * GH, aux + r * H, tape_.h_prev + (q0 + r) * P_, dhr, dg + r * GH, dgh + r * GH,
                     dhr);
    }
  }

  // dh_prev over output panels [p0, p1) (columns p·NR ..) of rows [r0, r0 + nr) (packed q0..): LSTM
  // dG · W_hh, GRU + dGh · W_hh (onto the direct path). one_row: the GEMM's one-row kernel only when
  // the step has one row (not one thread's share of it).
  void recurrent_grads(index_t q0, index_t r0, index_t nr, index_t p0, index_t p1, bool one_row, T* dh) const {
    T* dhb = dh + r0 * P_;
    if (lstm_) {
      const index_t c0 = p0 * kUnitWidth, c1 = std::min(P_, p1 * kUnitWidth);
      for (index_t r = 0; r < nr; ++r) std::fill(dhb + r * P_ + c0, dhb + r * P_ + c1, T(0));
      gemm_acc_serial(nr, b_.dG.data() + q0 * GH_, GH_, w_hh_t_, dhb, P_, p0, p1, one_row);  // (nr, 4H) · (4H, P)
    } else {
      gemm_acc_serial(nr, b_.dGh.data() + q0 * GH_, GH_, w_hh_t_, dhb, P_, p0, p1, one_row);  // += (nr, 3H) · (3H, P)
    }
  }

  bool lstm_;
  index_t H_, P_, GH_;
  bool projected_;
  PackedWeights<T> w_hh_t_;  // W_hhᵀ, for dh_prev = dG · W_hh
  PackedWeights<T> w_ih_t_;  // W_ihᵀ, for d_in = dG · W_ih
  PackedWeights<T> w_hr_t_;  // W_hrᵀ, for dm = dh' · W_hr (projection only)
  PlainTape<T> tape_;
  const CellGrads<T>& gr_;
  const T* d_out_;
  index_t ldo_;
  PlainBackwardBuffers<T>& b_;
};

// The backward of one cell step (cell_forward with its training caches), every product reading the weights
// in place: a torch cell's training step, where the sequence backward of T = 1 would recompute the forward
// and pack three matrices (ref/lstm.py's and ref/gru.py's cell_backward; no projection).
//   x [B, I], h [B, H], c [B, H] (LSTM; null for a GRU): the step's inputs; act, aux: cell_forward's caches
//   dh [B, H], dc [B, H] (LSTM): dL/dh', dL/dc'
//   dx [B, I], dh_prev [B, H], dc_prev [B, H] (LSTM) and grads (w_ih [G·H, I], w_hh [G·H, H], b_ih and b_hh
//   [G·H], null without bias; w_hr null): the gradients, all overwritten
template <typename T>
void cell_backward(bool lstm, index_t B, index_t I, index_t H, const T* x, const T* h, const T* c,
                   const CellWeights<T>& w, const T* act, const T* aux, const T* dh, const T* dc, T* dx, T* dh_prev,
                   T* dc_prev, const CellGrads<T>& grads) {
  if (B <= 0) return;
  const index_t GH = (lstm ? 4 : 3) * H;
  std::vector<T> dG(static_cast<size_t>(B * GH));              // LSTM d(gates), GRU d(gi)
  std::vector<T> dGh(lstm ? 0 : static_cast<size_t>(B * GH));  // GRU d(gh)
  if (lstm) {
    std::copy_n(dc, B * H, dc_prev);  // lstm_gate_grads turns dc' into dc_prev in place
    for (index_t b = 0; b < B; ++b)
      lstm_gate_grads(H, 0, H, act + b * GH, aux + b * H, c + b * H, dh + b * H, dc_prev + b * H, dG.data() + b * GH);
  } else {
    for (index_t b = 0; b < B; ++b)
      gru_gate_grads(H, 0, H, act + b * GH, aux + b * H, h + b * H, dh + b * H, dG.data() + b * GH, dGh.data() + b * GH,
                     dh_prev + b * H);
  }
  const T* dg_hh = lstm ? dG.data() : dGh.data();                            // what multiplies h in the forward
  gemm_nn_in_place<T, false>(B, I, GH, dG.data(), GH, 1, w.w_ih, I, dx, I);  // dx = dG · W_ih
  if (lstm) gemm_nn_in_place<T, false>(B, H, GH, dg_hh, GH, 1, w.w_hh, H, dh_prev, H);  // dh_prev = dG · W_hh
  else gemm_nn_in_place<T, true>(B, H, GH, dg_hh, GH, 1, w.w_hh, H, dh_prev, H);        // += dGh · W_hh
  gemm_nn_in_place<T, false>(GH, I, B, dG.data(), 1, GH, x, I, grads.w_ih, I);          // dW_ih = dGᵀ · x
  gemm_nn_in_place<T, false>(GH, H, B, dg_hh, 1, GH, h, H, grads.w_hh, H);              // dW_hh = dGᵀ · h
  if (grads.b_ih) {
    column_sums(B, GH, dG.data(), GH, static_cast<const T*>(nullptr), 0, grads.b_ih);
    if (lstm) std::copy_n(grads.b_ih, GH, grads.b_hh);  // both biases add to the same gates
    else column_sums(B, GH, dg_hh, GH, static_cast<const T*>(nullptr), 0, grads.b_hh);
  }
}

}  // namespace LSTMKIT_ISA
}  // namespace lstmkit
