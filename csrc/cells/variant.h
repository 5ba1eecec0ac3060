// Sequence forward of the LSTM/GRU variants of docs/variants.md (peepholes, coupled gates, clipping,
// ONNX activations, layer norm, zoneout, recurrent dropout, GRU linear_before_reset=False): the same
// function as lstmkit/ref/rnn.py's forward with variant_masks. The plain cells never come here (the
// Python side picks sequence/forward.h for them), so nothing below slows them down.
//
// Same layout as sequence/forward.h: the packed batch (PackedBatch), one GEMM for the input projection of all
// steps per layer and direction (layer norm of W_ih x is done there too, for every step at once),
// then per step the recurrent GEMM (gemm.h) and a pointwise pass per row. Every row of a step is
// independent (layer norm is per row), so large batches run the whole time loop split by rows over
// the thread pool, as sequence/forward.h does. The pointwise pass works stage by stage on a row's gate vectors
// (each ≤ 4H values, in L1), so the activations are applied to whole vectors: float32 σ and tanh use
// the SIMD functions of simd.h.
//
// With a tape (VariantTape, in the caller's training workspace), the forward keeps per packed row what
// sequence/variant_backward.h needs.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "cells/plain.h"
#include "cells/variant_api.h"
#include "core/packed_batch.h"

