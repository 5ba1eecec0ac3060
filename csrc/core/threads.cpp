// The kernels' thread pool: std::thread workers that spin for a while between jobs (a sequence's steps
// come microseconds apart, calls from Python a fraction of a millisecond) and then sleep on a
// condition variable. One job at a time: a second caller
// (another Python thread, the GIL being released) runs its work serially instead of waiting.
#include <dlfcn.h>
#include <link.h>
#include <pthread.h>
#include <sched.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "core/common.h"
#include "core/schedule_probe.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define LSTMKIT_PAUSE() _mm_pause()
#else
#define LSTMKIT_PAUSE() std::this_thread::yield()
#endif

namespace lstmkit {
namespace {

int default_threads() {
#ifdef __linux__
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) == 0) {
    const int n = CPU_COUNT(&set);
    if (n > 0) return n;
  }
#endif
  const unsigned n = std::thread::hardware_concurrency();
  return n ? static_cast<int>(n) : 1;
}

thread_local bool tl_in_parallel = false;

// Linux wakes a sleeping thread on its waker's CPU and may leave it there for a millisecond or more
// (measured here: 0.9–1.4 ms of scheduling delay, after which the load balancer migrates one of the
// two), so the caller and this worker would share one core while another sits idle.
//
// Before a worker sleeps it therefore leaves the CPU its caller last posted from out of its own
// affinity mask (AwayFromCpu), so that the wake-up places it elsewhere, and puts the mask back once
// it is awake: nothing stays pinned. leave_cpu() is the fallback for a thread that finds itself on the
// caller's CPU anyway (the caller moved): it hops once to the other CPUs of its mask.
class AwayFromCpu {
 public:
  explicit AwayFromCpu(int cpu) {
#ifdef __linux__
    if (cpu < 0 || sched_getaffinity(0, sizeof mask_, &mask_) != 0 || !CPU_ISSET(cpu, &mask_)) return;
    cpu_set_t others = mask_;
    CPU_CLR(cpu, &others);
    restore_ = CPU_COUNT(&others) > 0 && sched_setaffinity(0, sizeof others, &others) == 0;
#else
    (void)cpu;
#endif
  }
  ~AwayFromCpu() {
#ifdef __linux__
    if (restore_) sched_setaffinity(0, sizeof mask_, &mask_);
#endif
  }
  AwayFromCpu(const AwayFromCpu&) = delete;
  AwayFromCpu& operator=(const AwayFromCpu&) = delete;

 private:
#ifdef __linux__
  cpu_set_t mask_;
#endif
  bool restore_ = false;
};

void leave_cpu(int cpu) {
#ifdef __linux__
  const int here = sched_getcpu();
  if (here >= 0 && here == cpu) AwayFromCpu hop(cpu);
#else
  (void)cpu;
#endif
}

using Clock = std::chrono::steady_clock;

// A late partner: one that a thread waits for longer than doing the partner's shares itself would
// have taken. A running partner never is: the shares are equal. It was descheduled — another process
// wants its core — and a share it has claimed cannot be taken over (the kernels update state in
// place), so the thread waits until the scheduler runs it again, a time slice of the other process
// (milliseconds); or the two threads share one core and take turns, a context switch per meeting. On
// two cores with one of them busy, two threads took twice the time of one (issue 19).
//
// Each thread keeps a debt (is_late, settle): at every meeting, the time it waited minus the time its
// own share took (what the partner's share would have cost it), summed and floored at zero. Past
// kLateAfter the partner is late. One descheduled partner, or a few dozen meetings slowed by context
// switches, get there; a partner that is a little slower at every meeting never does. In a lockstep
// loop a part taken after kPatience from a partner that had been keeping up counts too (Lockstep).
//
// After a late partner the pool runs jobs on the calling thread alone for a while (`solo`), with
// the workers asleep instead of spinning (a spinning worker on the caller's core slows the caller),
// then tries two threads again. The solo spell doubles while partners keep being late (from 2 ms up
// to 256 ms), so under lasting contention a probe costs one late wait per quarter second. "Keep being
// late" is counted in two-thread work, not wall time (on_time): a partner late again before the pool has
// run 4 spells' worth of jobs on two threads on time. Counted in wall time, a program that pauses between
// bursts of calls (a server between requests; the benchmark's rounds, 40 ms of calls every ~0.2 s) started
// every burst at the shortest spell under a contention that had not ended, and paid a late wait (a time
// slice of the other process, ~8 ms on a Zen 3 VM) every few ms of it: a streaming step's p95 was 8 ms
// there. Results do not change: every job gives the same bits on any number of threads.
class Contention {
 public:
  static constexpr Clock::duration kLateAfter = std::chrono::microseconds(100);

  // Whether a thread that owes `debt` and has now waited `waited` at a meeting, its own share having
  // taken `own`, has a late partner.
  // On an OpenMP team the caller also waits at the runtime's closing barrier for a team thread that was
  // asleep (its spin ran out) and is waking: tens to hundreds of µs, which is not a descheduled partner (a
  // time slice of another process, milliseconds). Counting it as late put a torch program's engine calls on
  // one thread for most of a training batch (word_language_model shape: 7.7 + 14.1 ms against 5.7 + 11.6).
  static constexpr Clock::duration kTeamLateAfter = std::chrono::microseconds(1000);

