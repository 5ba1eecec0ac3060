// What every instruction-set build of the kernels shares: plain data types, the dispatch table the
// glue calls through, the streaming state's interface, and the thread pool.
//
// The kernels (gemm.h, cells/plain.h, sequence/forward.h, sequence/backward.h, stream.h) are compiled once per
// instruction set, each time into its own namespace (lstmkit::isa_scalar, isa_avx2, isa_avx512; see kernels_impl.h), so
// no inline function is shared between builds with different target flags. Only what is declared here crosses between
// them, and nothing here is compiled with a target attribute.
#pragma once

#include <cstddef>
#include <cstdint>
#include <new>
#include <string>
#include <utility>
#include <type_traits>

namespace lstmkit {

using index_t = std::ptrdiff_t;

// The sizes of a stacked RNN and its input.
struct RnnShape {
  bool lstm = true;  // LSTM (4 gates, has c) or GRU (3 gates)
  index_t T = 0;     // steps
  index_t B = 0;     // batch
  index_t I = 0;     // input size
  index_t H = 0;     // hidden size
  index_t P = 0;     // size of h: proj_size, or H without projection
  index_t L = 1;     // layers
  index_t D = 1;     // directions, 1 or 2
  index_t gates() const { return lstm ? 4 : 3; }
};

// Weights of one layer and direction, in torch's layout; pointers into caller-owned memory that must
// outlive the call they are passed to.
//   w_ih: [G·H, In]  input weights (In = I for layer 0, D·P above)
//   w_hh: [G·H, P]   recurrent weights
//   b_ih, b_hh: [G·H] biases, both null when the model has no bias
//   w_hr: [P, H]     projection (LSTM with proj_size only), else null
// Ptr is const T* for the weights (CellWeights) and T* for their gradient buffers (CellGrads, shaped
// like the weights, caller-owned, overwritten): one list of fields for both.
template <typename Ptr>
struct CellPointers {
  Ptr w_ih = nullptr;
  Ptr w_hh = nullptr;
  Ptr b_ih = nullptr;
  Ptr b_hh = nullptr;
  Ptr w_hr = nullptr;
};
template <typename T>
using CellWeights = CellPointers<const T*>;
template <typename T>
using CellGrads = CellPointers<T*>;

// Streaming inference state of a unidirectional stacked RNN (stream.h): owns packed copies of the
// weights, the state of every layer and its scratch; step() runs one time step of all layers.
//   x: [B, I]; out: [B, P] (the last layer's new h)
//   state h: [L, B, P]; c: [L, B, H] (LSTM only; null for a GRU)
// Not thread-safe: one step at a time per object (the Python wrapper serialises).
template <typename T>
class StreamBase {
 public:
  virtual ~StreamBase() = default;
  virtual void step(const T* x, T* out) = 0;
  virtual void reset() = 0;
  virtual void get_state(T* h, T* c) const = 0;
  virtual void set_state(const T* h, const T* c) = 0;
};

// Floats (of the call's dtype) per batch row and time step in the training workspace that
// rnn_train_forward fills and rnn_backward reads (sequence/backward.h has the layout). The workspace holds
// T·B times this many values: every (layer, direction) keeps act [G·H], aux [H], h_prev [P], c_prev [H]
// (LSTM) and m [H] (projection) per row, and layers above the first keep their input [D·P].
inline index_t train_workspace_row(const RnnShape& s) {
  const index_t cell = s.gates() * s.H + s.H + s.P + (s.lstm ? s.H : 0) + (s.P != s.H ? s.H : 0);
  return s.L * s.D * cell + (s.L - 1) * s.D * s.P;
}

// The alignment of the kernels' own buffers: a cache line, so every 64-byte vector load or store
// of a packed panel or a row of a multiple of 16 floats stays within one line (malloc aligns to 16
// bytes only; a zmm access across two lines costs two, and packing W_hhᵀ for the backward, all
// stores, ran ~2.5× slower from 16-byte-aligned memory).
constexpr std::size_t kBufferAlign = 64;

// An uninitialised array of n values for scratch the kernels write in full before reading (a
// std::vector would first zero it: tens of MB per training step), kBufferAlign-aligned.
// kernels_impl.h instantiates it before its target region, as it does std::vector.
template <typename T>
class RawBuffer {
 public:
  RawBuffer() = default;
  explicit RawBuffer(index_t n)
      : data_(n > 0 ? static_cast<T*>(
                          ::operator new[](static_cast<std::size_t>(n) * sizeof(T), std::align_val_t(kBufferAlign)))
                    : nullptr) {}
  ~RawBuffer() {
    if (data_) ::operator delete[](data_, std::align_val_t(kBufferAlign));
  }
  RawBuffer(const RawBuffer&) = delete;
  RawBuffer& operator=(const RawBuffer&) = delete;
  RawBuffer(RawBuffer&& other) noexcept : data_(other.data_) { other.data_ = nullptr; }
  RawBuffer& operator=(RawBuffer&& other) noexcept {
    std::swap(data_, other.data_);
    return *this;
  }
  T* data() const { return data_; }