namespace lstmkit {
namespace LSTMKIT_ISA {

// ---- Activations --------------------------------------------------------------------------------

template <typename T>
inline T act_value(const Activation& a, T z) {
  const T al = T(a.alpha), be = T(a.beta);
  switch (a.kind) {
    case ActKind::Sigmoid: return sigmoid(z);
    case ActKind::Tanh: return std::tanh(z);
    case ActKind::Relu: return z > T(0) ? z : T(0);
    case ActKind::HardSigmoid: return std::min(T(1), std::max(T(0), al * z + be));
    case ActKind::LeakyRelu: return z >= T(0) ? z : al * z;
    case ActKind::ThresholdedRelu: return z > al ? z : T(0);
    case ActKind::ScaledTanh: return al * std::tanh(be * z);
    case ActKind::Affine: return al * z + be;
    case ActKind::Elu: return z >= T(0) ? z : al * std::expm1(z);
    case ActKind::Softsign: return z / (T(1) + std::abs(z));
    case ActKind::Softplus: return std::max(z, T(0)) + std::log1p(std::exp(-std::abs(z)));
  }
  return z;
}

// y[j] = f(z[j]) for j < n (y may alias z).
template <typename T>
void act_apply(const Activation& a, const T* z, T* y, index_t n) {
#if LSTMKIT_HAVE_VECTORS
  if constexpr (std::is_same<T, float>::value) {
    if (a.kind == ActKind::Sigmoid || a.kind == ActKind::Tanh) {
      using S = detail::Simd<float>;
      constexpr int W = S::W;
      const bool sig = a.kind == ActKind::Sigmoid;
      index_t j = 0;
      for (; j + W <= n; j += W) {
        const S::vec v = S::load(z + j);
        S::store(y + j, sig ? detail::sigmoid_ps(v) : detail::tanh_ps(v));
      }
      if (j < n) {
        const int r = static_cast<int>(n - j);
        const S::vec v = S::load_part(z + j, r);
        S::store_part(y + j, sig ? detail::sigmoid_ps(v) : detail::tanh_ps(v), r);
      }
      return;
    }
  }
#endif
  switch (a.kind) {  // one loop per kind, so the simple ones vectorise
    case ActKind::Relu:
      for (index_t j = 0; j < n; ++j) y[j] = z[j] > T(0) ? z[j] : T(0);
      return;
    case ActKind::Affine: {
      const T al = T(a.alpha), be = T(a.beta);
      for (index_t j = 0; j < n; ++j) y[j] = al * z[j] + be;
      return;
    }
    case ActKind::HardSigmoid: {
      const T al = T(a.alpha), be = T(a.beta);
      for (index_t j = 0; j < n; ++j) y[j] = std::min(T(1), std::max(T(0), al * z[j] + be));
      return;
    }
    case ActKind::LeakyRelu: {
      const T al = T(a.alpha);
      for (index_t j = 0; j < n; ++j) y[j] = z[j] >= T(0) ? z[j] : al * z[j];
      return;
    }
    case ActKind::Softsign:
      for (index_t j = 0; j < n; ++j) y[j] = z[j] / (T(1) + std::abs(z[j]));
      return;
    default:
      for (index_t j = 0; j < n; ++j) y[j] = act_value(a, z[j]);
  }
}

// g[j] *= f'(z[j]) given y[j] = f(z[j]); at a kink the right-hand value (as ref/activations.py).
template <typename T>
void act_grad_mul(const Activation& a, const T* z, const T* y, T* g, index_t n) {
  const T al = T(a.alpha), be = T(a.beta);
  switch (a.kind) {
    case ActKind::Sigmoid:
      for (index_t j = 0; j < n; ++j) g[j] *= y[j] * (T(1) - y[j]);
      return;
    case ActKind::Tanh:
      for (index_t j = 0; j < n; ++j) g[j] *= T(1) - y[j] * y[j];
      return;
    case ActKind::Relu:
      for (index_t j = 0; j < n; ++j) g[j] = z[j] >= T(0) ? g[j] : T(0);
      return;
    case ActKind::HardSigmoid:
      for (index_t j = 0; j < n; ++j) {
        const T v = al * z[j] + be;
        g[j] = (v >= T(0) && v < T(1)) ? g[j] * al : T(0);
      }
      return;
    case ActKind::LeakyRelu:
      for (index_t j = 0; j < n; ++j) g[j] *= z[j] >= T(0) ? T(1) : al;
      return;
    case ActKind::ThresholdedRelu:
      for (index_t j = 0; j < n; ++j) g[j] = z[j] >= al ? g[j] : T(0);
      return;
    case ActKind::ScaledTanh:
      for (index_t j = 0; j < n; ++j) {
        const T t = std::tanh(be * z[j]);
        g[j] *= al * be * (T(1) - t * t);
      }
      return;
    case ActKind::Affine:
      for (index_t j = 0; j < n; ++j) g[j] *= al;
      return;
    case ActKind::Elu:
      for (index_t j = 0; j < n; ++j) g[j] *= z[j] >= T(0) ? T(1) : y[j] + al;
      return;
    case ActKind::Softsign:
      for (index_t j = 0; j < n; ++j) {
        const T d = T(1) + std::abs(z[j]);
        g[j] *= T(1) / (d * d);
      }
      return;
    case ActKind::Softplus:
      for (index_t j = 0; j < n; ++j) g[j] *= sigmoid(z[j]);
      return;
  }
}

// ---- Clipping and layer norm --------------------------------------------------------------------

template <typename T>
void clip_apply(const VariantOptions& o, T* z, index_t n) {
  if (!o.has_clip) return;
  const T c = T(o.clip);
  for (index_t j = 0; j < n; ++j) z[j] = std::min(std::max(z[j], -c), c);
}

// g[j] = 0 where z[j] (before clipping) was clipped; right-hand derivative at the edges.
template <typename T>
void clip_grad_mul(const VariantOptions& o, const T* z, T* g, index_t n) {
  if (!o.has_clip) return;
  const T c = T(o.clip);
  for (index_t j = 0; j < n; ++j) g[j] = (z[j] >= -c && z[j] < c) ? g[j] : T(0);
}

constexpr double kLayerNormEps = 1e-5;

// Σ_j a[j] · (b ? b[j] : 1) · (c ? c[j] : 1) over n values, or with `shift` Σ_j (a[j] − shift)² (b, c
// unused): the reductions of the layer norm, summed in SIMD lanes (without -ffast-math the compiler
// keeps a scalar chain, which made layer norm the variants' bottleneck).
template <typename T>
T row_reduce(index_t n, const T* a, const T* b, const T* c, bool squares = false, T shift = 0) {
  index_t j = 0;
  T total = 0;
#if LSTMKIT_HAVE_VECTORS
  using S = detail::Simd<T>;
  using V = typename S::vec;
  constexpr int W = S::W;
  V acc[4] = {V{}, V{}, V{}, V{}};
  const V sh = S::set1(shift);
  for (; j + 4 * W <= n; j += 4 * W)
    for (int u = 0; u < 4; ++u) {
      V v = S::load(a + j + u * W);
      if (squares) {
        v = v - sh;
        v = v * v;
      } else {
        if (b) v = v * S::load(b + j + u * W);
        if (c) v = v * S::load(c + j + u * W);
      }
      acc[u] += v;
    }
  T lanes[W];
  S::store(lanes, (acc[0] + acc[1]) + (acc[2] + acc[3]));
  for (int k = 0; k < W; ++k) total += lanes[k];
#endif
  for (; j < n; ++j) {
    if (squares) total += (a[j] - shift) * (a[j] - shift);
    else total += a[j] * (b ? b[j] : T(1)) * (c ? c[j] : T(1));
  }
  return total;
}

// y (+)= γ ⊙ x̂ + β with x̂ = (v − mean v) / sqrt(var v + ε) over the n values (population variance).
// Keeps x̂ when xhat is given; returns 1 / sqrt(var v + ε). y may alias v only when !add.
template <typename T>
T layer_norm_row(index_t n, const T* v, const T* gamma, const T* beta, T* y, T* xhat, bool add) {
  const T* none = nullptr;
  const T mean = row_reduce(n, v, none, none) / T(n);
  const T var = row_reduce(n, v, none, none, true, mean) / T(n);
  const T rstd = T(1) / std::sqrt(var + T(kLayerNormEps));
  // One pass per case (no branch inside the loops, so each vectorises).
  if (xhat && add)
    for (index_t j = 0; j < n; ++j) {
      const T xh = (v[j] - mean) * rstd;
      xhat[j] = xh;
      y[j] += gamma[j] * xh + beta[j];
    }
  else if (xhat)
    for (index_t j = 0; j < n; ++j) {
      const T xh = (v[j] - mean) * rstd;
      xhat[j] = xh;
      y[j] = gamma[j] * xh + beta[j];
    }
  else if (add)
    for (index_t j = 0; j < n; ++j) y[j] += gamma[j] * ((v[j] - mean) * rstd) + beta[j];
  else
    for (index_t j = 0; j < n; ++j) y[j] = gamma[j] * ((v[j] - mean) * rstd) + beta[j];
  return rstd;
}

// The sampled masks of one layer and direction, read in place from the caller's arrays (copying them
// into packed order would cost more than using them): row pointers by packed row, null when the mask
// was not sampled. The PackedBatch must outlive this.
//   caller's recurrent [B, P]; zoneout_c [T, B, H]; zoneout_h [T, B, P]
template <typename T>
struct PackedMasks {
  const T* recurrent = nullptr;
  const T* zoneout_c = nullptr;
  const T* zoneout_h = nullptr;
  PackedMasks() = default;
  PackedMasks(const PackedBatch& pk, index_t B, index_t H, index_t P, const VariantMasks<T>& m)
      : recurrent(m.recurrent), zoneout_c(m.zoneout_c), zoneout_h(m.zoneout_h), order_(pk.order.data()), H_(H), P_(P) {
    if (!zoneout_c && !zoneout_h) return;
    source_.resize(static_cast<size_t>(pk.N));
    for (size_t t = 0; t < pk.batch_sizes.size(); ++t)
      for (index_t r = 0; r < pk.batch_sizes[t]; ++r)
        source_[pk.offsets[t] + r] = static_cast<index_t>(t) * B + pk.order[r];
  }
  // Batch row r (packed order) of the recurrent-dropout mask [P].
  const T* rd(index_t r) const { return recurrent ? recurrent + order_[r] * P_ : nullptr; }
  // Packed row q of the zoneout masks: c [H], h [P].
  const T* zc(index_t q) const { return zoneout_c ? zoneout_c + source_[q] * H_ : nullptr; }
  const T* zh(index_t q) const { return zoneout_h ? zoneout_h + source_[q] * P_ : nullptr; }

