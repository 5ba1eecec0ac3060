// The packed layout of a batch with per-sequence lengths, which every sequence driver (and the variant
// cell's mask lookup) works in.
#pragma once

#include <algorithm>
#include <cstdint>
#include <numeric>
#include <stdexcept>
#include <vector>

#include "core/common.h"

namespace lstmkit {
namespace LSTMKIT_ISA {

// The packed layout of a batch with per-sequence lengths (torch's PackedSequence).
//   order:       [B] caller's batch index of packed row r, longest sequence first (stable)
//   batch_sizes: [T] rows still running at step t (a prefix of the sorted batch)
//   offsets:     [T + 1] first packed row of step t; offsets[T] = N = Σ lengths
struct PackedBatch {
  std::vector<index_t> order, batch_sizes, offsets;
  index_t N = 0;

  // lengths: [B] in [0, T], or null for all T. Throws std::invalid_argument outside [0, T].
  PackedBatch(index_t T, index_t B, const int64_t* lengths)
      : order(static_cast<size_t>(B)), batch_sizes(static_cast<size_t>(T), 0), offsets(static_cast<size_t>(T) + 1, 0) {
    std::iota(order.begin(), order.end(), index_t(0));
    std::vector<index_t> len(static_cast<size_t>(B), T);
    if (lengths) {
      for (index_t b = 0; b < B; ++b) {
        if (lengths[b] < 0 || lengths[b] > T) throw std::invalid_argument("lengths: expected values in [0, T]");
        len[b] = static_cast<index_t>(lengths[b]);
      }
      std::stable_sort(order.begin(), order.end(), [&](index_t a, index_t b) { return len[a] > len[b]; });
    }
    for (index_t t = 0; t < T; ++t) {
      index_t n = 0;
      while (n < B && len[order[n]] > t) ++n;
      batch_sizes[t] = n;
      offsets[t + 1] = offsets[t] + n;
    }
    N = offsets[T];
  }

  // dst[offsets[t] + r, :] = src[t, order[r], :] for the running rows; rows of `width` values.
  template <typename T_>
  void pack(const T_* src, index_t B, index_t width, T_* dst) const {
    for (size_t t = 0; t < batch_sizes.size(); ++t)
      for (index_t r = 0; r < batch_sizes[t]; ++r)
        std::copy_n(src + (static_cast<index_t>(t) * B + order[r]) * width, width, dst + (offsets[t] + r) * width);
  }

  // dst [T, B, width] = src scattered back, zero where a sequence has ended.
  template <typename T_>
  void unpack(const T_* src, index_t B, index_t width, T_* dst) const {
    const index_t T = static_cast<index_t>(batch_sizes.size());
    std::fill(dst, dst + T * B * width, T_(0));
    for (index_t t = 0; t < T; ++t)
      for (index_t r = 0; r < batch_sizes[t]; ++r)
        std::copy_n(src + (offsets[t] + r) * width, width, dst + (t * B + order[r]) * width);
  }
};

}  // namespace LSTMKIT_ISA
}  // namespace lstmkit