 private:
  T* data_ = nullptr;
};

// How a block of m rows runs in register tiles of mr rows (gemm.h's float tiles, quant_gemm.h's bf16 ones): the
// first `whole` rows in whole tiles, then one tile of `first` rows and one of `second` (0: none). A remainder of
// at most half a tile would leave the FMA pipes idle (a 2-row tile has 4 accumulators where 8 hide the FMA
// latency: on AVX2, mr = 6, a thread's 8 rows of the row split at B = 16 ran as 6 + 2), so where `may_even` the
// last mr + r rows run as two tiles of nearly equal rows (4 + 4) instead. Each row's sums are the same operations
// in any tile, so the bits are too.
struct TileSplit {
  index_t whole, first, second;
};
inline TileSplit split_tiles(index_t m, index_t mr, bool may_even) {
  const index_t r = m % mr;
  if (may_even && m > mr && r > 0 && r <= mr / 2) return {m - mr - r, (mr + r + 1) / 2, (mr + r) / 2};
  return {m - r, r, 0};
}

// One instruction set's entry points for one dtype (signatures as in cells/plain.h, sequence/forward.h,
// sequence/backward.h, stream.h). dropout: the L − 1 inter-layer dropout masks [T, B, D·P] (already scaled by
// 1/(1 − p)) that multiply each layer's output before the next layer reads it, or null for none.
template <typename T>
struct KernelSet {
  void (*cell_forward)(bool lstm, index_t B, index_t I, index_t H, index_t P, const T* x, const T* h, const T* c,
                       const CellWeights<T>& weights, T* h_out, T* c_out, T* act, T* aux);
  void (*cell_backward)(bool lstm, index_t B, index_t I, index_t H, const T* x, const T* h, const T* c,
                        const CellWeights<T>& weights, const T* act, const T* aux, const T* dh, const T* dc, T* dx,
                        T* dh_prev, T* dc_prev, const CellGrads<T>& grads);
  void (*rnn_forward)(const RnnShape& s, const T* x, const CellWeights<T>* weights, const T* h0, const T* c0,
                      const int64_t* lengths, const T* const* dropout, T* out, T* h_n, T* c_n);
  // ws: [T·B·train_workspace_row(s)], written by rnn_train_forward, read (never written) by rnn_backward.
  void (*rnn_train_forward)(const RnnShape& s, const T* x, const CellWeights<T>* weights, const T* h0, const T* c0,
                            const int64_t* lengths, const T* const* dropout, T* out, T* h_n, T* c_n, T* ws);
  void (*rnn_backward)(const RnnShape& s, const T* x, const CellWeights<T>* weights, const int64_t* lengths,
                       const T* const* dropout, const T* ws, const T* d_out, const T* d_hn, const T* d_cn, T* dx,
                       T* d_h0, T* d_c0, const CellGrads<T>* grads);
  // s.T and s.D are ignored (D must be 1); weights: [L]. The caller owns (deletes) the result.
  StreamBase<T>* (*make_stream)(const RnnShape& s, const CellWeights<T>* weights);
};

struct Kernels {
  const char* name;  // "scalar", "avx2", "avx512"
  KernelSet<float> f32;
  KernelSet<double> f64;
};

// Defined in kernels_<isa>.cpp; kernels_avx2 / kernels_avx512 only run where the CPU has them.
extern const Kernels kernels_scalar;
extern const Kernels kernels_avx2;
extern const Kernels kernels_avx512;

// ---- Thread pool (threads.cpp) ----------------------------------------------------------------------

// Threads the kernels may use (the caller's thread included); at least 1. Default: the CPUs in the
// process's affinity mask at first use.
int num_threads();
void set_num_threads(int n);
// True inside a parallel_for body (nested calls then run serially on the calling thread).
bool in_parallel();

// Since the process started: how often a pool thread was found late (descheduled while it held a share
// of a job, threads.cpp Contention), and how many jobs then ran on the calling thread alone.
// And how many lockstep loops ran on the calling thread alone because their probe chose it (LockstepProbes),
// and how many jobs were handed to the pool ahead (post_ahead).
struct PoolStats {
  uint64_t late_partners = 0;
  uint64_t solo_jobs = 0;
  uint64_t probed_alone = 0;
  uint64_t ahead_jobs = 0;
  double solo_spell_ms = 0;  // the solo spell a late partner starts now (Contention)
};
PoolStats pool_stats();
// Forget the lockstep loops' timings (LockstepProbes): their next calls run on the pair first.
void reset_schedule_probes();

// Runs the pool's jobs on the threads of an OpenMP runtime already loaded in the process (torch's), so
// that a program alternating torch ops and lstmkit calls keeps one set of threads busy instead of two
// competing for the cores (threads.cpp, OpenMpTeam), or (enable false) on the pool's own threads.
// Returns the runtime's file path, or "" when none is loaded or enable is false.
std::string share_openmp_team(bool enable);
// The runtime share_openmp_team put in use: its path, or "" while the pool's own threads run the jobs.
std::string openmp_team();

// Runs fn(ctx, begin, end) over a split of [0, n) into at most num_threads() contiguous chunks, the
// calling thread taking the first; returns when all are done. Runs fn(ctx, 0, n) on the caller alone
// when n < 2, one thread is set, it is nested, another thread is using the pool at that moment, or a pool
// thread was lately found descheduled mid-job (threads.cpp, Contention: a busy machine).
void parallel_for_raw(index_t n, void (*fn)(void*, index_t, index_t), void* ctx);

// Work handed to the pool's threads to run while the caller is away (a stream's next recurrent product,
// h·W_hhᵀ, computed between two calls from Python): post_ahead starts fn(ctx, begin, end) over chunks of
// [0, n) on the workers and returns at once, without running any of it; join_ahead later runs the chunks
// no worker has started (from the last) and waits for the rest. A chunk does the same work on any thread.
// post_ahead returns an empty ticket, having started nothing, when the pool cannot take the job now (one
// thread, nested, in use, running jobs alone after a late partner, or torch's OpenMP team, whose parallel
// calls cannot outlive the caller's): the caller computes it itself. join_ahead returns false, having run
// nothing, for a ticket of a pool that is gone (a forked child's): compute it again. ctx must live until
// join_ahead returns; until then the pool runs other callers' jobs on their own thread.
struct AheadTicket {
  const void* pool = nullptr;
  uint64_t serial = 0;
  uint64_t job = 0;
  int64_t posted = 0;  // std::chrono::steady_clock ticks when posted
  explicit operator bool() const { return serial != 0; }
};
AheadTicket post_ahead(index_t n, void (*fn)(void*, index_t, index_t), void* ctx);
bool join_ahead(const AheadTicket& t);

template <typename F>
void parallel_for(index_t n, F&& f) {
  using Fn = typename std::remove_reference<F>::type;
  parallel_for_raw(
      n, [](void* ctx, index_t b, index_t e) { (*static_cast<Fn*>(ctx))(b, e); },
      const_cast<void*>(static_cast<const void*>(&f)));
}

// Runs fn(ctx, step, part_begin, part_end) for step = 0 .. steps − 1 in order, over the parts [0, 2) of
// each step: with two threads, part 0 on the calling thread and part 1 on a pool thread, the two
// meeting once per step (step s + 1 starts when both parts of step s are done) through a spin on
// atomics; otherwise fn(ctx, step, 0, 2) on the caller. A thread whose partner has not started its
// part of a step runs that part itself (at once while the partner has not shown up yet, else after a
// short wait; threads.cpp), so a pool thread that is late (asleep, descheduled) never holds the loop
// up. A part the partner has claimed cannot be taken over: when the partner holds one far longer than
// a part takes (descheduled), the caller runs all parts from the next step on, and the pool runs
// the next jobs on one thread for a while (threads.cpp, Contention). For a time loop split by hidden units
// (sequence/forward.h units_through_time, the backward in sequence/backward.h); fn must give the same results whichever
// thread runs a part.
// key (non-zero: the loop's sizes): the pair is timed now and then against the caller running every part
// alone, and the faster kept for loops of this kind and key (threads.cpp, LockstepProbes); 0: always the pair.
void lockstep_pair_raw(index_t steps, void (*fn)(void*, index_t, int, int), void* ctx, uint64_t key = 0);

template <typename F>
void lockstep_pair(index_t steps, F&& f, uint64_t key = 0) {
  using Fn = typename std::remove_reference<F>::type;
  lockstep_pair_raw(
      steps, [](void* ctx, index_t s, int b, int e) { (*static_cast<Fn*>(ctx))(s, b, e); },
      const_cast<void*>(static_cast<const void*>(&f)), key);
}

// A lockstep loop's key from its sizes (any values that tell its per-step work apart), never 0.
inline uint64_t lockstep_key(index_t a, index_t b) {
  return (static_cast<uint64_t>(a) << 32) ^ static_cast<uint64_t>(b) ^ 1u;
}

}  // namespace lstmkit