  static bool is_late(Clock::duration debt, Clock::duration waited, Clock::duration own,
                      Clock::duration after = kLateAfter) {
    return debt + waited - own > after;
  }
  // The debt after a meeting that did not find the partner late.
  static Clock::duration settle(Clock::duration debt, Clock::duration waited, Clock::duration own) {
    return std::max(Clock::duration::zero(), debt + waited - own);
  }

  bool solo(Clock::time_point now) const {
    return now.time_since_epoch().count() < solo_until_.load(std::memory_order_relaxed);
  }

  void late(Clock::time_point now) {
    const int64_t t = now.time_since_epoch().count();
    std::lock_guard<std::mutex> lk(m_);
    // Late again before the pool has run 4 spells' worth of two-thread jobs on time: the contention lasts, so
    // the spell doubles.
    const bool again = credit_.exchange(0, std::memory_order_relaxed) < 4 * backoff_ + kMin;
    backoff_ = again ? std::min<int64_t>(2 * backoff_, kMax) : kMin;
    last_late_.store(t, std::memory_order_relaxed);
    solo_until_.store(t + backoff_, std::memory_order_relaxed);
    ++lates_;
  }

  // A job on two threads, [begin, end), whose partner was not late: its time counts towards forgetting the
  // spells (late). A job during which a partner was late (it finished alone) counts nothing.
  void on_time(Clock::time_point begin, Clock::time_point end) {
    const int64_t b = begin.time_since_epoch().count(), e = end.time_since_epoch().count();
    if (e > b && b > last_late_.load(std::memory_order_relaxed)) credit_.fetch_add(e - b, std::memory_order_relaxed);
  }

  void count_solo() { solo_jobs_.fetch_add(1, std::memory_order_relaxed); }

  // Forget the spells: the threads changed (share_openmp_team), so a late partner of before says nothing
  // about the new one.
  void reset() {
    std::lock_guard<std::mutex> lk(m_);
    backoff_ = kMin;
    last_late_.store(0, std::memory_order_relaxed);
    credit_.store(kForgotten, std::memory_order_relaxed);
    solo_until_.store(0, std::memory_order_relaxed);
  }

  PoolStats stats() {
    std::lock_guard<std::mutex> lk(m_);
    return {lates_, solo_jobs_.load(std::memory_order_relaxed), 0, 0,
            std::chrono::duration<double, std::milli>(Clock::duration(backoff_)).count()};
  }

 private:
  static constexpr int64_t kMin = std::chrono::duration_cast<Clock::duration>(std::chrono::milliseconds(2)).count();
  static constexpr int64_t kMax = std::chrono::duration_cast<Clock::duration>(std::chrono::milliseconds(256)).count();
  static constexpr int64_t kForgotten = 4 * kMax + kMin;  // credit enough to forget any spell: the first late
  std::mutex m_;
  std::atomic<int64_t> solo_until_{0};  // Clock ticks
  int64_t backoff_ = kMin;
  std::atomic<int64_t> last_late_{0};        // Clock ticks
  std::atomic<int64_t> credit_{kForgotten};  // Clock ticks of two-thread jobs on time since the last late
  uint64_t lates_ = 0;
  std::atomic<uint64_t> solo_jobs_{0};
};

// A slot, not a static object: a forked child replaces it (renew_pool_after_fork), since a parent thread may
// have held its mutex at the fork.
Contention*& contention_slot() {
  static Contention* c = new Contention();  // never destroyed, like the pool
  return c;
}

Contention& contention() { return *contention_slot(); }

// An OpenMP runtime already loaded in the process (torch's libgomp), whose threads run the pool's jobs
// instead of the pool's own (share_openmp_team). Why: inside a torch program, torch's OpenMP workers
// spin on the other cores for milliseconds after each torch op (libgomp's default wait policy), so a
// worker of ours woken then shares a core with a spinning thread and runs at half speed or less —
// measured in the word_language_model shape (benchmarks/bench_dropout_training.py): the engine's
// training calls took 11 + 22.6 ms there against 2 × (2.6 + 6.1) ms on a quiet machine. The spinning
// thread is the one to use: handed a job through GOMP_parallel it starts within microseconds.
// GOMP_parallel and omp_get_thread_num are libgomp's stable ABI (GCC ≥ 4.9; LLVM's and Intel's
// runtimes export the same entry points).
struct OpenMpTeam {
  void (*parallel)(void (*)(void*), void*, unsigned, unsigned) = nullptr;
  int (*thread_num)() = nullptr;
  std::string path;
};

std::atomic<const OpenMpTeam*> g_team{nullptr};

