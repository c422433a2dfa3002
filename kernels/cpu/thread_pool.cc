#include "kernels/cpu/thread_pool.h"

#include <immintrin.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <chrono>
#include <climits>

namespace flotilla::kernels::cpu {
namespace {

// How long an idle worker spins before sleeping. Long enough to cover the gaps between the
// steps of an engine loop, short enough that an idle engine does not burn a core.
constexpr auto kIdleSpin = std::chrono::microseconds(300);
// How long a thread waits at a barrier before sleeping: a phase of a forward pass is at most a
// few milliseconds; a peer that takes longer was most likely descheduled by a busy host, and
// then sleeping gives the core back to it.
constexpr auto kBarrierSpin = std::chrono::microseconds(200);

// Plain futex calls: they sleep only while the word still holds `expected`, so a wake that
// races with going to sleep is never lost.
void FutexWait(std::atomic<uint32_t>* word, uint32_t expected) {
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAIT_PRIVATE, expected, nullptr, nullptr, 0);
}
void FutexWakeAll(std::atomic<uint32_t>* word) {
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAKE_PRIVATE, INT_MAX, nullptr, nullptr, 0);
}

// Spins until *word != seen, then sleeps on it; `sleepers` lets the waker skip the syscall when
// nobody sleeps. The seq_cst increment pairs with the waker's seq_cst store then load: either
// the waker sees the sleeper, or the sleeper's futex check sees the new value.
template <class Duration>
uint32_t WaitForChange(std::atomic<uint32_t>& word, uint32_t seen, std::atomic<int>& sleepers, Duration spin,
                       std::atomic<uint64_t>* slept = nullptr) {
  uint32_t v;
  int spins = 0;
  bool counted = false;
  auto until = std::chrono::steady_clock::time_point::min();
  while ((v = word.load(std::memory_order_acquire)) == seen) {
    _mm_pause();
    if (++spins % 64 != 0) continue;
    const auto now = std::chrono::steady_clock::now();
    if (until == std::chrono::steady_clock::time_point::min()) {
      until = now + spin;
    } else if (now > until) {
      if (slept && !counted) slept->fetch_add(1, std::memory_order_relaxed);
      counted = true;
      sleepers.fetch_add(1);
      FutexWait(&word, seen);
      sleepers.fetch_sub(1);
    }
  }
  return v;
}

}  // namespace

ThreadPool::ThreadPool(int n_threads) : n_threads_(n_threads < 1 ? 1 : n_threads), shares_(n_threads_), foreach_calls_(n_threads_) {
  for (int i = 1; i < n_threads_; ++i) workers_.emplace_back([this, i] { WorkerLoop(i); });
}

ThreadPool::~ThreadPool() {
  stop_.store(true);
  generation_.fetch_add(1);
  FutexWakeAll(&generation_);
  for (auto& t : workers_) t.join();
}

namespace {
uint64_t PackShare(uint64_t tag, int64_t front, int64_t back) {
  return tag << 48 | static_cast<uint64_t>(front) << 24 | static_cast<uint64_t>(back);
}
}  // namespace

// Every thread sets up every share that is not yet set up for this call, the same values from
// whichever thread: a thread late to the call (descheduled) has its share taken by the others
// meanwhile. No share can still be in use by the previous call: every thread passed its barrier.
uint64_t ThreadPool::BeginShares(int tid, int64_t units) {
  const uint64_t tag = static_cast<uint64_t>(++foreach_calls_[tid].v) & 0xFFFF;
  for (int i = 0; i < n_threads_; ++i) {
    std::atomic<uint64_t>& share = shares_[i].v;
    uint64_t cur = share.load(std::memory_order_relaxed);
    if (cur >> 48 != tag) {
      share.compare_exchange_strong(cur, PackShare(tag, units * i / n_threads_, units * (i + 1) / n_threads_),
                                    std::memory_order_relaxed);
    }
  }
  return tag;
}

// The next unit of `victim`'s share, from the front (its owner) or the back (another thread);
// -1 once the share is empty.
int64_t ThreadPool::TakeUnit(uint64_t tag, int victim, bool front) {
  std::atomic<uint64_t>& share = shares_[victim].v;
  uint64_t cur = share.load(std::memory_order_relaxed);
  for (;;) {
    const int64_t f = static_cast<int64_t>(cur >> 24 & 0xFFFFFF), b = static_cast<int64_t>(cur & 0xFFFFFF);
    if (cur >> 48 != tag || f >= b) return -1;
    if (share.compare_exchange_weak(cur, front ? PackShare(tag, f + 1, b) : PackShare(tag, f, b - 1),
                                    std::memory_order_relaxed)) {
      return front ? f : b - 1;
    }
  }
}

void ThreadPool::RunImpl(Fn fn, void* ctx) {
  fn_ = fn;
  ctx_ = ctx;
  // seq_cst pairs with the worker's sleepers_ increment (see WaitForChange).
  generation_.fetch_add(1);
  if (sleepers_.load() > 0) FutexWakeAll(&generation_);
  fn(ctx, 0, n_threads_);
  // The end of a Run is a barrier: when it opens, every worker has finished fn.
  BarrierImpl();
}

void ThreadPool::BarrierImpl() {
  const uint32_t phase = bar_phase_.load(std::memory_order_acquire);
  if (bar_count_.fetch_add(1, std::memory_order_acq_rel) == static_cast<uint32_t>(n_threads_ - 1)) {
    bar_count_.store(0, std::memory_order_relaxed);
    bar_phase_.store(phase + 1);  // seq_cst, then the sleepers check
    if (bar_sleepers_.load() > 0) FutexWakeAll(&bar_phase_);
    return;
  }
  WaitForChange(bar_phase_, phase, bar_sleepers_, kBarrierSpin, &slow_barriers_);
}

void ThreadPool::WorkerLoop(int tid) {
  // Not generation_.load(): a worker that starts late must still run the first task.
  uint32_t seen = 0;
  for (;;) {
    seen = WaitForChange(generation_, seen, sleepers_, kIdleSpin);
    if (stop_.load()) return;
    fn_(ctx_, tid, n_threads_);
    BarrierImpl();
  }
}

}  // namespace flotilla::kernels::cpu
