// Python glue for lstmkit._engine: array checks, GIL release, calls into the kernels. No math here.
//
// The public, validated API is lstmkit/engine.py; it allocates the outputs and passes them in, so
// every buffer the kernels touch is owned by Python for the whole call. The checks below repeat the
// shape checks once more so that a direct, wrong call raises ValueError instead of reading out of
// bounds. Every array must already be C-contiguous with the overload's dtype (no silent copies:
// outputs are written in place, and a converted copy would be lost).
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <cstdint>
#include <initializer_list>
#include <iterator>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include <sys/syscall.h>
#include <unistd.h>
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#endif

#include <atomic>
#include <cstdlib>
#include <memory>

#include "bind/bind_checks.h"
#include "core/common.h"
#include "quant/quant.h"

namespace nb = nanobind;
void bind_quantized(nb::module_& m, const std::string& float_isa);  // bind_quant.cpp

using lstmkit::index_t;

void bind_variants(nb::module_& m, const std::string& isa);  // bind_variants.cpp

namespace {

using namespace lstmkit::bind_checks;

// ---- Instruction-set dispatch: chosen once, at import ----------------------------------------------

bool cpu_has_avx2() {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
  return false;
#endif
}

bool cpu_has_avx512() {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  __builtin_cpu_init();
  return cpu_has_avx2() && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
#else
  return false;
#endif
}

// AMX (tiles, bf16 and int8 products) beside AVX-512 with VNNI and BF16, and the tile state granted to this
// process: Linux hands it out only on request (arch_prctl ARCH_REQ_XCOMP_PERM, once; children inherit it).
bool cpu_has_amx() {
#if defined(LSTMKIT_HAVE_AMX) && defined(__x86_64__) && defined(__linux__) && (defined(__GNUC__) || defined(__clang__))
  static const bool has = [] {
    if (!cpu_has_avx512() || !__builtin_cpu_supports("avx512vnni") || !__builtin_cpu_supports("avx512bf16"))
      return false;
    unsigned a = 0, b = 0, c = 0, d = 0;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return false;
    const unsigned amx_bf16 = 1u << 22, amx_tile = 1u << 24, amx_int8 = 1u << 25;
    if ((d & (amx_bf16 | amx_tile | amx_int8)) != (amx_bf16 | amx_tile | amx_int8)) return false;
    constexpr long kReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;  // asm/prctl.h, the tile data's state bit
    return syscall(SYS_arch_prctl, kReqXcompPerm, kXfeatureXtiledata) == 0;
  }();
  return has;
#else
  return false;
#endif
}

// The paths, lowest first: each runs the float kernels of its name, except amx, which runs the avx512 float
// kernels and multiplies the bf16 and int8 products (lstmkit.quantize, bf16 training) on AMX tiles.
const char* const kIsas[] = {"scalar", "avx2", "avx512", "amx"};

// The best path this CPU runs, lowered (never raised) by LSTMKIT_ISA=scalar|avx2|avx512|amx. An unknown
// value is ignored here (lstmkit.engine warns about it).
std::string choose_isa() {
  const std::string best = cpu_has_amx() ? "amx" : cpu_has_avx512() ? "avx512" : cpu_has_avx2() ? "avx2" : "scalar";
  const char* env = std::getenv("LSTMKIT_ISA");
  if (!env) return best;
  const std::string want(env);
  int rank_want = -1, rank_best = -1;
  for (int i = 0; i < static_cast<int>(std::size(kIsas)); ++i) {
    if (want == kIsas[i]) rank_want = i;
    if (best == kIsas[i]) rank_best = i;
  }
  return rank_want >= 0 && rank_want < rank_best ? want : best;
}

const lstmkit::Kernels* kernels_for(const std::string& isa) {
  if (isa == "amx" || isa == "avx512") return &lstmkit::kernels_avx512;
  if (isa == "avx2") return &lstmkit::kernels_avx2;
  return &lstmkit::kernels_scalar;
}

std::string g_isa;
const lstmkit::Kernels* g_kernels = nullptr;

template <typename T>
const lstmkit::KernelSet<T>& kernels();
template <>
const lstmkit::KernelSet<float>& kernels<float>() {
  return g_kernels->f32;
}
template <>
const lstmkit::KernelSet<double>& kernels<double>() {
  return g_kernels->f64;
}

std::vector<std::string> supported_isas() {
  std::vector<std::string> out{"scalar"};
  if (cpu_has_avx2()) out.push_back("avx2");
  if (cpu_has_avx512()) out.push_back("avx512");
  if (cpu_has_amx()) out.push_back("amx");
  return out;
}

// The cell's weights checked against x (B, I): (B, I, H, P, pointers). w_hr: (P, H) or None.
template <typename T>
struct CheckedCell {
  index_t B, I, H, P;
  lstmkit::CellWeights<T> w;
};
template <typename T>
CheckedCell<T> check_cell(bool lstm, const In<T>& x, const In<T>& w_ih, const In<T>& w_hh, const In<T>& b_ih,
                          const In<T>& b_hh, const In<T>& w_hr) {
  const index_t G = lstm ? 4 : 3;
  if (x.ndim() != 2) throw std::invalid_argument("x: expected 2 dimensions (B, I), got shape " + shape_str(x));
  const index_t B = x.shape(0), I = x.shape(1);
  if (w_ih.ndim() != 2 || w_ih.shape(0) % G != 0 || w_ih.shape(0) == 0)
    throw std::invalid_argument("w_ih: expected shape (" + std::to_string(G) + "·H, I), got " + shape_str(w_ih));
  const index_t H = w_ih.shape(0) / G;
  const index_t P = w_hr.is_valid() ? static_cast<index_t>(w_hr.shape(0)) : H;
  if (!lstm && w_hr.is_valid()) throw std::invalid_argument("w_hr: expected None for a GRU (no projection)");
  expect_shape("w_ih", w_ih, {G * H, I});
  expect_shape("w_hh", w_hh, {G * H, P});
  if (w_hr.is_valid()) expect_shape("w_hr", w_hr, {P, H});
  if (b_ih.is_valid() != b_hh.is_valid()) throw std::invalid_argument("b_ih, b_hh: expected both or neither");
  if (b_ih.is_valid()) {
    expect_shape("b_ih", b_ih, {G * H});
    expect_shape("b_hh", b_hh, {G * H});
  }
  return {B,
          I,
          H,
          P,
          {w_ih.data(), w_hh.data(), b_ih.is_valid() ? b_ih.data() : nullptr, b_hh.is_valid() ? b_hh.data() : nullptr,
           w_hr.is_valid() ? w_hr.data() : nullptr}};
}

// cell_forward(mode, x (B, I), h (B, P), c (B, H) | None, w_ih (G·H, I), w_hh (G·H, P),
//              b_ih (G·H,) | None, b_hh (G·H,) | None, w_hr (P, H) | None, h_out (B, P), c_out (B, H) | None,
//              act (B, G·H) | None, aux (B, H) | None): act and aux, cell_backward's caches, both or neither
template <typename T>
void cell_forward(const std::string& mode, In<T> x, In<T> h, In<T> c, In<T> w_ih, In<T> w_hh, In<T> b_ih, In<T> b_hh,
                  In<T> w_hr, Out<T> h_out, Out<T> c_out, Out<T> act, Out<T> aux) {
  const bool lstm = is_lstm(mode);
  const CheckedCell<T> k = check_cell(lstm, x, w_ih, w_hh, b_ih, b_hh, w_hr);
  expect_shape("h", h, {k.B, k.P});
  expect_shape("h_out", h_out, {k.B, k.P});
  if (lstm) {
    expect_shape("c", c, {k.B, k.H});
    expect_shape("c_out", c_out, {k.B, k.H});
  }
  if (act.is_valid() != aux.is_valid()) throw std::invalid_argument("act, aux: expected both or neither");
  if (act.is_valid()) {
    if (w_hr.is_valid()) throw std::invalid_argument("act, aux: the training caches of a cell without projection");
    expect_shape("act", act, {k.B, (lstm ? 4 : 3) * k.H});
    expect_shape("aux", aux, {k.B, k.H});
  }
  const T* c_ptr = lstm ? c.data() : nullptr;
  T* c_out_ptr = lstm ? c_out.data() : nullptr;
  lstmkit::bind_checks::GilRelease release;
  kernels<T>().cell_forward(lstm, k.B, k.I, k.H, k.P, x.data(), h.data(), c_ptr, k.w, h_out.data(), c_out_ptr,
                            act.is_valid() ? act.data() : nullptr, aux.is_valid() ? aux.data() : nullptr);
}

// cell_backward(mode, x (B, I), h (B, H), c (B, H) | None, w_ih, w_hh, act (B, G·H), aux (B, H), dh (B, H),
//               dc (B, H) | None, dx (B, I), dh_prev (B, H), dc_prev (B, H) | None, d_w_ih, d_w_hh,
//               d_b_ih | None, d_b_hh | None): c, dc and dc_prev for an LSTM only; d_b_* for a cell with bias
template <typename T>
void cell_backward(const std::string& mode, In<T> x, In<T> h, In<T> c, In<T> w_ih, In<T> w_hh, In<T> act, In<T> aux,
                   In<T> dh, In<T> dc, Out<T> dx, Out<T> dh_prev, Out<T> dc_prev, Out<T> d_w_ih, Out<T> d_w_hh,
                   Out<T> d_b_ih, Out<T> d_b_hh) {
  const bool lstm = is_lstm(mode);
  const CheckedCell<T> k = check_cell(lstm, x, w_ih, w_hh, In<T>(), In<T>(), In<T>());
  const index_t B = k.B, I = k.I, H = k.H, GH = (lstm ? 4 : 3) * H;
  for (auto [name, a] : {std::pair<const char*, const In<T>*>{"h", &h}, {"aux", &aux}, {"dh", &dh}})
    expect_shape(name, *a, {B, H});
  expect_shape("act", act, {B, GH});
  expect_shape("dx", dx, {B, I});
  expect_shape("dh_prev", dh_prev, {B, H});
  if (lstm) {
    expect_shape("c", c, {B, H});
    expect_shape("dc", dc, {B, H});
    expect_shape("dc_prev", dc_prev, {B, H});
  }
  expect_shape("d_w_ih", d_w_ih, {GH, I});
  expect_shape("d_w_hh", d_w_hh, {GH, H});
  if (d_b_ih.is_valid() != d_b_hh.is_valid()) throw std::invalid_argument("d_b_ih, d_b_hh: expected both or neither");
  if (d_b_ih.is_valid()) {
    expect_shape("d_b_ih", d_b_ih, {GH});
    expect_shape("d_b_hh", d_b_hh, {GH});
  }
  const lstmkit::CellGrads<T> grads{d_w_ih.data(), d_w_hh.data(), d_b_ih.is_valid() ? d_b_ih.data() : nullptr,
                                    d_b_ih.is_valid() ? d_b_hh.data() : nullptr, nullptr};
  lstmkit::bind_checks::GilRelease release;
  kernels<T>().cell_backward(lstm, B, I, H, x.data(), h.data(), lstm ? c.data() : nullptr, k.w, act.data(), aux.data(),
                             dh.data(), lstm ? dc.data() : nullptr, dx.data(), dh_prev.data(),
                             lstm ? dc_prev.data() : nullptr, grads);
}

// Throws ValueError unless a forward's results have their shapes: out (T, B, D·P), h_n (L·D, B, P),
// c_n (L·D, B, H) (LSTM; ignored for a GRU).
template <typename A>
void expect_forward_results(const lstmkit::RnnShape& s, const A& out, const A& h_n, const A& c_n) {
  const index_t LD = s.L * s.D;
  expect_shape("out", out, {s.T, s.B, s.D * s.P});
  expect_shape("h_n", h_n, {LD, s.B, s.P});
  if (s.lstm) expect_shape("c_n", c_n, {LD, s.B, s.H});
}

// forward(mode, num_layers, bidirectional, hidden_size, proj_size, has_bias, x (T, B, I), weights,
//         h0 (L·D, B, P), c0 (L·D, B, H) | None, lengths (B,) int64 | None, dropout_masks [] or L − 1 × (T, B, D·P),
//         out (T, B, D·P), h_n (L·D, B, P), c_n (L·D, B, H) | None)
template <typename T>
void forward(const std::string& mode, index_t num_layers, bool bidirectional, index_t hidden_size, index_t proj_size,
             bool has_bias, In<T> x, std::vector<In<T>> weights, In<T> h0, In<T> c0, Lengths lengths,
             std::vector<In<T>> dropout_masks, Out<T> out, Out<T> h_n, Out<T> c_n) {
  const SequenceArgs<T> a = check_sequence(mode, num_layers, bidirectional, hidden_size, proj_size, has_bias, x,
                                           weights, h0, c0, lengths, dropout_masks);
  const lstmkit::RnnShape& s = a.s;
  expect_forward_results(s, out, h_n, c_n);
  const T* c0_ptr = s.lstm ? c0.data() : nullptr;
  T* c_n_ptr = s.lstm ? c_n.data() : nullptr;
  lstmkit::bind_checks::GilRelease release;
  kernels<T>().rnn_forward(s, x.data(), a.cells.data(), h0.data(), c0_ptr, a.lengths, a.dropout_masks(), out.data(),
                           h_n.data(), c_n_ptr);
}

// Throws ValueError unless ws is the 1-D training workspace of this call: T·B·train_workspace_row(s) values.
template <typename A>
void expect_workspace(const A& ws, const lstmkit::RnnShape& s) {
  expect_shape("workspace", ws, {s.T * s.B * lstmkit::train_workspace_row(s)});
}

// Whether a training call's products run in bf16 (quant/quant_train.h): precision "float32" or "bfloat16",
// the latter for float32 models without projection only.
template <typename T>
bool bf16_products(const std::string& precision, const lstmkit::RnnShape& s) {
  if (precision == "float32") return false;
  if (precision != "bfloat16")
    throw std::invalid_argument("precision: expected 'float32' or 'bfloat16', got '" + precision + "'");
  if (!std::is_same<T, float>::value)
    throw std::invalid_argument("precision: 'bfloat16' products train float32 models, got float64");
  if (s.P != s.H) throw std::invalid_argument("precision: 'bfloat16' products have no projection (proj_size)");
  return true;
}

// train_forward(same arguments as forward, then ws (T·B·workspace_row,), precision): forward into out, h_n,
// c_n, keeping in ws what backward needs.
template <typename T>
void train_forward(const std::string& mode, index_t num_layers, bool bidirectional, index_t hidden_size,
                   index_t proj_size, bool has_bias, In<T> x, std::vector<In<T>> weights, In<T> h0, In<T> c0,
                   Lengths lengths, std::vector<In<T>> dropout_masks, Out<T> out, Out<T> h_n, Out<T> c_n, Out<T> ws,
                   const std::string& precision) {
  const SequenceArgs<T> a = check_sequence(mode, num_layers, bidirectional, hidden_size, proj_size, has_bias, x,
                                           weights, h0, c0, lengths, dropout_masks);
  const lstmkit::RnnShape& s = a.s;
  expect_forward_results(s, out, h_n, c_n);
  expect_workspace(ws, s);
  const bool bf16 = bf16_products<T>(precision, s);
  const T* c0_ptr = s.lstm ? c0.data() : nullptr;
  T* c_n_ptr = s.lstm ? c_n.data() : nullptr;
  lstmkit::bind_checks::GilRelease release;
  if constexpr (std::is_same<T, float>::value)
    if (bf16)
      return lstmkit::quant_kernels().train_forward(s, x.data(), a.cells.data(), h0.data(), c0_ptr, a.lengths,
                                                    a.dropout_masks(), out.data(), h_n.data(), c_n_ptr, ws.data());
  kernels<T>().rnn_train_forward(s, x.data(), a.cells.data(), h0.data(), c0_ptr, a.lengths, a.dropout_masks(),
                                 out.data(), h_n.data(), c_n_ptr, ws.data());
}

// backward(mode, num_layers, bidirectional, hidden_size, proj_size, has_bias, x, weights, h0, c0 | None,
//          lengths | None, ws, d_out (T, B, D·P), d_hn (L·D, B, P), d_cn (L·D, B, H) | None,
//          dx (T, B, I), d_h0 (L·D, B, P), d_c0 (L·D, B, H) | None, grads)
// ws: the workspace train_forward filled for the same x, weights, h0, c0 and lengths (read only).
// grads: flat list of output arrays shaped and ordered like weights.
template <typename T>
void backward(const std::string& mode, index_t num_layers, bool bidirectional, index_t hidden_size, index_t proj_size,
              bool has_bias, In<T> x, std::vector<In<T>> weights, In<T> h0, In<T> c0, Lengths lengths,
              std::vector<In<T>> dropout_masks, In<T> ws, In<T> d_out, In<T> d_hn, In<T> d_cn, Out<T> dx, Out<T> d_h0,
              Out<T> d_c0, std::vector<Out<T>> grads, const std::string& precision) {
  const SequenceArgs<T> a = check_sequence(mode, num_layers, bidirectional, hidden_size, proj_size, has_bias, x,
                                           weights, h0, c0, lengths, dropout_masks);
  const lstmkit::RnnShape& s = a.s;
  const index_t LD = s.L * s.D;
  expect_workspace(ws, s);
  check_gradient_buffers(s, d_out, d_hn, d_cn, dx, d_h0, d_c0);
  if (grads.size() != weights.size())
    throw std::invalid_argument("grads: expected " + std::to_string(weights.size()) + " arrays, got " +
                                std::to_string(grads.size()));
  const size_t per_cell = weights.size() / static_cast<size_t>(LD);
  std::vector<lstmkit::CellGrads<T>> cell_grads(static_cast<size_t>(LD));
  for (size_t i = 0; i < grads.size(); ++i) {  // each gradient shaped like its weight
    const In<T>& w = weights[i];
    const Out<T>& g = grads[i];
    bool same = g.ndim() == w.ndim();
    for (size_t dim = 0; same && dim < w.ndim(); ++dim) same = g.shape(dim) == w.shape(dim);
    if (!same)
      throw std::invalid_argument("grads[" + std::to_string(i) + "]: expected shape " + shape_str(w) + ", got " +
                                  shape_str(g));
    lstmkit::CellGrads<T>& cg = cell_grads[i / per_cell];
    const size_t slot = i % per_cell;
    T* ptr = g.data();
    if (slot == 0) cg.w_ih = ptr;
    else if (slot == 1) cg.w_hh = ptr;
    else if (slot == 2 && has_bias) cg.b_ih = ptr;
    else if (slot == 3 && has_bias) cg.b_hh = ptr;
    else cg.w_hr = ptr;
  }
  const bool bf16 = bf16_products<T>(precision, s);
  const T* d_cn_ptr = s.lstm ? d_cn.data() : nullptr;
  T* d_c0_ptr = s.lstm ? d_c0.data() : nullptr;
  lstmkit::bind_checks::GilRelease release;
  if constexpr (std::is_same<T, float>::value)
    if (bf16)
      return lstmkit::quant_kernels().backward(s, x.data(), a.cells.data(), a.lengths, a.dropout_masks(), ws.data(),
                                               d_out.data(), d_hn.data(), d_cn_ptr, dx.data(), d_h0.data(), d_c0_ptr,
                                               cell_grads.data());
  kernels<T>().rnn_backward(s, x.data(), a.cells.data(), a.lengths, a.dropout_masks(), ws.data(), d_out.data(),
                            d_hn.data(), d_cn_ptr, dx.data(), d_h0.data(), d_c0_ptr, cell_grads.data());
}

// A streaming state (common.h's StreamBase) behind a Python object. Python's lstmkit.stream checks
// everything first; the checks here only keep a wrong direct call from reading out of bounds.
template <typename T>
class PyStream {
 public:
  // weights: per layer w_ih, w_hh, then b_ih, b_hh when has_bias, then w_hr when proj_size > 0.
  PyStream(const std::string& mode, index_t num_layers, index_t input_size, index_t hidden_size, index_t proj_size,
           bool has_bias, index_t batch, std::vector<In<T>> weights) {
    if (batch < 1) throw std::invalid_argument("batch: expected >= 1");
    const std::vector<lstmkit::CellWeights<T>> cells =
        check_model<T>(s_, mode, num_layers, false, input_size, hidden_size, proj_size, has_bias, weights);
    s_.B = batch;
    const lstmkit::RnnShape& s = s_;
    impl_.reset(kernels<T>().make_stream(s, cells.data()));  // copies (packs) the weights
  }