// The first loaded library whose file name holds one of `names` and which exports both entry points.
int find_openmp(struct dl_phdr_info* info, size_t, void* out) {
  static const char* const names[] = {"libgomp", "libiomp5", "libomp"};
  const char* path = info->dlpi_name;
  if (!path || !*path) return 0;
  const char* base = std::strrchr(path, '/');
  base = base ? base + 1 : path;
  bool named = false;
  for (const char* n : names) named = named || std::strncmp(base, n, std::strlen(n)) == 0;
  if (!named) return 0;
  void* lib = dlopen(path, RTLD_NOW | RTLD_NOLOAD);  // already loaded: a handle only, never a new load
  if (!lib) return 0;
  OpenMpTeam& team = *static_cast<OpenMpTeam*>(out);
  team.parallel = reinterpret_cast<decltype(team.parallel)>(dlsym(lib, "GOMP_parallel"));
  team.thread_num = reinterpret_cast<decltype(team.thread_num)>(dlsym(lib, "omp_get_thread_num"));
  if (!team.parallel || !team.thread_num) return 0;  // the handle stays: the library is loaded anyway
  team.path = path;
  return 1;
}

// The pool's "a job is running" lock. Not a std::mutex: a job posted ahead (post_ahead) is released by
// whichever thread finishes its last chunk, not by the thread that posted it.
class BusyFlag {
 public:
  bool try_lock() { return !held_.exchange(true, std::memory_order_acquire); }
  void lock() {
    while (!try_lock()) std::this_thread::yield();  // set_threads / share_openmp_team only: rare, and short
  }
  void unlock() { held_.store(false, std::memory_order_release); }

 private:
  std::atomic<bool> held_{false};
};

class Pool {
 public:
  Pool() = default;
  explicit Pool(int wanted) : wanted_(wanted) {}
  ~Pool() { stop_workers(); }

  int wanted() const { return wanted_.load(std::memory_order_relaxed); }

  int threads() {
    int n = wanted_.load(std::memory_order_relaxed);
    if (n == 0) {
      int expected = 0;
      wanted_.compare_exchange_strong(expected, default_threads());
      n = wanted_.load(std::memory_order_relaxed);
    }
    return n;
  }

  void set_threads(int n) {
    std::lock_guard<BusyFlag> job(busy_);  // waits for a running job
    stop_workers();
    wanted_.store(std::max(1, n), std::memory_order_relaxed);
  }

  // Chunks are claimed through one atomic word (job id, chunk count, next chunk): the caller takes
  // chunk 0, then claims whatever no worker has claimed yet, and waits only for chunks a worker is
  // running. A worker that is not scheduled (a busy machine) therefore never delays the job: the
  // caller does its share.
  void run(index_t n, void (*fn)(void*, index_t, index_t), void* ctx) {
    const int threads_now = threads();
    if (n < 2 || threads_now < 2 || tl_in_parallel) return serial(n, fn, ctx);
    const Clock::time_point start = Clock::now();
    if (contention().solo(start)) {  // a partner was late lately: this thread alone
      contention().count_solo();
      return serial(n, fn, ctx);
    }
    std::unique_lock<BusyFlag> job(busy_, std::try_to_lock);
    if (!job.owns_lock()) return serial(n, fn, ctx);
    const OpenMpTeam* team = g_team.load(std::memory_order_acquire);
    if (!team && static_cast<int>(workers_.size()) != threads_now - 1) start_workers(threads_now - 1);
    const uint64_t chunks = static_cast<uint64_t>(std::min<index_t>(n, threads_now));
    const uint64_t id = (job_id_ = (job_id_ + 1) & 0xffffffffu);
    fn_ = fn;
    ctx_ = ctx;
    n_ = n;
    done_.store(0, std::memory_order_relaxed);
#ifdef __linux__
    caller_cpu_.store(sched_getcpu(), std::memory_order_relaxed);
#endif
    claim_.store((id << 32) | (chunks << 16) | 1u, std::memory_order_release);  // chunk 0 is the caller's
    if (team) {
      // Thread 0 of the team is this thread: it runs the caller's part; the others claim chunks as
      // the pool's workers do. GOMP_parallel returns once every team thread has reached its closing
      // barrier, so a team thread that is not scheduled holds the call up there, out of sight of
      // wait_for_workers: the whole wait is timed here, when the call returns.
      TeamCall call{this, team, start, chunks, {}};
      team->parallel(&Pool::team_body, &call, static_cast<unsigned>(threads_now), 0);
      return settle_wait(start, call.share, Clock::now(), true);
    }
    {
      std::lock_guard<std::mutex> lk(m_);
      generation_.fetch_add(1, std::memory_order_release);
    }
    cv_.notify_all();
    const CallerShare share = run_as_caller(start, chunks);
    wait_for_workers(share);
    settle_wait(start, share, Clock::now());
  }