 private:
  const index_t* order_ = nullptr;
  index_t H_ = 0, P_ = 0;
  std::vector<index_t> source_;  // packed row q → its row t·B + b in the caller's [T, B] layout
};

// Rows of one per-row buffer: field values of row r at data() + r · width; null when the options do
// not use it. A view: the memory belongs to the training workspace or to VariantRows::scratch.
template <typename T>
struct RowBuffer {
  T* ptr = nullptr;
  T* data() const { return ptr; }
  bool empty() const { return ptr == nullptr; }
  T& operator[](index_t i) const { return ptr[i]; }
};

// Per-row buffers of one direction: with a tape N rows (indexed by packed row q, kept for the
// backward), else B rows of scratch (indexed by the step's row r). Fields the options do not use stay
// null; widths and order: variant_row_widths (cells/variant_api.h).
template <typename T>
struct VariantRows {
  RowBuffer<T> zpre;     // [·, G·H] gate pre-activations before clipping (tape, when needs_zpre)
  RowBuffer<T> act;      // [·, G·H] LSTM (i, f, g, o), GRU (r, z, n) after their activation
  RowBuffer<T> hin;      // [·, P] m_rd ⊙ h, what multiplies W_hh (tape, or with recurrent dropout)
  RowBuffer<T> h_prev;   // [·, P] GRU with recurrent dropout: h before the step (tape only)
  RowBuffer<T> c_prev;   // [·, H] LSTM: c before the step (tape only)
  RowBuffer<T> ct;       // [·, H] LSTM c̃
  RowBuffer<T> hc_in;    // [·, H] LSTM: σ_h's input, LN(c̃) or c̃ (then empty: c̃ is used)
  RowBuffer<T> hc;       // [·, H] LSTM σ_h(hc_in)
  RowBuffer<T> xhat_c;   // [·, H] LSTM layer norm of c̃: x̂ (tape only)
  RowBuffer<T> rstd_c;   // [·]
  RowBuffer<T> m;        // [·, H] LSTM projection input o ⊙ σ_h(·)
  RowBuffer<T> xhat_hh;  // [·, G·H] layer norm of W_hh h: x̂ (tape only)
  RowBuffer<T> rstd_hh;  // [·]
  RowBuffer<T> sn;       // [·, H] GRU: what r multiplies (linear_before_reset), s_n
  RowBuffer<T> q;        // [·, H] GRU linear_before_reset=False: r ⊙ m_rd ⊙ h
  RowBuffer<T> xhat_ih;  // [·, G·H] layer norm of W_ih x for all N rows: x̂ (tape only)
  RowBuffer<T> rstd_ih;  // [·]
  PackedMasks<T> masks;
  std::vector<T> scratch;  // the memory of the fields without a tape

  // Points the fields at consecutive blocks of `rows` rows from base (VariantField order); returns the
  // values used. With base null, only counts.
  index_t place(const std::array<index_t, kVariantFields>& widths, index_t rows, T* base) {
    RowBuffer<T>* fields[kVariantFields] = {&zpre,   &act, &hin,     &h_prev,  &c_prev, &ct, &hc_in,   &hc,     &xhat_c,
                                            &rstd_c, &m,   &xhat_hh, &rstd_hh, &sn,     &q,  &xhat_ih, &rstd_ih};
    index_t used = 0;
    for (int f = 0; f < kVariantFields; ++f) {
      fields[f]->ptr = base && widths[f] ? base + used : nullptr;
      used += rows * widths[f];
    }
    return used;
  }

