// ScheduleProbe: picks, by timing both, whether a job repeated many times (a stream's step) splits over the
// pool or runs on the calling thread alone.
//
// Why: a split step meets its partner thread at least once, so it pays a cache-line handover between the
// two CPUs each time. On the shared VMs we run on that handover is cheap in some spells and several times
// slower in others (docs/benchmarks.md, "Why (b) was bimodal"): a streaming step of B=1 H=128 X=32 took
// 3.3 µs split and 3.8 µs alone in one process, 6.5 µs split in the next. A fixed choice loses in one of
// the spells; timing both now and then keeps the faster. Both schedules compute the same bits, so the
// choice moves only time.
#pragma once

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>

namespace lstmkit {

class ScheduleProbe {
 public:
  using Clock = std::chrono::steady_clock;

  // Whether the next run may split over the pool.
  bool split() const { return n_ < kExplore ? split_ : !split_; }

  // The time of the run just made (under the schedule split() gave for it).
  void record(Clock::duration d) {
    const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(d).count();
    if (n_ >= kExplore - kProbe && n_ < kExplore) current_ns_[n_ - (kExplore - kProbe)] = ns;
    if (n_ >= kExplore + kWarm) other_ns_[n_ - (kExplore + kWarm)] = ns;
    if (++n_ < kPeriod) return;
    n_ = 0;
    // 10 %: a switch must pay for itself (the pool thread asleep or cold after the other schedule), and near
    // equals do not flap; the spells this is for differ by 40 % and more.
    if (median(other_ns_) < median(current_ns_) * 0.9) split_ = !split_;
  }

 private:
  // Every kPeriod runs the other schedule runs kWarm + kProbe times; its last kProbe runs are timed against
  // the chosen schedule's last kProbe runs before it, and the faster (by the median: a run that met an
  // interrupt counts once) is chosen for the next period. The warm-up runs are not timed: a pool thread
  // that slept through the single-thread runs takes tens of µs to wake and its cache is cold. At a few µs
  // per run a probe every ~4 ms follows spells that last seconds, ≤ 2.3 % of the runs on the other schedule.
  static constexpr int kProbe = 16;
  static constexpr int kWarm = 8;
  static constexpr int kPeriod = 1024;
  static constexpr int kExplore = kPeriod - kWarm - kProbe;  // runs [kExplore, kPeriod) try the other schedule

  static std::int64_t median(std::array<std::int64_t, kProbe> v) {
    std::nth_element(v.begin(), v.begin() + kProbe / 2, v.end());
    return v[kProbe / 2];
  }

  int n_ = kExplore - kProbe;  // the first probe after kProbe runs: a slow spell is found at once
  bool split_ = true;
  std::array<std::int64_t, kProbe> current_ns_{}, other_ns_{};
};

}  // namespace lstmkit