  // x (B, I) -> out (B, P)
  void step(In<T> x, Out<T> out) {
    expect_shape("x", x, {s_.B, s_.I});
    expect_shape("out", out, {s_.B, s_.P});
    Busy busy(busy_);
    lstmkit::bind_checks::GilRelease release;
    impl_->step(x.data(), out.data());
  }
  void reset() {
    Busy busy(busy_);
    impl_->reset();
  }
  // h (L, B, P), c (L, B, H) | None
  void get_state(Out<T> h, Out<T> c) {
    expect_stream_state(s_, h, c);
    Busy busy(busy_);
    impl_->get_state(h.data(), s_.lstm ? c.data() : nullptr);
  }
  void set_state(In<T> h, In<T> c) {
    expect_stream_state(s_, h, c);
    Busy busy(busy_);
    impl_->set_state(h.data(), s_.lstm ? c.data() : nullptr);
  }

 private:
  // One call at a time per stream (step releases the GIL): a second thread gets RuntimeError. The flag holds
  // the holder's process id: a child forked while a parent thread was stepping the stream inherits it set, by
  // a thread it does not have, and a state the step may have left half written.
  struct Busy {
    std::atomic<int64_t>& flag;
    explicit Busy(std::atomic<int64_t>& f) : flag(f) {
      int64_t holder = 0;
      if (!flag.compare_exchange_strong(holder, static_cast<int64_t>(getpid()))) {
        if (holder != static_cast<int64_t>(getpid()))
          throw std::runtime_error(
              "stream: it was being stepped by a thread of the parent process when this process forked, so its "
              "state may be half written; make a new stream here");
        throw std::runtime_error("stream: already in use by another thread");
      }
    }
    ~Busy() { flag.store(0); }
  };