  // Zeroes rows [n, rows) of every field (a packed layout with n rows in a workspace sized for `rows`),
  // so that the workspace is fully defined.
  void zero_tail(const std::array<index_t, kVariantFields>& widths, index_t rows, index_t n, T* base) const {
    index_t at = 0;
    for (int f = 0; f < kVariantFields; ++f) {
      std::fill(base + at + n * widths[f], base + at + rows * widths[f], T(0));
      at += rows * widths[f];
    }
  }
};

// Packed weights of one layer and direction, and the step.
template <typename T>
struct VariantCell {
  const RnnShape& s;
  const VariantOptions& o;
  const VariantWeights<T>& ex;
  PackedCell<T> pc;                  // w_ih, w_hh, w_hr and the input bias (LSTM: b_ih + b_hh)
  PackedWeights<T> w_hh_rz, w_hh_n;  // GRU linear_before_reset=False: W_hh's (r, z) and n rows
  const T* b_hh = nullptr;           // GRU b_hh [3H] or null
  index_t H, P, G, GH;

  VariantCell(const RnnShape& s_, const VariantOptions& o_, index_t in, const CellWeights<T>& w,
              const VariantWeights<T>& e)
      : s(s_), o(o_), ex(e), pc(s_.lstm, in, s_.H, s_.P, w), H(s_.H), P(s_.P), G(s_.gates()), GH(s_.gates() * s_.H) {
    if (!s.lstm) {
      b_hh = w.b_hh;
      if (!o.linear_before_reset) {
        w_hh_rz = PackedWeights<T>(w.w_hh, 2 * H, P, P);
        w_hh_n = PackedWeights<T>(w.w_hh + 2 * H * P, H, P, P);
      }
    }
  }

  // Input projection of packed rows [n0, n1) on the calling thread: out[n − n0, 0:GH] (ld ldo) =
  // LN(input[n] · W_ihᵀ) + bias; keeps the layer norm's x̂ and 1/σ of row n in rows.xhat_ih / rstd_ih
  // when tape. Never the one-row kernel, so any row blocking gives the bits of one whole product.
  void project_rows(index_t n0, index_t n1, const T* input, index_t in, T* out, index_t ldo, VariantRows<T>& rows,
                    bool tape) const {
    const T* bias = pc.input_bias();
    gemm_acc_serial(n1 - n0, input + n0 * in, in, pc.w_ih, out, ldo, 0, pc.w_ih.panels(), false,
                    CInit<T>{true, o.layer_norm ? nullptr : bias});  // LN would remove the bias: after it
    if (!o.layer_norm) return;
    for (index_t n = n0; n < n1; ++n) {
      T* row = out + (n - n0) * ldo;
      const T r =
          layer_norm_row(GH, row, ex.ln_ih_w, ex.ln_ih_b, row, tape ? rows.xhat_ih.data() + n * GH : nullptr, false);
      if (tape) rows.rstd_ih[n] = r;
      if (bias)
        for (index_t j = 0; j < GH; ++j) row[j] += bias[j];
    }
  }

  // project_rows for all N packed rows into proj (ld ldp), in row blocks over the thread pool.
  void project(index_t N, const T* input, index_t in, T* proj, index_t ldp, VariantRows<T>& rows, bool tape) const {
    constexpr int MR = Tile<T>::MR;
    const index_t tiles = (N + MR - 1) / MR;
    auto block = [&](index_t n0, index_t n1) { project_rows(n0, n1, input, in, proj + n0 * ldp, ldp, rows, tape); };
    if (double(N) * double(GH) * double(in) >= kParallelMacs && num_threads() >= 2 && !in_parallel())
      parallel_for(tiles, [&](index_t b, index_t e) { block(b * MR, std::min(N, e * MR)); });
    else block(0, N);
  }

  // Gives the per-row buffers B rows of scratch (the forward without a tape).
  void scratch_rows(VariantRows<T>& rw, index_t B) const {
    const auto widths = variant_row_widths(s, o, false, rw.masks.recurrent != nullptr);
    rw.scratch.assign(static_cast<size_t>(rw.place(widths, B, nullptr)), T(0));
    rw.place(widths, B, rw.scratch.data());
  }

