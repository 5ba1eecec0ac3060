// The kernels' thread pool: std::thread workers that spin briefly between jobs (a sequence's steps
// come microseconds apart) and then sleep on a condition variable. One job at a time: a second caller
// (another Python thread, the GIL being released) runs its work serially instead of waiting.
#include <sched.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

#include "common.h"

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

// Linux wakes a sleeping thread on its waker's CPU and may leave it there for milliseconds, so the
// caller and this worker would share one core while another sits idle. When this thread runs on
// `cpu` (the caller's), hop once to the other CPUs of the affinity mask (then restore the mask:
// nothing stays pinned).
void leave_cpu(int cpu) {
#ifdef __linux__
  const int here = sched_getcpu();
  if (here < 0 || here != cpu) return;
  cpu_set_t mask, others;
  if (sched_getaffinity(0, sizeof mask, &mask) != 0) return;
  others = mask;
  CPU_CLR(cpu, &others);
  if (CPU_COUNT(&others) == 0) return;
  if (sched_setaffinity(0, sizeof others, &others) == 0) sched_setaffinity(0, sizeof mask, &mask);
#else
  (void)cpu;
#endif
}

class Pool {
 public:
  ~Pool() { stop_workers(); }

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
    std::lock_guard<std::mutex> job(busy_);  // waits for a running job
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
    std::unique_lock<std::mutex> job(busy_, std::try_to_lock);
    if (!job.owns_lock()) return serial(n, fn, ctx);
    if (static_cast<int>(workers_.size()) != threads_now - 1) start_workers(threads_now - 1);
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
    {
      std::lock_guard<std::mutex> lk(m_);
      generation_.fetch_add(1, std::memory_order_release);
    }
    cv_.notify_all();
    tl_in_parallel = true;
    fn(ctx, 0, n / static_cast<index_t>(chunks));
    uint64_t mine = 1;
    for (;;) {  // claim what is left
      uint64_t c = claim_.load(std::memory_order_acquire);
      const uint64_t next = c & 0xffffu;
      if (next >= chunks) break;
      if (claim_.compare_exchange_weak(c, c + 1, std::memory_order_acq_rel)) {
        run_chunk(static_cast<index_t>(next), static_cast<index_t>(chunks));
        ++mine;
      }
    }
    tl_in_parallel = false;
    // Wait for the chunks workers are running. Yield often: if the scheduler has put a worker on this
    // core (it does after a wake-up), spinning here would keep it from finishing.
    for (unsigned spins = 0; done_.load(std::memory_order_acquire) + mine != chunks; ++spins) {
      if ((spins & 255) == 255) std::this_thread::yield();
      else LSTMKIT_PAUSE();
    }
  }

 private:
  void run_chunk(index_t i, index_t chunks) {
    const index_t b = n_ * i / chunks, e = n_ * (i + 1) / chunks;
    if (e > b) fn_(ctx_, b, e);
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
      // Spin about 100 µs for the next job (yielding now and then, in case the caller shares this
      // core), then sleep. Rarely: a yield costs microseconds here, and a worker that reacts later
      // than the caller finishes its own chunk finds every chunk taken (B=1 H=128: per-step splits
      // of ~2 µs ran on the caller alone with a yield every 256 spins, 0.55 ms; 0.45 ms now).
      const auto until = std::chrono::steady_clock::now() + std::chrono::microseconds(100);
      unsigned spins = 0;
      while (generation_.load(std::memory_order_acquire) == seen) {
        LSTMKIT_PAUSE();
        if ((++spins & 4095) == 0) std::this_thread::yield();
        if ((spins & 63) == 0 && std::chrono::steady_clock::now() > until) {
          {
            std::unique_lock<std::mutex> lk(m_);
            cv_.wait(lk, [&] { return generation_.load(std::memory_order_acquire) != seen; });
          }
          leave_caller_cpu();
          break;
        }
      }
      seen = generation_.load(std::memory_order_acquire);
      if (stop_) return;
      for (;;) {  // claim chunks of the current job, if any are left
        uint64_t c = claim_.load(std::memory_order_acquire);
        const uint64_t chunks = (c >> 16) & 0xffffu, next = c & 0xffffu;
        if (next >= chunks) break;
        if (claim_.compare_exchange_weak(c, c + 1, std::memory_order_acq_rel)) {
          run_chunk(static_cast<index_t>(next), static_cast<index_t>(chunks));
          done_.fetch_add(1, std::memory_order_acq_rel);
        }
      }
    }
  }

  std::atomic<int> wanted_{0};
  std::mutex busy_;  // held by the job running on the pool
  std::vector<std::thread> workers_;
  std::mutex m_;
  std::condition_variable cv_;
  std::atomic<uint64_t> generation_{0};
  std::atomic<uint64_t> claim_{0};  // job id << 32 | chunks << 16 | next unclaimed chunk
  std::atomic<uint64_t> done_{0};   // chunks finished by workers in the current job
  uint64_t job_id_ = 0;
  std::atomic<int> caller_cpu_{-1};  // CPU the caller posted the last job from
  bool stop_ = false;
  void (*fn_)(void*, index_t, index_t) = nullptr;
  void* ctx_ = nullptr;
  index_t n_ = 0;
};