  // A job for the workers alone, collected later by join_ahead (common.h, post_ahead): its chunks are
  // claimed from the front by the workers and from the back by the joiner, through the claim word's two
  // counters (next, end); whoever finishes the last chunk releases the pool. Returns an empty ticket when
  // the pool cannot take it now.
  AheadTicket post_ahead(index_t n, void (*fn)(void*, index_t, index_t), void* ctx) {
    const int threads_now = threads();
    if (n < 1 || threads_now < 2 || tl_in_parallel || g_team.load(std::memory_order_acquire)) return {};
    if (contention().solo(Clock::now())) return {};
    if (!busy_.try_lock()) return {};
    if (static_cast<int>(workers_.size()) != threads_now - 1) start_workers(threads_now - 1);
    const uint64_t chunks = static_cast<uint64_t>(std::min<index_t>(n, kAheadChunks));
    const uint64_t id = (job_id_ = (job_id_ + 1) & 0xffffffffu);
    fn_ = fn;
    ctx_ = ctx;
    n_ = n;
    const uint64_t serial = ++ahead_serial_;
    ahead_posted_.fetch_add(1, std::memory_order_relaxed);
    ahead_.store(serial, std::memory_order_relaxed);
    ahead_chunks_.store(chunks, std::memory_order_relaxed);
    done_.store(0, std::memory_order_relaxed);
#ifdef __linux__
    caller_cpu_.store(sched_getcpu(), std::memory_order_relaxed);
#endif
    claim_.store((id << 32) | (chunks << 16), std::memory_order_release);  // next 0, end `chunks`
    {
      std::lock_guard<std::mutex> lk(m_);
      generation_.fetch_add(1, std::memory_order_release);
    }
    cv_.notify_all();
    return {this, serial, id, Clock::now().time_since_epoch().count()};
  }

  uint64_t ahead_jobs() const { return ahead_posted_.load(std::memory_order_relaxed); }

  // Runs the chunks of the ahead job `t` that no worker has claimed, from the last, and waits for the
  // others. False when `t` is not this pool's (the pool was renewed in a forked child: its job never ran).
  bool join_ahead(const AheadTicket& t) {
    if (t.pool != this) return false;
    const bool outer = tl_in_parallel;
    tl_in_parallel = true;
    Clock::time_point waiting{};
    bool counted = false, partner = true;  // partner: a worker ran a chunk (or the job was done before this call)
    for (unsigned spins = 0; ahead_finished_.load(std::memory_order_acquire) < t.serial; ++spins) {
      uint64_t c = claim_.load(std::memory_order_acquire);
      const uint64_t next = c & 0xffffu, end = (c >> 16) & 0xffffu;
      if ((c >> 32) == t.job) partner = next > 0;  // workers claim from the front: `next` of them
      if ((c >> 32) == t.job && next < end) {
        if (claim_.compare_exchange_weak(c, c - (uint64_t{1} << 16), std::memory_order_acq_rel)) {
          run_ahead_chunk(static_cast<index_t>(end - 1));
          spins = 0;
        }
        continue;
      }
      // Every chunk is claimed: wait for the workers'. One descheduled mid-chunk holds the caller up for a
      // time slice of another process: a late partner (Contention), so the next jobs run on the caller alone.
      if (spins == 64) waiting = Clock::now();
      if (spins > 64 && (spins & 63) == 0 && !counted && Clock::now() - waiting > Contention::kLateAfter) {
        contention().late(Clock::now());
        counted = true;
      }
      if ((spins & 255) != 255) LSTMKIT_PAUSE();
      else std::this_thread::yield();
    }
    // A worker took part, on time: the job's time since posting counts as two-thread work (Contention::on_time),
    // up to kLateAfter, since a job joined long after it was posted (a stream stepped now and then) says little
    // about a partner's lateness.
    const Clock::time_point now = Clock::now();
    const Clock::time_point posted{Clock::duration(t.posted)};
    if (!counted && partner) contention().on_time(std::max(posted, now - Contention::kLateAfter), now);
    tl_in_parallel = outer;
    return true;
  }

  // fn(ctx, 0, n) on the calling thread, as a job the pool runs alone (LockstepProbes' other schedule).
  void run_here(index_t n, void (*fn)(void*, index_t, index_t), void* ctx) { serial(n, fn, ctx); }

  // Runs the pool's jobs on the threads of an OpenMP runtime loaded in the process (OpenMpTeam), or on
  // the pool's own threads again (enable false). Returns the runtime's path, or "" when none is loaded
  // or enable is false.
  std::string share_openmp_team(bool enable) {
    std::lock_guard<BusyFlag> job(busy_);  // waits for a running job
    const OpenMpTeam* team = nullptr;
    if (enable) {
      static const OpenMpTeam* found = [] {
        static OpenMpTeam t;
        if (!dl_iterate_phdr(&find_openmp, &t)) return static_cast<const OpenMpTeam*>(nullptr);
        return static_cast<const OpenMpTeam*>(&t);
      }();
      team = found;
    }
    if (team) stop_workers();  // they would only spin
    if (team != g_team.load(std::memory_order_relaxed)) {
      contention().reset();
      debt_ = Clock::duration::zero();
    }
    g_team.store(team, std::memory_order_release);
    return team ? team->path : std::string();
  }

 private:
  // The caller's part of a job, timed: when its own chunks were done and what one took; of: the job's chunks.
  struct CallerShare {
    Clock::time_point done;
    Clock::duration own{};
    uint64_t of = 0;
    uint64_t mine = 0;  // chunks the caller ran (of them all: no partner took part)
  };

  struct TeamCall {
    Pool* pool;
    const OpenMpTeam* team;
    Clock::time_point start;
    uint64_t chunks;
    CallerShare share;
  };

