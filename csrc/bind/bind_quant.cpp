// Python glue for the quantised models: lstmkit._engine.QuantizedRNN, quant_linear, quant_isa and
// quant_int8_kernel.
// No math here. lstmkit/quantize.py is the checked API; the checks below only keep a wrong direct
// call from reading out of bounds.
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <cmath>
#include <cstdlib>
#include <initializer_list>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "bind/bind_checks.h"
#include "quant/quant.h"

namespace nb = nanobind;
using lstmkit::index_t;

namespace {

using lstmkit::bind_checks::expect_shape;
using lstmkit::bind_checks::expect_stream_state;

using In = nb::ndarray<const float, nb::c_contig, nb::device::cpu>;
using Out = nb::ndarray<float, nb::c_contig, nb::device::cpu>;
using Lengths = nb::ndarray<const int64_t, nb::ndim<1>, nb::c_contig, nb::device::cpu>;

bool cpu_has(const char* what) {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  __builtin_cpu_init();
  const std::string w(what);
  if (w == "avxvnni") return __builtin_cpu_supports("avxvnni");
  if (w == "avx512vnni") return __builtin_cpu_supports("avx512vnni");
  if (w == "avx512bf16") return __builtin_cpu_supports("avx512bf16");
#endif
  (void)what;
  return false;
}

// The quantised path follows the path chosen at import (`float_isa`, which LSTMKIT_ISA may have lowered) and
// adds the dot-product extensions the CPU has: amx → amx (bind.cpp checked the tiles are granted), avx512 with
// VNNI and BF16 → avx512, AVX-VNNI → avxvnni (unless LSTMKIT_ISA=avx2 asked for plain AVX2), else the float
// path's level.
const lstmkit::QuantKernels* choose(const std::string& float_isa) {
  const char* env = std::getenv("LSTMKIT_ISA");
  const bool forced_avx2 = env && std::string(env) == "avx2";
#if defined(LSTMKIT_HAVE_AMX)
  if (float_isa == "amx") return &lstmkit::quant_amx;
#endif
  if (float_isa == "avx512" && cpu_has("avx512vnni") && cpu_has("avx512bf16")) return &lstmkit::quant_avx512;
  if (float_isa != "scalar" && !forced_avx2 && cpu_has("avxvnni")) return &lstmkit::quant_avxvnni;
  if (float_isa != "scalar") return &lstmkit::quant_avx2;
  return &lstmkit::quant_scalar;
}

const lstmkit::QuantKernels* g_quant = nullptr;

lstmkit::QuantType parse_type(const std::string& dtype) {
  if (dtype == "int8") return lstmkit::QuantType::int8;
  if (dtype == "bfloat16") return lstmkit::QuantType::bf16;
  throw std::invalid_argument("dtype: expected 'int8' or 'bfloat16', got '" + dtype + "'");
}

class PyQuantRnn {
 public:
  PyQuantRnn(const std::string& mode, index_t num_layers, bool bidirectional, index_t input_size, index_t hidden_size,
             index_t proj_size, bool has_bias, const std::string& dtype, std::vector<In> weights) {
    const std::vector<lstmkit::CellWeights<float>> cells = lstmkit::bind_checks::check_model<float>(
        s_, mode, num_layers, bidirectional, input_size, hidden_size, proj_size, has_bias, weights);
    impl_.reset(g_quant->make_rnn(s_, cells.data(), parse_type(dtype)));  // quantises and packs copies
  }

