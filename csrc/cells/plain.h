// Fused LSTM and GRU cell steps: the recurrent product fused with the gate nonlinearities and the
// state update, exactly the equations of lstmkit/ref/lstm.py and lstmkit/ref/gru.py (torch's
// formulation, gate order LSTM (i, f, g, o), GRU (r, z, n)).
//
// Notation for every buffer below: B batch rows, I input size, H hidden size, P = proj_size or H
// (size of h), G = 4 (LSTM) or 3 (GRU). Row-major; "ld" is a row stride in elements. No function here
// allocates on the step path or keeps a pointer after it returns.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>
#include <vector>

#include "core/gemm.h"

namespace lstmkit {
namespace LSTMKIT_ISA {

// σ(x) = ½(1 + tanh(x/2)): the reference's formula (no exp overflow for large |x|), so the engine
// rounds the way the reference does.
template <typename T>
inline T sigmoid(T x) {
  return T(0.5) * (T(1) + std::tanh(T(0.5) * x));
}

// CellWeights repacked for the GEMM, plus the bias the input projection starts from. Owns its data.
//   bias_in: [G·H] LSTM: b_ih + b_hh (both fold into the input projection);
//                  GRU:  b_ih (b_hh stays in the step, since r multiplies W_hn h + b_hn).
//   b_hh:    GRU only, a pointer to the owned copy b_hh_own, null without bias.
// Movable, not copyable (b_hh points into the object's own vector).
template <typename T>
struct PackedCell {
  PackedWeights<T> w_ih, w_hh, w_hr;  // w_hr empty (n = 0) without projection
  std::vector<T> bias_in;             // empty without bias
  std::vector<T> b_hh_own;            // GRU: b_hh
  const T* b_hh = nullptr;
  bool projected = false;

  PackedCell(const PackedCell&) = delete;
  PackedCell& operator=(const PackedCell&) = delete;
  PackedCell(PackedCell&&) = default;

