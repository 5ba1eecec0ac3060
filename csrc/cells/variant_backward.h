// The variant cell's backward step (cells/variant.h: peepholes, coupled gates, clipping, ONNX
// activations, layer norm, zoneout, recurrent dropout, GRU linear_before_reset=False) as an adapter of
// the BPTT driver (sequence/backward.h lists what an adapter gives): ref/rnn.py's backward with
// variant_masks over the rows of one step, read from what the training forward kept (VariantRows), each
// step's small GEMM (dh_prev = dS · W_hh) fused with the pointwise derivatives; then the weight, bias,
// peephole and layer-norm gradients, one product or column sum each over all N packed rows.
#pragma once

#include <algorithm>
#include <vector>

#include "cells/variant.h"

namespace lstmkit {
namespace LSTMKIT_ISA {

// dv = 1/σ · (dŷ − mean dŷ − x̂ · mean(dŷ ⊙ x̂)) with dŷ = dy ⊙ γ: back through layer_norm_row's
// normalisation (γ, β excluded). dv may alias dy.
template <typename T>
void layer_norm_row_backward(index_t n, const T* dy, const T* gamma, const T* xhat, T rstd, T* dv) {
  const T s1 = row_reduce(n, dy, gamma, static_cast<const T*>(nullptr)) / T(n);
  const T s2 = row_reduce(n, dy, gamma, xhat) / T(n);
  for (index_t j = 0; j < n; ++j) dv[j] = rstd * (dy[j] * gamma[j] - s1 - xhat[j] * s2);
}

// One product-and-plain column sum for column_sums_with_rows: over rows of `width` values (row stride
// width), out[j] = Σ_n a[n, j] · x[n, j] and out_plain[j] = Σ_n a[n, j] (both overwritten).
template <typename T>
struct ColumnSum {
  const T* a;
  const T* x;
  index_t width;
  T* out;
  T* out_plain;
};

// Several ColumnSums over the same N rows in one pass over memory, calling row_fn(n) for each row
// after its terms are added (while the row is in cache). Rows go in fixed blocks of 64 whose partial
// sums are added in block order, so the sums do not depend on how the blocks are split over threads.
template <typename T, typename F>
void column_sums_with_rows(index_t N, const std::vector<ColumnSum<T>>& sums, F&& row_fn) {
  constexpr index_t kBlock = 64;
  const index_t blocks = (N + kBlock - 1) / kBlock;
  index_t per_block = 0;
  for (const ColumnSum<T>& c : sums) per_block += 2 * c.width;
  std::vector<T> partial(static_cast<size_t>(blocks * per_block), T(0));
  auto run = [&](index_t b0, index_t b1) {
    for (index_t b = b0; b < b1; ++b) {
      for (index_t n = b * kBlock; n < std::min(N, (b + 1) * kBlock); ++n) {
        T* part = partial.data() + b * per_block;
        for (const ColumnSum<T>& c : sums) {
          const T* a = c.a + n * c.width;
          const T* x = c.x + n * c.width;
          T* prod = part;
          T* plain = part + c.width;
          for (index_t j = 0; j < c.width; ++j) prod[j] += a[j] * x[j], plain[j] += a[j];
          part += 2 * c.width;
        }
        row_fn(n);
      }
    }
  };
  double work = 0;
  for (const ColumnSum<T>& c : sums) work += double(N) * double(c.width);
  if (work >= kParallelMacs / 4) parallel_for(blocks, run);
  else run(0, blocks);
  index_t at = 0;
  for (const ColumnSum<T>& c : sums) {
    std::fill(c.out, c.out + c.width, T(0));
    std::fill(c.out_plain, c.out_plain + c.width, T(0));
    for (index_t b = 0; b < blocks; ++b) {
      const T* part = partial.data() + b * per_block + at;
      for (index_t j = 0; j < c.width; ++j) c.out[j] += part[j], c.out_plain[j] += part[c.width + j];
    }
    at += 2 * c.width;
  }
}

// The per-row gradients of a variant backward, shared by its layers and directions. The large ones are
// written in full before they are read: RawBuffer, not zeroed.
template <typename T>
struct VariantBackwardBuffers {
  RawBuffer<T> dG;      // d of the gate pre-activations a + s (before peephole/clip) [N, G·H]
  RawBuffer<T> dS;      // GRU linear_before_reset: d of s (after its layer norm) [N, G·H]
  RawBuffer<T> dSraw;   // layer norm: d of W_hh h (before the layer norm) [N, G·H]
  RawBuffer<T> dHt;     // LSTM projection: dh̃ [N, P]
  RawBuffer<T> dhc_in;  // LSTM layer norm: d LN(c̃) [N, H]
  std::vector<T> zt;    // per state row: the clipped pre-activations [B, G·H]
  std::vector<T> tmp;   // per state row [B, max(G·H, P)]
  std::vector<T> dm;    // per state row [B, H]
  VariantBackwardBuffers(const RnnShape& s, const VariantOptions& o, index_t N)
      : dG(N * s.gates() * s.H),
        dS(!s.lstm && o.linear_before_reset ? N * s.gates() * s.H : 0),
        dSraw(o.layer_norm ? N * s.gates() * s.H : 0),
        dHt(s.lstm && s.P != s.H ? N * s.P : 0),
        dhc_in(s.lstm && o.layer_norm ? N * s.H : 0),
        zt(static_cast<size_t>(s.B * s.gates() * s.H)),
        tmp(static_cast<size_t>(s.B * std::max(s.gates() * s.H, s.P))),
        dm(static_cast<size_t>(s.B * s.H)) {}
};

// The backward of the variant cell of one layer and direction (the driver's adapter). Its fields are
// the names of the equations' quantities, as in VariantCell.
template <typename T>
struct VariantCellBackward {
  static constexpr index_t kUnitWidth = Tile<T>::NR;