  // x (T, B, I), h0 (L·D, B, P), c0 (L·D, B, H) | None, lengths (B,) | None -> out, h_n, c_n | None
  void forward(In x, In h0, In c0, Lengths lengths, Out out, Out h_n, Out c_n) const {
    const lstmkit::RnnShape& s = s_;
    if (x.ndim() != 3 || static_cast<index_t>(x.shape(2)) != s.I) throw std::invalid_argument("x: wrong shape");
    const index_t T = x.shape(0), B = x.shape(1), LD = s.L * s.D;
    expect_shape("h0", h0, {LD, B, s.P});
    expect_shape("out", out, {T, B, s.D * s.P});
    expect_shape("h_n", h_n, {LD, B, s.P});
    if (s.lstm) expect_shape("c0", c0, {LD, B, s.H}), expect_shape("c_n", c_n, {LD, B, s.H});
    const int64_t* lens = nullptr;
    if (lengths.is_valid()) {
      expect_shape("lengths", lengths, {B});
      lens = lengths.data();
      for (index_t b = 0; b < B; ++b)
        if (lens[b] < 0 || lens[b] > T) throw std::invalid_argument("lengths: expected values in [0, T]");
    }
    lstmkit::bind_checks::GilRelease release;
    impl_->forward(T, B, x.data(), h0.data(), s.lstm ? c0.data() : nullptr, lens, out.data(), h_n.data(),
                   s.lstm ? c_n.data() : nullptr);
  }

  std::size_t weight_bytes() const { return impl_->weight_bytes(); }

 private:
  lstmkit::RnnShape s_;
  std::unique_ptr<lstmkit::QuantRnnBase> impl_;
};

// A row's codes span its range, which a NaN would be skipped by and an inf would blow up: the quantised
// stream refuses them (ValueError), as QuantizedRNN.__call__ does; here, since a check in Python costs more
// than a small step.
template <class A>
void expect_finite(const char* name, const A& a) {
  const float* p = a.data();
  for (size_t i = 0, n = a.size(); i < n; ++i)
    if (!std::isfinite(p[i]))
      throw std::invalid_argument(std::string(name) +
                                  ": expected finite values, got NaN or inf (a quantised stream's codes need them)");
}

// Streaming state of a quantised unidirectional model (lstmkit.stream.Stream drives it). Steps keep the
// GIL: a stream is one caller's, and holding it makes concurrent use from two threads safe.
class PyQuantStream {
 public:
  PyQuantStream(const std::string& mode, index_t num_layers, index_t input_size, index_t hidden_size, index_t proj_size,
                bool has_bias, index_t batch, std::vector<In> weights, const std::string& dtype) {
    if (batch < 1) throw std::invalid_argument("batch: expected >= 1");
    const std::vector<lstmkit::CellWeights<float>> cells = lstmkit::bind_checks::check_model<float>(
        s_, mode, num_layers, false, input_size, hidden_size, proj_size, has_bias, weights);
    s_.B = batch;
    impl_.reset(g_quant->make_stream(s_, cells.data(), parse_type(dtype)));
  }
  void step(In x, Out out) {
    expect_shape("x", x, {s_.B, s_.I});
    expect_shape("out", out, {s_.B, s_.P});
    expect_finite("x", x);
    impl_->step(x.data(), out.data());
  }
  void reset() { impl_->reset(); }
  void get_state(Out h, Out c) {
    expect_stream_state(s_, h, c);
    impl_->get_state(h.data(), s_.lstm ? c.data() : nullptr);
  }
  void set_state(In h, In c) {
    expect_stream_state(s_, h, c);
    expect_finite("state", h);
    if (s_.lstm) expect_finite("state", c);
    impl_->set_state(h.data(), s_.lstm ? c.data() : nullptr);
  }

 private:
  lstmkit::RnnShape s_;
  std::unique_ptr<lstmkit::StreamBase<float>> impl_;
};

// y (M, N) = x (M, K) · w (N, K)ᵀ through one quantised product.
void quant_linear(const std::string& dtype, In x, In w, Out y) {
  if (x.ndim() != 2 || w.ndim() != 2 || x.shape(1) != w.shape(1)) throw std::invalid_argument("x, w: wrong shapes");
  const index_t M = x.shape(0), K = x.shape(1), N = w.shape(0);
  expect_shape("y", y, {M, N});
  const lstmkit::QuantType t = parse_type(dtype);
  lstmkit::bind_checks::GilRelease release;
  g_quant->linear(t, M, K, N, x.data(), w.data(), y.data());
}

// c (M, Nc) = a (K, M)ᵀ · b (K, Nc) through the bf16 weight-gradient product; sums (M,) | None: a's column sums.
void bf16_linear_tn(In a, In b, Out c, Out sums) {
  if (a.ndim() != 2 || b.ndim() != 2 || a.shape(0) != b.shape(0)) throw std::invalid_argument("a, b: wrong shapes");
  const index_t K = a.shape(0), M = a.shape(1), Nc = b.shape(1);
  expect_shape("c", c, {M, Nc});
  if (sums.is_valid()) expect_shape("sums", sums, {M});
  lstmkit::bind_checks::GilRelease release;
  g_quant->linear_tn(M, Nc, K, a.data(), b.data(), c.data(), sums.is_valid() ? sums.data() : nullptr);
}

}  // namespace

