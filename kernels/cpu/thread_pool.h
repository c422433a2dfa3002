// A persistent pool for the engine's data-parallel kernels.
//
// One thread (the owner, e.g. the engine thread) calls Run(); it takes part as thread 0 and
// returns when every thread has finished. Inside Run() the threads may meet at Barrier() and
// share work through ForEach() (units claimed one at a time from an atomic counter), so a whole
// forward pass can be one parallel region with a barrier between dependent steps instead of
// dozens of fork/join rounds. Waiting threads spin for a while (the gaps inside a forward pass
// are microseconds) and then sleep on a futex, so an idle pool costs nothing and a pool whose
// peer was descheduled by a busy host does not burn its core for long.
//
// Run() is not reentrant and must only be called from one thread at a time. Barrier() and
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

  // How many barrier waits so far outlasted the spin window and slept: a sign that a peer thread
  // was descheduled (an oversubscribed host), since the steps between barriers are short.
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

  // Inside Run(): returns once every thread of the pool has called it.
  void Barrier() {
    if (n_threads_ > 1) BarrierImpl();
  }

  // Inside Run(): calls f(unit) for every unit in [0, units), each exactly once, on whichever
  // thread claims it first, then meets at a barrier. Which thread computes a unit must not
  // matter to the result (it never does for the kernels here: each unit's arithmetic is fixed).
  template <class F>
  void ForEach(int tid, int64_t units, F&& f) {
    if (n_threads_ == 1) {
      for (int64_t u = 0; u < units; ++u) f(u);
      return;
    }
    // Two counters alternate: the one the next ForEach uses is reset here, while nobody can be
    // using it (everyone has passed the barrier that ended the ForEach before this one, and
    // nobody can start the next one before thread 0 reaches this one's barrier). Each thread
    // counts its own ForEach calls; all agree because all make the same calls.
    int64_t& index = queue_index_[tid].v;
    std::atomic<int64_t>& next = queue_[index & 1].v;
    if (tid == 0) queue_[(index + 1) & 1].v.store(0, std::memory_order_relaxed);
    ++index;
    for (int64_t u; (u = next.fetch_add(1, std::memory_order_relaxed)) < units;) f(u);
    BarrierImpl();
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
  void WorkerLoop(int tid);
  void BarrierImpl();

  struct alignas(64) PaddedCounter {
    std::atomic<int64_t> v{0};
  };
  struct alignas(64) PaddedIndex {
    int64_t v = 0;
  };

  const int n_threads_;
  std::vector<std::thread> workers_;
  // Bumped once per Run(); workers run the task when they see a new value.
  alignas(64) std::atomic<uint32_t> generation_{0};
  alignas(64) std::atomic<int> sleepers_{0};
  // Sense-reversing barrier: arrivals count up; the last one resets the count and bumps phase.
  alignas(64) std::atomic<uint32_t> bar_count_{0};
  alignas(64) std::atomic<uint32_t> bar_phase_{0};
  alignas(64) std::atomic<int> bar_sleepers_{0};
  std::atomic<uint64_t> slow_barriers_{0};
  PaddedCounter queue_[2];
  std::vector<PaddedIndex> queue_index_;  // per thread: ForEach calls made so far
  Fn fn_ = nullptr;
  void* ctx_ = nullptr;
  std::atomic<bool> stop_{false};
};

}  // namespace flotilla::kernels::cpu
