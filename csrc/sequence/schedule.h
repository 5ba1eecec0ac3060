// The schedules every sequence driver shares: the ways a time loop is split over the thread pool — by rows
// for the whole loop (rows_through_time), by rows within a step (for_rows), or by hidden units over two
// threads meeting once per step (units_through_time).
#pragma once

#include <algorithm>
#include <cstdint>
#include <numeric>
#include <stdexcept>
#include <vector>

#include "cells/plain.h"
#include "core/packed_batch.h"

namespace lstmkit {
namespace LSTMKIT_ISA {

// f(r0, r1) over rows [0, n) in equal shares of whole pairs of rows, one share per thread of the pool (the
// last share takes an odd row). Shares of ≥ 2 rows keep the GEMM on the multi-row kernel, so the bits are
// the same as one call over all rows. Pairs, not whole register tiles: a thread's share is then within a
// pair of rows of its partner's, where tiles left B=16 at 12 + 4 rows and B=64 at 36 + 28.
template <typename F>
void row_shares(index_t n, F&& f) {
  const index_t pairs = n / 2;
  parallel_for(pairs, [&](index_t b, index_t e) { f(2 * b, e == pairs ? n : 2 * e); });
}

// f(r0, r1) over rows [0, n): in row_shares on the pool when `macs` (the work) is large enough, else
// f(0, n) here.
template <typename F>
void for_rows(index_t n, double macs, F&& f) {
  if (n < 4 || macs < kParallelMacs || in_parallel() || num_threads() < 2) return f(index_t(0), n);
  row_shares(n, f);
}

// The fewest rows per thread for which a sequence pass splits the batch by rows for its whole time loop
// (batch_split). The row split has no meeting between the steps, where the unit split meets its partner at
// every step; but below this a thread streams all of W_hh per step for too few rows, where the unit split
// reads half of it. Measured by the two schedules alternating in one process or in fresh processes per
// build (AMD Zen 4, avx512, 2 threads, T=100, ms, units / rows): inference B=8 H=256 3.32 / 2.85, B=16 H=128
// 2.26 / 2.06, B=4 H=256 1.63 / 2.09; training B=8 H=128 LSTM 3.01 / 2.50, GRU 5.65 / 3.83; at 2 rows per
// thread the backward lost (GRU B=4 training 1.3–2.9 by units, 3.3 by rows). A unit split also waits at every
// step for the slower of its two cores: on this shared machine B=16 H=128 inference ran 1.85 ms by units and
// 1.61 by rows in one spell, 4.3 and 2.0 in another.
constexpr index_t kSplitRows = 4;

// Whether a sequence pass splits the batch over the pool for the whole time loop (rows_through_time,
// forward.h's run_direction): at least kSplitRows rows per thread and enough work per step. Below that, a
// small batch splits each step by hidden units instead (units_through_time; the backward's lockstep loop)
// where the cell can.
inline bool batch_split(index_t B, index_t H, index_t G, index_t P) {
  const int n = num_threads();
  return n >= 2 && !in_parallel() && B >= kSplitRows * n && double(B) * double(G * H) * double(P) >= kParallelMacs;
}

// The time loop over every row, step_rows(t, r0, n) for the rows r0 .. r0 + n still running at step t,
// over every step in time order or (reverse) from the last step back, each thread of the pool taking one of
// row_shares (the caller has checked batch_split()).
template <typename F>
void rows_through_time(index_t B, const std::vector<index_t>& batch_sizes, bool reverse, F&& step_rows) {
  const index_t steps = static_cast<index_t>(batch_sizes.size());
  auto rows = [&](index_t r0, index_t r1) {
    for (index_t step = 0; step < steps; ++step) {
      const index_t t = reverse ? steps - 1 - step : step;
      const index_t n = std::min(batch_sizes[t], r1) - r0;
      if (n > 0) step_rows(t, r0, n);
    }
  };
  row_shares(B, rows);
}

// The time loop of a small batch split by hidden units over two threads (lockstep_pair): part(step,
// u0, u1, h_in, h_out) computes units [u0, u1) of every row at `step` (0 .. steps − 1, the caller maps
// it to t), reading all of h_in and writing its units of h_out. The two threads each own half of the
// units (whole register panels), so the weights each reads stay in its core's cache; they meet once
// per step, and h alternates between h and h_spare (`size` values each, rows of P = H) because a
// step reads what both halves wrote the step before. On return h holds the last step's h.
// NR: the granule of the split (a register panel of the cell's products; H is a multiple of it).
template <index_t NR, typename T, typename F>
void units_through_time(index_t steps, index_t H, T* h, T* h_spare, index_t size, F&& part) {
  const index_t half = H / NR / 2 * NR;
  T* const hb[2] = {h, h_spare};
  lockstep_pair(
      steps,
      [&](index_t step, int part0, int part1) {
        part(step, part0 == 0 ? index_t(0) : half, part1 == 2 ? H : half, hb[step % 2], hb[(step + 1) % 2]);
      },
      lockstep_key(H, size));
  if (steps % 2) std::copy_n(h_spare, size, h);
}

}  // namespace LSTMKIT_ISA
}  // namespace lstmkit