  // One step for rows [r0, r0 + n) of the packed batch (state rows r0.., packed rows q0 = offsets[t] + r0..).
  //   gates: [n, G·H] ld ldp, the input projection a (clobbered)
  //   h: [·, P], c: [·, H] state in packed row order (rows r0..), updated in place
  //   s_scr: [B, G·H] scratch; ht: [B, P] scratch (h̃ before zoneout)
  //   one_row: whether these are the step's only row (the GEMM's one-row kernel; cleared for one thread's rows)
  void step(index_t r0, index_t n, index_t q0, T* gates, index_t ldp, T* h, T* c, VariantRows<T>& rw, bool tape,
            T* s_scr, T* ht, bool one_row = true) const {
    const PackedMasks<T>& mk = rw.masks;
    auto at = [&](const RowBuffer<T>& v, index_t width, index_t r) {
      return v.data() + (tape ? q0 + r : r0 + r) * width;
    };
    // What multiplies W_hh: m_rd ⊙ h (kept with a tape).
    const T* hin = h + r0 * P;
    if (!rw.hin.empty()) {
      for (index_t r = 0; r < n; ++r) {
        const T* hr = h + (r0 + r) * P;
        T* dst = at(rw.hin, P, r);
        if (mk.recurrent) {
          const T* m = mk.rd(r0 + r);
          for (index_t j = 0; j < P; ++j) dst[j] = m[j] * hr[j];
        } else {
          std::copy_n(hr, P, dst);
        }
        if (!rw.h_prev.empty()) std::copy_n(hr, P, at(rw.h_prev, P, r));
      }
      if (mk.recurrent) hin = at(rw.hin, P, 0);  // else the tape's copy equals h, which is hotter in cache
    }
    if (s.lstm) lstm_rows(r0, n, q0, gates, ldp, hin, h, c, rw, tape, s_scr, ht, one_row);
    else gru_rows(r0, n, q0, gates, ldp, hin, h, rw, tape, s_scr, ht, one_row);
  }

  // Whether the step can be split by hidden units (sequence/forward.h's lockstep pair): every value of a
  // unit depends on that unit's columns of the products alone, except under layer norm (a statistic of
  // the whole row), a projection, and GRU linear_before_reset=False (W_hn multiplies r ⊙ h, all units).
  bool units_ok() const { return !o.layer_norm && !pc.projected && (s.lstm || o.linear_before_reset); }

  // Units [u0, u1) of all B rows (packed rows q0..) through one step (units_ok() true): reads all of
  // h_in, writes its units of h_out, c and the per-row buffers; each value with the same operations as
  // step(). hin_buf: this thread's scratch for m_rd ⊙ h (recurrent dropout).
  void step_units(index_t q0, index_t B, index_t u0, index_t u1, T* gates, index_t ldg, const T* h_in, T* h_out, T* c,
                  VariantRows<T>& rw, bool tape, T* s_scr, T* ht, std::vector<T>& hin_buf) const {
    const PackedMasks<T>& mk = rw.masks;
    const index_t n = u1 - u0;
    auto at = [&](const RowBuffer<T>& v, index_t width, index_t r) { return v.data() + (tape ? q0 + r : r) * width; };
    const T* hin = h_in;  // what multiplies W_hh: m_rd ⊙ h, all of it for the product, its units kept
    if (mk.recurrent) {
      hin_buf.resize(static_cast<size_t>(B * P));
      for (index_t r = 0; r < B; ++r) {
        const T* m = mk.rd(r);
        for (index_t j = 0; j < P; ++j) hin_buf[r * P + j] = m[j] * h_in[r * P + j];
      }
      hin = hin_buf.data();
    }
    if (tape)
      for (index_t r = 0; r < B; ++r) {
        std::copy_n(hin + r * P + u0, n, at(rw.hin, P, r) + u0);
        if (!rw.h_prev.empty()) std::copy_n(h_in + r * P + u0, n, at(rw.h_prev, P, r) + u0);
      }
    const T* none = nullptr;
    if (s.lstm) {
      unit_products(B, G, H, pc, none, 0, hin, P, gates, ldg, static_cast<T*>(nullptr), 0, u0, u1);
      for (index_t r = 0; r < B; ++r) lstm_units(r, q0, u0, n, gates + r * ldg, c + r * H, rw, tape, ht + r * P);
    } else {
      unit_products(B, G, H, pc, none, 0, hin, P, gates, ldg, s_scr, GH, u0, u1);
      for (index_t r = 0; r < B; ++r)
        gru_units(r, q0, u0, n, gates + r * ldg, s_scr + r * GH, h_in + r * P, rw, tape, ht + r * P);
    }
    for (index_t r = 0; r < B; ++r) {
      std::copy_n(h_in + r * P + u0, n, h_out + r * P + u0);
      const T* mh = rw.masks.zh(q0 + r);
      zoneout_row(n, mh ? mh + u0 : nullptr, T(o.zoneout_h), h_out + r * P + u0, ht + r * P + u0);
    }
  }

 private:
  // state ← m ⊙ state + (1 − m) ⊙ fresh over n values: m the sampled mask row, or (null) the constant z.
  static void zoneout_row(index_t n, const T* mask, T z, T* state, const T* fresh) {
    if (mask) {
      for (index_t j = 0; j < n; ++j) state[j] = mask[j] * state[j] + (T(1) - mask[j]) * fresh[j];
    } else if (z != T(0)) {
      for (index_t j = 0; j < n; ++j) state[j] = z * state[j] + (T(1) - z) * fresh[j];
    } else {
      std::copy_n(fresh, n, state);
    }
  }

  // h ← m_h ⊙ h + (1 − m_h) ⊙ h̃ for rows [r0, r0 + n).
  void zoneout_h(index_t r0, index_t n, index_t q0, T* h, const T* ht, const VariantRows<T>& rw) const {
    for (index_t r = 0; r < n; ++r)
      zoneout_row(P, rw.masks.zh(q0 + r), T(o.zoneout_h), h + (r0 + r) * P, ht + (r0 + r) * P);
  }

