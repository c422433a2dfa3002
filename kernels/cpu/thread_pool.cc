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

// A barrier's sleeping waiter re-checks its signal at least this often (see BarrierImpl).
constexpr auto kBarrierNap = std::chrono::milliseconds(1);

// Plain futex calls: they sleep only while the word still holds `expected`, so a wake that
// races with going to sleep is never lost (given the sleepers protocol below); `timeout`, when
// not zero, bounds the sleep.
void FutexWait(std::atomic<uint32_t>* word, uint32_t expected, std::chrono::nanoseconds timeout = {}) {
  const timespec ts{static_cast<time_t>(timeout.count() / 1000000000), static_cast<long>(timeout.count() % 1000000000)};
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAIT_PRIVATE, expected, timeout.count() ? &ts : nullptr,
          nullptr, 0);
}
void FutexWakeAll(std::atomic<uint32_t>* word) {
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAKE_PRIVATE, INT_MAX, nullptr, nullptr, 0);
}

// Spins until done(*word), then sleeps on the word until then; `sleepers` lets the waker skip
// the syscall when nobody sleeps. The seq_cst increment pairs with the waker's seq_cst store then
// load: either the waker sees the sleeper, or the sleeper's futex check sees the new value.
// Returns the word's last value; *slept tells whether the wait outlasted `spin`. A non-zero `nap`
// bounds each sleep, for wakers that check `sleepers` without that ordering.
template <class Duration, class Done>
uint32_t WaitUntil(std::atomic<uint32_t>& word, std::atomic<int>& sleepers, Duration spin, Done done,
                   bool* slept = nullptr, std::chrono::nanoseconds nap = {}) {
  uint32_t v;
  int spins = 0;
  auto until = std::chrono::steady_clock::time_point::min();
  while (!done(v = word.load(std::memory_order_acquire))) {
    _mm_pause();
    if (++spins % 64 != 0) continue;
    const auto now = std::chrono::steady_clock::now();
    if (until == std::chrono::steady_clock::time_point::min()) {
      until = now + spin;
    } else if (now > until) {
      if (slept) *slept = true;
      sleepers.fetch_add(1);
      FutexWait(&word, v, nap);
      sleepers.fetch_sub(1);
    }
  }
  return v;
}

}  // namespace

ThreadPool::ThreadPool(int n_threads)
    : n_threads_(n_threads < 1 ? 1 : n_threads), shares_(n_threads_), foreach_calls_(n_threads_) {
  while ((1 << rounds_) < n_threads_) ++rounds_;
  signals_ = std::vector<Signal>(static_cast<size_t>(n_threads_) * rounds_);
  bar_number_ = std::vector<PaddedIndex>(n_threads_);
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
  // seq_cst pairs with the worker's sleepers_ increment (see WaitUntil).
  generation_.fetch_add(1);
  if (sleepers_.load() > 0) FutexWakeAll(&generation_);
  fn(ctx, 0, n_threads_);
  // The end of a Run is a barrier: when it opens, every worker has finished fn.
  BarrierImpl(0);
}

void ThreadPool::BarrierImpl(int tid) {
  const uint32_t e = static_cast<uint32_t>(++bar_number_[tid].v);
  bool slept = false;
  for (int r = 0; r < rounds_; ++r) {
    Signal& mine = signals_[static_cast<size_t>(tid) * rounds_ + r];
    // A release store, not seq_cst: a seq_cst store (a locked instruction on x86) would wait for
    // the line to cross to this core before the load below could start, two crossings in a row
    // instead of two at once (2-thread barrier 250-330 -> 350 ns). Without it the sleepers check
    // may read a stale 0 just as the peer goes to sleep; the peer's sleep is then bounded by
    // kBarrierNap, and sleeping happens only after kBarrierSpin of waiting (a descheduled thread).
    mine.value.store(e, std::memory_order_release);
    if (mine.sleepers.load(std::memory_order_relaxed) > 0) FutexWakeAll(&mine.value);
    const int from = (tid - (1 << r) + n_threads_) % n_threads_;
    Signal& theirs = signals_[static_cast<size_t>(from) * rounds_ + r];
    // Signals only grow (modulo 2^32): a peer may already be a barrier further on.
    WaitUntil(theirs.value, theirs.sleepers, kBarrierSpin, [e](uint32_t v) { return static_cast<int32_t>(v - e) >= 0; },
              &slept, kBarrierNap);
  }
  if (slept) slow_barriers_.fetch_add(1, std::memory_order_relaxed);
}

void ThreadPool::WorkerLoop(int tid) {
  // Not generation_.load(): a worker that starts late must still run the first task.
  uint32_t seen = 0;
  for (;;) {
    seen = WaitUntil(generation_, sleepers_, kIdleSpin, [seen](uint32_t v) { return v != seen; });
    if (stop_.load()) return;
    fn_(ctx_, tid, n_threads_);
    BarrierImpl(tid);
  }
}

}  // namespace flotilla::kernels::cpu
