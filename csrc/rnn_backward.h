// Backpropagation through time for the whole stacked (bi)directional LSTM/GRU: the same function as
// lstmkit/ref/rnn.py's backward, for a forward without dropout, with torch's packed-sequence
// semantics for lengths.
//
// The forward is recomputed here (in the packed layout of rnn.h), keeping per step what the
// backward needs, so the caller saves only the forward's inputs (as torch's autograd would).
// Per direction, the backward walks the steps in the opposite order of the forward: per step the
// small GEMM dh_prev = dG · W_hh, fused with the gate derivatives; the weight gradients are then one
// GEMM each over all N = Σ lengths rows (dW = dGᵀ · inputs), and the input gradient one GEMM too.
// Rows past a sequence's end never enter the packed layout, which is exactly the reference's mask:
// their state gradient passes through unchanged, and dx there is zero.
#pragma once

#include <vector>

#include "rnn.h"

namespace lstmkit {
namespace LSTMKIT_ISA {

// What the backward pass needs from one direction of one layer's forward; packed rows [N, ·].
template <typename T>
struct DirectionCache {
  std::vector<T> act;     // [N, G·H]  LSTM (i, f, g, o), GRU (r, z, n), after σ / tanh
  std::vector<T> aux;     // [N, H]    LSTM tanh(c'), GRU W_hn h + b_hn
  std::vector<T> h_prev;  // [N, P]    h before the step
  std::vector<T> c_prev;  // [N, H]    LSTM c before the step
  std::vector<T> m;       // [N, H]    LSTM with projection: o ⊙ tanh(c'), the projection's input
};

// Sequence backward.
//   x, weights, h0, c0, lengths: as rnn_forward
//   d_out: [T, B, D·P] gradient of the output (entries past a sequence's end are ignored)
//   d_hn:  [L·D, B, P] gradient of the final h; d_cn: [L·D, B, H] of the final c (LSTM), null for GRU
//   dx:    [T, B, I] out, zero past each sequence's end
//   d_h0:  [L·D, B, P] out; d_c0: [L·D, B, H] out (LSTM), null for GRU
//   grads: [L·D] CellGrads, index layer·D + direction, every buffer overwritten
// All pointers are caller-owned and only used during the call; outputs must not alias inputs.
template <typename T_>
void rnn_backward(const RnnShape& s, const T_* x, const CellWeights<T_>* weights, const T_* h0, const T_* c0,
                  const int64_t* lengths, const T_* d_out, const T_* d_hn, const T_* d_cn, T_* dx, T_* d_h0,
                  T_* d_c0, const CellGrads<T_>* grads) {
  using T = T_;
  const index_t T_steps = s.T, B = s.B, H = s.H, P = s.P, D = s.D, G = s.gates(), GH = G * H;
  const PackedBatch pk(T_steps, B, lengths);
  const std::vector<index_t>&order = pk.order, &batch_sizes = pk.batch_sizes, &offsets = pk.offsets;
  const index_t N = pk.N;
  auto in_size = [&](index_t layer) { return layer == 0 ? s.I : D * P; };
  auto step_time = [&](index_t d, index_t step) { return d == 0 ? step : T_steps - 1 - step; };

  // ---- Forward, keeping the caches. inputs[l]: layer l's packed input [N, In].
  std::vector<std::vector<T>> inputs(static_cast<size_t>(s.L));
  inputs[0].resize(static_cast<size_t>(N * s.I));
  pk.pack(x, B, s.I, inputs[0].data());
  std::vector<DirectionCache<T>> caches(static_cast<size_t>(s.L * D));
  std::vector<T> proj(static_cast<size_t>(N * D * GH));  // [N, D·G·H]
  std::vector<T> h(static_cast<size_t>(B * P)), c(static_cast<size_t>(B * H));  // state, packed order
  std::vector<T> gh(static_cast<size_t>(B * GH));                               // GRU h·W_hhᵀ [B, 3H]
  std::vector<T> h_new(static_cast<size_t>(B * P));                             // h' of a step split by units

  for (index_t layer = 0; layer < s.L; ++layer) {
    const index_t In = in_size(layer), ldp = D * GH, ldo = D * P;
    std::vector<T> layer_out(layer + 1 < s.L ? static_cast<size_t>(N * ldo) : 0);  // [N, D·P], not kept for the top
    for (index_t d = 0; d < D; ++d) {
      const index_t k = layer * D + d;
      const PackedCell<T> w(s.lstm, In, H, P, weights[k]);
      fill_rows(N, GH, w.input_bias(), proj.data() + d * GH, ldp);
      gemm_acc(N, inputs[layer].data(), In, w.w_ih, proj.data() + d * GH, ldp);

      DirectionCache<T>& cache = caches[k];
      cache.act.resize(static_cast<size_t>(N * GH));
      cache.aux.resize(static_cast<size_t>(N * H));
      cache.h_prev.resize(static_cast<size_t>(N * P));
      if (s.lstm) cache.c_prev.resize(static_cast<size_t>(N * H));
      if (w.projected) cache.m.resize(static_cast<size_t>(N * H));
      for (index_t r = 0; r < B; ++r) {
        std::copy_n(h0 + (k * B + order[r]) * P, P, h.data() + r * P);
        if (s.lstm) std::copy_n(c0 + (k * B + order[r]) * H, H, c.data() + r * H);
      }
      for (index_t step = 0; step < T_steps; ++step) {
        const index_t t = step_time(d, step), nb = batch_sizes[t], row0 = offsets[t];
        if (nb == 0) continue;
        T* gates = proj.data() + row0 * ldp + d * GH;  // [nb, G·H] ld ldp
        std::copy_n(h.data(), nb * P, cache.h_prev.data() + row0 * P);
        if (s.lstm) std::copy_n(c.data(), nb * H, cache.c_prev.data() + row0 * H);
        if (unit_split(nb, H, 0, w, G)) {  // split by hidden units (as rnn_forward); h' via h_new
          T* act = cache.act.data() + row0 * GH;
          T* aux = cache.aux.data() + row0 * H;
          if (s.lstm) {
            T* m = w.projected ? cache.m.data() + row0 * H : nullptr;
            lstm_step_units(nb, H, w, static_cast<const T*>(nullptr), 0, h.data(), P, c.data(), H, gates, ldp,
                            w.projected ? h.data() : h_new.data(), P, m, act, aux);
          } else {
            gru_step_units(nb, H, w, static_cast<const T*>(nullptr), 0, h.data(), P, gates, ldp, gh.data(),
                           h_new.data(), P, act, aux);
          }
          if (!w.projected) std::copy_n(h_new.data(), nb * P, h.data());
        } else {
        // Rows [r0, r1) of the step (independent rows: large steps split over the pool).
        for_rows(nb, double(nb) * double(GH) * double(P), [&](index_t r0, index_t r1) {
          const index_t n = r1 - r0, q = row0 + r0;
          T* hr = h.data() + r0 * P;
          T* gr = gates + r0 * ldp;
          if (s.lstm) {
            T* cr = c.data() + r0 * H;
            gemm_acc(n, hr, P, w.w_hh, gr, ldp);
            T* m = w.projected ? cache.m.data() + q * H : hr;
            lstm_pointwise(n, H, gr, ldp, cr, H, cr, H, m, w.projected ? H : P, cache.act.data() + q * GH,
                           cache.aux.data() + q * H);
            if (w.projected) gemm_set(n, m, H, w.w_hr, hr, P);
          } else {
            T* ghr = gh.data() + r0 * GH;
            gemm_set(n, hr, P, w.w_hh, ghr, GH);
            gru_pointwise(n, H, gr, ldp, ghr, GH, w.b_hh, hr, P, hr, P, cache.act.data() + q * GH,
                          cache.aux.data() + q * H);
          }
        });
        }
        if (!layer_out.empty())
          for (index_t r = 0; r < nb; ++r) std::copy_n(h.data() + r * P, P, layer_out.data() + (row0 + r) * ldo + d * P);
      }
    }
    if (layer + 1 < s.L) inputs[layer + 1].swap(layer_out);
  }
  proj = std::vector<T>();

  // ---- Backward. d_layer_out: gradient of the current layer's packed output [N, D·P].
  std::vector<T> d_layer_out(static_cast<size_t>(N * D * P));
  pk.pack(d_out, B, D * P, d_layer_out.data());
  std::vector<T> dh(static_cast<size_t>(B * P)), dc(static_cast<size_t>(B * H));  // state grads, packed order
  std::vector<T> dm(static_cast<size_t>(B * H));                                  // LSTM projection: dL/dm [B, H]
  std::vector<T> dG(static_cast<size_t>(N * GH));   // LSTM d(gates), GRU d(gi): pre-activation grads [N, G·H]
  std::vector<T> dGh(s.lstm ? 0 : static_cast<size_t>(N * GH));  // GRU d(gh) [N, 3H]
  std::vector<T> dH;                                              // LSTM projection: total dh' per row [N, P]

  for (index_t layer = s.L - 1; layer >= 0; --layer) {
    const index_t In = in_size(layer), ldo = D * P;
    std::vector<T> d_in(static_cast<size_t>(N * In), T(0));  // gradient of this layer's packed input
    for (index_t d = 0; d < D; ++d) {
      const index_t k = layer * D + d;
      const CellWeights<T>& w = weights[k];
      const DirectionCache<T>& cache = caches[k];
      const PackedWeights<T> w_hh_t(w.w_hh, P, GH, 1, P);  // W_hhᵀ, for dh_prev = dG · W_hh
      const PackedWeights<T> w_ih_t(w.w_ih, In, GH, 1, In);  // W_ihᵀ, for d_in = dG · W_ih
      PackedWeights<T> w_hr_t;                               // W_hrᵀ, for dm = dh' · W_hr
      if (w.w_hr) {
        w_hr_t = PackedWeights<T>(w.w_hr, H, P, 1, H);
        dH.resize(static_cast<size_t>(N * P));
      }
      for (index_t r = 0; r < B; ++r) {
        std::copy_n(d_hn + (k * B + order[r]) * P, P, dh.data() + r * P);
        if (s.lstm) std::copy_n(d_cn + (k * B + order[r]) * H, H, dc.data() + r * H);
      }
      for (index_t step = T_steps - 1; step >= 0; --step) {
        const index_t t = step_time(d, step), nb = batch_sizes[t], row0 = offsets[t];
        if (nb == 0) continue;
        // Rows [r0, r1) of the step (independent rows: large steps split over the pool).
        for_rows(nb, double(nb) * double(GH) * double(P), [&](index_t r0, index_t r1) {
          const index_t nr = r1 - r0, q = row0 + r0;
          T* dhb = dh.data() + r0 * P;
          // dh' = gradient from the later step + gradient of this step's output.
          for (index_t r = 0; r < nr; ++r) {
            const T* dy = d_layer_out.data() + (q + r) * ldo + d * P;
            for (index_t j = 0; j < P; ++j) dhb[r * P + j] += dy[j];
          }
          T* dg = dG.data() + q * GH;  // [nr, G·H]
          if (s.lstm) {
            const T* dmp = dhb;  // dL/dm, [nr, H] ld P (P = H without projection)
            index_t ldm = P;
            if (w.w_hr) {
              std::copy_n(dhb, nr * P, dH.data() + q * P);
              gemm_set(nr, dhb, P, w_hr_t, dm.data() + r0 * H, H);  // (nr, H) = (nr, P) · (P, H)
              dmp = dm.data() + r0 * H;
              ldm = H;
            }
            for (index_t r = 0; r < nr; ++r) {
              const T* a = cache.act.data() + (q + r) * GH;
              const T* tc = cache.aux.data() + (q + r) * H;
              const T* cp = cache.c_prev.data() + (q + r) * H;
              const T* dmr = dmp + r * ldm;
              T* dcr = dc.data() + (r0 + r) * H;
              T* dgr = dg + r * GH;
              for (index_t j = 0; j < H; ++j) {
                const T i = a[j], f = a[H + j], g = a[2 * H + j], o = a[3 * H + j];
                const T d_o = dmr[j] * tc[j];
                const T dct = dcr[j] + dmr[j] * o * (T(1) - tc[j] * tc[j]);
                dgr[j] = (dct * g) * i * (T(1) - i);
                dgr[H + j] = (dct * cp[j]) * f * (T(1) - f);
                dgr[2 * H + j] = (dct * i) * (T(1) - g * g);
                dgr[3 * H + j] = d_o * o * (T(1) - o);
                dcr[j] = dct * f;  // dc_prev
              }
            }
            gemm_set(nr, dg, GH, w_hh_t, dhb, P);  // dh_prev (nr, P) = dG (nr, 4H) · W_hh (4H, P)
          } else {
            T* dgh = dGh.data() + q * GH;
            for (index_t r = 0; r < nr; ++r) {
              const T* a = cache.act.data() + (q + r) * GH;
              const T* ghn = cache.aux.data() + (q + r) * H;
              const T* hp = cache.h_prev.data() + (q + r) * P;
              T* dhr = dhb + r * P;
              T* dgr = dg + r * GH;
              T* dghr = dgh + r * GH;
              for (index_t j = 0; j < H; ++j) {
                const T rr = a[j], z = a[H + j], n = a[2 * H + j], dht = dhr[j];
                const T dn_pre = dht * (T(1) - z) * (T(1) - n * n);
                const T dr_pre = dn_pre * ghn[j] * rr * (T(1) - rr);
                const T dz_pre = dht * (hp[j] - n) * z * (T(1) - z);
                dgr[j] = dghr[j] = dr_pre;
                dgr[H + j] = dghr[H + j] = dz_pre;
                dgr[2 * H + j] = dn_pre;
                dghr[2 * H + j] = dn_pre * rr;
                dhr[j] = dht * z;  // the direct path; the product through W_hh is added below
              }
            }
            gemm_acc(nr, dgh, GH, w_hh_t, dhb, P);  // dh_prev += d_gh (nr, 3H) · W_hh (3H, P)
          }
        });
      }
      for (index_t r = 0; r < B; ++r) {
        std::copy_n(dh.data() + r * P, P, d_h0 + (k * B + order[r]) * P);
        if (s.lstm) std::copy_n(dc.data() + r * H, H, d_c0 + (k * B + order[r]) * H);
      }

      // Weight gradients, each one product over all N rows.
      const CellGrads<T>& gr = grads[k];
      const T* dg_hh = s.lstm ? dG.data() : dGh.data();  // what multiplies h in the forward
      std::fill(gr.w_ih, gr.w_ih + GH * In, T(0));
      std::fill(gr.w_hh, gr.w_hh + GH * P, T(0));
      gemm_tn_acc(GH, In, N, dG.data(), GH, inputs[layer].data(), In, gr.w_ih, In);  // dW_ih = dGᵀ · input
      gemm_tn_acc(GH, P, N, dg_hh, GH, cache.h_prev.data(), P, gr.w_hh, P);         // dW_hh = dGᵀ · h_prev
      if (gr.b_ih) {
        std::fill(gr.b_ih, gr.b_ih + GH, T(0));
        std::fill(gr.b_hh, gr.b_hh + GH, T(0));
        auto bias_sums = [&](index_t j0, index_t j1) {  // columns [j0, j1), rows summed in order
          for (index_t n = 0; n < N; ++n)
            for (index_t j = j0; j < j1; ++j) {
              gr.b_ih[j] += dG[n * GH + j];
              gr.b_hh[j] += dg_hh[n * GH + j];
            }
        };
        if (double(N) * double(GH) >= kParallelMacs) parallel_for(GH, bias_sums);
        else bias_sums(0, GH);
      }
      if (gr.w_hr) {
        std::fill(gr.w_hr, gr.w_hr + P * H, T(0));
        gemm_tn_acc(P, H, N, dH.data(), P, cache.m.data(), H, gr.w_hr, H);  // dW_hr = dh'ᵀ · m
      }
      gemm_acc(N, dG.data(), GH, w_ih_t, d_in.data(), In);  // d_in += dG (N, G·H) · W_ih (G·H, In)
    }
    d_layer_out.swap(d_in);
  }
  pk.unpack(d_layer_out.data(), B, s.I, dx);
}

}  // namespace LSTMKIT_ISA
}  // namespace lstmkit
