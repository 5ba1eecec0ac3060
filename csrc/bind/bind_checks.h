// The argument checks shared by the glue files (bind.cpp, bind_variants.cpp): array types, shape
// checks that raise ValueError (std::invalid_argument) naming the argument, and the checks of a
// whole-sequence call. Header-only; no math here.
#pragma once

#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <initializer_list>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "core/common.h"

namespace lstmkit {
namespace bind_checks {

namespace nb = nanobind;

// Interpreter shutdown. CPython 3.11 ends a thread that takes the GIL back during finalization with
// pthread_exit, whose unwinding through a native call's frames (a noexcept destructor, nanobind's catch (...))
// aborted the process ("terminate called without an active exception"): a daemon thread inside an lstmkit call
// at exit. prepare_exit (an atexit handler, run before finalization starts) sets exiting, then lets go of the
// GIL until no thread is taking it back; from then on a thread whose native call ends waits for the process to
// exit instead of taking the GIL back (the thread that ran prepare_exit, the main one, goes on as usual).
inline std::atomic<bool> g_exiting{false};
inline std::atomic<int> g_restoring{0};  // threads between deciding to take the GIL back and having it
inline std::atomic<int> g_native{0};     // threads in a native call, the GIL released
inline std::thread::id g_exit_thread;

// The GIL released for a native call and taken back after it, as nb::gil_scoped_release, but for shutdown.
class GilRelease {
 public:
  GilRelease() : state_((g_native.fetch_add(1), PyEval_SaveThread())) {}
  ~GilRelease() {
    g_restoring.fetch_add(1);
    if (g_exiting.load() && std::this_thread::get_id() != g_exit_thread) {
      g_restoring.fetch_sub(1);
      for (;;) std::this_thread::sleep_for(std::chrono::hours(1));  // until the process exits
    }
    PyEval_RestoreThread(state_);
    g_restoring.fetch_sub(1);
    g_native.fetch_sub(1);
  }
  GilRelease(const GilRelease&) = delete;
  GilRelease& operator=(const GilRelease&) = delete;