  const VariantOptions& o;
  const CellWeights<T>& w;
  const VariantWeights<T>& ex;
  VariantRows<T>& rw;  // the tape's rows of this layer·direction (read only)
  const PackedMasks<T>& mk;
  const CellGrads<T>& gr;
  const VariantGrads<T>& eg;
  const T* d_out;  // [N, ·] ld ldo: this direction's columns of the layer output's gradient
  index_t ldo, H, P, GH;
  bool lstm, ln, lbr;
  PackedWeights<T> w_hh_t;  // W_hhᵀ (GRU linear_before_reset=False: its r, z rows)
  PackedWeights<T> w_hn_t;  // GRU linear_before_reset=False: W_hnᵀ
  PackedWeights<T> w_hr_t;  // LSTM projection: W_hrᵀ
  RawBuffer<T>&dG, &dS, &dSraw, &dHt, &dhc_in;
  std::vector<T>&zt, &tmp, &dm;
  T* dS_post;  // d of s (the W_hh side after its layer norm)
  T* dS_in;    // d of W_hh · hin
  T zh_c, zc_c;
  bool keep_z, clipped_z;
  const T* p;  // the peepholes [3H] or null

  VariantCellBackward(const RnnShape& s, const VariantOptions& o_, const CellWeights<T>& w_,
                      const VariantWeights<T>& ex_, VariantRows<T>& rw_, const CellGrads<T>& gr_,
                      const VariantGrads<T>& eg_, const T* d_out_, index_t ldo_, VariantBackwardBuffers<T>& b)
      : o(o_),
        w(w_),
        ex(ex_),
        rw(rw_),
        mk(rw_.masks),
        gr(gr_),
        eg(eg_),
        d_out(d_out_),
        ldo(ldo_),
        H(s.H),
        P(s.P),
        GH(s.gates() * s.H),
        lstm(s.lstm),
        ln(o_.layer_norm),
        lbr(o_.linear_before_reset),
        w_hh_t(w_.w_hh, P, lbr ? GH : 2 * H, 1, P),
        dG(b.dG),
        dS(b.dS),
        dSraw(b.dSraw),
        dHt(b.dHt),
        dhc_in(b.dhc_in),
        zt(b.zt),
        tmp(b.tmp),
        dm(b.dm),
        dS_post(lstm || !lbr ? dG.data() : dS.data()),
        dS_in(ln ? dSraw.data() : dS_post),
        zh_c(T(o_.zoneout_h)),
        zc_c(T(o_.zoneout_c)),
        keep_z(!rw_.zpre.empty()),
        clipped_z(keep_z && !grad_from_output(o_)),  // the activations read clip(zpre)
        p(ex_.peephole) {
    if (!lstm && !lbr) w_hn_t = PackedWeights<T>(w.w_hh + 2 * H * P, P, H, 1, P);
    if (w.w_hr) w_hr_t = PackedWeights<T>(w.w_hr, H, P, 1, H);
  }
  VariantCellBackward(const VariantCellBackward&) = delete;
  VariantCellBackward& operator=(const VariantCellBackward&) = delete;