  PackedCell(bool lstm, index_t in, index_t H, index_t P, const CellWeights<T>& w)
      : w_ih(w.w_ih, (lstm ? 4 : 3) * H, in, in), w_hh(w.w_hh, (lstm ? 4 : 3) * H, P, P) {
    const index_t GH = (lstm ? 4 : 3) * H;
    if (w.w_hr) {
      w_hr = PackedWeights<T>(w.w_hr, P, H, H);
      projected = true;
    }
    if (w.b_ih) {
      bias_in.assign(w.b_ih, w.b_ih + GH);
      if (lstm)
        for (index_t j = 0; j < GH; ++j) bias_in[j] += w.b_hh[j];
      else {
        b_hh_own.assign(w.b_hh, w.b_hh + GH);
        b_hh = b_hh_own.data();
      }
    }
  }
  const T* input_bias() const { return bias_in.empty() ? nullptr : bias_in.data(); }
};

namespace detail {
// c' = f ⊙ c + i ⊙ g as one function, for every loop of lstm_pointwise (SIMD blocks, SIMD remainder, scalar):
// the SIMD block loop and remainder loop then get the same expression and bits (with contraction on, which product
// a multiply-add absorbs depends on how the operands arrive: a folded load or a register), whichever loop the thread
// count assigns a unit to.
template <typename V>
inline V lstm_c_next(V f, V c, V i, V g) {
  return f * c + i * g;
}
}  // namespace detail

// LSTM gate nonlinearities and state update for B rows, one fused pass.
//   gates: [B, 4H] ld ldg  pre-activations (i, f, g, o), all products and biases already summed
//   c_in:  [B, H]  ld ldc_in   cell state before the step
//   c_out: [B, H]  ld ldc_out  cell state after (may alias c_in)
//   m:     [B, H]  ld ldm      o ⊙ tanh(c'): h' itself without projection, the projection's input with it
// For training (null at inference), what the backward pass needs:
//   act:    [B, 4H] contiguous  (i, f, g, o) after σ / tanh
//   tanh_c: [B, H]  contiguous  tanh(c')
// float32 runs on SIMD vectors (simd.h's tanh/σ), float64 on libm.
template <typename T>
void lstm_pointwise(index_t B, index_t H, const T* gates, index_t ldg, const T* c_in, index_t ldc_in, T* c_out,
                    index_t ldc_out, T* m, index_t ldm, T* act = nullptr, T* tanh_c = nullptr, index_t gs = 0) {
  // gs: gate stride when the call covers a slice of H units of wider rows (gates, act [B, 4·gs],
  // tanh_c [B, gs] all offset to the slice by the caller); 0 means H.
  const index_t GS = gs ? gs : H;
#if LSTMKIT_HAVE_VECTORS
  if constexpr (std::is_same<T, float>::value) {
    using S = detail::Simd<float>;
    using V = S::vec;
    constexpr int W = S::W;
    for (index_t b = 0; b < B; ++b) {
      const float* gi = gates + b * ldg;
      const float* c = c_in + b * ldc_in;
      float* cn = c_out + b * ldc_out;
      float* mb = m + b * ldm;
      float* a = act ? act + b * 4 * GS : nullptr;
      float* tcb = act ? tanh_c + b * GS : nullptr;
      // Four vectors at a time, stage by stage: one vector's σ → c' → tanh chain is long (each function
      // ends in a division) and the pass is bound by its latency; independent chains side by side fill the
      // pipelines (B=16 H=128, 100 steps on a Zen 3: 0.70 ms one at a time, 0.56 two, 0.50 four).
      constexpr int U = 4;
      index_t j = 0;
      for (; j + U * W <= H; j += U * W) {
        V i[U], f[U], g[U], o[U], c_next[U], tc[U];
        for (int u = 0; u < U; ++u) i[u] = detail::sigmoid_ps(S::load(gi + j + u * W));
        for (int u = 0; u < U; ++u) f[u] = detail::sigmoid_ps(S::load(gi + GS + j + u * W));
        for (int u = 0; u < U; ++u) g[u] = detail::tanh_ps(S::load(gi + 2 * GS + j + u * W));
        for (int u = 0; u < U; ++u) o[u] = detail::sigmoid_ps(S::load(gi + 3 * GS + j + u * W));
        for (int u = 0; u < U; ++u) c_next[u] = detail::lstm_c_next(f[u], S::load(c + j + u * W), i[u], g[u]);
        for (int u = 0; u < U; ++u) tc[u] = detail::tanh_ps(c_next[u]);
        for (int u = 0; u < U; ++u) {
          const index_t q = j + u * W;
          S::store(cn + q, c_next[u]);
          S::store(mb + q, o[u] * tc[u]);
          if (a) {
            S::store(a + q, i[u]), S::store(a + GS + q, f[u]), S::store(a + 2 * GS + q, g[u]);
            S::store(a + 3 * GS + q, o[u]), S::store(tcb + q, tc[u]);
          }
        }
      }
      for (; j < H; j += W) {
        const int n = static_cast<int>(std::min<index_t>(W, H - j));
        auto ld = [&](const float* p) { return n == W ? S::load(p + j) : S::load_part(p + j, n); };
        auto st = [&](float* p, V v) {
          if (n == W) S::store(p + j, v);
          else S::store_part(p + j, v, n);
        };
        const V i = detail::sigmoid_ps(ld(gi)), f = detail::sigmoid_ps(ld(gi + GS));
        const V g = detail::tanh_ps(ld(gi + 2 * GS)), o = detail::sigmoid_ps(ld(gi + 3 * GS));
        const V c_next = detail::lstm_c_next(f, ld(c), i, g);
        const V tc = detail::tanh_ps(c_next);
        st(cn, c_next);
        st(mb, o * tc);
        if (a) {
          st(a, i), st(a + GS, f), st(a + 2 * GS, g), st(a + 3 * GS, o);
          st(tcb, tc);
        }
      }
    }
    return;
  }
#endif
  for (index_t b = 0; b < B; ++b) {
    const T* gi = gates + b * ldg;
    const T* gf = gi + GS;
    const T* gg = gi + 2 * GS;
    const T* go = gi + 3 * GS;
    const T* c = c_in + b * ldc_in;
    T* cn = c_out + b * ldc_out;
    T* mb = m + b * ldm;
    for (index_t j = 0; j < H; ++j) {
      const T i = sigmoid(gi[j]), f = sigmoid(gf[j]), g = std::tanh(gg[j]), o = sigmoid(go[j]);
      const T c_next = detail::lstm_c_next(f, c[j], i, g);
      const T tc = std::tanh(c_next);
      cn[j] = c_next;
      mb[j] = o * tc;
      if (act) {  // training only; the branch is the same for the whole call
        T* a = act + b * 4 * GS;
        a[j] = i, a[GS + j] = f, a[2 * GS + j] = g, a[3 * GS + j] = o;
        tanh_c[b * GS + j] = tc;
      }
    }
  }
}

// One LSTM step for B rows whose input projection is already in `gates`.
//   h_in:   [B, P] ld ldh_in    h before the step (read by the recurrent product)
//   c_in:   [B, H] ld ldc_in    c before the step
//   gates:  [B, 4H] ld ldg      in: x·W_ihᵀ + b_ih + b_hh; clobbered (h·W_hhᵀ is added in place)
//   h_out:  [B, P] ld ldh_out   h after (may alias h_in: h_in is fully read before h_out is written)
//   c_out:  [B, H] ld ldc_out   c after (may alias c_in)
//   m:      [B, H] contiguous, used only with projection: o ⊙ tanh(c'), the projection's input
//   act, tanh_c: the training caches of lstm_pointwise, or null
//   one_row: gemm_acc's one_row_kernel (cleared for one thread's rows of a larger step)
template <typename T>
void lstm_step(index_t B, index_t H, const PackedCell<T>& w, const T* h_in, index_t ldh_in, const T* c_in,
               index_t ldc_in, T* gates, index_t ldg, T* h_out, index_t ldh_out, T* c_out, index_t ldc_out, T* m,
               T* act = nullptr, T* tanh_c = nullptr, bool one_row = true) {
  if (B <= 0) return;
  gemm_acc(B, h_in, ldh_in, w.w_hh, gates, ldg, one_row);  // (B, 4H) += (B, P) · (P, 4H)
  if (w.projected) {
    lstm_pointwise(B, H, gates, ldg, c_in, ldc_in, c_out, ldc_out, m, H, act, tanh_c);
    gemm_set(B, m, H, w.w_hr, h_out, ldh_out, one_row);  // (B, P) = (B, H) · (H, P)
  } else {
    lstm_pointwise(B, H, gates, ldg, c_in, ldc_in, c_out, ldc_out, h_out, ldh_out, act, tanh_c);
  }
}

// GRU gate nonlinearities and state update for B rows, one fused pass.
//   gi:    [B, 3H] ld ldgi  x·W_ihᵀ + b_ih  (r, z, n)
//   gh:    [B, 3H] ld ldgh  h·W_hhᵀ         (r, z, n), b_hh is added here
//   b_hh:  [3H] or null
//   h_in:  [B, H] ld ldh_in; h_out: [B, H] ld ldh_out (may alias h_in)
// For training (null at inference), what the backward pass needs:
//   act:   [B, 3H] contiguous  (r, z, n) after σ / tanh
//   gh_n:  [B, H]  contiguous  W_hn h + b_hn
namespace detail {
// The GRU's two mixed products, one function each for the same reason as lstm_c_next.
template <typename V>
inline V gru_n_preact(V xn, V r, V hn) {
  return xn + r * hn;
}
template <typename V>
inline V gru_mix(V z, V n, V h) {
  return (1.0f - z) * n + z * h;
}
}  // namespace detail

template <typename T>
void gru_pointwise(index_t B, index_t H, const T* gi, index_t ldgi, const T* gh, index_t ldgh, const T* b_hh,
                   const T* h_in, index_t ldh_in, T* h_out, index_t ldh_out, T* act = nullptr, T* gh_n = nullptr,
                   index_t gs = 0) {
  // gs: gate stride of gi, gh, b_hh, act [B, 3·gs] and gh_n [B, gs] for a slice of units; 0 means H.
  const index_t GS = gs ? gs : H;
#if LSTMKIT_HAVE_VECTORS
  if constexpr (std::is_same<T, float>::value) {
    using S = detail::Simd<float>;
    using V = S::vec;
    constexpr int W = S::W;
    for (index_t b = 0; b < B; ++b) {
      const float* xi = gi + b * ldgi;
      const float* hh = gh + b * ldgh;
      const float* h = h_in + b * ldh_in;
      float* hn = h_out + b * ldh_out;
      float* a = act ? act + b * 3 * GS : nullptr;
      float* ghn = act ? gh_n + b * GS : nullptr;
      // Four vectors at a time, stage by stage, as lstm_pointwise: r → n is a chain of two divisions.
      constexpr int U = 4;
      index_t j = 0;
      for (; j + U * W <= H; j += U * W) {
        V hr[U], hz[U], hnn[U], r[U], z[U], nn[U];
        for (int u = 0; u < U; ++u) {
          const index_t q = j + u * W;
          hr[u] = S::load(hh + q), hz[u] = S::load(hh + GS + q), hnn[u] = S::load(hh + 2 * GS + q);
          if (b_hh) {
            hr[u] = hr[u] + S::load(b_hh + q), hz[u] = hz[u] + S::load(b_hh + GS + q);
            hnn[u] = hnn[u] + S::load(b_hh + 2 * GS + q);
          }
        }
        for (int u = 0; u < U; ++u) r[u] = detail::sigmoid_ps(S::load(xi + j + u * W) + hr[u]);
        for (int u = 0; u < U; ++u) z[u] = detail::sigmoid_ps(S::load(xi + GS + j + u * W) + hz[u]);
        for (int u = 0; u < U; ++u)
          nn[u] = detail::tanh_ps(detail::gru_n_preact(S::load(xi + 2 * GS + j + u * W), r[u], hnn[u]));
        for (int u = 0; u < U; ++u) {
          const index_t q = j + u * W;
          if (a) {
            S::store(a + q, r[u]), S::store(a + GS + q, z[u]), S::store(a + 2 * GS + q, nn[u]);
            S::store(ghn + q, hnn[u]);
          }
          S::store(hn + q, detail::gru_mix(z[u], nn[u], S::load(h + q)));  // h_out may alias h_in: q's own load first
        }
      }
      for (; j < H; j += W) {
        const int n = static_cast<int>(std::min<index_t>(W, H - j));
        auto ld = [&](const float* p) { return n == W ? S::load(p + j) : S::load_part(p + j, n); };
        auto st = [&](float* p, V v) {
          if (n == W) S::store(p + j, v);
          else S::store_part(p + j, v, n);
        };
        V hr = ld(hh), hz = ld(hh + GS), hnn = ld(hh + 2 * GS);
        if (b_hh) hr = hr + ld(b_hh), hz = hz + ld(b_hh + GS), hnn = hnn + ld(b_hh + 2 * GS);
        const V r = detail::sigmoid_ps(ld(xi) + hr);
        const V z = detail::sigmoid_ps(ld(xi + GS) + hz);
        const V nn = detail::tanh_ps(detail::gru_n_preact(ld(xi + 2 * GS), r, hnn));
        if (a) {
          st(a, r), st(a + GS, z), st(a + 2 * GS, nn);
          st(ghn, hnn);
        }
        st(hn, detail::gru_mix(z, nn, ld(h)));  // last: h_out may alias h_in
      }
    }
    return;
  }
#endif
  for (index_t b = 0; b < B; ++b) {
    const T* xi = gi + b * ldgi;
    const T* hh = gh + b * ldgh;
    const T* h = h_in + b * ldh_in;
    T* hn = h_out + b * ldh_out;
    for (index_t j = 0; j < H; ++j) {
      // Same association as the reference: gi + (gh + b_hh).
      const T hr = hh[j] + (b_hh ? b_hh[j] : T(0));
      const T hz = hh[GS + j] + (b_hh ? b_hh[GS + j] : T(0));
      const T hnn = hh[2 * GS + j] + (b_hh ? b_hh[2 * GS + j] : T(0));
      const T r = sigmoid(xi[j] + hr);
      const T z = sigmoid(xi[GS + j] + hz);
      const T n = std::tanh(detail::gru_n_preact(xi[2 * GS + j], r, hnn));
      if (act) {  // training only
        T* a = act + b * 3 * GS;
        a[j] = r, a[GS + j] = z, a[2 * GS + j] = n;
        gh_n[b * GS + j] = hnn;
      }
      hn[j] = detail::gru_mix(z, n, h[j]);  // last: h_out may alias h_in
    }
  }
}

// One GRU step for B rows whose input projection is already in `gi`.
//   h_in:  [B, H] ld ldh_in
//   gi:    [B, 3H] ld ldgi   x·W_ihᵀ + b_ih (read only)
//   gh:    [B, 3H] contiguous scratch for h·W_hhᵀ
//   h_out: [B, H] ld ldh_out (may alias h_in)
//   act, gh_n, one_row: as lstm_step (gru_pointwise's training caches)
template <typename T>
void gru_step(index_t B, index_t H, const PackedCell<T>& w, const T* h_in, index_t ldh_in, const T* gi, index_t ldgi,
              T* gh, T* h_out, index_t ldh_out, T* act = nullptr, T* gh_n = nullptr, bool one_row = true) {
  if (B <= 0) return;
  gemm_set(B, h_in, ldh_in, w.w_hh, gh, 3 * H, one_row);  // (B, 3H) = (B, H) · (H, 3H)
  gru_pointwise(B, H, gi, ldgi, gh, 3 * H, w.b_hh, h_in, ldh_in, h_out, ldh_out, act, gh_n);
}

// ---- Steps split by hidden units over the thread pool (inference) ---------------------------------
// Thread k takes units [u0, u1) (whole register panels): the columns of those units in each gate's
// block of W_hh (and W_ih when x is given), then their nonlinearities — the weights each thread reads
// stay the same from step to step (in its core's cache), and there is one synchronisation per step.
// Every element is computed with the same operations as lstm_step / gru_step, so the bits are the same.

// Multiply-adds of a step above which the unit split pays for its synchronisation.
constexpr double kUnitSplitMacs = 1 << 15;

// Whether a step of B rows splits by units: H a multiple of the panel width, at least 2 panels per
// gate, the pool free to use and the step's G·H·k multiply-adds per row (k: the summed inner sizes of
// its products) large enough.
template <typename T>
bool unit_split(index_t B, index_t H, index_t G, index_t k) {
  constexpr int NR = Tile<T>::NR;
  if (H % NR != 0 || H / NR < 2 || in_parallel() || num_threads() < 2) return false;
  return double(B) * double(G * H) * double(k) >= kUnitSplitMacs;
}

// The same for the recurrent product of a step of this cell.
template <typename T>
bool unit_split(index_t B, index_t H, const PackedCell<T>& w, index_t G) {
  return unit_split<T>(B, H, G, w.w_hh.k());
}

// gates[:, g·gs + u0 + j] (+)= for every gate g and j < u1 − u0: the input projection when x is given
// (bias + x·W_ihᵀ), then + h·W_hhᵀ (into gh, zeroed first, when gh is given: the GRU), for rows [0, B).
template <typename T>
void unit_products(index_t B, index_t G, index_t H, const PackedCell<T>& w, const T* x, index_t ldx, const T* h,
                   index_t ldh, T* gates, index_t ldg, T* gh, index_t ldgh, index_t u0, index_t u1) {
  constexpr int NR = Tile<T>::NR;
  const CInit<T> bias{true, w.input_bias()}, zeros{true, nullptr};
  for (index_t g = 0; g < G; ++g) {
    const index_t c0 = g * H + u0, p0 = c0 / NR, p1 = (g * H + u1) / NR;
    if (x) gemm_acc_serial(B, x, ldx, w.w_ih, gates, ldg, p0, p1, true, bias);
    if (gh) gemm_acc_serial(B, h, ldh, w.w_hh, gh, ldgh, p0, p1, true, zeros);
    else gemm_acc_serial(B, h, ldh, w.w_hh, gates, ldg, p0, p1);
  }
}

// One LSTM step split by units (unit_split() true), its gates already holding the input projection. As
// lstm_step, except:
//   h_out: must not alias h_in (other threads still read h_in); with projection it may (h_out is
//          written after the parallel part, from m)
//   c_in/c_out: the same buffer c [B, H] ld ldc
//   act, tanh_c: the training caches of lstm_pointwise ([B, 4H], [B, H]), or null
template <typename T>
void lstm_step_units(index_t B, index_t H, const PackedCell<T>& w, const T* h_in, index_t ldh_in, T* c, index_t ldc,
                     T* gates, index_t ldg, T* h_out, index_t ldh_out, T* m, T* act = nullptr, T* tanh_c = nullptr) {
  constexpr int NR = Tile<T>::NR;
  T* dst = w.projected ? m : h_out;
  const index_t ldd = w.projected ? H : ldh_out;
  parallel_for(H / NR, [&](index_t b, index_t e) {
    const index_t u0 = b * NR, u1 = e * NR;
    unit_products(B, 4, H, w, static_cast<const T*>(nullptr), 0, h_in, ldh_in, gates, ldg, static_cast<T*>(nullptr), 0,
                  u0, u1);
    lstm_pointwise(B, u1 - u0, gates + u0, ldg, c + u0, ldc, c + u0, ldc, dst + u0, ldd, act ? act + u0 : act,
                   tanh_c ? tanh_c + u0 : tanh_c, H);
  });
  if (w.projected) gemm_set(B, m, H, w.w_hr, h_out, ldh_out);
}

// One GRU step split by units, gi holding the input projection. As gru_step; gh [B, 3H] scratch;
// h_out must not alias h_in.
// act, gh_n: the training caches of gru_pointwise ([B, 3H], [B, H]), or null.
template <typename T>
void gru_step_units(index_t B, index_t H, const PackedCell<T>& w, const T* h_in, index_t ldh_in, T* gi, index_t ldgi,
                    T* gh, T* h_out, index_t ldh_out, T* act = nullptr, T* gh_n = nullptr) {
  constexpr int NR = Tile<T>::NR;
  parallel_for(H / NR, [&](index_t b, index_t e) {
    const index_t u0 = b * NR, u1 = e * NR;
    unit_products(B, 3, H, w, static_cast<const T*>(nullptr), 0, h_in, ldh_in, gi, ldgi, gh, 3 * H, u0, u1);
    gru_pointwise(B, u1 - u0, gi + u0, ldgi, gh + u0, 3 * H, w.b_hh ? w.b_hh + u0 : nullptr, h_in + u0, ldh_in,
                  h_out + u0, ldh_out, act ? act + u0 : act, gh_n ? gh_n + u0 : gh_n, H);
  });
}

// A single cell step from x, the whole of ref.{lstm,gru}.cell_forward.
//   x:     [B, I]
//   h:     [B, P]; c: [B, H] (LSTM only, null for GRU)
//   h_out: [B, P]; c_out: [B, H] (LSTM only) — fresh buffers, must not alias the inputs
//   act, aux: null, or for training (no projection) what cell_backward reads: act [B, G·H] the gates after
//   σ / tanh, aux [B, H] (LSTM tanh(c'), GRU W_hn h + b_hn)
// Up to kInPlaceRows rows the products read the weights in place (cell_forward_in_place), else packed.
template <typename T>
void cell_forward_in_place(bool lstm, index_t B, index_t I, index_t H, index_t P, const T* x, const T* h, const T* c,
                           const CellWeights<T>& w, T* h_out, T* c_out, T* act, T* aux) {
  const index_t GH = (lstm ? 4 : 3) * H;
  std::vector<T> gates(static_cast<size_t>(B * GH));  // (B, G·H): x·W_ihᵀ + b_ih (+ b_hh for an LSTM)
  for (index_t b = 0; b < B; ++b)
    for (index_t j = 0; j < GH; ++j)
      gates[static_cast<size_t>(b * GH + j)] = w.b_ih ? (lstm ? w.b_ih[j] + w.b_hh[j] : w.b_ih[j]) : T(0);
  gemm_acc_in_place(B, GH, I, x, I, w.w_ih, I, gates.data(), GH);
  if (lstm) {
    gemm_acc_in_place(B, GH, P, h, P, w.w_hh, P, gates.data(), GH);  // + h·W_hhᵀ
    if (!w.w_hr) return lstm_pointwise(B, H, gates.data(), GH, c, H, c_out, H, h_out, P, act, aux);
    std::vector<T> m(static_cast<size_t>(B * H));  // o ⊙ tanh(c'), projected to h' by W_hr
    lstm_pointwise(B, H, gates.data(), GH, c, H, c_out, H, m.data(), H);
    std::fill(h_out, h_out + B * P, T(0));
    return gemm_acc_in_place(B, P, H, m.data(), H, w.w_hr, H, h_out, P);
  }
  std::vector<T> gh(static_cast<size_t>(B * GH), T(0));  // h·W_hhᵀ; b_hh is added inside r's product
  gemm_acc_in_place(B, GH, H, h, H, w.w_hh, H, gh.data(), GH);
  gru_pointwise(B, H, gates.data(), GH, gh.data(), GH, w.b_hh, h, H, h_out, H, act, aux);
}

template <typename T>
void cell_forward(bool lstm, index_t B, index_t I, index_t H, index_t P, const T* x, const T* h, const T* c,
                  const CellWeights<T>& weights, T* h_out, T* c_out, T* act, T* aux) {
  if (B <= 0) return;
  if (B <= kInPlaceRows) return cell_forward_in_place(lstm, B, I, H, P, x, h, c, weights, h_out, c_out, act, aux);
  const PackedCell<T> w(lstm, I, H, P, weights);
  const index_t GH = (lstm ? 4 : 3) * H;
  std::vector<T> gates(static_cast<size_t>(B * GH));             // (B, G·H)
  gemm_bias(B, x, I, w.w_ih, w.input_bias(), gates.data(), GH);  // (B, G·H) = bias + (B, I) · (I, G·H)
  if (lstm) {
    std::vector<T> m(w.projected ? static_cast<size_t>(B * H) : 0);  // (B, H)
    lstm_step(B, H, w, h, P, c, H, gates.data(), GH, h_out, P, c_out, H, m.data(), act, aux);
  } else {
    std::vector<T> gh(static_cast<size_t>(B * GH));  // (B, 3H)
    gru_step(B, H, w, h, H, gates.data(), GH, gh.data(), h_out, H, act, aux);
  }
}

// ---- The plain cell as the sequence driver's adapter (sequence/forward.h lists what an adapter gives) ----

// What a training forward keeps of one layer and direction, by packed row (sequence/backward.h's
// TrainWorkspace): views into the workspace, all null at inference.
template <typename T>
struct PlainTape {
  T* act = nullptr;     // [N, G·H] the gate pre-activations, turned into activations in place
  T* aux = nullptr;     // [N, H] LSTM tanh(c'), GRU W_hn h + b_hn
  T* h_prev = nullptr;  // [N, P] h before the step
  T* c_prev = nullptr;  // [N, H] LSTM: c before the step
  T* m = nullptr;       // [N, H] LSTM with projection: o ⊙ tanh(c'), the projection's input