  // LSTM units [u0, u0 + n) of row r (packed q0 + r): z its gates [4H] (the products added), cr its c
  // [H]; h̃ into htr [P]. lstm_rows' operations, on a slice of each gate.
  void lstm_units(index_t r, index_t q0, index_t u0, index_t n, T* z, T* cr, VariantRows<T>& rw, bool tape,
                  T* htr) const {
    auto at = [&](const RowBuffer<T>& v, index_t width) { return v.data() + (tape ? q0 + r : r) * width; };
    const T* p = ex.peephole;
    const index_t j0 = u0, j1 = u0 + n;
    T* a = at(rw.act, GH);
    if (tape) std::copy_n(cr + u0, n, at(rw.c_prev, H) + u0);
    if (p)
      for (index_t j = j0; j < j1; ++j) z[j] += p[j] * cr[j], z[H + j] += p[H + j] * cr[j];
    for (index_t gate = 0; gate < 3; ++gate) {
      T* zg = z + gate * H + u0;
      if (!rw.zpre.empty()) std::copy_n(zg, n, at(rw.zpre, GH) + gate * H + u0);
      clip_apply(o, zg, n);
    }
    act_apply(o.gate, z + u0, a + u0, n);
    act_apply(o.cell, z + 2 * H + u0, a + 2 * H + u0, n);
    if (o.input_forget)
      for (index_t j = j0; j < j1; ++j) a[H + j] = T(1) - a[j];
    else act_apply(o.gate, z + H + u0, a + H + u0, n);
    T* ct = at(rw.ct, H);
    for (index_t j = j0; j < j1; ++j) ct[j] = a[H + j] * cr[j] + a[j] * a[2 * H + j];
    T* zo = z + 3 * H;
    if (p)
      for (index_t j = j0; j < j1; ++j) zo[j] += p[2 * H + j] * ct[j];
    if (!rw.zpre.empty()) std::copy_n(zo + u0, n, at(rw.zpre, GH) + 3 * H + u0);
    clip_apply(o, zo + u0, n);
    act_apply(o.gate, zo + u0, a + 3 * H + u0, n);
    T* hc = at(rw.hc, H);
    act_apply(o.hidden, ct + u0, hc + u0, n);
    for (index_t j = j0; j < j1; ++j) htr[j] = a[3 * H + j] * hc[j];
    const T* mc = rw.masks.zc(q0 + r);
    zoneout_row(n, mc ? mc + u0 : nullptr, T(o.zoneout_c), cr + u0, ct + u0);
  }

  // GRU (linear_before_reset) units [u0, u0 + n) of row r: z its gates [3H], srow W_hh h̃ [3H] (its
  // units), hr its h [P]; h̃ into htr [P]. gru_rows' operations, on a slice of each gate.
  void gru_units(index_t r, index_t q0, index_t u0, index_t n, T* z, T* srow, const T* hr, VariantRows<T>& rw,
                 bool tape, T* htr) const {
    auto at = [&](const RowBuffer<T>& v, index_t width) { return v.data() + (tape ? q0 + r : r) * width; };
    const index_t j0 = u0, j1 = u0 + n;
    T* a = at(rw.act, GH);
    for (index_t gate = 0; gate < 3; ++gate)
      if (b_hh)
        for (index_t j = gate * H + j0; j < gate * H + j1; ++j) srow[j] += b_hh[j];
    for (index_t gate = 0; gate < 2; ++gate) {
      T* zg = z + gate * H + u0;
      for (index_t j = 0; j < n; ++j) zg[j] += srow[gate * H + u0 + j];
      if (!rw.zpre.empty()) std::copy_n(zg, n, at(rw.zpre, GH) + gate * H + u0);
      clip_apply(o, zg, n);
      act_apply(o.gate, zg, a + gate * H + u0, n);
    }
    const T* sn = srow + 2 * H;
    std::copy_n(sn + u0, n, at(rw.sn, H) + u0);
    T* zn = z + 2 * H;
    for (index_t j = j0; j < j1; ++j) zn[j] += a[j] * sn[j];
    if (!rw.zpre.empty()) std::copy_n(zn + u0, n, at(rw.zpre, GH) + 2 * H + u0);
    clip_apply(o, zn + u0, n);
    act_apply(o.cell, zn + u0, a + 2 * H + u0, n);
    for (index_t j = j0; j < j1; ++j) htr[j] = (T(1) - a[H + j]) * a[2 * H + j] + a[H + j] * hr[j];
  }