  // State rows [r0, r0 + n) (packed rows q0..) back through one step; dh [·, P], dc [·, H] updated in
  // place; one_row: whether the step has one row (the GEMM's one-row kernel: not for one thread's share).
  void step(index_t q0, index_t r0, index_t n, bool one_row, T* dh, T* dc) {
    pointwise(q0, r0, n, 0, H, one_row, dh, dc);
    if (ln)  // through the layer norm of W_hh h
      for (index_t r = 0; r < n; ++r) {
        const index_t q = q0 + r;
        layer_norm_row_backward(GH, dS_post + q * GH, ex.ln_hh_w, rw.xhat_hh.data() + q * GH, rw.rstd_hh[q],
                                dSraw.data() + q * GH);
      }
    recurrent(q0, r0, n, 0, H, one_row, dh);
  }

  // A step's rows stay on the calling thread (its products split over the pool when large).
  double row_macs(index_t) const { return 0; }

  // The lockstep pair where a step splits by units (units_ok), and only for one or two rows, as in the
  // forward (VariantStepper::lockstep_units). The backward alone, the pair against one thread, H=128
  // T=100 on Zen 4 at load ~2 (median of 7 processes each): peephole B=1 1.26, B=2 1.17 times as fast,
  // B=4 0.92 (slower); GRU clip B=1 1.23, B=2 1.21. Under heavier load (two cores shared by 5 or more
  // runnable processes) the pair's meeting per step waits on a descheduled partner, as the forward's does.
  static constexpr index_t kLockstepMaxRows = 2;
  bool units_ok() const { return !ln && !w.w_hr && (lstm || lbr); }
  bool lockstep_units(index_t B) const { return B <= kLockstepMaxRows && units_ok() && unit_split<T>(B, H, GH / H, P); }
  void product_units(index_t q0, index_t nb, index_t u0, index_t u1, bool one_row, T* dh) {
    recurrent(q0, 0, nb, u0, u1, one_row, dh);
  }
  void step_units(index_t q0, index_t nb, index_t u0, index_t u1, T* dh, T* dc) {
    pointwise(q0, 0, nb, u0, u1, nb == 1, dh, dc);
  }