Pool& pool() {
  static Pool* p = new Pool();  // never destroyed: workers must not be joined during interpreter exit
  return *p;
}

// The state of one lockstep_pair_raw call (on the caller's stack; both threads are done with it
// when the pool's parallel_for returns).
// Part p of every step is its thread's by preference (its weights stay in that core's cache), but it is
// claimed through an atomic first: a thread that has finished its part of a step takes the other part
// too when the other thread has not started it (descheduled on a busy machine), so a late thread
// costs at most its share of one step and never stalls the loop.
struct Lockstep {
  index_t steps;
  void (*fn)(void*, index_t, int, int);
  void* ctx;
  int caller_cpu = -1;
  struct alignas(64) Part {
    std::atomic<index_t> claimed{0};  // steps of this part claimed (in order) by either thread
    std::atomic<index_t> done{0};     // steps of this part finished
  } parts[2];

  void alone() {
    for (index_t s = 0; s < steps; ++s) fn(ctx, s, 0, 2);
  }

  // Runs part p of step s unless the other thread has claimed it.
  void run_if_unclaimed(int p, index_t s) {
    index_t expected = s;
    if (!parts[p].claimed.compare_exchange_strong(expected, s + 1, std::memory_order_acq_rel)) return;
    fn(ctx, s, p, p + 1);
    parts[p].done.store(s + 1, std::memory_order_release);
  }

  void part(int p) {
    for (index_t s = 0; s < steps; ++s) {
      // Step s reads what both parts of step s − 1 wrote.
      for (unsigned spins = 1; parts[0].done.load(std::memory_order_acquire) < s ||
                               parts[1].done.load(std::memory_order_acquire) < s;
           ++spins) {
        if ((spins & 1023) == 0) std::this_thread::yield();  // the other thread may share this core
        else LSTMKIT_PAUSE();
      }
      run_if_unclaimed(p, s);
      run_if_unclaimed(1 - p, s);
    }
  }

  static void chunk(void* self, index_t b, index_t e) {
    Lockstep& job = *static_cast<Lockstep*>(self);
    if (e - b == 2) return job.alone();  // the pool ran both parts here (one thread, or busy)
    // A pool thread may arrive late (asleep, or on the caller's CPU): until it does, the caller takes
    // its part of every step as well.
    if (b == 1) leave_cpu(job.caller_cpu);  // two threads spinning on one CPU would take turns at every step
    job.part(static_cast<int>(b));
  }
};

}  // namespace

void lockstep_pair_raw(index_t steps, void (*fn)(void*, index_t, int, int), void* ctx) {
  if (steps <= 0) return;
  Lockstep job;
  job.steps = steps;
  job.fn = fn;
  job.ctx = ctx;
#ifdef __linux__
  job.caller_cpu = sched_getcpu();
#endif
  pool().run(2, &Lockstep::chunk, &job);
}

int num_threads() { return pool().threads(); }
void set_num_threads(int n) { pool().set_threads(n); }
bool in_parallel() { return tl_in_parallel; }
void parallel_for_raw(index_t n, void (*fn)(void*, index_t, index_t), void* ctx) { pool().run(n, fn, ctx); }

}  // namespace lstmkit
