// A persistent pool for the engine's data-parallel kernels.
//
// One thread (the owner, e.g. the engine thread) calls Run(); it takes part as thread 0 and
// returns when every thread has finished. Inside Run() the threads may meet at Barrier() and
// share work through ForEach() (each thread its own run of units first, then others'), so a whole
// forward pass can be one parallel region with a barrier between dependent steps instead of
// dozens of fork/join rounds. Waiting threads spin for a while (the gaps inside a forward pass
// are microseconds) and then sleep on a futex, so an idle pool costs nothing and a pool whose
// peer was descheduled by a busy host does not burn its core for long.
//
// Run() is not reentrant and must only be called from one thread at a time. Barrier(tid) and
// ForEach() must be called by every thread of the current Run(), in the same order.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <thread>
#include <vector>

namespace flotilla::kernels::cpu {

class ThreadPool {
 public:
  // n_threads counts the calling thread; 1 means no workers.
  explicit ThreadPool(int n_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return n_threads_; }

  // How many barriers so far some thread waited at past the spin window (counted once per thread and
  // barrier): a sign that a peer thread was descheduled (an oversubscribed host), since the steps
  // between barriers are short.
  // Read by the owner thread between Run() calls.
  uint64_t slow_barriers() const { return slow_barriers_.load(std::memory_order_relaxed); }

  // Calls f(tid, n_threads) on every thread and waits for all of them.
  template <class F>
  void Run(F&& f) {
    if (n_threads_ == 1) {
      f(0, 1);
      return;
    }
    RunImpl(&Trampoline<F>, &f);
  }

  // Inside Run(): returns once every thread of the pool has called it; tid is the caller's.
  void Barrier(int tid) {
    if (n_threads_ > 1) BarrierImpl(tid);
  }

  // Inside Run(): calls f(unit) for every unit in [0, units), each exactly once, then meets at a
  // barrier. Each thread owns a contiguous share, [units * tid / n, units * (tid + 1) / n), and
  // takes its units from the front in order; once its share is done it takes single units from
  // the back of the other threads' shares. So a thread's units are one run of consecutive rows
  // (one weight stream, which its prefetches and the hardware's follow: handing out units
  // round-robin from one counter instead made 110M Q8_0 batches 1.2-1.3x slower), while a
  // thread slowed or descheduled by the host still has its share finished by the others. Which
  // thread computes a unit must not matter to the result (it never does for the kernels here:
  // each unit's arithmetic is fixed).
  template <class F>
  void ForEach(int tid, int64_t units, F&& f) {
    if (n_threads_ == 1 || units > kMaxShareUnits) {
      // (More units than a share word holds: contiguous static ranges.)
      for (int64_t u = units * tid / n_threads_; u < units * (tid + 1) / n_threads_; ++u) f(u);
      Barrier(tid);
      return;
    }
    const uint64_t tag = BeginShares(tid, units);
    for (int64_t u; (u = TakeUnit(tag, tid, /*front=*/true)) >= 0;) f(u);
    for (int k = 1; k < n_threads_; ++k) {
      for (int64_t u; (u = TakeUnit(tag, (tid + k) % n_threads_, /*front=*/false)) >= 0;) f(u);
    }
    BarrierImpl(tid);
  }

  // Splits [0, n) into one contiguous range per thread, each a multiple of `align`
  // (except the last), and calls f(begin, end) on each non-empty range.
  template <class F>
  void ParallelFor(int64_t n, int64_t align, F&& f) {
    if (n_threads_ == 1 || n <= align) {
      if (n > 0) f(int64_t{0}, n);
      return;
    }
    Run([&](int tid, int nt) {
      const int64_t units = (n + align - 1) / align;
      const int64_t b = units * tid / nt * align;
      const int64_t e = std::min<int64_t>(n, units * (tid + 1) / nt * align);
      if (b < e) f(b, e);
    });
  }

 private:
  using Fn = void (*)(void* ctx, int tid, int n_threads);
  template <class F>
  static void Trampoline(void* ctx, int tid, int n) {
    (*static_cast<F*>(ctx))(tid, n);
  }
  void RunImpl(Fn fn, void* ctx);
  // ForEach's shares: one word per thread, (call tag:16, front:24, back:24), so that the
  // owner's claims from the front and a thief's from the back are compare-and-swaps on the same
  // word and no unit is taken twice. The tag (the ForEach call count, the same on every thread)
  // tells a share set up for this call from one left over from the last.
  static constexpr int64_t kMaxShareUnits = (int64_t{1} << 24) - 1;
  uint64_t BeginShares(int tid, int64_t units);
  int64_t TakeUnit(uint64_t tag, int victim, bool front);
  void WorkerLoop(int tid);
  void BarrierImpl(int tid);

  struct alignas(64) PaddedIndex {
    int64_t v = 0;
  };

  const int n_threads_;
  std::vector<std::thread> workers_;
  // Bumped once per Run(); workers run the task when they see a new value.
  alignas(64) std::atomic<uint32_t> generation_{0};
  alignas(64) std::atomic<int> sleepers_{0};
  // Dissemination barrier: in round r of barrier number e, thread i sets its round-r signal to e
  // and waits until thread (i - 2^r) mod n has set its own to e; after ceil(log2 n) rounds every
  // thread has heard, directly or through others, from all. Each signal has one writer and one
  // reader and its own cache line, so a 2-thread barrier is one line crossing each way at the
  // same time. (A shared arrival counter plus a release flag puts three crossings in a row on the
  // last arrival's path: ~1.2-2x the time on this project's VMs.) Signals only grow (barrier
  // numbers), so nothing is reset between barriers.
  struct alignas(64) Signal {
    std::atomic<uint32_t> value{0};
    std::atomic<int> sleepers{0};
  };
  int rounds_ = 0;
  std::vector<Signal> signals_;           // [thread][round]
  std::vector<PaddedIndex> bar_number_;   // per thread: barriers passed so far
  std::atomic<uint64_t> slow_barriers_{0};
  struct alignas(64) PaddedShare {
    std::atomic<uint64_t> v{0};
  };
  std::vector<PaddedShare> shares_;       // per thread: its ForEach share
  std::vector<PaddedIndex> foreach_calls_;  // per thread: ForEach calls made so far
  Fn fn_ = nullptr;
  void* ctx_ = nullptr;
  std::atomic<bool> stop_{false};
};

}  // namespace flotilla::kernels::cpu
