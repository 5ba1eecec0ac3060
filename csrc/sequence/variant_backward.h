// Backpropagation through time for the LSTM/GRU variants (cells/variant.h): the same function as
// lstmkit/ref/rnn.py's backward with variant_masks. As sequence/backward.h, it reads what the training
// forward kept in the workspace (VariantTape) instead of recomputing the forward; then per direction
// the steps are walked backwards, each step's small GEMM (dh_prev = dS · W_hh) fused with the pointwise derivatives,
// and the weight, bias, peephole and layer-norm gradients are one product or column sum each over all N packed rows.
#pragma once

#include <vector>

#include "sequence/backward.h"
#include "sequence/variant_forward.h"

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

// out[j] = Σ_n A[n, j] · (Bm ? Bm[n, j] : 1) for j < width (overwritten); rows summed in order.
template <typename T>
void column_sums(index_t N, index_t width, const T* A, index_t lda, const T* Bm, index_t ldb, T* out) {
  auto sums = [&](index_t j0, index_t j1) {
    std::fill(out + j0, out + j1, T(0));
    for (index_t n = 0; n < N; ++n) {
      const T* a = A + n * lda;
      if (Bm) {
        const T* b = Bm + n * ldb;
        for (index_t j = j0; j < j1; ++j) out[j] += a[j] * b[j];
      } else {
        for (index_t j = j0; j < j1; ++j) out[j] += a[j];
      }
    }
  };
  if (double(N) * double(width) >= kParallelMacs) parallel_for(width, sums);
  else sums(0, width);
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

// Sequence backward of the variants; arguments as rnn_backward (sequence/backward.h) and variant_forward;
// ws: what variant_train_forward wrote for the same arguments (read only); extra_grads: [L·D] gradients of the variant
// parameters (overwritten).
template <typename T>
void variant_backward(const RnnShape& s, const VariantOptions& o, const T* x, const CellWeights<T>* weights,
                      const VariantWeights<T>* extra, const VariantMasks<T>* masks, const int64_t* lengths,
                      const T* const* dropout, const T* ws, const T* d_out, const T* d_hn, const T* d_cn, T* dx,
                      T* d_h0, T* d_c0, const CellGrads<T>* grads, const VariantGrads<T>* extra_grads) {
  const index_t T_steps = s.T, B = s.B, H = s.H, P = s.P, D = s.D, G = s.gates(), GH = G * H, ldo = D * P;
  const PackedBatch pk(T_steps, B, lengths);
  const index_t N = pk.N;
  // The tape's views are writable in type only: nothing below writes through them.
  VariantTape<T> tape(s, o, pk, masks, const_cast<T*>(ws), false);
  const bool lstm = s.lstm, ln = o.layer_norm, lbr = o.linear_before_reset;
  // The large per-row gradients are written in full before they are read: RawBuffer, not zeroed.
  RawBuffer<T> dG(N * GH);                         // d of the gate pre-activations a + s (before peephole/clip)
  RawBuffer<T> dS(!lstm && lbr ? N * GH : 0);      // GRU: d of s (after its layer norm)
  RawBuffer<T> dSraw(ln ? N * GH : 0);             // d of W_hh h (before the layer norm)
  RawBuffer<T> dHt, dhc_in;                        // LSTM: dh̃ [N, P] (projection), d LN(c̃) [N, H] (layer norm)
  std::vector<T> zt(static_cast<size_t>(B * GH));  // per row: the clipped pre-activations
  std::vector<T> tmp(static_cast<size_t>(B * std::max(GH, P)));
  std::vector<T> dm(static_cast<size_t>(B * H));
  auto layer_input = [&](index_t layer) -> const T* { return tape.inputs[layer]; };
  run_backward(
      s, pk, lengths == nullptr, x, d_out, d_hn, d_cn, dx, d_h0, d_c0, dropout, layer_input,
      [&](index_t layer, index_t d, const T* layer_in, index_t In, const T* d_layer_out, T* d_in, T* dh, T* dc) {
        const index_t k = layer * D + d;
        const CellWeights<T>& w = weights[k];
        const VariantWeights<T>& ex = extra[k];
        VariantRows<T>& rw = tape.rows[k];
        const PackedMasks<T>& mk = rw.masks;
        const PackedWeights<T> w_hh_t(w.w_hh, P, lbr ? GH : 2 * H, 1, P);  // W_hhᵀ (GRU lbr=False: r, z rows)
        PackedWeights<T> w_hn_t, w_hr_t;
        if (!lstm && !lbr) w_hn_t = PackedWeights<T>(w.w_hh + 2 * H * P, P, H, 1, P);
        if (w.w_hr) {
          w_hr_t = PackedWeights<T>(w.w_hr, H, P, 1, H);
          if (!dHt.data()) dHt = RawBuffer<T>(N * P);
        }
        if (lstm && ln && !dhc_in.data()) dhc_in = RawBuffer<T>(N * H);
        T* dS_post = lstm || !lbr ? dG.data() : dS.data();  // d of s (the W_hh side after its layer norm)
        T* dS_in = ln ? dSraw.data() : dS_post;             // d of W_hh · hin
        const T zh_c = T(o.zoneout_h), zc_c = T(o.zoneout_c);
        const bool keep_z = !rw.zpre.empty();
        const bool clipped_z = keep_z && !grad_from_output(o);  // the activations read clip(zpre)
        const T* p = ex.peephole;

        auto step_rows = [&](index_t t, index_t r0, index_t n) {
          const index_t q0 = pk.offsets[t] + r0;
          const bool one_row = pk.batch_sizes[t] == 1;  // the GEMM's one-row kernel: not for one thread's share
          T* dhb = dh + r0 * P;
          for (index_t r = 0; r < n; ++r) {  // dh' += d of this step's output
            const T* dy = d_layer_out + (q0 + r) * ldo + d * P;
            for (index_t j = 0; j < P; ++j) dhb[r * P + j] += dy[j];
          }
          // dh̃ = (1 − m_h) dh' into dht; the direct path m_h dh' stays in dh.
          T* dht = lstm && w.w_hr ? dHt.data() + q0 * P : (lstm ? dm.data() + r0 * H : tmp.data() + r0 * GH);
          const index_t ld_dht = lstm && w.w_hr ? P : (lstm ? H : GH);
          for (index_t r = 0; r < n; ++r) {
            T* dr = dhb + r * P;
            T* tr = dht + r * ld_dht;
            const T* mh = mk.zh(q0 + r);
            for (index_t j = 0; j < P; ++j) {
              const T m = mh ? mh[j] : zh_c;
              tr[j] = (T(1) - m) * dr[j];
              dr[j] = m * dr[j];
            }
            if (clipped_z) {  // the activations' inputs: clip(zpre)
              T* z = zt.data() + (r0 + r) * GH;
              std::copy_n(rw.zpre.data() + (q0 + r) * GH, GH, z);
              clip_apply(o, z, GH);
            }
          }
          if (lstm) {
            if (w.w_hr) gemm_set(n, dht, P, w_hr_t, dm.data() + r0 * H, H, one_row);  // dm = dh̃ · W_hr
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
              for (index_t j = 0; j < H; ++j) {
                const T m = mc ? mc[j] : zc_c;
                go[j] = dmr[j] * hc[j];
                dhin[j] = dmr[j] * a[3 * H + j];
                dct[j] = (T(1) - m) * dcr[j];
                dcr[j] = m * dcr[j];  // the direct path of zoneout
              }
              act_grad_mul(o.hidden, hc_in, hc, dhin, H);
              if (ln) {
                std::copy_n(dhin, H, dhc_in.data() + q * H);
                layer_norm_row_backward(H, dhin, ex.ln_cell_w, rw.xhat_c.data() + q * H, rw.rstd_c[q], dhin);
              }
              act_grad_mul(o.gate, z + 3 * H, a + 3 * H, go, H);
              clip_grad_mul(o, zp + 3 * H, go, H);
              for (index_t j = 0; j < H; ++j) {
                dct[j] += dhin[j];
                if (p) dct[j] += go[j] * p[2 * H + j];
                gi[j] = dct[j] * a[2 * H + j];
                gg[j] = dct[j] * a[j];
                gf[j] = dct[j] * cp[j];
              }
              if (o.input_forget)
                for (index_t j = 0; j < H; ++j) gi[j] -= gf[j], gf[j] = T(0);
              else act_grad_mul(o.gate, z + H, a + H, gf, H);
              act_grad_mul(o.gate, z, a, gi, H);
              act_grad_mul(o.cell, z + 2 * H, a + 2 * H, gg, H);
              clip_grad_mul(o, zp, g, 3 * H);
              for (index_t j = 0; j < H; ++j) {
                dcr[j] += dct[j] * a[H + j];
                if (p) dcr[j] += gi[j] * p[j] + gf[j] * p[H + j];
              }
            }
          } else {
            for (index_t r = 0; r < n; ++r) {
              const index_t q = q0 + r;
              const T* a = rw.act.data() + q * GH;
              const T* zp = keep_z ? rw.zpre.data() + q * GH : a;  // without them, never read (needs_zpre)
              const T* z = clipped_z ? zt.data() + (r0 + r) * GH : a;
              const T* hp = (rw.h_prev.empty() ? rw.hin.data() : rw.h_prev.data()) + q * P;
              const T* tr = dht + r * ld_dht;
              T* dr = dhb + r * P;
              T* g = dG.data() + q * GH;
              for (index_t j = 0; j < H; ++j) {
                const T zz = a[H + j], nn = a[2 * H + j];
                g[2 * H + j] = tr[j] * (T(1) - zz);
                g[H + j] = tr[j] * (hp[j] - nn);
                dr[j] += tr[j] * zz;
              }
              act_grad_mul(o.gate, z + H, a + H, g + H, H);
              act_grad_mul(o.cell, z + 2 * H, a + 2 * H, g + 2 * H, H);
              clip_grad_mul(o, zp + H, g + H, 2 * H);
              if (lbr) {
                const T* sn = rw.sn.data() + q * H;
                T* ds = dS.data() + q * GH;
                for (index_t j = 0; j < H; ++j) {
                  g[j] = g[2 * H + j] * sn[j];
                  ds[2 * H + j] = g[2 * H + j] * a[j];
                }
                act_grad_mul(o.gate, z, a, g, H);
                clip_grad_mul(o, zp, g, H);
                std::copy_n(g, 2 * H, ds);
              }
            }
            if (!lbr) {  // dq = d s_n · W_hn, then r's gradient and q's path into h
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
          // Through the layer norm of W_hh h, then dh_prev += m_rd ⊙ (dS · W_hh).
          if (ln)
            for (index_t r = 0; r < n; ++r) {
              const index_t q = q0 + r;
              layer_norm_row_backward(GH, dS_post + q * GH, ex.ln_hh_w, rw.xhat_hh.data() + q * GH, rw.rstd_hh[q],
                                      dSraw.data() + q * GH);
            }
          if (!mk.recurrent) {
            gemm_acc(n, dS_in + q0 * GH, GH, w_hh_t, dhb, P, one_row);
          } else {
            T* prod = tmp.data() + r0 * GH;  // [n, P] ld GH
            for (index_t r = 0; r < n; ++r) std::fill(prod + r * GH, prod + r * GH + P, T(0));
            gemm_acc(n, dS_in + q0 * GH, GH, w_hh_t, prod, GH, one_row);
            for (index_t r = 0; r < n; ++r) {
              const T* rd = mk.rd(r0 + r);
              for (index_t j = 0; j < P; ++j) dhb[r * P + j] += rd[j] * prod[r * GH + j];
            }
          }
        };
        // Backwards through time: the forward direction's last step first.
        rows_through_time<T>(B, pk.batch_sizes, d == 0, step_rows, batch_split(B, H, G, P));

        // ---- Parameter gradients, one product or column sum each over all N rows.
        const CellGrads<T>& gr = grads[k];
        const VariantGrads<T>& eg = extra_grads[k];
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
      });
}

}  // namespace LSTMKIT_ISA
}  // namespace lstmkit
