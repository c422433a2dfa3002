#include "kernels/cpu/thread_pool.h"

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace flotilla::kernels::cpu {
namespace {

TEST(ThreadPool, EveryThreadRunsEveryTask) {
  for (int n : {1, 2, 3, 8}) {
    ThreadPool pool(n);
    std::vector<std::atomic<int>> hits(n);
    for (int round = 0; round < 2000; ++round) {
      pool.Run([&](int tid, int nt) {
        ASSERT_EQ(nt, n);
        hits[tid].fetch_add(1);
      });
    }
    for (int i = 0; i < n; ++i) EXPECT_EQ(hits[i].load(), 2000) << "thread " << i << " of " << n;
  }
}

TEST(ThreadPool, FirstRunRightAfterConstructionIsNotLost) {
  // Regression: a worker that started after the first Run() once mistook that task for an old one.
  for (int i = 0; i < 500; ++i) {
    ThreadPool pool(2);
    std::atomic<int> ran{0};
    pool.Run([&](int, int) { ran.fetch_add(1); });
    EXPECT_EQ(ran.load(), 2);
  }
}

TEST(ThreadPool, WorkersWakeAfterSleeping) {
  ThreadPool pool(2);
  std::atomic<int> ran{0};
  for (int i = 0; i < 5; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));  // longer than the spin window
    pool.Run([&](int, int) { ran.fetch_add(1); });
  }
  EXPECT_EQ(ran.load(), 10);
}

TEST(ThreadPool, ParallelForCoversRangeOnceAligned) {
  ThreadPool pool(3);
  for (int64_t n : {0, 1, 3, 4, 5, 17, 100, 1001}) {
    std::vector<std::atomic<int>> seen(n);
    pool.ParallelFor(n, 4, [&](int64_t b, int64_t e) {
      EXPECT_EQ(b % 4, 0);
      for (int64_t i = b; i < e; ++i) seen[i].fetch_add(1);
    });
    for (int64_t i = 0; i < n; ++i) EXPECT_EQ(seen[i].load(), 1) << n << " " << i;
  }
}

TEST(ThreadPool, BarrierSeparatesSteps) {
  for (int n : {1, 2, 3, 4}) {
    ThreadPool pool(n);
    std::vector<std::atomic<int>> slot(n);
    std::atomic<int> errors{0};
    pool.Run([&](int tid, int nt) {
      for (int step = 1; step <= 2000; ++step) {
        slot[tid].store(step, std::memory_order_relaxed);
        pool.Barrier();
        for (int i = 0; i < nt; ++i) {
          if (slot[i].load(std::memory_order_relaxed) != step) errors.fetch_add(1);
        }
        pool.Barrier();
      }
    });
    EXPECT_EQ(errors.load(), 0) << n << " threads";
  }
}

TEST(ThreadPool, ForEachRunsEveryUnitOnceAcrossRuns) {
  for (int n : {1, 2, 3}) {
    ThreadPool pool(n);
    for (int run = 0; run < 50; ++run) {
      std::vector<std::vector<std::atomic<int>>> seen(7);
      for (int i = 0; i < 7; ++i) seen[i] = std::vector<std::atomic<int>>(i * 13 % 29);
      pool.Run([&](int tid, int) {
        for (int i = 0; i < 7; ++i) pool.ForEach(tid, static_cast<int64_t>(seen[i].size()), [&](int64_t u) { seen[i][u].fetch_add(1); });
      });
      for (int i = 0; i < 7; ++i)
        for (size_t u = 0; u < seen[i].size(); ++u) ASSERT_EQ(seen[i][u].load(), 1) << n << " threads, run " << run << " step " << i;
    }
  }
}

TEST(ThreadPool, BarrierWorksAfterSleeping) {
  ThreadPool pool(2);
  std::atomic<int> passed{0};
  pool.Run([&](int tid, int) {
    // Thread 1 arrives long after the spin window, so thread 0 sleeps on the futex.
    if (tid == 1) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    pool.Barrier();
    passed.fetch_add(1);
  });
  EXPECT_EQ(passed.load(), 2);
}

}  // namespace
}  // namespace flotilla::kernels::cpu