const lstmkit::QuantKernels& lstmkit::quant_kernels() { return *g_quant; }

// Called from NB_MODULE in bind.cpp with the float path chosen at import.
void bind_quantized(nb::module_& m, const std::string& float_isa) {
  g_quant = choose(float_isa);
  nb::class_<PyQuantRnn>(m, "QuantizedRNN", "A quantised (int8 or bfloat16) RNN. Use lstmkit.quantize.")
      .def(nb::init<const std::string&, index_t, bool, index_t, index_t, index_t, bool, const std::string&,
                    std::vector<In>>(),
           nb::arg("mode"), nb::arg("num_layers"), nb::arg("bidirectional"), nb::arg("input_size"),
           nb::arg("hidden_size"), nb::arg("proj_size"), nb::arg("has_bias"), nb::arg("dtype"),
           nb::arg("weights").noconvert())
      .def("forward", &PyQuantRnn::forward, nb::arg("x").noconvert(), nb::arg("h0").noconvert(),
           nb::arg("c0").noconvert().none(), nb::arg("lengths").noconvert().none(), nb::arg("out").noconvert(),
           nb::arg("h_n").noconvert(), nb::arg("c_n").noconvert().none())
      .def_prop_ro("weight_bytes", &PyQuantRnn::weight_bytes);
  nb::class_<PyQuantStream>(m, "QuantizedStream", "Streaming state of a quantised RNN. Use QuantizedRNN.stream.")
      .def(nb::init<const std::string&, index_t, index_t, index_t, index_t, bool, index_t, std::vector<In>,
                    const std::string&>(),
           nb::arg("mode"), nb::arg("num_layers"), nb::arg("input_size"), nb::arg("hidden_size"), nb::arg("proj_size"),
           nb::arg("has_bias"), nb::arg("batch"), nb::arg("weights").noconvert(), nb::arg("dtype"))
      .def("step", &PyQuantStream::step, nb::arg("x").noconvert(), nb::arg("out").noconvert())
      .def("reset", &PyQuantStream::reset)
      .def("get_state", &PyQuantStream::get_state, nb::arg("h").noconvert(), nb::arg("c").noconvert().none())
      .def("set_state", &PyQuantStream::set_state, nb::arg("h").noconvert(), nb::arg("c").noconvert().none());
  m.def("quant_linear", &quant_linear, nb::arg("dtype"), nb::arg("x").noconvert(), nb::arg("w").noconvert(),
        nb::arg("y").noconvert(), "y = x · wᵀ through one quantised product (a test hook).");
  m.def("bf16_linear_tn", &bf16_linear_tn, nb::arg("a").noconvert(), nb::arg("b").noconvert(), nb::arg("c").noconvert(),
        nb::arg("sums").noconvert().none(),
        "c = aᵀ · b and a's column sums through the bf16 weight-gradient product (a test hook).");
  m.def("quant_isa", [] { return std::string(g_quant->name); }, "The quantised kernels' instruction-set path.");
  m.def(
      "quant_int8_kernel", [] { return std::string(g_quant->int8_kernel()); },
      "The int8 products' inner loop: 'madd' or 'pairs' (AVX2; LSTMKIT_INT8_KERNEL picks), 'vnni', 'portable'.");
}