  // Columns [j0, j0 + nh) of h (ld P) and [j0, j0 + nc) of c (ld H; null for a GRU) of n rows, kept as
  // packed rows q0.. (the state before the step, for the backward); nothing without a tape.
  void keep_state(index_t q0, index_t n, const T* h, const T* c, index_t P, index_t H, index_t j0, index_t nh,
                  index_t nc) const {
    if (!act) return;
    for (index_t r = 0; r < n; ++r) {
      std::copy_n(h + r * P + j0, nh, h_prev + (q0 + r) * P + j0);
      if (c) std::copy_n(c + r * H + j0, nc, c_prev + (q0 + r) * H + j0);
    }
  }
};

// Per-thread scratch of a step; the float cells need none.
struct NoLocal {};

// The LSTM/GRU of one layer and direction, its weights packed (a copy), for B rows of state.
template <typename T>
class PlainCell {
 public:
  using Local = NoLocal;
  static constexpr index_t kUnitWidth = Tile<T>::NR;  // the unit split's granule (a register panel)

  PlainCell(bool lstm, index_t in, index_t B, index_t H, index_t P, const CellWeights<T>& w, PlainTape<T> tape = {})
      : w_(lstm, in, H, P, w),
        tape_(tape),
        lstm_(lstm),
        H_(H),
        P_(P),
        G_(lstm ? 4 : 3),
        GH_(G_ * H),
        scratch_(static_cast<size_t>(B * (lstm ? H : G_ * H))),
        h_new_(static_cast<size_t>(B * P)) {}
  PlainCell(const PlainCell&) = delete;
  PlainCell& operator=(const PlainCell&) = delete;

