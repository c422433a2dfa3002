// A persistent pool for the engine's data-parallel kernels.
//
// One thread (the owner, e.g. the engine thread) calls Run(); it takes part as thread 0 and
// returns when every thread has finished. Workers spin briefly between calls (a forward pass
// issues dozens of calls microseconds apart) and then sleep on a futex, so an idle pool costs
// nothing. Run() is not reentrant and must only be called from one thread at a time.
#pragma once

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

  // Calls f(tid, n_threads) on every thread and waits for all of them.
  template <class F>
  void Run(F&& f) {
    if (n_threads_ == 1) {
      f(0, 1);
      return;
    }
    RunImpl(&Trampoline<F>, &f);
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

  const int n_threads_;
  std::vector<std::thread> workers_;
  // Bumped once per Run(); workers run the task when they see a new value.
  alignas(64) std::atomic<uint32_t> generation_{0};
  alignas(64) std::atomic<int> pending_{0};
  alignas(64) std::atomic<int> sleepers_{0};
  Fn fn_ = nullptr;
  void* ctx_ = nullptr;
  std::atomic<bool> stop_{false};
};

}  // namespace flotilla::kernels::cpu