  static void team_body(void* p) {
    TeamCall& call = *static_cast<TeamCall*>(p);
    if (call.team->thread_num() == 0) {
      call.share = call.pool->run_as_caller(call.start, call.chunks);
      return call.pool->wait_for_workers(call.share);
    }
    const bool outer = tl_in_parallel;
    tl_in_parallel = true;
    call.pool->claim_chunks();
    tl_in_parallel = outer;
  }

  // The caller's chunks of a posted job: chunk 0, then whatever no worker has claimed.
  CallerShare run_as_caller(Clock::time_point start, uint64_t chunks) {
    tl_in_parallel = true;
    fn_(ctx_, 0, n_ / static_cast<index_t>(chunks));
    const uint64_t mine = 1 + claim_chunks();  // then what no worker has claimed
    tl_in_parallel = false;
    const Clock::time_point done = Clock::now();
    return {done, (done - start) / static_cast<int>(mine), chunks, mine};
  }

  // Waits for the chunks workers are running (every chunk but the caller's chunk 0 counts in done_). Yields
  // often: if the scheduler has put a worker on this core (it does after a wake-up), spinning here would keep
  // it from finishing.
  void wait_for_workers(const CallerShare& share) {
    for (unsigned spins = 0; done_.load(std::memory_order_acquire) + 1 != share.of; ++spins) {
      if ((spins & 255) != 255) LSTMKIT_PAUSE();
      else std::this_thread::yield();
    }
  }

  // The callers' debt (Contention) after a job, from `start`, whose workers the caller waited for from the end
  // of its own chunks until `now`.
  void settle_wait(Clock::time_point start, const CallerShare& share, Clock::time_point now, bool team = false) {
    const Clock::duration waited = now - share.done;
    if (Contention::is_late(debt_, waited, share.own, team ? Contention::kTeamLateAfter : Contention::kLateAfter)) {
      contention().late(now);
      debt_ = Clock::duration::zero();
    } else {
      debt_ = Contention::settle(debt_, waited, share.own);
      if (share.mine < share.of) contention().on_time(start, now);  // a partner took part, in time
    }
  }

  // Claims chunks of the current job and runs them until none is left (a worker's part, and the caller's
  // after its chunk 0); returns how many this thread ran.
  uint64_t claim_chunks() {
    uint64_t ran = 0;
    for (;;) {
      uint64_t c = claim_.load(std::memory_order_acquire);
      const uint64_t chunks = (c >> 16) & 0xffffu, next = c & 0xffffu;
      if (next >= chunks) break;
      if (claim_.compare_exchange_weak(c, c + 1, std::memory_order_acq_rel)) {
        if (ahead_.load(std::memory_order_relaxed)) {  // the claim's acquire makes the job's fields visible
          run_ahead_chunk(static_cast<index_t>(next));
        } else {
          run_chunk(static_cast<index_t>(next), static_cast<index_t>(chunks));
          done_.fetch_add(1, std::memory_order_acq_rel);
        }
        ++ran;
      }
    }
    return ran;
  }

  void run_chunk(index_t i, index_t chunks) {
    const index_t b = n_ * i / chunks, e = n_ * (i + 1) / chunks;
    if (e > b) fn_(ctx_, b, e);
  }

  // Chunk i of the ahead job; the thread finishing its last chunk ends the job and frees the pool.
  void run_ahead_chunk(index_t i) {
    const uint64_t chunks = ahead_chunks_.load(std::memory_order_relaxed);
    run_chunk(i, static_cast<index_t>(chunks));
    if (done_.fetch_add(1, std::memory_order_acq_rel) + 1 != chunks) return;
    const uint64_t serial = ahead_.load(std::memory_order_relaxed);
    ahead_.store(0, std::memory_order_relaxed);
    ahead_finished_.store(serial, std::memory_order_release);
    busy_.unlock();
  }

  void leave_caller_cpu() { leave_cpu(caller_cpu_.load(std::memory_order_relaxed)); }

  static void serial(index_t n, void (*fn)(void*, index_t, index_t), void* ctx) {
    if (n <= 0) return;
    const bool outer = tl_in_parallel;
    tl_in_parallel = true;
    fn(ctx, 0, n);
    tl_in_parallel = outer;
  }

  void start_workers(int count) {
    stop_workers();
    stop_ = false;
    // Each worker starts from the generation current now: the job about to be posted is new to it.
    const uint64_t now = generation_.load(std::memory_order_acquire);
    for (int w = 1; w <= count; ++w) workers_.emplace_back([this, w, now] { loop(w, now); });
  }

  void stop_workers() {
    if (workers_.empty()) return;
    {
      std::lock_guard<std::mutex> lk(m_);
      stop_ = true;
      generation_.fetch_add(1, std::memory_order_release);
    }
    cv_.notify_all();
    for (std::thread& t : workers_) t.join();
    workers_.clear();
  }