  // Where the cell keeps the gate pre-activations of every packed row itself ([N, G·H], the tape's
  // activations), or null: the driver's buffers.
  T* kept_gates() const { return tape_.act; }

  // g[n, :] = bias + in[n] · W_ihᵀ for all N packed rows (the pool splits it when large).
  void project(index_t N, const T* in, index_t ld_in, T* g, index_t ldg) const {
    gemm_bias(N, in, ld_in, w_.w_ih, w_.input_bias(), g, ldg);
  }

  // The same for packed rows [q0, q0 + n) on this thread; one_row: whether the whole product has one row.
  void project_rows(index_t q0, index_t n, const T* in, index_t ld_in, T* g, index_t ldg, bool one_row, Local&) const {
    gemm_acc_serial(n, in + q0 * ld_in, ld_in, w_.w_ih, g, ldg, 0, w_.w_ih.panels(), one_row,
                    CInit<T>{true, w_.input_bias()});
  }

  // State rows [r0, r0 + n) (packed rows q0..) through one step: g [n, G·H] ld ldg the input
  // projection (clobbered); h [·, P], c [·, H] updated in place; one_row: whether the step has one row.
  void step(index_t r0, index_t n, index_t q0, T* g, index_t ldg, T* h, T* c, bool one_row, Local&) {
    T* hr = h + r0 * P_;
    T* cr = lstm_ ? c + r0 * H_ : nullptr;
    keep_state(q0, n, hr, cr, 0, P_, H_);
    if (lstm_) lstm_step(n, H_, w_, hr, P_, cr, H_, g, ldg, hr, P_, cr, H_, m_rows(q0, r0), act(g), aux(q0), one_row);
    else gru_step(n, H_, w_, hr, P_, g, ldg, scratch_.data() + r0 * GH_, hr, P_, act(g), aux(q0), one_row);
  }