  void lstm_rows(index_t r0, index_t n, index_t q0, T* gates, index_t ldp, const T* hin, T* h, T* c, VariantRows<T>& rw,
                 bool tape, T* s_scr, T* ht, bool one_row) const {
    auto at = [&](const RowBuffer<T>& v, index_t width, index_t r) {
      return v.data() + (tape ? q0 + r : r0 + r) * width;
    };
    const index_t ldhin = P;
    if (o.layer_norm) {  // a + LN(W_hh h; γ, β) (b_hh is in a already)
      T* sv = s_scr + r0 * GH;
      gemm_set(n, hin, ldhin, pc.w_hh, sv, GH, one_row);
      for (index_t r = 0; r < n; ++r)
        *at(rw.rstd_hh, 1, r) = layer_norm_row(GH, sv + r * GH, ex.ln_hh_w, ex.ln_hh_b, gates + r * ldp,
                                               tape ? at(rw.xhat_hh, GH, r) : nullptr, true);
    } else {
      gemm_acc(n, hin, ldhin, pc.w_hh, gates, ldp, one_row);
    }
    const T* p = ex.peephole;
    const T zc_const = T(o.zoneout_c);
    for (index_t r = 0; r < n; ++r) {
      T* z = gates + r * ldp;
      T* cr = c + (r0 + r) * H;
      T* a = at(rw.act, GH, r);
      T *zi = z, *zf = z + H, *zg = z + 2 * H, *zo = z + 3 * H;
      if (tape) std::copy_n(cr, H, at(rw.c_prev, H, r));
      if (p)
        for (index_t j = 0; j < H; ++j) zi[j] += p[j] * cr[j], zf[j] += p[H + j] * cr[j];
      if (!rw.zpre.empty()) std::copy_n(z, 3 * H, at(rw.zpre, GH, r));
      clip_apply(o, z, 3 * H);
      act_apply(o.gate, zi, a, H);
      act_apply(o.cell, zg, a + 2 * H, H);
      if (o.input_forget)
        for (index_t j = 0; j < H; ++j) a[H + j] = T(1) - a[j];
      else act_apply(o.gate, zf, a + H, H);
      T* ct = at(rw.ct, H, r);
      for (index_t j = 0; j < H; ++j) ct[j] = a[H + j] * cr[j] + a[j] * a[2 * H + j];
      if (p)
        for (index_t j = 0; j < H; ++j) zo[j] += p[2 * H + j] * ct[j];
      if (!rw.zpre.empty()) std::copy_n(zo, H, at(rw.zpre, GH, r) + 3 * H);
      clip_apply(o, zo, H);
      act_apply(o.gate, zo, a + 3 * H, H);
      const T* hc_in = ct;
      if (o.layer_norm) {
        T* y = at(rw.hc_in, H, r);
        *at(rw.rstd_c, 1, r) =
            layer_norm_row(H, ct, ex.ln_cell_w, ex.ln_cell_b, y, tape ? at(rw.xhat_c, H, r) : nullptr, false);
        hc_in = y;
      }
      T* hc = at(rw.hc, H, r);
      act_apply(o.hidden, hc_in, hc, H);
      T* m = pc.projected ? at(rw.m, H, r) : ht + (r0 + r) * P;
      for (index_t j = 0; j < H; ++j) m[j] = a[3 * H + j] * hc[j];
      zoneout_row(H, rw.masks.zc(q0 + r), zc_const, cr, ct);
    }
    if (pc.projected) gemm_set(n, at(rw.m, H, 0), H, pc.w_hr, ht + r0 * P, P, one_row);
    zoneout_h(r0, n, q0, h, ht, rw);
  }

  void gru_rows(index_t r0, index_t n, index_t q0, T* gates, index_t ldp, const T* hin, T* h, VariantRows<T>& rw,
                bool tape, T* s_scr, T* ht, bool one_row) const {
    auto at = [&](const RowBuffer<T>& v, index_t width, index_t r) {
      return v.data() + (tape ? q0 + r : r0 + r) * width;
    };
    T* sv = s_scr + r0 * GH;  // [n, 3H]: s = LN(W_hh hin) + b_hh  (linear_before_reset=False: r, z rows only)
    const bool lbr = o.linear_before_reset;
    if (lbr) gemm_set(n, hin, P, pc.w_hh, sv, GH, one_row);
    else {
      for (index_t r = 0; r < n; ++r) std::fill(sv + r * GH, sv + r * GH + 2 * H, T(0));
      gemm_acc(n, hin, P, w_hh_rz, sv, GH, one_row);
    }
    const index_t width = lbr ? GH : 2 * H;
    for (index_t r = 0; r < n; ++r) {
      T* srow = sv + r * GH;
      if (o.layer_norm)
        *at(rw.rstd_hh, 1, r) =
            layer_norm_row(GH, srow, ex.ln_hh_w, ex.ln_hh_b, srow, tape ? at(rw.xhat_hh, GH, r) : nullptr, false);
      if (b_hh)
        for (index_t j = 0; j < width; ++j) srow[j] += b_hh[j];
      T* z = gates + r * ldp;
      for (index_t j = 0; j < 2 * H; ++j) z[j] += srow[j];
      if (!rw.zpre.empty()) std::copy_n(z, 2 * H, at(rw.zpre, GH, r));
      clip_apply(o, z, 2 * H);
      T* a = at(rw.act, GH, r);
      act_apply(o.gate, z, a, 2 * H);
      if (lbr) {
        std::copy_n(srow + 2 * H, H, at(rw.sn, H, r));
      } else {  // q = r ⊙ m_rd ⊙ h
        const T* hr = hin + r * P;
        T* qr = at(rw.q, H, r);
        for (index_t j = 0; j < H; ++j) qr[j] = a[j] * hr[j];
      }
    }
    if (!lbr) {  // s_n = W_hn q + b_hn
      for (index_t r = 0; r < n; ++r) {
        T* sn = sv + r * GH + 2 * H;
        if (b_hh) std::copy_n(b_hh + 2 * H, H, sn);
        else std::fill(sn, sn + H, T(0));
      }
      gemm_acc(n, at(rw.q, H, 0), H, w_hh_n, sv + 2 * H, GH, one_row);
    }
    for (index_t r = 0; r < n; ++r) {
      T* z = gates + r * ldp;
      T* a = at(rw.act, GH, r);
      const T* sn = sv + r * GH + 2 * H;
      T* zn = z + 2 * H;
      if (lbr)
        for (index_t j = 0; j < H; ++j) zn[j] += a[j] * sn[j];
      else
        for (index_t j = 0; j < H; ++j) zn[j] += sn[j];
      if (!rw.zpre.empty()) std::copy_n(zn, H, at(rw.zpre, GH, r) + 2 * H);
      clip_apply(o, zn, H);
      act_apply(o.cell, zn, a + 2 * H, H);
      const T* hr = h + (r0 + r) * P;
      T* tr = ht + (r0 + r) * P;
      for (index_t j = 0; j < H; ++j) tr[j] = (T(1) - a[H + j]) * a[2 * H + j] + a[H + j] * hr[j];
    }
    zoneout_h(r0, n, q0, h, ht, rw);
  }
};

// Per-thread scratch of a variant step split by units: m_rd ⊙ h.
template <typename T>
struct VariantLocal {
  std::vector<T> hin;
};

// The variant cell of one layer and direction as the sequence driver's adapter (sequence/forward.h):
// its per-row buffers are the tape's rows (training) or B rows of scratch of its own.
template <typename T>
class VariantStepper {
 public:
  using Local = VariantLocal<T>;
  static constexpr index_t kUnitWidth = Tile<T>::NR;