  void loop(int /*w*/, uint64_t seen) {
    tl_in_parallel = true;
    for (;;) {
      // Spin 2 ms for the next job (yielding now and then, in case the caller shares this core), then
      // sleep. Waking a sleeping thread costs 0.3–1 ms on the machines here, more than a whole small
      // sequence, and back-to-back calls from Python come 50–300 µs apart, so the spin must outlast
      // that gap (OpenMP and ONNX Runtime spin for milliseconds too). Yield rarely: a yield costs
      // microseconds here, and a worker that reacts later than the caller finishes its own chunk
      // finds every chunk taken.
      const auto until = Clock::now() + std::chrono::microseconds(2000);
      unsigned spins = 0;
      while (generation_.load(std::memory_order_acquire) == seen) {
        LSTMKIT_PAUSE();
        if ((++spins & 4095) == 0) std::this_thread::yield();
        if ((spins & 63) != 0) continue;
        // Sleep at once while the pool runs jobs alone (Contention): a spinning worker would only take
        // time from the caller, or from whatever else wants this core.
        const Clock::time_point now = Clock::now();
        if (now > until || contention().solo(now)) {
          {
            AwayFromCpu away(caller_cpu_.load(std::memory_order_relaxed));
            std::unique_lock<std::mutex> lk(m_);
            cv_.wait(lk, [&] { return generation_.load(std::memory_order_acquire) != seen; });
          }
          leave_caller_cpu();
          break;
        }
      }
      seen = generation_.load(std::memory_order_acquire);
      if (stop_) return;
      claim_chunks();
    }
  }

  std::atomic<int> wanted_{0};
  BusyFlag busy_;  // held by the job running on the pool
  std::vector<std::thread> workers_;
  std::mutex m_;
  std::condition_variable cv_;
  std::atomic<uint64_t> generation_{0};
  std::atomic<uint64_t> claim_{0};  // job id << 32 | chunks << 16 | next unclaimed chunk
  std::atomic<uint64_t> done_{0};   // chunks finished in the current job, but the caller's chunk 0
  uint64_t job_id_ = 0;
  // Ahead jobs (post_ahead): at most kAheadChunks chunks, a few per thread, so that the joiner can take a
  // share of what the workers have not started, each chunk still long beside its claim (a cache-line transfer).
  static constexpr index_t kAheadChunks = 64;
  uint64_t ahead_serial_ = 0;                // the last ahead job posted (its ticket's serial)
  std::atomic<uint64_t> ahead_{0};           // the ahead job running now, or 0 (a job of run())
  std::atomic<uint64_t> ahead_chunks_{0};    // its chunks
  std::atomic<uint64_t> ahead_finished_{0};  // the last ahead job done (serials rise)
  std::atomic<uint64_t> ahead_posted_{0};    // ahead jobs posted since the pool started (pool_stats)
  std::atomic<int> caller_cpu_{-1};          // CPU the caller posted the last job from
  Clock::duration debt_{};                   // the callers' debt (Contention), kept by the job's owner
  bool stop_ = false;
  void (*fn_)(void*, index_t, index_t) = nullptr;
  void* ctx_ = nullptr;
  index_t n_ = 0;
};

std::atomic<Pool*> g_pool{nullptr};

// A forked child has none of its parent's threads: its pool's workers, and its mutexes if a parent
// thread held one, are not there to join or unlock (set_num_threads hung in the child). The child
// therefore starts a fresh pool with the same thread count (the old one is left, never destroyed), and
// uses its own threads: an OpenMP runtime used before a fork may hang in the child.
void renew_probes_after_fork();

void renew_pool_after_fork() {
  Pool* old = g_pool.load(std::memory_order_relaxed);
  g_pool.store(new Pool(old ? old->wanted() : 0), std::memory_order_release);
  g_team.store(nullptr, std::memory_order_relaxed);
  // the same for every other object whose mutex a parent thread may have held at the fork (the child hung in
  // set_num_threads or its first call, 1 to 4 times in 150 forks beside a busy thread): the old ones are left
  contention_slot() = new Contention();
  renew_probes_after_fork();
}

Pool& pool() {
  static std::once_flag made;
  std::call_once(made, [] {
    g_pool.store(new Pool(), std::memory_order_release);  // never destroyed: workers must not be joined during
                                                          // interpreter exit
    pthread_atfork(nullptr, nullptr, &renew_pool_after_fork);
  });
  return *g_pool.load(std::memory_order_acquire);
}

// The state of one lockstep_pair_raw call (on the caller's stack; both threads are done with it
// when the pool's parallel_for returns).
// Part p of every step is its thread's (its weights stay in that core's cache), claimed through an
// atomic first, so that a thread whose partner is not running (asleep, or descheduled on a busy
// machine) takes the partner's part as well and the loop never stalls on it.
// The common case costs one cache-line transfer per step each way: each thread claims its own part on
// a line only it writes and announces it on its own `done` line, which the partner reads. A thread
// touches its partner's claim only to steal: eagerly while the partner has not shown up yet (a pool
// thread waking from sleep takes tens of µs) or has just been stolen from, otherwise only after
// waiting kPatience for it. Stealing on every step regardless would make both threads write
// both claim lines and bounce them between the cores at every step.
//
// A part the partner has claimed cannot be taken over (it updates state in place). When a thread's
// waits at the meetings have cost more than doing the partner's parts would have (Contention: its
// debt), it sets `solo`: the pool thread leaves at its next step, the caller runs every part from there
// on (the same fn calls a steal makes, so the same bits), and the pool runs the next jobs on the
// caller alone for a while.
struct Lockstep {
  // How long a thread waits for a partner that has not claimed its part before taking it: a running
  // partner claims its part as soon as the step before is complete, so a longer wait means it is away.
  static constexpr std::chrono::microseconds kPatience{30};

