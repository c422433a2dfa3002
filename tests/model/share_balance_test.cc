#include "model/share_balance.h"

#include <gtest/gtest.h>

namespace flotilla {
namespace {

// Passes where thread i takes ns_per_work[i] per unit of work for the share it was given.
void Drive(ShareBalance& b, int passes, const std::vector<double>& ns_per_work, double total_work = 1e6) {
  for (int p = 0; p < passes; ++p) {
    std::vector<double> work, busy;
    for (size_t i = 0; i < ns_per_work.size(); ++i) {
      work.push_back(total_work * b.fractions()[i]);
      busy.push_back(work.back() * ns_per_work[i]);
    }
    b.Record(work, busy);
  }
}

TEST(ShareBalance, EqualThreadsKeepEqualShares) {
  ShareBalance b(2);
  EXPECT_EQ(b.Begin(32, 0), 0);
  EXPECT_EQ(b.Begin(32, 1), 16);
  EXPECT_EQ(b.Begin(32, 2), 32);
  Drive(b, 50, {1.0, 1.0});
  EXPECT_NEAR(b.fractions()[0], 0.5, 1e-9);
  EXPECT_EQ(b.Begin(32, 1), 16);
  // The host's noise (each thread up to 6 % slower than the other, pass by pass) moves the
  // estimate but not the split.
  for (int p = 0; p < 200; ++p) {
    const double a = 1.0 + 0.06 * ((p * 7) % 5) / 4, c = 1.0 + 0.06 * ((p * 3) % 4) / 3;
    Drive(b, 1, {a, c});
    ASSERT_EQ(b.fractions()[0], 0.5) << "pass " << p << ", estimate " << b.estimate()[0];
  }
}

TEST(ShareBalance, AFasterThreadTakesMoreUntilBothFinishTogether) {
  ShareBalance b(2);
  // Thread 1 a third slower (37.7 against 50.3 tok/s alone): shares move to 0.57 / 0.43, where
  // both threads take the same time, in a few passes, not at once.
  Drive(b, 1, {1.0, 1.334});
  EXPECT_GT(b.fractions()[0], 0.5);
  EXPECT_LT(b.fractions()[0], 0.53) << "one pass moves the shares part of the way";
  Drive(b, 30, {1.0, 1.334});
  EXPECT_NEAR(b.fractions()[0], 1.334 / 2.334, 0.02 + 1e-9) << "within the deadband of the speeds' ratio";
  EXPECT_NEAR(b.estimate()[0], 1.334 / 2.334, 1e-3);
  EXPECT_EQ(b.Begin(32, 1), 18);
  // The host evens the cores out again: the shares follow.
  Drive(b, 40, {1.0, 1.0});
  EXPECT_NEAR(b.fractions()[0], 0.5, 0.02 + 1e-9);
}

TEST(ShareBalance, SharesStayWithinTheBounds) {
  ShareBalance b(2, ShareBalance::Options{.min_fraction = 0.5});
  Drive(b, 100, {1.0, 50.0});  // a thread 50x slower (descheduled) still keeps a quarter
  EXPECT_NEAR(b.fractions()[1], 0.25, 0.02 + 1e-9);
  EXPECT_NEAR(b.fractions()[0] + b.fractions()[1], 1.0, 1e-12);
}

TEST(ShareBalance, ShortOrEmptyPassesChangeNothing) {
  ShareBalance b(2);
  b.Record({100, 100}, {1'000, 3'000});  // 4 us in all: too short to say anything
  b.Record({1e6, 0}, {1e6, 0});          // thread 1 did nothing this pass
  b.Record({1e6}, {1e6});                // the wrong size
  EXPECT_EQ(b.fractions()[0], 0.5);
}

TEST(ShareBalance, RangesTileTheUnitsForAnyShares) {
  for (int n : {1, 2, 3, 5}) {
    ShareBalance b(n);
    std::vector<double> slowness;
    for (int i = 0; i < n; ++i) slowness.push_back(1.0 + 0.37 * i);
    Drive(b, 20, slowness);
    for (int64_t units : {1, 7, 32, 1000}) {
      EXPECT_EQ(b.Begin(units, 0), 0);
      EXPECT_EQ(b.Begin(units, n), units);
      for (int t = 0; t < n; ++t) EXPECT_LE(b.Begin(units, t), b.Begin(units, t + 1)) << n << " " << units << " " << t;
    }
  }
}

}  // namespace
}  // namespace flotilla