  lstmkit::RnnShape s_;
  std::unique_ptr<lstmkit::StreamBase<T>> impl_;
  std::atomic<int64_t> busy_{0};
};

template <typename T>
void bind_dtype(nb::module_& m, const char* stream_name) {
  nb::class_<PyStream<T>>(m, stream_name, "Streaming state of a unidirectional stacked RNN. Use lstmkit.stream.")
      .def(nb::init<const std::string&, index_t, index_t, index_t, index_t, bool, index_t, std::vector<In<T>>>(),
           nb::arg("mode"), nb::arg("num_layers"), nb::arg("input_size"), nb::arg("hidden_size"), nb::arg("proj_size"),
           nb::arg("has_bias"), nb::arg("batch"), nb::arg("weights").noconvert())
      .def("step", &PyStream<T>::step, nb::arg("x").noconvert(), nb::arg("out").noconvert())
      .def("reset", &PyStream<T>::reset)
      .def("get_state", &PyStream<T>::get_state, nb::arg("h").noconvert(), nb::arg("c").noconvert().none())
      .def("set_state", &PyStream<T>::set_state, nb::arg("h").noconvert(), nb::arg("c").noconvert().none());
  m.def("cell_forward", &cell_forward<T>, nb::arg("mode"), nb::arg("x").noconvert(), nb::arg("h").noconvert(),
        nb::arg("c").noconvert().none(), nb::arg("w_ih").noconvert(), nb::arg("w_hh").noconvert(),
        nb::arg("b_ih").noconvert().none(), nb::arg("b_hh").noconvert().none(), nb::arg("w_hr").noconvert().none(),
        nb::arg("h_out").noconvert(), nb::arg("c_out").noconvert().none(),
        nb::arg("act").noconvert().none() = nb::none(), nb::arg("aux").noconvert().none() = nb::none(),
        "One fused cell step into h_out (and c_out for an LSTM); with act and aux, what cell_backward reads. "
        "Use lstmkit.engine.cell_forward.");
  m.def("cell_backward", &cell_backward<T>, nb::arg("mode"), nb::arg("x").noconvert(), nb::arg("h").noconvert(),
        nb::arg("c").noconvert().none(), nb::arg("w_ih").noconvert(), nb::arg("w_hh").noconvert(),
        nb::arg("act").noconvert(), nb::arg("aux").noconvert(), nb::arg("dh").noconvert(),
        nb::arg("dc").noconvert().none(), nb::arg("dx").noconvert(), nb::arg("dh_prev").noconvert(),
        nb::arg("dc_prev").noconvert().none(), nb::arg("d_w_ih").noconvert(), nb::arg("d_w_hh").noconvert(),
        nb::arg("d_b_ih").noconvert().none(), nb::arg("d_b_hh").noconvert().none(),
        "The gradients of one cell_forward step from its caches. Use lstmkit.engine.cell_backward_into.");
  m.def("forward", &forward<T>, nb::arg("mode"), nb::arg("num_layers"), nb::arg("bidirectional"),
        nb::arg("hidden_size"), nb::arg("proj_size"), nb::arg("has_bias"), nb::arg("x").noconvert(),
        nb::arg("weights").noconvert(), nb::arg("h0").noconvert(), nb::arg("c0").noconvert().none(),
        nb::arg("lengths").noconvert().none(), nb::arg("dropout_masks").noconvert(), nb::arg("out").noconvert(),
        nb::arg("h_n").noconvert(), nb::arg("c_n").noconvert().none(),
        "Whole-sequence inference forward into out, h_n (and c_n). Use lstmkit.engine.forward.");
  m.def("train_forward", &train_forward<T>, nb::arg("mode"), nb::arg("num_layers"), nb::arg("bidirectional"),
        nb::arg("hidden_size"), nb::arg("proj_size"), nb::arg("has_bias"), nb::arg("x").noconvert(),
        nb::arg("weights").noconvert(), nb::arg("h0").noconvert(), nb::arg("c0").noconvert().none(),
        nb::arg("lengths").noconvert().none(), nb::arg("dropout_masks").noconvert(), nb::arg("out").noconvert(),
        nb::arg("h_n").noconvert(), nb::arg("c_n").noconvert().none(), nb::arg("workspace").noconvert(),
        nb::arg("precision") = "float32",
        "Training forward into out, h_n (and c_n), keeping what backward needs in workspace. "
        "Use lstmkit.engine.train_forward.");
  m.def("backward", &backward<T>, nb::arg("mode"), nb::arg("num_layers"), nb::arg("bidirectional"),
        nb::arg("hidden_size"), nb::arg("proj_size"), nb::arg("has_bias"), nb::arg("x").noconvert(),
        nb::arg("weights").noconvert(), nb::arg("h0").noconvert(), nb::arg("c0").noconvert().none(),
        nb::arg("lengths").noconvert().none(), nb::arg("dropout_masks").noconvert(), nb::arg("workspace").noconvert(),
        nb::arg("d_out").noconvert(), nb::arg("d_hn").noconvert(), nb::arg("d_cn").noconvert().none(),
        nb::arg("dx").noconvert(), nb::arg("d_h0").noconvert(), nb::arg("d_c0").noconvert().none(),
        nb::arg("grads").noconvert(), nb::arg("precision") = "float32",
        "BPTT of the whole sequence from train_forward's workspace into dx, d_h0 (and d_c0), grads. "
        "Use lstmkit.engine.backward.");
}

}  // namespace