  index_t steps;
  void (*fn)(void*, index_t, int, int);
  void* ctx;
  int caller_cpu = -1;
  struct alignas(64) Counter {
    std::atomic<index_t> value{0};
  };
  Counter claimed[2];                         // steps of part p claimed (in order) by either thread
  Counter done[2];                            // steps of part p finished
  alignas(64) std::atomic<bool> solo{false};  // a partner was late: the caller finishes alone

  // A partner was late: the pool thread leaves at its next step, the caller finishes alone, and the pool
  // runs its next jobs on one thread for a while (Contention).
  void go_solo(Clock::time_point now) {
    solo.store(true, std::memory_order_relaxed);
    contention().late(now);
  }

  void alone() {
    for (index_t s = 0; s < steps; ++s) fn(ctx, s, 0, 2);
  }

  // Spins until both parts of step s − 1 are done, taking part q = 1 − p of step s − 1 when the
  // partner has not claimed it (at once when `eager` or `solo`, else after kPatience) and step s − 2
  // is complete (it reads what both parts of s − 2 wrote; a thread that has just jumped ahead in
  // part() has not waited for s − 2 itself). Returns false when the pool thread (p = 1) is to leave
  // (`solo`). `own`: how long this thread's own part took lately; `debt`: this thread's (Contention).
  bool wait_for_step(int p, index_t s, bool& eager, Clock::duration own, Clock::duration& debt) {
    const int q = 1 - p;
    Clock::time_point since{}, waiting{};  // read from the 64th spin on: most waits end before it
    for (unsigned spins = 1;; ++spins) {
      const index_t done_q = done[q].value.load(std::memory_order_acquire);
      const index_t done_p = done[p].value.load(std::memory_order_acquire);
      if (done_q >= s && done_p >= s) {
        const Clock::duration waited = spins > 64 ? Clock::now() - waiting : Clock::duration::zero();
        debt = Contention::settle(debt, waited, own);
        return true;
      }
      const bool solo_now = solo.load(std::memory_order_relaxed);
      if (solo_now && p == 1) return false;
      bool steal = eager || solo_now;
      if ((spins & 63) == 0) {
        const Clock::time_point now = Clock::now();
        if (spins == 64) {
          since = waiting = now;
        } else {
          if (!steal && now - since >= kPatience) steal = true, since = now;
          if (!solo_now && Contention::is_late(debt, now - waiting, own)) {
            go_solo(now);
            debt = Clock::duration::zero();
            waiting = now;
          }
        }
      }
      if (steal && done_q >= s - 1 && done_p >= s - 1) {
        index_t c = claimed[q].value.load(std::memory_order_relaxed);
        if (c == s - 1 && claimed[q].value.compare_exchange_strong(c, s, std::memory_order_acq_rel)) {
          // Taken after kPatience from a partner that had been keeping up: it was descheduled between
          // its parts. If it is the caller, only it can return the result: the loop waits for it
          // however the parts are shared, and two threads of ours on two cores shared with another
          // process make the scheduler move them about (measured: the caller landing on the busy core
          // at every other call). So that is a late partner too.
          if (!eager && !solo_now) go_solo(Clock::now());
          fn(ctx, s - 1, q, q + 1);
          done[q].value.store(s, std::memory_order_release);
          eager = true;  // the partner is probably still away
          spins = 0;     // running the part was no wait: time the rest afresh
          continue;
        }
        if (c >= s) eager = false;  // the partner is running its part: wait for it
      }
      if ((spins & 1023) == 0) std::this_thread::yield();  // the partner may share this core
      else LSTMKIT_PAUSE();
    }
  }

  void part(int p, bool eager) {
    Clock::duration own{};  // this thread's part, timed every 8th step (a clock read is ~20 ns)
    Clock::duration debt{};
    for (index_t s = 0; s < steps;) {
      if (s > 0 && !wait_for_step(p, s, eager, own, debt)) return;
      if (p == 1 && solo.load(std::memory_order_relaxed)) return;  // the caller finishes alone
      index_t expected = s;
      if (claimed[p].value.compare_exchange_strong(expected, s + 1, std::memory_order_acq_rel)) {
        const bool timed = (s & 7) == 0;
        const Clock::time_point t0 = timed ? Clock::now() : Clock::time_point{};
        fn(ctx, s, p, p + 1);
        if (timed) own = Clock::now() - t0;
        done[p].value.store(s + 1, std::memory_order_release);
        ++s;
      } else {
        s = expected;  // the partner has claimed this part up to step `expected`: go on from there
      }
    }
    // The caller returns once both parts of the last step are done: the pool thread may have left
    // (`solo`) with its part of it unclaimed.
    if (p == 0) wait_for_step(p, steps, eager, own, debt);
  }