  //   tape_rows: the tape's buffers of this layer·direction (masks already set), or null for inference,
  //   then masks (read in place) are this layer·direction's sampled masks.
  VariantStepper(const RnnShape& s, const VariantOptions& o, index_t in, const CellWeights<T>& w,
                 const VariantWeights<T>& e, const PackedBatch& pk, const VariantMasks<T>& masks,
                 VariantRows<T>* tape_rows)
      : cell_(s, o, in, w, e),
        tape_(tape_rows != nullptr),
        rw_(tape_rows ? tape_rows : &own_),
        s_scr_(static_cast<size_t>(s.B * s.gates() * s.H)),
        ht_(static_cast<size_t>(s.B * s.P)) {
    if (tape_) return;
    own_.masks = PackedMasks<T>(pk, s.B, s.H, s.P, masks);
    cell_.scratch_rows(own_, s.B);
  }
  VariantStepper(const VariantStepper&) = delete;
  VariantStepper& operator=(const VariantStepper&) = delete;

  T* kept_gates() const { return nullptr; }
  void project(index_t N, const T* in, index_t ld_in, T* g, index_t ldg) {
    cell_.project(N, in, ld_in, g, ldg, *rw_, tape_);
  }
  // Never the one-row kernel (project's row blocks may have one row), so one_row is not needed.
  void project_rows(index_t q0, index_t n, const T* in, index_t ld_in, T* g, index_t ldg, bool, Local&) {
    cell_.project_rows(q0, q0 + n, in, ld_in, g, ldg, *rw_, tape_);
  }
  void step(index_t r0, index_t n, index_t q0, T* g, index_t ldg, T* h, T* c, bool one_row, Local&) {
    cell_.step(r0, n, q0, g, ldg, h, c, *rw_, tape_, s_scr_.data(), ht_.data(), one_row);
  }
  // A step's rows stay on the calling thread (its products split over the pool when large).
  double row_macs(index_t) const { return 0; }
  // The lockstep pair only for one or two rows: the variant step's per-unit work (gates, peephole terms,
  // clip/activations per row) costs more than the plain cell's, so the pair's meeting per step pays off
  // less. benchmarks/bench_builds.py on Zen 4, peephole H=128 T=100, pair / one thread per step:
  // B=1 0.80 (faster), B=4 1.06, B=8 1.08, B=16 1.59 (slower).
  static constexpr index_t kLockstepMaxRows = 2;
  bool lockstep_units(index_t B) const {
    return B <= kLockstepMaxRows && cell_.units_ok() && unit_split<T>(B, cell_.H, cell_.G, cell_.P);
  }
  void step_units(index_t q0, index_t B, index_t u0, index_t u1, T* g, index_t ldg, const T* h_in, T* h_out, T* c,
                  Local& local) {
    cell_.step_units(q0, B, u0, u1, g, ldg, h_in, h_out, c, *rw_, tape_, s_scr_.data(), ht_.data(), local.hin);
  }
  bool pool_step(index_t) const { return false; }
  void step_pool(index_t, index_t, T*, index_t, T*, T*) {}

 private:
  VariantCell<T> cell_;
  bool tape_;
  VariantRows<T> own_;  // inference: B rows of scratch
  VariantRows<T>* rw_;
  std::vector<T> s_scr_, ht_;  // [B, G·H] W_hh products, [B, P] h̃ before zoneout
};

}  // namespace LSTMKIT_ISA
}  // namespace lstmkit