NB_MODULE(_engine, m) {
  m.doc() = "lstmkit's native CPU kernels (float32 and float64). The checked API is lstmkit.engine.";
  g_isa = choose_isa();
  g_kernels = kernels_for(g_isa);
  bind_dtype<float>(m, "Stream32");
  bind_dtype<double>(m, "Stream64");
  bind_quantized(m, g_isa);
  bind_variants(m, g_kernels->name);
  m.def("isa", [] { return g_isa; }, "The instruction-set path in use.");
  m.def("supported_isas", &supported_isas, "The paths this CPU can run, lowest first.");
  m.def(
      "train_workspace_row",
      [](const std::string& mode, index_t num_layers, bool bidirectional, index_t hidden_size, index_t proj_size) {
        return lstmkit::train_workspace_row(layer_sizes(mode, num_layers, bidirectional, hidden_size, proj_size));
      },
      nb::arg("mode"), nb::arg("num_layers"), nb::arg("bidirectional"), nb::arg("hidden_size"), nb::arg("proj_size"),
      "Values per batch row and step in the training workspace (it holds T·B times as many).");
  m.def("get_num_threads", &lstmkit::num_threads, "Threads the kernels use.");
  m.def(
      "set_num_threads",
      [](int n) {
        if (n < 1) throw std::invalid_argument("n: expected >= 1, got " + std::to_string(n));
        lstmkit::set_num_threads(n);
      },
      nb::arg("n"), "Set the threads the kernels use (>= 1).");
  m.def("prepare_exit", &lstmkit::bind_checks::prepare_exit,
        "Called at exit (atexit): a thread whose native call ends after this waits for the process to exit instead "
        "of taking the GIL back, which CPython would end with pthread_exit, aborting the process.");
  m.def("share_openmp_team", &lstmkit::share_openmp_team, nb::arg("enable"),
        "Run the kernels' parallel work on the threads of the OpenMP runtime loaded in the process (torch's), "
        "or on lstmkit's own (enable=False); returns the runtime's path or ''.");
  m.def("openmp_team", &lstmkit::openmp_team,
        "The OpenMP runtime whose threads run the kernels' parallel work, or ''.");
  m.def(
      "pool_stats",
      [] {
        const lstmkit::PoolStats st = lstmkit::pool_stats();
        nb::dict d;
        d["late_partners"] = st.late_partners;
        d["solo_jobs"] = st.solo_jobs;
        d["probed_alone"] = st.probed_alone;
        d["ahead_jobs"] = st.ahead_jobs;
        d["solo_spell_ms"] = st.solo_spell_ms;
        return d;
      },
      "Counts since import: pool threads found descheduled while holding a share of a job, and jobs then "
      "run on the calling thread alone (threads.cpp, Contention); lockstep loops run on the calling thread "
      "alone because timing chose it (LockstepProbes); jobs handed to the pool ahead of their caller (a "
      "stream's next recurrent product, post_ahead); and the spell of one-thread jobs the last late partner "
      "started (ms).");
  m.def("reset_schedule_probes", &lstmkit::reset_schedule_probes,
        "Forget the lockstep loops' timings: their next calls run on two threads first (threads.cpp).");
}
