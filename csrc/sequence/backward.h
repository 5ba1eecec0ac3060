// Training of the whole stacked (bi)directional LSTM/GRU: a forward that keeps what the backward
// needs in a caller-owned workspace (rnn_train_forward), and backpropagation through time that reads
// it (rnn_backward) — the same functions as lstmkit/ref/rnn.py's forward and backward, for a forward
// without dropout, with torch's packed-sequence semantics for lengths.
//
// The workspace replaces recomputing the forward in the backward: a training step is one forward and
// one backward, as in torch's autograd. Both run in the packed layout of sequence/forward.h (N = Σ lengths rows).
// Per direction, the backward walks the steps in the opposite order of the forward; only the product
// through the recurrent weights (dh_prev = dG · W_hh, fused with the gate derivatives) is per step.
// The weight gradients are then one GEMM each over all N rows (dW = dGᵀ · inputs), and the input
// gradient one GEMM too (d_in = dG · W_ih). Large batches run the whole time loop split by rows over
// the pool, forward and backward (rows never interact), so the steps need no synchronisation.
// Rows past a sequence's end never enter the packed layout, which is exactly the reference's mask:
// their state gradient passes through unchanged, and dx there is zero.
#pragma once

#include <vector>

#include "sequence/forward.h"

namespace lstmkit {
namespace LSTMKIT_ISA {

// Where each part of the training workspace lies (sizes: common.h's train_workspace_row). Every part is
// [rows, width] row-major with rows = T·B (the packed layout uses the first N of them):
//   per (layer, direction) k = layer·D + d, one block after another:
//     act    [rows, G·H]  LSTM (i, f, g, o), GRU (r, z, n), after σ / tanh
//     aux    [rows, H]    LSTM tanh(c'), GRU W_hn h + b_hn
//     h_prev [rows, P]    h before the step
//     c_prev [rows, H]    LSTM only: c before the step
//     m      [rows, H]    LSTM with projection only: o ⊙ tanh(c'), the projection's input
//   then per layer l ≥ 1: input [rows, D·P], the packed output of layer l − 1.
template <typename T>
struct TrainWorkspace {
  T* base;
  index_t rows, GH, H, P, D, L, cell;
  bool lstm, projected;

  TrainWorkspace(const RnnShape& s, T* ws)
      : base(ws),
        rows(s.T * s.B),
        GH(s.gates() * s.H),
        H(s.H),
        P(s.P),
        D(s.D),
        L(s.L),
        cell(s.gates() * s.H + s.H + s.P + (s.lstm ? s.H : 0) + (s.P != s.H ? s.H : 0)),
        lstm(s.lstm),
        projected(s.P != s.H) {}

  T* act(index_t k) const { return base + k * rows * cell; }
  T* aux(index_t k) const { return act(k) + rows * GH; }
  T* h_prev(index_t k) const { return aux(k) + rows * H; }
  T* c_prev(index_t k) const { return h_prev(k) + rows * P; }
  T* m(index_t k) const { return c_prev(k) + (lstm ? rows * H : 0); }
  T* input(index_t layer) const { return base + L * D * rows * cell + (layer - 1) * rows * D * P; }  // layer ≥ 1