  static void chunk(void* self, index_t b, index_t e) {
    Lockstep& job = *static_cast<Lockstep*>(self);
    if (e - b == 2) return job.alone();  // the pool ran both parts here (one thread, busy, or solo)
    // The pool thread may arrive late (asleep, or on the caller's CPU): the caller starts eager.
    if (b == 1) leave_cpu(job.caller_cpu);  // two threads spinning on one CPU would take turns at every step
    job.part(static_cast<int>(b), b == 0);
  }
};

}  // namespace

namespace {

// The lockstep pair against the caller alone, per kind of loop (ScheduleProbe): a pair meets at every step,
// and in the VM's slow spells for cache-line handovers that made B=1 H=128 T=100 LSTM inference take 0.48 ms
// instead of 0.24 (one thread: ~0.33; bench_builds.py, fresh processes). Each kind of loop (its fn, one per
// cell and direction of the pass, and the caller's key: its sizes) keeps its own probe; a loop's time is
// counted per step, so calls of other lengths compare — from kLongLoop steps on; a shorter loop (a variant
// stream's one step) is a kind of its own per length, where the call's fixed costs would otherwise weigh
// unequally. A few dozen kinds at most are alive in a program; past kProbes the oldest is replaced (it starts
// again from the pair).
class LockstepProbes {
 public:
  static constexpr index_t kLongLoop = 16;
  bool split(uint64_t key) {
    std::lock_guard<std::mutex> lk(m_);
    return find(key).split();
  }
  void record(uint64_t key, Clock::duration per_step) {
    std::lock_guard<std::mutex> lk(m_);
    find(key).record(per_step);
  }
  void count_alone() { alone_.fetch_add(1, std::memory_order_relaxed); }
  uint64_t alone() const { return alone_.load(std::memory_order_relaxed); }
  // Forget every probe: the threads changed (their number, or torch's OpenMP team instead of ours), so what
  // was timed says nothing about the new ones.
  void reset() {
    std::lock_guard<std::mutex> lk(m_);
    entries_.clear();
  }

 private:
  static constexpr size_t kProbes = 64;
  ScheduleProbe& find(uint64_t key) {
    for (auto& e : entries_)
      if (e.first == key) return e.second;
    if (entries_.size() < kProbes) return entries_.emplace_back(key, ScheduleProbe{}).second;
    auto& e = entries_[next_++ % kProbes];
    e = {key, ScheduleProbe{}};
    return e.second;
  }
  std::mutex m_;
  std::vector<std::pair<uint64_t, ScheduleProbe>> entries_;
  size_t next_ = 0;
  std::atomic<uint64_t> alone_{0};
};

LockstepProbes*& lockstep_probes_slot() {
  static LockstepProbes* p = new LockstepProbes();  // never destroyed, like the pool
  return p;
}

LockstepProbes& lockstep_probes() { return *lockstep_probes_slot(); }

void renew_probes_after_fork() { lockstep_probes_slot() = new LockstepProbes(); }

}  // namespace

void lockstep_pair_raw(index_t steps, void (*fn)(void*, index_t, int, int), void* ctx, uint64_t key) {
  if (steps <= 0) return;
  Lockstep job;
  job.steps = steps;
  job.fn = fn;
  job.ctx = ctx;
#ifdef __linux__
  job.caller_cpu = sched_getcpu();
#endif
  if (!key || pool().threads() < 2 || in_parallel()) return pool().run(2, &Lockstep::chunk, &job);
  key ^= reinterpret_cast<uintptr_t>(fn) * 0x9e3779b97f4a7c15ull;  // the kind of loop, then its sizes
  if (steps < LockstepProbes::kLongLoop) key ^= static_cast<uint64_t>(steps) * 0xc2b2ae3d27d4eb4full;
  LockstepProbes& probes = lockstep_probes();
  const Clock::time_point start = Clock::now();
  if (probes.split(key)) {
    pool().run(2, &Lockstep::chunk, &job);
  } else {
    probes.count_alone();
    pool().run_here(2, &Lockstep::chunk, &job);  // both parts of every step here (Lockstep::alone): same bits
  }
  probes.record(key, (Clock::now() - start) / steps);
}

int num_threads() { return pool().threads(); }
void set_num_threads(int n) {
  pool().set_threads(n);
  lockstep_probes().reset();
}
bool in_parallel() { return tl_in_parallel; }
PoolStats pool_stats() {
  PoolStats st = contention().stats();
  st.probed_alone = lockstep_probes().alone();
  st.ahead_jobs = pool().ahead_jobs();
  return st;
}
void reset_schedule_probes() { lockstep_probes().reset(); }
void parallel_for_raw(index_t n, void (*fn)(void*, index_t, index_t), void* ctx) { pool().run(n, fn, ctx); }
AheadTicket post_ahead(index_t n, void (*fn)(void*, index_t, index_t), void* ctx) {
  return pool().post_ahead(n, fn, ctx);
}
bool join_ahead(const AheadTicket& t) { return pool().join_ahead(t); }
std::string share_openmp_team(bool enable) {
  std::string found = pool().share_openmp_team(enable);
  lockstep_probes().reset();
  return found;
}
std::string openmp_team() {
  const OpenMpTeam* team = g_team.load(std::memory_order_acquire);
  return team ? team->path : std::string();
}

}  // namespace lstmkit