 private:
  PyThreadState* state_;
};

// See g_exiting. Called with the GIL held, once, from atexit; waits at most about a second.
inline void prepare_exit() {
  g_exit_thread = std::this_thread::get_id();
  g_exiting.store(true);
  PyThreadState* state = PyEval_SaveThread();
  for (int i = 0; i < 1000 && g_restoring.load() > 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  PyEval_RestoreThread(state);
  // a thread kept in its call still holds its objects (a stream, its arguments): at exit nanobind would report
  // them as leaked, "likely a reference counting issue", which they are not
  if (g_native.load() > 0) nb::set_leak_warnings(false);
}

template <typename T>
using In = nb::ndarray<const T, nb::c_contig, nb::device::cpu>;
template <typename T>
using Out = nb::ndarray<T, nb::c_contig, nb::device::cpu>;
using Lengths = nb::ndarray<const int64_t, nb::ndim<1>, nb::c_contig, nb::device::cpu>;

inline std::string shape_str(std::initializer_list<index_t> dims) {
  std::string s = "(";
  size_t i = 0;
  for (index_t d : dims) s += (i++ ? ", " : "") + std::to_string(d);
  return s + (dims.size() == 1 ? ",)" : ")");
}

template <typename A>
std::string shape_str(const A& a) {
  std::string s = "(";
  for (size_t i = 0; i < a.ndim(); ++i) s += (i ? ", " : "") + std::to_string(a.shape(i));
  return s + (a.ndim() == 1 ? ",)" : ")");
}

// Throws ValueError unless `a` is valid and has exactly the shape `dims`.
template <typename A>
void expect_shape(const char* name, const A& a, std::initializer_list<index_t> dims) {
  if (!a.is_valid()) throw std::invalid_argument(std::string(name) + ": expected an array, got None");
  bool ok = a.ndim() == dims.size();
  size_t i = 0;
  for (index_t d : dims) ok = ok && static_cast<index_t>(a.shape(i++)) == d;
  if (!ok)
    throw std::invalid_argument(std::string(name) + ": expected shape " + shape_str(dims) + ", got " + shape_str(a));
}

inline bool is_lstm(const std::string& mode) {
  if (mode == "LSTM") return true;
  if (mode == "GRU") return false;
  throw std::invalid_argument("mode: expected 'LSTM' or 'GRU', got '" + mode + "'");
}

// A stacked RNN's layer sizes (T, B and I left 0): what a training workspace's row depends on.
inline lstmkit::RnnShape layer_sizes(const std::string& mode, index_t num_layers, bool bidirectional,
                                     index_t hidden_size, index_t proj_size) {
  lstmkit::RnnShape s;
  s.lstm = is_lstm(mode);
  s.L = num_layers, s.D = bidirectional ? 2 : 1, s.H = hidden_size, s.P = proj_size ? proj_size : hidden_size;
  return s;
}

// Throws ValueError unless a stream's state has its shapes: h (L, B, P), c (L, B, H) (LSTM; ignored for a GRU).
template <typename A, typename C>
void expect_stream_state(const lstmkit::RnnShape& s, const A& h, const C& c) {
  expect_shape("h", h, {s.L, s.B, s.P});
  if (s.lstm) expect_shape("c", c, {s.L, s.B, s.H});
}

// Checks a stacked RNN's sizes and its flat weights list, fills s (all but T and B) and returns the
// weight pointers [L·D]. weights: per layer and direction (layer-major): w_ih, w_hh, then b_ih, b_hh
// when has_bias, then w_hr when proj_size > 0 (engine.native_weights' order).
template <typename T>
std::vector<lstmkit::CellWeights<T>> check_model(lstmkit::RnnShape& s, const std::string& mode, index_t num_layers,
                                                 bool bidirectional, index_t input_size, index_t hidden_size,
                                                 index_t proj_size, bool has_bias, const std::vector<In<T>>& weights) {
  s.lstm = is_lstm(mode);
  if (num_layers < 1) throw std::invalid_argument("num_layers: expected >= 1");
  if (input_size < 1) throw std::invalid_argument("input_size: expected >= 1");
  if (hidden_size < 1) throw std::invalid_argument("hidden_size: expected >= 1");
  if (proj_size < 0 || proj_size >= hidden_size || (proj_size && !s.lstm))
    throw std::invalid_argument("proj_size: expected 0, or in [1, hidden_size) for an LSTM");
  s.I = input_size;
  s.H = hidden_size;
  s.P = proj_size ? proj_size : hidden_size;
  s.L = num_layers;
  s.D = bidirectional ? 2 : 1;
  const index_t G = s.gates(), LD = s.L * s.D;
  const size_t per_cell = 2 + (has_bias ? 2 : 0) + (proj_size ? 1 : 0);
  if (weights.size() != per_cell * static_cast<size_t>(LD))
    throw std::invalid_argument("weights: expected " + std::to_string(per_cell * LD) + " arrays, got " +
                                std::to_string(weights.size()));
  std::vector<lstmkit::CellWeights<T>> cells(static_cast<size_t>(LD));
  for (index_t k = 0; k < LD; ++k) {
    const In<T>* w = weights.data() + k * per_cell;
    const index_t in = k < s.D ? s.I : s.D * s.P;
    expect_shape("weights (w_ih)", w[0], {G * s.H, in});
    expect_shape("weights (w_hh)", w[1], {G * s.H, s.P});
    cells[k].w_ih = w[0].data();
    cells[k].w_hh = w[1].data();
    size_t next = 2;
    if (has_bias) {
      expect_shape("weights (b_ih)", w[2], {G * s.H});
      expect_shape("weights (b_hh)", w[3], {G * s.H});
      cells[k].b_ih = w[2].data();
      cells[k].b_hh = w[3].data();
      next = 4;
    }
    if (proj_size) {
      expect_shape("weights (w_hr)", w[next], {s.P, s.H});
      cells[k].w_hr = w[next].data();
    }
  }
  return cells;
}

// The checked sizes and weight pointers of a whole-sequence call.
template <typename T>
struct SequenceArgs {
  lstmkit::RnnShape s;
  std::vector<lstmkit::CellWeights<T>> cells;  // [L·D]
  const int64_t* lengths = nullptr;
  std::vector<const T*> dropout;  // [L − 1] inter-layer dropout masks (T, B, D·P), or empty
  const T* const* dropout_masks() const { return dropout.empty() ? nullptr : dropout.data(); }
};

// Checks everything a sequence call reads: config, x (T, B, I), the flat weights list (as check_model),
// h0, c0, lengths, and the inter-layer dropout masks (none, or L − 1 of shape (T, B, D·P)).
template <typename T>
SequenceArgs<T> check_sequence(const std::string& mode, index_t num_layers, bool bidirectional, index_t hidden_size,
                               index_t proj_size, bool has_bias, const In<T>& x, const std::vector<In<T>>& weights,
                               const In<T>& h0, const In<T>& c0, const Lengths& lengths,
                               const std::vector<In<T>>& dropout) {
  SequenceArgs<T> a;
  lstmkit::RnnShape& s = a.s;
  if (x.ndim() != 3) throw std::invalid_argument("x: expected 3 dimensions (T, B, I), got shape " + shape_str(x));
  a.cells = check_model<T>(s, mode, num_layers, bidirectional, static_cast<index_t>(x.shape(2)), hidden_size, proj_size,
                           has_bias, weights);
  s.T = x.shape(0);
  s.B = x.shape(1);
  const index_t LD = s.L * s.D;
  expect_shape("h0", h0, {LD, s.B, s.P});
  if (s.lstm) expect_shape("c0", c0, {LD, s.B, s.H});
  if (lengths.is_valid()) {
    expect_shape("lengths", lengths, {s.B});
    a.lengths = lengths.data();
    for (index_t b = 0; b < s.B; ++b)
      if (a.lengths[b] < 0 || a.lengths[b] > s.T)
        throw std::invalid_argument("lengths: expected values in [0, " + std::to_string(s.T) + "], got " +
                                    std::to_string(a.lengths[b]));
  }
  if (!dropout.empty() && static_cast<index_t>(dropout.size()) != s.L - 1)
    throw std::invalid_argument("dropout_masks: expected 0 or " + std::to_string(s.L - 1) +
                                " masks (one per layer but the last), got " + std::to_string(dropout.size()));
  for (size_t k = 0; k < dropout.size(); ++k) {
    expect_shape(("dropout_masks[" + std::to_string(k) + "]").c_str(), dropout[k], {s.T, s.B, s.D * s.P});
    a.dropout.push_back(dropout[k].data());
  }
  return a;
}

// The shapes of a sequence backward's incoming gradients and its input/state gradient buffers.
template <typename T>
void check_gradient_buffers(const RnnShape& s, const In<T>& d_out, const In<T>& d_hn, const In<T>& d_cn,
                            const Out<T>& dx, const Out<T>& d_h0, const Out<T>& d_c0) {
  const index_t LD = s.L * s.D;
  expect_shape("d_out", d_out, {s.T, s.B, s.D * s.P});
  expect_shape("d_hn", d_hn, {LD, s.B, s.P});
  expect_shape("dx", dx, {s.T, s.B, s.I});
  expect_shape("d_h0", d_h0, {LD, s.B, s.P});
  if (s.lstm) {
    expect_shape("d_cn", d_cn, {LD, s.B, s.H});
    expect_shape("d_c0", d_c0, {LD, s.B, s.H});
  }
}

}  // namespace bind_checks
}  // namespace lstmkit