  // Zeroes rows [n, rows) of every part: the packed layout uses only n of them, and the workspace is
  // then fully defined (the same bits from the same call, as torch's op checks expect).
  void clear_unused(index_t n) const {
    auto clear = [&](T* part, index_t width) { std::fill(part + n * width, part + rows * width, T(0)); };
    for (index_t k = 0; k < L * D; ++k) {
      clear(act(k), GH), clear(aux(k), H), clear(h_prev(k), P);
      if (lstm) clear(c_prev(k), H);
      if (projected) clear(m(k), H);
    }
    for (index_t layer = 1; layer < L; ++layer) clear(input(layer), D * P);
  }
};

// Training forward: rnn_forward's results plus the workspace (run_sequence with the plain cells' tape).
//   x, weights, h0, c0, lengths, out, h_n, c_n: as rnn_forward
//   ws: [T·B·train_workspace_row(s)] out, see TrainWorkspace
template <typename T>
void rnn_train_forward(const RnnShape& s, const T* x, const CellWeights<T>* weights, const T* h0, const T* c0,
                       const int64_t* lengths, const T* const* dropout, T* out, T* h_n, T* c_n, T* ws_base) {
  const TrainWorkspace<T> ws(s, ws_base);
  ws.clear_unused(PackedBatch(s.T, s.B, lengths).N);
  std::vector<T*> inputs(static_cast<size_t>(s.L), nullptr);
  for (index_t layer = 1; layer < s.L; ++layer) inputs[layer] = ws.input(layer);
  SequenceArgs<T> a;
  a.x = x, a.h0 = h0, a.c0 = c0, a.lengths = lengths, a.out = out, a.h_n = h_n, a.c_n = c_n;
  a.layer_inputs = inputs.data();
  a.dropout = dropout;
  run_sequence(s, a, true, [&](index_t layer, index_t d, index_t in, const PackedBatch&) {
    const index_t k = layer * s.D + d;
    const PlainTape<T> tape{ws.act(k), ws.aux(k), ws.h_prev(k), ws.c_prev(k), ws.m(k)};
    return PlainCell<T>(s.lstm, in, s.B, s.H, s.P, weights[k], tape);
  });
}

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

// The gradient of layer `layer`'s packed input [N, In] (size = N·In values), zeroed for the directions
// to add into: dx itself for layer 0 when the packed layout is x's own (plain: no lengths), else one of
// two buffers that alternate between layers (the layer above's is still being read).
template <typename T>
T* layer_input_grad(index_t layer, bool plain, T* dx, std::vector<T> (&buffers)[2], index_t size) {
  T* grad = dx;
  if (layer != 0 || !plain) {
    buffers[layer % 2].resize(static_cast<size_t>(size));
    grad = buffers[layer % 2].data();
  }
  std::fill(grad, grad + size, T(0));
  return grad;
}

// The skeleton every BPTT shares (rnn_backward below, variant_backward in sequence/variant_backward.h):
// the packed layout (x and d_out packed unless there are no lengths), the layers from the last, per
// direction the state gradient gathered from d_h_n / d_c_n before the direction's pass and scattered to
// d_h0 / d_c0 after it, and the gradient of each layer's input (dx for layer 0) summed over its directions,
// times the dropout mask between it and the layer below (dropout: as SequenceArgs, or null).
//   layer_input(layer): layer ≥ 1's packed input [N, D·P], as the training forward kept it
//   direction(layer, d, layer_in, In, d_layer_out, d_in, dh, dc): one direction's pass backwards through
//     time from dh [B, P] / dc [B, H] (packed order; in: d_h_n, d_c_n; out: d_h0, d_c0), its parameter
//     gradients, and its input's gradient added into d_in [N, In]; d_layer_out [N, D·P] is the gradient
//     of the layer's packed output, layer_in [N, In] its packed input.
template <typename T, typename LayerInput, typename Direction>
void run_backward(const RnnShape& s, const PackedBatch& pk, bool plain, const T* x, const T* d_out, const T* d_hn,
                  const T* d_cn, T* dx, T* d_h0, T* d_c0, const T* const* dropout, LayerInput&& layer_input,
                  Direction&& direction) {
  const index_t B = s.B, H = s.H, P = s.P, D = s.D, N = pk.N, ldo = D * P;
  std::vector<T> x_packed(plain ? 0 : static_cast<size_t>(N * s.I));
  if (!plain) pk.pack(x, B, s.I, x_packed.data());
  std::vector<T> d_out_packed(plain ? 0 : static_cast<size_t>(N * ldo));
  if (!plain) pk.pack(d_out, B, ldo, d_out_packed.data());
  const T* d_layer_out = plain ? d_out : d_out_packed.data();  // d of the current layer's output [N, D·P]
  std::vector<T> d_ins[2];  // gradients of the layers' packed inputs, alternating (layer 0's: dx when plain)
  std::vector<T> dh(static_cast<size_t>(B * P)), dc(static_cast<size_t>(B * H));  // state grads, packed order
  std::vector<T> mask_packed;  // a dropout mask in the packed layout (with lengths)
  for (index_t layer = s.L - 1; layer >= 0; --layer) {
    const index_t In = layer == 0 ? s.I : D * P;
    const T* layer_in = layer > 0 ? layer_input(layer) : plain ? x : x_packed.data();
    T* d_in = layer_input_grad(layer, plain, dx, d_ins, N * In);  // summed over the directions
    for (index_t d = 0; d < D; ++d) {
      const index_t k = layer * D + d;
      for (index_t r = 0; r < B; ++r) {
        std::copy_n(d_hn + (k * B + pk.order[r]) * P, P, dh.data() + r * P);
        if (s.lstm) std::copy_n(d_cn + (k * B + pk.order[r]) * H, H, dc.data() + r * H);
      }
      direction(layer, d, layer_in, In, d_layer_out, d_in, dh.data(), dc.data());
      for (index_t r = 0; r < B; ++r) {
        std::copy_n(dh.data() + r * P, P, d_h0 + (k * B + pk.order[r]) * P);
        if (s.lstm) std::copy_n(dc.data() + r * H, H, d_c0 + (k * B + pk.order[r]) * H);
      }
    }
    if (layer > 0 && dropout) multiply_packed(pk, plain, B, ldo, dropout[layer - 1], d_in, mask_packed);
    d_layer_out = d_in;
  }
  if (!plain) pk.unpack(d_layer_out, B, s.I, dx);
}

// Sequence backward from the workspace of rnn_train_forward called with the same s, x, weights and
// lengths (and initial state, which the workspace holds).
//   d_out: [T, B, D·P] gradient of the output (entries past a sequence's end are ignored)
//   d_hn:  [L·D, B, P] gradient of the final h; d_cn: [L·D, B, H] of the final c (LSTM), null for GRU
//   dx:    [T, B, I] out, zero past each sequence's end
//   d_h0:  [L·D, B, P] out; d_c0: [L·D, B, H] out (LSTM), null for GRU
//   grads: [L·D] CellGrads, index layer·D + direction, every buffer overwritten
// All pointers are caller-owned and only used during the call; outputs must not alias inputs.
template <typename T_>
void rnn_backward(const RnnShape& s, const T_* x, const CellWeights<T_>* weights, const int64_t* lengths,
                  const T_* const* dropout, const T_* ws_base, const T_* d_out, const T_* d_hn, const T_* d_cn, T_* dx,
                  T_* d_h0, T_* d_c0, const CellGrads<T_>* grads) {
  using T = T_;
  const index_t T_steps = s.T, B = s.B, H = s.H, P = s.P, D = s.D, G = s.gates(), GH = G * H;
  const PackedBatch pk(T_steps, B, lengths);
  const std::vector<index_t>&batch_sizes = pk.batch_sizes, &offsets = pk.offsets;
  const index_t N = pk.N, ldo = D * P;
  const TrainWorkspace<T> ws(s, const_cast<T*>(ws_base));  // read only here
  std::vector<T> dm(static_cast<size_t>(B * H));           // LSTM projection: dL/dm [B, H]
  // Every row of these is written before it is read: uninitialised (zeroing them cost 3 % of a backward).
  RawBuffer<T> dG(N * GH);                // LSTM d(gates), GRU d(gi): pre-activation grads [N, G·H]
  RawBuffer<T> dGh(s.lstm ? 0 : N * GH);  // GRU d(gh) [N, 3H]
  std::vector<T> dH;                      // LSTM projection: total dh' per row [N, P]
  auto layer_input = [&](index_t layer) -> const T* { return ws.input(layer); };
  run_backward(
      s, pk, lengths == nullptr, x, d_out, d_hn, d_cn, dx, d_h0, d_c0, dropout, layer_input,
      [&](index_t layer, index_t d, const T* layer_in, index_t In, const T* d_layer_out, T* d_in, T* dh, T* dc) {
        const index_t k = layer * D + d;
        const CellWeights<T>& w = weights[k];
        const T* act = ws.act(k);
        const T* aux = ws.aux(k);
        const T* hp = ws.h_prev(k);
        const T* cp = ws.c_prev(k);
        const PackedWeights<T> w_hh_t(w.w_hh, P, GH, 1, P);    // W_hhᵀ, for dh_prev = dG · W_hh
        const PackedWeights<T> w_ih_t(w.w_ih, In, GH, 1, In);  // W_ihᵀ, for d_in = dG · W_ih
        PackedWeights<T> w_hr_t;                               // W_hrᵀ, for dm = dh' · W_hr
        if (w.w_hr) {
          w_hr_t = PackedWeights<T>(w.w_hr, H, P, 1, H);
          dH.resize(static_cast<size_t>(N * P));
        }
        // Gate gradients of rows [r0, r0 + nr) and units [j0, j1) of step t, from dL/dm (dmp, ld ldm; for
        // the GRU dL/dh' is dh itself): dG (and dGh), dc ← dc_prev; the GRU's dh ← its direct path dh'·z.
        auto gate_grads = [&](index_t t, index_t r0, index_t nr, index_t j0, index_t j1, const T* dmp, index_t ldm) {
          const index_t q = offsets[t] + r0;
          T* dg = dG.data() + q * GH;  // [nr, G·H]
          if (s.lstm) {
            for (index_t r = 0; r < nr; ++r)
              lstm_gate_grads(H, j0, j1, act + (q + r) * GH, aux + (q + r) * H, cp + (q + r) * H, dmp + r * ldm,
                              dc + (r0 + r) * H, dg + r * GH);
          } else {
            T* dgh = dGh.data() + q * GH;
            for (index_t r = 0; r < nr; ++r) {
              const T* a = act + (q + r) * GH;
              const T* ghn = aux + (q + r) * H;
              const T* hpr = hp + (q + r) * P;
              T* dhr = dh + (r0 + r) * P;
              T* dgr = dg + r * GH;
              T* dghr = dgh + r * GH;
              for (index_t j = j0; j < j1; ++j) {
                const T rr = a[j], z = a[H + j], n = a[2 * H + j], dht = dhr[j];
                const T dn_pre = dht * (T(1) - z) * (T(1) - n * n);
                const T dr_pre = dn_pre * ghn[j] * rr * (T(1) - rr);
                const T dz_pre = dht * (hpr[j] - n) * z * (T(1) - z);
                dgr[j] = dghr[j] = dr_pre;
                dgr[H + j] = dghr[H + j] = dz_pre;
                dgr[2 * H + j] = dn_pre;
                dghr[2 * H + j] = dn_pre * rr;
                dhr[j] = dht * z;  // the direct path; the product through W_hh is added after
              }
            }
          }
        };
        // dh'[rows [r0, r0 + nr), columns [j0, j1)] += the gradient of step t's output.
        auto add_d_out = [&](index_t t, index_t r0, index_t nr, index_t j0, index_t j1) {
          const index_t q = offsets[t] + r0;
          for (index_t r = 0; r < nr; ++r) {
            const T* dy = d_layer_out + (q + r) * ldo + d * P;
            T* dhr = dh + (r0 + r) * P;
            for (index_t j = j0; j < j1; ++j) dhr[j] += dy[j];
          }
        };
        // dh_prev over output panels [p0, p1) (columns p·NR ..) of rows [r0, r0 + nr): LSTM dG · W_hh,
        // GRU + dGh · W_hh (onto the direct path).
        // one_row: the GEMM's one-row kernel only when the step has one row (not one thread's share of it).
        auto recurrent_grads = [&](index_t t, index_t r0, index_t nr, index_t p0, index_t p1) {
          const index_t q = offsets[t] + r0;
          const bool one_row = batch_sizes[t] == 1;
          T* dhb = dh + r0 * P;
          if (s.lstm) {
            constexpr int NR = Tile<T>::NR;
            const index_t c0 = p0 * NR, c1 = std::min(P, p1 * NR);
            for (index_t r = 0; r < nr; ++r) std::fill(dhb + r * P + c0, dhb + r * P + c1, T(0));
            gemm_acc_serial(nr, dG.data() + q * GH, GH, w_hh_t, dhb, P, p0, p1,
                            one_row);  // (nr, P) = (nr, 4H) · (4H, P)
          } else {
            gemm_acc_serial(nr, dGh.data() + q * GH, GH, w_hh_t, dhb, P, p0, p1,
                            one_row);  // (nr, P) += (nr, 3H) · (3H, P)
          }
        };
        // All of rows [r0, r0 + nr) of step t: dh' (+ the output's gradient) → gate gradients → dh_prev.
        auto step_rows = [&](index_t t, index_t r0, index_t nr) {
          const index_t q = offsets[t] + r0;
          add_d_out(t, r0, nr, 0, P);
          const T* dmp = dh + r0 * P;  // dL/dm, [nr, H] ld P (P = H without projection)
          index_t ldm = P;
          if (w.w_hr) {
            std::copy_n(dh + r0 * P, nr * P, dH.data() + q * P);
            gemm_set(nr, dh + r0 * P, P, w_hr_t, dm.data() + r0 * H, H,
                     batch_sizes[t] == 1);  // (nr, H) = (nr, P) · (P, H)
            dmp = dm.data() + r0 * H;
            ldm = H;
          }
          gate_grads(t, r0, nr, 0, H, dmp, ldm);
          if (in_parallel() || double(nr) * double(GH) * double(P) < kParallelMacs)
            recurrent_grads(t, r0, nr, 0, w_hh_t.panels());
          else  // a large step on its own: the product split over the pool by panels
            parallel_for(w_hh_t.panels(), [&](index_t p0, index_t p1) { recurrent_grads(t, r0, nr, p0, p1); });
        };
        if (batch_split(B, H, G, P)) {  // each thread walks all steps for its own rows, backwards in time
          rows_through_time<T>(B, batch_sizes, d == 0, step_rows);
        } else if (!w.w_hr && unit_split<T>(B, H, G, P)) {
          // Split by hidden units over two threads, one meeting per step (lockstep_pair): a thread owns
          // units [u0, u1), which are also the panels of dh_prev it computes, so it runs "dh_prev of the
          // later step, then the gate gradients of this one" on its own units, and only the product
          // reads all of dG (the later step's, finished by both threads before this step began).
          constexpr int NR = Tile<T>::NR;
          const index_t half = H / NR / 2;
          std::vector<index_t> order_t;  // the steps that run, from the last (in the backward's order)
          for (index_t step = T_steps - 1; step >= 0; --step) {
            const index_t t = d == 0 ? step : T_steps - 1 - step;
            if (batch_sizes[t] > 0) order_t.push_back(t);
          }
          const index_t n_steps = static_cast<index_t>(order_t.size());
          lockstep_pair(n_steps + 1, [&](index_t i, int part0, int part1) {
            const index_t p0 = part0 == 0 ? 0 : half, p1 = part1 == 2 ? H / NR : half;
            const index_t later = i > 0 ? order_t[i - 1] : -1, t = i < n_steps ? order_t[i] : -1;
            if (later >= 0) recurrent_grads(later, 0, batch_sizes[later], p0, p1);
            if (t >= 0) {
              add_d_out(t, 0, batch_sizes[t], p0 * NR, p1 * NR);
              gate_grads(t, 0, batch_sizes[t], p0 * NR, p1 * NR, dh, P);
            }
          });
        } else {
          for (index_t step = T_steps - 1; step >= 0; --step) {
            const index_t t = d == 0 ? step : T_steps - 1 - step, nb = batch_sizes[t];
            if (nb == 0) continue;
            for_rows(nb, double(nb) * double(GH) * double(P),
                     [&](index_t r0, index_t r1) { step_rows(t, r0, r1 - r0); });
          }
        }

        // Weight gradients, each one product over all N rows.
        const CellGrads<T>& gr = grads[k];
        const T* dg_hh = s.lstm ? dG.data() : dGh.data();  // what multiplies h in the forward
        std::fill(gr.w_ih, gr.w_ih + GH * In, T(0));
        std::fill(gr.w_hh, gr.w_hh + GH * P, T(0));
        gemm_tn_acc(GH, In, N, dG.data(), GH, layer_in, In, gr.w_ih, In);  // dW_ih = dGᵀ · input
        gemm_tn_acc(GH, P, N, dg_hh, GH, hp, P, gr.w_hh, P);               // dW_hh = dGᵀ · h_prev
        if (gr.b_ih) {
          std::fill(gr.b_ih, gr.b_ih + GH, T(0));
          std::fill(gr.b_hh, gr.b_hh + GH, T(0));
          auto bias_sums = [&](index_t j0, index_t j1) {  // columns [j0, j1), rows summed in order
            for (index_t n = 0; n < N; ++n)
              for (index_t j = j0; j < j1; ++j) {
                gr.b_ih[j] += dG.data()[n * GH + j];
                gr.b_hh[j] += dg_hh[n * GH + j];
              }
          };
          if (double(N) * double(GH) >= kParallelMacs) parallel_for(GH, bias_sums);
          else bias_sums(0, GH);
        }
        if (gr.w_hr) {
          std::fill(gr.w_hr, gr.w_hr + P * H, T(0));
          gemm_tn_acc(P, H, N, dH.data(), P, ws.m(k), H, gr.w_hr, H);  // dW_hr = dh'ᵀ · m
        }
        gemm_acc(N, dG.data(), GH, w_ih_t, d_in, In);  // d_in += dG (N, G·H) · W_ih (G·H, In)
      });
}

}  // namespace LSTMKIT_ISA
}  // namespace lstmkit
