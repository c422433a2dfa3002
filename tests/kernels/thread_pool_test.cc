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
  // 5 and 7: thread counts that are not powers of two take the dissemination rounds' wrap-around.
  for (int n : {1, 2, 3, 4, 5, 7}) {
    ThreadPool pool(n);
    std::vector<std::atomic<int>> slot(n);
    std::atomic<int> errors{0};
    // Fewer steps once the threads outnumber the cores: each barrier then waits for descheduled peers.
    const int steps = n <= 2 ? 2000 : 200;
    pool.Run([&](int tid, int nt) {
      for (int step = 1; step <= steps; ++step) {
        slot[tid].store(step, std::memory_order_relaxed);
        pool.Barrier(tid);
        for (int i = 0; i < nt; ++i) {
          if (slot[i].load(std::memory_order_relaxed) != step) errors.fetch_add(1);
        }
        pool.Barrier(tid);
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

// Each thread takes its own contiguous share in order, front first; with both threads present,
// thread 0's units (as long as it took them from its own share) are 0, 1, 2, ... in order.
TEST(ThreadPool, ForEachTakesOwnShareInOrder) {
  ThreadPool pool(2);
  for (int run = 0; run < 200; ++run) {
    const int64_t units = 40;
    std::vector<int64_t> order[2];
    std::vector<std::atomic<int>> seen(units);
    pool.Run([&](int tid, int) { pool.ForEach(tid, units, [&](int64_t u) { order[tid].push_back(u), seen[u].fetch_add(1); }); });
    for (int64_t u = 0; u < units; ++u) ASSERT_EQ(seen[u].load(), 1) << "unit " << u;
    for (int tid = 0; tid < 2; ++tid) {
      // Own units first, ascending from the share's start; any stolen ones after, descending.
      const int64_t start = units * tid / 2, end = units * (tid + 1) / 2;
      size_t i = 0;
      for (; i < order[tid].size() && order[tid][i] >= start && order[tid][i] < end; ++i) {
        ASSERT_EQ(order[tid][i], start + static_cast<int64_t>(i)) << "thread " << tid << " run " << run;
      }
      for (size_t j = i + 1; j < order[tid].size(); ++j) ASSERT_LT(order[tid][j], order[tid][j - 1]) << "thread " << tid;
    }
  }
}

// A thread that reaches ForEach late (descheduled) has its share done by the others: here thread
// 1 arrives only once thread 0 has run every unit, and finds nothing left.
TEST(ThreadPool, ForEachSharesOfALateThreadAreTaken) {
  for (int n : {2, 3}) {
    ThreadPool pool(n);
    for (int run = 0; run < 20; ++run) {
      const int64_t units = 30;
      std::atomic<int64_t> done{0};
      std::vector<std::atomic<int>> by(n);
      pool.Run([&](int tid, int) {
        if (tid != 0) {
          while (done.load() < units) std::this_thread::yield();
        }
        pool.ForEach(tid, units, [&](int64_t) { by[tid].fetch_add(1), done.fetch_add(1); });
      });
      EXPECT_EQ(by[0].load(), units) << n << " threads, run " << run;
      EXPECT_EQ(done.load(), units);
    }
  }
}

TEST(ThreadPool, BarrierWorksAfterSleeping) {
  for (int n : {2, 3}) {
    ThreadPool pool(n);
    std::atomic<int> passed{0};
    for (int round = 0; round < 3; ++round) {
      pool.Run([&](int tid, int nt) {
        // One thread arrives long after the spin window, so the others sleep on the futex.
        if (tid == round % nt) std::this_thread::sleep_for(std::chrono::milliseconds(5));
        pool.Barrier(tid);
        passed.fetch_add(1);
      });
    }
    EXPECT_EQ(passed.load(), 3 * n) << n << " threads";
    EXPECT_GE(pool.slow_barriers(), 1u) << n << " threads";
  }
}

}  // namespace
}  // namespace flotilla::kernels::cpu