  // After the time loop: the parameter gradients, one product or column sum each over all N rows, and
  // the gradient of the layer's input layer_in [N, In] added into d_in [N, In].
  void finish(index_t N, const T* layer_in, index_t In, T* d_in) const {
    std::fill(gr.w_hh, gr.w_hh + GH * P, T(0));
    if (!lstm && !lbr) {
      gemm_tn_acc(2 * H, P, N, dG.data(), GH, rw.hin.data(), P, gr.w_hh, P);
      gemm_tn_acc(H, P, N, dG.data() + 2 * H, GH, rw.q.data(), H, gr.w_hh + 2 * H * P, P);
    } else {
      gemm_tn_acc(GH, P, N, dS_in, GH, rw.hin.data(), P, gr.w_hh, P);
    }
    if (ln) {
      // The layer norms' γ and β gradients, and the input side's norm backward (into dSraw, free now
      // that dW_hh is done), in one pass over the rows.
      std::vector<ColumnSum<T>> sums = {{dS_post, rw.xhat_hh.data(), GH, eg.ln_hh_w, eg.ln_hh_b},
                                        {dG.data(), rw.xhat_ih.data(), GH, eg.ln_ih_w, eg.ln_ih_b}};
      if (lstm) sums.push_back({dhc_in.data(), rw.xhat_c.data(), H, eg.ln_cell_w, eg.ln_cell_b});
      column_sums_with_rows(N, sums, [&](index_t n) {
        layer_norm_row_backward(GH, dG.data() + n * GH, ex.ln_ih_w, rw.xhat_ih.data() + n * GH, rw.rstd_ih[n],
                                dSraw.data() + n * GH);
      });
      if (gr.b_ih) {  // the layer norms' β gradients are the biases' (both add after the normalisation)
        std::copy_n(eg.ln_ih_b, GH, gr.b_ih);
        std::copy_n(eg.ln_hh_b, GH, gr.b_hh);
      }
    } else if (gr.b_ih) {
      column_sums(N, GH, dG.data(), GH, static_cast<const T*>(nullptr), 0, gr.b_ih);
      if (dS_post == dG.data())  // both biases add to the same pre-activation: one sum
        std::copy_n(gr.b_ih, GH, gr.b_hh);
      else column_sums(N, GH, dS_post, GH, static_cast<const T*>(nullptr), 0, gr.b_hh);
    }
    if (p) {
      column_sums(N, H, dG.data(), GH, rw.c_prev.data(), H, eg.peephole);
      column_sums(N, H, dG.data() + H, GH, rw.c_prev.data(), H, eg.peephole + H);
      column_sums(N, H, dG.data() + 3 * H, GH, rw.ct.data(), H, eg.peephole + 2 * H);
    }
    if (gr.w_hr) {
      std::fill(gr.w_hr, gr.w_hr + P * H, T(0));
      gemm_tn_acc(P, H, N, dHt.data(), P, rw.m.data(), H, gr.w_hr, H);
    }
    // The input side (with layer norm: its backward, done above, in dSraw): dW_ih, d_in.
    const T* dA = ln ? dSraw.data() : dG.data();
    std::fill(gr.w_ih, gr.w_ih + GH * In, T(0));
    gemm_tn_acc(GH, In, N, dA, GH, layer_in, In, gr.w_ih, In);
    const PackedWeights<T> w_ih_t(w.w_ih, In, GH, 1, In);
    gemm_acc(N, dA, GH, w_ih_t, d_in, In);
  }