  // Work of a step of nb rows, for the driver's row split within a step (for_rows).
  double row_macs(index_t nb) const { return double(nb) * double(GH_) * double(P_); }

  // Whether a whole time loop of B rows runs on the lockstep pair, split by units (cells/plain.h unit_split).
  bool lockstep_units(index_t B) const { return !w_.projected && unit_split(B, H_, w_, G_); }

  // Units [u0, u1) of all B rows (packed rows q0..) through one step: reads all of h_in, writes its
  // units of h_out and of c; the same operations as step().
  void step_units(index_t q0, index_t B, index_t u0, index_t u1, T* g, index_t ldg, const T* h_in, T* h_out, T* c,
                  Local&) {
    keep_state(q0, B, h_in, c, u0, u1 - u0, u1 - u0);
    T* const act_g = act(g);
    T* const aux_q = aux(q0);
    const T* none = nullptr;
    // Two register panels at a time, each chunk's nonlinearities right after its products: the core
    // works on one chunk's σ/tanh while the next chunk's weights stream in from L2. Products over the
    // whole share first left the pointwise pass unoverlapped (a quarter of a B=4 H=256 step).
    constexpr index_t kChunk = 2 * Tile<T>::NR;
    for (index_t v0 = u0; v0 < u1; v0 += kChunk) {
      const index_t v1 = std::min(u1, v0 + kChunk), n = v1 - v0;
      T* a = act_g ? act_g + v0 : nullptr;
      T* x = aux_q ? aux_q + v0 : nullptr;
      if (lstm_) {
        unit_products(B, G_, H_, w_, none, 0, h_in, P_, g, ldg, static_cast<T*>(nullptr), 0, v0, v1);
        lstm_pointwise(B, n, g + v0, ldg, c + v0, H_, c + v0, H_, h_out + v0, P_, a, x, H_);
      } else {
        unit_products(B, G_, H_, w_, none, 0, h_in, P_, g, ldg, scratch_.data(), GH_, v0, v1);
        gru_pointwise(B, n, g + v0, ldg, scratch_.data() + v0, GH_, w_.b_hh ? w_.b_hh + v0 : nullptr, h_in + v0, P_,
                      h_out + v0, P_, a, x, H_);
      }
    }
  }

