// Python glue of the LSTM/GRU variants (cells/variant.h, sequence/variant_backward.h): lstmkit._engine.variant_forward,
// variant_train_forward, variant_backward and variant_workspace_row. The checked API is lstmkit/engine.py,
// which validates everything and allocates the outputs first; the checks here repeat the shapes so that a wrong direct
// call raises ValueError instead of reading out of bounds.
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "bind/bind_checks.h"
#include "cells/variant_api.h"

namespace nb = nanobind;
using lstmkit::index_t;

namespace {

using namespace lstmkit::bind_checks;

const lstmkit::VariantKernels* g_variants = nullptr;

template <typename T>
const lstmkit::VariantKernelSet<T>& variant_kernels() {
  if constexpr (std::is_same<T, float>::value) return g_variants->f32;
  else return g_variants->f64;
}

lstmkit::Activation parse_activation(const nb::handle& spec, const char* where) {
  static const char* names[] = {"Sigmoid",    "Tanh",   "Relu", "HardSigmoid", "LeakyRelu", "ThresholdedRelu",
                                "ScaledTanh", "Affine", "Elu",  "Softsign",    "Softplus"};
  const nb::tuple t = nb::cast<nb::tuple>(spec);
  if (t.size() != 3) throw std::invalid_argument(std::string(where) + ": expected (name, alpha, beta)");
  const std::string name = nb::cast<std::string>(t[0]);
  for (int k = 0; k < 11; ++k)
    if (name == names[k])
      return lstmkit::Activation{static_cast<lstmkit::ActKind>(k), nb::cast<double>(t[1]), nb::cast<double>(t[2])};
  throw std::invalid_argument(std::string(where) + ": unknown activation '" + name + "'");
}

// options: dict with peephole, input_forget, layer_norm, linear_before_reset (bool), clip (float | None),
// activations (None | tuple of (name, alpha, beta)), zoneout ((z_c, z_h)).
lstmkit::VariantOptions parse_options(bool lstm, const nb::dict& d) {
  lstmkit::VariantOptions o;
  o.peephole = nb::cast<bool>(d["peephole"]);
  o.input_forget = nb::cast<bool>(d["input_forget"]);
  o.layer_norm = nb::cast<bool>(d["layer_norm"]);
  o.linear_before_reset = nb::cast<bool>(d["linear_before_reset"]);
  if (!d["clip"].is_none()) {
    o.has_clip = true;
    o.clip = nb::cast<double>(d["clip"]);
    if (!(o.clip > 0)) throw std::invalid_argument("options['clip']: expected a number > 0 or None");
  }
  const nb::tuple z = nb::cast<nb::tuple>(d["zoneout"]);
  o.zoneout_c = nb::cast<double>(z[0]);
  o.zoneout_h = nb::cast<double>(z[1]);
  if (!d["activations"].is_none()) {
    const nb::tuple acts = nb::cast<nb::tuple>(d["activations"]);
    if (acts.size() != (lstm ? 3u : 2u))
      throw std::invalid_argument("options['activations']: expected " + std::to_string(lstm ? 3 : 2) + " entries");
    o.gate = parse_activation(acts[0], "options['activations'][0]");
    o.cell = parse_activation(acts[1], "options['activations'][1]");
    if (lstm) o.hidden = parse_activation(acts[2], "options['activations'][2]");
  }
  if (!lstm && (o.peephole || o.input_forget || o.zoneout_c != 0))
    throw std::invalid_argument("options: peephole, input_forget and zoneout of c are LSTM options");
  if (lstm && !o.linear_before_reset) throw std::invalid_argument("options: linear_before_reset is a GRU option");
  if (o.layer_norm && !o.linear_before_reset)
    throw std::invalid_argument("options: layer_norm is not defined with linear_before_reset=False");
  return o;
}

// The variant parameters per layer·direction, flat: [peephole (3H,)] [ln_ih_w, ln_ih_b, ln_hh_w, ln_hh_b
// (G·H,)] [ln_cell_w, ln_cell_b (H,), LSTM]; and the masks: recurrent (B, P), zoneout_c (T, B, H),
// zoneout_h (T, B, P), each list empty or one array per layer·direction.
template <typename T>
struct VariantArgs {
  lstmkit::VariantOptions o;
  std::vector<lstmkit::VariantWeights<T>> extra;
  std::vector<lstmkit::VariantMasks<T>> masks;
  size_t per_cell = 0;
};

template <typename T>
VariantArgs<T> check_variants(const lstmkit::RnnShape& s, const nb::dict& options, const std::vector<In<T>>& extra,
                              const std::vector<In<T>>& m_rd, const std::vector<In<T>>& m_zc,
                              const std::vector<In<T>>& m_zh) {
  VariantArgs<T> a;
  a.o = parse_options(s.lstm, options);
  const index_t LD = s.L * s.D, G = s.gates(), H = s.H;
  a.per_cell = (a.o.peephole ? 1 : 0) + (a.o.layer_norm ? (s.lstm ? 6 : 4) : 0);
  if (extra.size() != a.per_cell * static_cast<size_t>(LD))
    throw std::invalid_argument("extra: expected " + std::to_string(a.per_cell * LD) + " arrays, got " +
                                std::to_string(extra.size()));
  a.extra.resize(static_cast<size_t>(LD));
  a.masks.resize(static_cast<size_t>(LD));
  for (index_t k = 0; k < LD; ++k) {
    const In<T>* e = extra.data() + k * a.per_cell;
    lstmkit::VariantWeights<T>& w = a.extra[k];
    if (a.o.peephole) {
      expect_shape("extra (peephole)", e[0], {3 * H});
      w.peephole = e[0].data();
      ++e;
    }
    if (a.o.layer_norm) {
      for (int j = 0; j < 4; ++j) expect_shape("extra (ln_ih/ln_hh)", e[j], {G * H});
      w.ln_ih_w = e[0].data(), w.ln_ih_b = e[1].data(), w.ln_hh_w = e[2].data(), w.ln_hh_b = e[3].data();
      if (s.lstm) {
        expect_shape("extra (ln_cell)", e[4], {H});
        expect_shape("extra (ln_cell)", e[5], {H});
        w.ln_cell_w = e[4].data(), w.ln_cell_b = e[5].data();
      }
    }
  }
  auto masks = [&](const char* name, const std::vector<In<T>>& list, std::initializer_list<index_t> shape,
                   const T* lstmkit::VariantMasks<T>::* field) {
    if (list.empty()) return;
    if (list.size() != static_cast<size_t>(LD))
      throw std::invalid_argument(std::string(name) + ": expected 0 or " + std::to_string(LD) + " arrays, got " +
                                  std::to_string(list.size()));
    for (index_t k = 0; k < LD; ++k) {
      expect_shape(name, list[k], shape);
      a.masks[k].*field = list[k].data();
    }
  };
  masks("masks (recurrent)", m_rd, {s.B, s.P}, &lstmkit::VariantMasks<T>::recurrent);
  masks("masks (zoneout_c)", m_zc, {s.T, s.B, s.H}, &lstmkit::VariantMasks<T>::zoneout_c);
  masks("masks (zoneout_h)", m_zh, {s.T, s.B, s.P}, &lstmkit::VariantMasks<T>::zoneout_h);
  if (!s.lstm && !m_zc.empty()) throw std::invalid_argument("masks (zoneout_c): a GRU has no cell state");
  return a;
}

// Throws ValueError unless ws is the 1-D training workspace of this call.
template <typename A>
void expect_variant_workspace(const A& ws, const lstmkit::RnnShape& s, const lstmkit::VariantOptions& o,
                              bool recurrent_masks) {
  expect_shape("workspace", ws, {s.T * s.B * lstmkit::variant_workspace_row(s, o, recurrent_masks)});
}

// variant_forward, and with ws (variant_train_forward) the tape kept there for variant_backward.
template <typename T>
void run_variant_forward(const std::string& mode, index_t num_layers, bool bidirectional, index_t hidden_size,
                         index_t proj_size, bool has_bias, In<T> x, std::vector<In<T>> weights, In<T> h0, In<T> c0,
                         Lengths lengths, std::vector<In<T>> dropout_masks, nb::dict options, std::vector<In<T>> extra,
                         std::vector<In<T>> m_rd, std::vector<In<T>> m_zc, std::vector<In<T>> m_zh, Out<T> out,
                         Out<T> h_n, Out<T> c_n, Out<T>* ws) {
  const SequenceArgs<T> a = check_sequence(mode, num_layers, bidirectional, hidden_size, proj_size, has_bias, x,
                                           weights, h0, c0, lengths, dropout_masks);
  const lstmkit::RnnShape& s = a.s;
  const VariantArgs<T> v = check_variants(s, options, extra, m_rd, m_zc, m_zh);
  const index_t LD = s.L * s.D;
  expect_shape("out", out, {s.T, s.B, s.D * s.P});
  expect_shape("h_n", h_n, {LD, s.B, s.P});
  if (s.lstm) expect_shape("c_n", c_n, {LD, s.B, s.H});
  if (ws) expect_variant_workspace(*ws, s, v.o, !m_rd.empty());
  const T* c0_ptr = s.lstm ? c0.data() : nullptr;
  T* c_n_ptr = s.lstm ? c_n.data() : nullptr;
  lstmkit::bind_checks::GilRelease release;
  if (ws)
    variant_kernels<T>().train_forward(s, v.o, x.data(), a.cells.data(), v.extra.data(), v.masks.data(), h0.data(),
                                       c0_ptr, a.lengths, a.dropout_masks(), out.data(), h_n.data(), c_n_ptr,
                                       ws->data());
  else
    variant_kernels<T>().forward(s, v.o, x.data(), a.cells.data(), v.extra.data(), v.masks.data(), h0.data(), c0_ptr,
                                 a.lengths, a.dropout_masks(), out.data(), h_n.data(), c_n_ptr);
}

template <typename T>
void variant_forward(const std::string& mode, index_t num_layers, bool bidirectional, index_t hidden_size,
                     index_t proj_size, bool has_bias, In<T> x, std::vector<In<T>> weights, In<T> h0, In<T> c0,
                     Lengths lengths, std::vector<In<T>> dropout_masks, nb::dict options, std::vector<In<T>> extra,
                     std::vector<In<T>> m_rd, std::vector<In<T>> m_zc, std::vector<In<T>> m_zh, Out<T> out, Out<T> h_n,
                     Out<T> c_n) {
  run_variant_forward<T>(mode, num_layers, bidirectional, hidden_size, proj_size, has_bias, x, weights, h0, c0, lengths,
                         dropout_masks, options, extra, m_rd, m_zc, m_zh, out, h_n, c_n, nullptr);
}

template <typename T>
void variant_train_forward(const std::string& mode, index_t num_layers, bool bidirectional, index_t hidden_size,
                           index_t proj_size, bool has_bias, In<T> x, std::vector<In<T>> weights, In<T> h0, In<T> c0,
                           Lengths lengths, std::vector<In<T>> dropout_masks, nb::dict options,
                           std::vector<In<T>> extra, std::vector<In<T>> m_rd, std::vector<In<T>> m_zc,
                           std::vector<In<T>> m_zh, Out<T> out, Out<T> h_n, Out<T> c_n, Out<T> ws) {
  run_variant_forward<T>(mode, num_layers, bidirectional, hidden_size, proj_size, has_bias, x, weights, h0, c0, lengths,
                         dropout_masks, options, extra, m_rd, m_zc, m_zh, out, h_n, c_n, &ws);
}

// Like backward (bind.cpp) plus options, extra, masks; ws: what variant_train_forward filled for the same
// arguments (read only); grads: shaped like weights; extra_grads like extra.
template <typename T>
void variant_backward(const std::string& mode, index_t num_layers, bool bidirectional, index_t hidden_size,
                      index_t proj_size, bool has_bias, In<T> x, std::vector<In<T>> weights, In<T> h0, In<T> c0,
                      Lengths lengths, std::vector<In<T>> dropout_masks, nb::dict options, std::vector<In<T>> extra,
                      std::vector<In<T>> m_rd, std::vector<In<T>> m_zc, std::vector<In<T>> m_zh, In<T> ws, In<T> d_out,
                      In<T> d_hn, In<T> d_cn, Out<T> dx, Out<T> d_h0, Out<T> d_c0, std::vector<Out<T>> grads,
                      std::vector<Out<T>> extra_grads) {
  const SequenceArgs<T> a = check_sequence(mode, num_layers, bidirectional, hidden_size, proj_size, has_bias, x,
                                           weights, h0, c0, lengths, dropout_masks);
  const lstmkit::RnnShape& s = a.s;
  const VariantArgs<T> v = check_variants(s, options, extra, m_rd, m_zc, m_zh);
  const index_t LD = s.L * s.D;
  expect_variant_workspace(ws, s, v.o, !m_rd.empty());
  check_gradient_buffers(s, d_out, d_hn, d_cn, dx, d_h0, d_c0);
  auto same_shapes = [](const char* name, const std::vector<In<T>>& ws, const std::vector<Out<T>>& gs) {
    if (gs.size() != ws.size())
      throw std::invalid_argument(std::string(name) + ": expected " + std::to_string(ws.size()) + " arrays, got " +
                                  std::to_string(gs.size()));
    for (size_t i = 0; i < gs.size(); ++i) {
      bool same = gs[i].ndim() == ws[i].ndim();
      for (size_t dim = 0; same && dim < ws[i].ndim(); ++dim) same = gs[i].shape(dim) == ws[i].shape(dim);
      if (!same)
        throw std::invalid_argument(std::string(name) + "[" + std::to_string(i) + "]: expected shape " +
                                    shape_str(ws[i]) + ", got " + shape_str(gs[i]));
    }
  };
  same_shapes("grads", weights, grads);
  same_shapes("extra_grads", extra, extra_grads);
  const size_t per_cell = weights.size() / static_cast<size_t>(LD);
  std::vector<lstmkit::CellGrads<T>> cg(static_cast<size_t>(LD));
  std::vector<lstmkit::VariantGrads<T>> eg(static_cast<size_t>(LD));
  for (index_t k = 0; k < LD; ++k) {
    Out<T>* g = grads.data() + k * per_cell;
    lstmkit::CellGrads<T>& c = cg[k];
    c.w_ih = g[0].data(), c.w_hh = g[1].data();
    size_t next = 2;
    if (has_bias) c.b_ih = g[2].data(), c.b_hh = g[3].data(), next = 4;
    if (proj_size) c.w_hr = g[next].data();
    Out<T>* e = extra_grads.data() + k * v.per_cell;
    lstmkit::VariantGrads<T>& x_ = eg[k];
    if (v.o.peephole) x_.peephole = (e++)->data();
    if (v.o.layer_norm) {
      x_.ln_ih_w = e[0].data(), x_.ln_ih_b = e[1].data(), x_.ln_hh_w = e[2].data(), x_.ln_hh_b = e[3].data();
      if (s.lstm) x_.ln_cell_w = e[4].data(), x_.ln_cell_b = e[5].data();
    }
  }
  const T* d_cn_ptr = s.lstm ? d_cn.data() : nullptr;
  T* d_c0_ptr = s.lstm ? d_c0.data() : nullptr;
  lstmkit::bind_checks::GilRelease release;
  variant_kernels<T>().backward(s, v.o, x.data(), a.cells.data(), v.extra.data(), v.masks.data(), a.lengths,
                                a.dropout_masks(), ws.data(), d_out.data(), d_hn.data(), d_cn_ptr, dx.data(),
                                d_h0.data(), d_c0_ptr, cg.data(), eg.data());
}

template <typename T>
void bind_dtype(nb::module_& m) {
  m.def("variant_forward", &variant_forward<T>, nb::arg("mode"), nb::arg("num_layers"), nb::arg("bidirectional"),
        nb::arg("hidden_size"), nb::arg("proj_size"), nb::arg("has_bias"), nb::arg("x").noconvert(),
        nb::arg("weights").noconvert(), nb::arg("h0").noconvert(), nb::arg("c0").noconvert().none(),
        nb::arg("lengths").noconvert().none(), nb::arg("dropout_masks").noconvert(), nb::arg("options"),
        nb::arg("extra").noconvert(), nb::arg("mask_recurrent").noconvert(), nb::arg("mask_zoneout_c").noconvert(),
        nb::arg("mask_zoneout_h").noconvert(), nb::arg("out").noconvert(), nb::arg("h_n").noconvert(),
        nb::arg("c_n").noconvert().none(),
        "Whole-sequence forward of an RNN variant into out, h_n (and c_n). Use lstmkit.engine.forward.");
  m.def("variant_train_forward", &variant_train_forward<T>, nb::arg("mode"), nb::arg("num_layers"),
        nb::arg("bidirectional"), nb::arg("hidden_size"), nb::arg("proj_size"), nb::arg("has_bias"),
        nb::arg("x").noconvert(), nb::arg("weights").noconvert(), nb::arg("h0").noconvert(),
        nb::arg("c0").noconvert().none(), nb::arg("lengths").noconvert().none(), nb::arg("dropout_masks").noconvert(),
        nb::arg("options"), nb::arg("extra").noconvert(), nb::arg("mask_recurrent").noconvert(),
        nb::arg("mask_zoneout_c").noconvert(), nb::arg("mask_zoneout_h").noconvert(), nb::arg("out").noconvert(),
        nb::arg("h_n").noconvert(), nb::arg("c_n").noconvert().none(), nb::arg("workspace").noconvert(),
        "variant_forward keeping what variant_backward needs in workspace. Use lstmkit.engine.train_forward.");
  m.def("variant_backward", &variant_backward<T>, nb::arg("mode"), nb::arg("num_layers"), nb::arg("bidirectional"),
        nb::arg("hidden_size"), nb::arg("proj_size"), nb::arg("has_bias"), nb::arg("x").noconvert(),
        nb::arg("weights").noconvert(), nb::arg("h0").noconvert(), nb::arg("c0").noconvert().none(),
        nb::arg("lengths").noconvert().none(), nb::arg("dropout_masks").noconvert(), nb::arg("options"),
        nb::arg("extra").noconvert(), nb::arg("mask_recurrent").noconvert(), nb::arg("mask_zoneout_c").noconvert(),
        nb::arg("mask_zoneout_h").noconvert(), nb::arg("workspace").noconvert(), nb::arg("d_out").noconvert(),
        nb::arg("d_hn").noconvert(), nb::arg("d_cn").noconvert().none(), nb::arg("dx").noconvert(),
        nb::arg("d_h0").noconvert(), nb::arg("d_c0").noconvert().none(), nb::arg("grads").noconvert(),
        nb::arg("extra_grads").noconvert(),
        "BPTT of an RNN variant from variant_train_forward's workspace. Use lstmkit.engine.backward.");
}

// Values per batch row and time step of a variant training workspace.
index_t workspace_row(const std::string& mode, index_t num_layers, bool bidirectional, index_t hidden_size,
                      index_t proj_size, nb::dict options, bool recurrent_masks) {
  const lstmkit::RnnShape s = layer_sizes(mode, num_layers, bidirectional, hidden_size, proj_size);
  return lstmkit::variant_workspace_row(s, parse_options(s.lstm, options), recurrent_masks);
}

}  // namespace

// Registers variant_forward / variant_backward for the instruction set bind.cpp chose (its name).
void bind_variants(nb::module_& m, const std::string& isa) {
  g_variants = isa == "avx512" ? &lstmkit::isa_avx512::variant_kernels
               : isa == "avx2" ? &lstmkit::isa_avx2::variant_kernels
                               : &lstmkit::isa_scalar::variant_kernels;
  bind_dtype<float>(m);
  bind_dtype<double>(m);
  m.def("variant_workspace_row", &workspace_row, nb::arg("mode"), nb::arg("num_layers"), nb::arg("bidirectional"),
        nb::arg("hidden_size"), nb::arg("proj_size"), nb::arg("options"), nb::arg("recurrent_masks"),
        "Values per batch row and step in a variant training workspace (it holds T·B times as many).");
}