 private:
  // Rows [r0, r0 + n) (packed q0..) and units [j0, j1) of a step, all but the product through W_hh
  // (and the layer norm of W_hh h): dh' += the output's gradient, zoneout, the gate gradients into dG
  // (dS), dc ← dc_prev, and dh ← the direct paths. A slice of the units (j1 − j0 < H: the lockstep
  // pair, units_ok() true, so P = H and no row-wide product or statistic) reads and writes only its units.
  void pointwise(index_t q0, index_t r0, index_t n, index_t j0, index_t j1, bool one_row, T* dh, T* dc) {
    const bool whole = j0 == 0 && j1 == H;
    const index_t nj = j1 - j0, pj1 = whole ? P : j1;  // the units, and the columns of h's width P
    T* dhb = dh + r0 * P;
    for (index_t r = 0; r < n; ++r) {  // dh' += d of this step's output
      const T* dy = d_out + (q0 + r) * ldo;
      for (index_t j = j0; j < pj1; ++j) dhb[r * P + j] += dy[j];
    }
    // dh̃ = (1 − m_h) dh' into dht; the direct path m_h dh' stays in dh.
    T* dht = lstm && w.w_hr ? dHt.data() + q0 * P : (lstm ? dm.data() + r0 * H : tmp.data() + r0 * GH);
    const index_t ld_dht = lstm && w.w_hr ? P : (lstm ? H : GH);
    for (index_t r = 0; r < n; ++r) {
      T* dr = dhb + r * P;
      T* tr = dht + r * ld_dht;
      const T* mh = mk.zh(q0 + r);
      for (index_t j = j0; j < pj1; ++j) {
        const T m = mh ? mh[j] : zh_c;
        tr[j] = (T(1) - m) * dr[j];
        dr[j] = m * dr[j];
      }
      if (clipped_z)  // the activations' inputs: clip(zpre)
        for (index_t gate = 0; gate < GH / H; ++gate) {
          T* z = zt.data() + (r0 + r) * GH + gate * H + j0;
          std::copy_n(rw.zpre.data() + (q0 + r) * GH + gate * H + j0, nj, z);
          clip_apply(o, z, nj);
        }
    }
    if (lstm) {
      if (w.w_hr) gemm_set(n, dht, P, w_hr_t, dm.data() + r0 * H, H, one_row);  // dm = dh̃ · W_hr (whole rows)
      for (index_t r = 0; r < n; ++r) {
        const index_t q = q0 + r;
        const T* a = rw.act.data() + q * GH;
        const T* zp = keep_z ? rw.zpre.data() + q * GH : a;  // without them, never read (needs_zpre)
        const T* z = clipped_z ? zt.data() + (r0 + r) * GH : a;
        const T* ct = rw.ct.data() + q * H;
        const T* hc = rw.hc.data() + q * H;
        const T* hc_in = ln ? rw.hc_in.data() + q * H : ct;
        const T* cp = rw.c_prev.data() + q * H;
        const T* dmr = dm.data() + (r0 + r) * H;
        T* dcr = dc + (r0 + r) * H;
        T* g = dG.data() + q * GH;
        T *gi = g, *gf = g + H, *gg = g + 2 * H, *go = g + 3 * H;
        T* dct = tmp.data() + (r0 + r) * GH;  // dc̃
        T* dhin = dct + H;                    // d of σ_h's input
        const T* mc = mk.zc(q);
        for (index_t j = j0; j < j1; ++j) {
          const T m = mc ? mc[j] : zc_c;
          go[j] = dmr[j] * hc[j];
          dhin[j] = dmr[j] * a[3 * H + j];
          dct[j] = (T(1) - m) * dcr[j];
          dcr[j] = m * dcr[j];  // the direct path of zoneout
        }
        act_grad_mul(o.hidden, hc_in + j0, hc + j0, dhin + j0, nj);
        if (ln) {  // whole rows only
          std::copy_n(dhin, H, dhc_in.data() + q * H);
          layer_norm_row_backward(H, dhin, ex.ln_cell_w, rw.xhat_c.data() + q * H, rw.rstd_c[q], dhin);
        }
        act_grad_mul(o.gate, z + 3 * H + j0, a + 3 * H + j0, go + j0, nj);
        clip_grad_mul(o, zp + 3 * H + j0, go + j0, nj);
        for (index_t j = j0; j < j1; ++j) {
          dct[j] += dhin[j];
          if (p) dct[j] += go[j] * p[2 * H + j];
          gi[j] = dct[j] * a[2 * H + j];
          gg[j] = dct[j] * a[j];
          gf[j] = dct[j] * cp[j];
        }
        if (o.input_forget)
          for (index_t j = j0; j < j1; ++j) gi[j] -= gf[j], gf[j] = T(0);
        else act_grad_mul(o.gate, z + H + j0, a + H + j0, gf + j0, nj);
        act_grad_mul(o.gate, z + j0, a + j0, gi + j0, nj);
        act_grad_mul(o.cell, z + 2 * H + j0, a + 2 * H + j0, gg + j0, nj);
        for (index_t gate = 0; gate < 3; ++gate) clip_grad_mul(o, zp + gate * H + j0, g + gate * H + j0, nj);
        for (index_t j = j0; j < j1; ++j) {
          dcr[j] += dct[j] * a[H + j];
          if (p) dcr[j] += gi[j] * p[j] + gf[j] * p[H + j];
        }
      }
      return;
    }
    for (index_t r = 0; r < n; ++r) {
      const index_t q = q0 + r;
      const T* a = rw.act.data() + q * GH;
      const T* zp = keep_z ? rw.zpre.data() + q * GH : a;  // without them, never read (needs_zpre)
      const T* z = clipped_z ? zt.data() + (r0 + r) * GH : a;
      const T* hp = (rw.h_prev.empty() ? rw.hin.data() : rw.h_prev.data()) + q * P;
      const T* tr = dht + r * ld_dht;
      T* dr = dhb + r * P;
      T* g = dG.data() + q * GH;
      for (index_t j = j0; j < j1; ++j) {
        const T zz = a[H + j], nn = a[2 * H + j];
        g[2 * H + j] = tr[j] * (T(1) - zz);
        g[H + j] = tr[j] * (hp[j] - nn);
        dr[j] += tr[j] * zz;
      }
      act_grad_mul(o.gate, z + H + j0, a + H + j0, g + H + j0, nj);
      act_grad_mul(o.cell, z + 2 * H + j0, a + 2 * H + j0, g + 2 * H + j0, nj);
      for (index_t gate = 1; gate < 3; ++gate) clip_grad_mul(o, zp + gate * H + j0, g + gate * H + j0, nj);
      if (lbr) {
        const T* sn = rw.sn.data() + q * H;
        T* ds = dS.data() + q * GH;
        for (index_t j = j0; j < j1; ++j) {
          g[j] = g[2 * H + j] * sn[j];
          ds[2 * H + j] = g[2 * H + j] * a[j];
        }
        act_grad_mul(o.gate, z + j0, a + j0, g + j0, nj);
        clip_grad_mul(o, zp + j0, g + j0, nj);
        for (index_t gate = 0; gate < 2; ++gate) std::copy_n(g + gate * H + j0, nj, ds + gate * H + j0);
      }
    }
    if (!lbr) {  // dq = d s_n · W_hn, then r's gradient and q's path into h (whole rows only)
      T* dq = tmp.data() + r0 * GH;
      gemm_set(n, dG.data() + q0 * GH + 2 * H, GH, w_hn_t, dq, GH, one_row);
      for (index_t r = 0; r < n; ++r) {
        const index_t q = q0 + r;
        const T* a = rw.act.data() + q * GH;
        const T* zp = keep_z ? rw.zpre.data() + q * GH : a;
        const T* z = clipped_z ? zt.data() + (r0 + r) * GH : a;
        const T* hin = rw.hin.data() + q * P;
        const T* rd = mk.rd(r0 + r);
        const T* dqr = dq + r * GH;
        T* g = dG.data() + q * GH;
        T* dr = dhb + r * P;
        for (index_t j = 0; j < H; ++j) {
          g[j] = dqr[j] * hin[j];
          dr[j] += dqr[j] * a[j] * (rd ? rd[j] : T(1));
        }
        act_grad_mul(o.gate, z, a, g, H);
        clip_grad_mul(o, zp, g, H);
      }
    }
  }