  // Whether one step of nb rows splits by units over the pool (lengths, or a projection).
  bool pool_step(index_t nb) const { return unit_split(nb, H_, w_, G_); }

  // That step: rows [0, nb) (packed rows q0..), h and c updated in place.
  void step_pool(index_t q0, index_t nb, T* g, index_t ldg, T* h, T* c) {
    keep_state(q0, nb, h, c, 0, P_, H_);
    T* h_out = w_.projected ? h : h_new_.data();  // with projection h is written after the parallel part
    if (lstm_) lstm_step_units(nb, H_, w_, h, P_, c, H_, g, ldg, h_out, P_, m_rows(q0, 0), act(g), aux(q0));
    else gru_step_units(nb, H_, w_, h, P_, g, ldg, scratch_.data(), h_out, P_, act(g), aux(q0));
    if (!w_.projected) std::copy_n(h_new_.data(), nb * P_, h);
  }

 private:
  T* act(T* g) const { return tape_.act ? g : nullptr; }  // with a tape, g is the tape's act rows
  T* aux(index_t q0) const { return tape_.act ? tape_.aux + q0 * H_ : nullptr; }
  // The projection's input m of rows from r0 (packed q0..): the tape's, else scratch.
  T* m_rows(index_t q0, index_t r0) {
    return tape_.act && w_.projected ? tape_.m + q0 * H_ : scratch_.data() + r0 * H_;
  }
  void keep_state(index_t q0, index_t n, const T* h, const T* c, index_t j0, index_t nh, index_t nc) const {
    tape_.keep_state(q0, n, h, lstm_ ? c : nullptr, P_, H_, j0, nh, nc);
  }

  PackedCell<T> w_;
  PlainTape<T> tape_;
  bool lstm_;
  index_t H_, P_, G_, GH_;
  std::vector<T> scratch_;  // LSTM m [B, H] (projection), GRU h·W_hhᵀ [B, 3H]
  std::vector<T> h_new_;    // [B, P] h' of a step split by units over the pool
};

}  // namespace LSTMKIT_ISA
}  // namespace lstmkit