  // dh_prev += m_rd ⊙ (dS · W_hh) over columns [j0, j1) (whole rows: P) of rows [r0, r0 + n) (packed
  // q0..). Whole rows split the product over the pool when large; a slice is one thread's panels.
  void recurrent(index_t q0, index_t r0, index_t n, index_t j0, index_t j1, bool one_row, T* dh) {
    const bool whole = j0 == 0 && j1 == H;
    const index_t c1 = whole ? P : j1;
    auto product = [&](T* C, index_t ldc) {
      if (whole) gemm_acc(n, dS_in + q0 * GH, GH, w_hh_t, C, ldc, one_row);
      else gemm_acc_serial(n, dS_in + q0 * GH, GH, w_hh_t, C, ldc, j0 / kUnitWidth, j1 / kUnitWidth, one_row);
    };
    T* dhb = dh + r0 * P;
    if (!mk.recurrent) return product(dhb, P);
    T* prod = tmp.data() + r0 * GH;  // [n, P] ld GH
    for (index_t r = 0; r < n; ++r) std::fill(prod + r * GH + j0, prod + r * GH + c1, T(0));
    product(prod, GH);
    for (index_t r = 0; r < n; ++r) {
      const T* rd = mk.rd(r0 + r);
      for (index_t j = j0; j < c1; ++j) dhb[r * P + j] += rd[j] * prod[r * GH + j];
    }
  }
};

}  // namespace LSTMKIT_ISA
}  // namespace lstmkit
