#include "model/thread_mode.h"

#include <gtest/gtest.h>

namespace flotilla {
namespace {

using Options = ThreadModeChooser::Options;

// Runs `passes` passes through the chooser, each taking pool_ns or solo_ns by the mode it chose;
// returns how many ran alone.
int Drive(ThreadModeChooser& c, int passes, int64_t pool_ns, int64_t solo_ns) {
  int solo = 0;
  for (int i = 0; i < passes; ++i) {
    const bool alone = c.Solo();
    solo += alone;
    c.Record(alone ? solo_ns : pool_ns);
  }
  return solo;
}

TEST(ThreadModeChooser, LongPassesNeverRunAlone) {
  ThreadModeChooser c(Options{.window = 4, .explore_every = 16, .short_pass_ns = 500'000});
  EXPECT_EQ(Drive(c, 200, 2'000'000, 1'000), 0);
  EXPECT_EQ(c.pool_median_ns(), 2'000'000);
  EXPECT_EQ(c.solo_median_ns(), 0) << "solo was never measured";
}

TEST(ThreadModeChooser, ShortPassesRunAloneWhenThatIsFaster) {
  ThreadModeChooser c(Options{.window = 4, .explore_every = 100, .short_pass_ns = 500'000});
  // 4 pool passes measure the pool, 4 solo passes measure solo, then solo is kept.
  EXPECT_EQ(Drive(c, 8, 40'000, 30'000), 4);
  EXPECT_EQ(c.pool_median_ns(), 40'000);
  EXPECT_EQ(c.solo_median_ns(), 30'000);
  EXPECT_EQ(Drive(c, 100, 40'000, 30'000), 100);
  // Then both are measured again: 4 on the pool, 4 alone, and solo kept.
  EXPECT_EQ(Drive(c, 8, 40'000, 30'000), 4);
  EXPECT_TRUE(c.Solo());
}

TEST(ThreadModeChooser, ShortPassesStayOnThePoolWhenItIsFaster) {
  ThreadModeChooser c(Options{.window = 4, .explore_every = 100, .short_pass_ns = 500'000});
  EXPECT_EQ(Drive(c, 8, 20'000, 38'000), 4);
  EXPECT_FALSE(c.Solo());
  EXPECT_EQ(Drive(c, 100, 20'000, 38'000), 0);
}

TEST(ThreadModeChooser, SoloMustWinByTheMargin) {
  ThreadModeChooser c(Options{.window = 4, .explore_every = 100, .short_pass_ns = 500'000, .solo_margin = 0.95});
  Drive(c, 8, 40'000, 39'000);  // 2.5 % faster alone: not enough
  EXPECT_FALSE(c.Solo());
}

TEST(ThreadModeChooser, FollowsTheHostWhenTheFasterModeChanges) {
  ThreadModeChooser c(Options{.window = 4, .explore_every = 50, .short_pass_ns = 500'000});
  Drive(c, 8, 40'000, 30'000);
  ASSERT_TRUE(c.Solo());
  // The host now places the threads well: the pool is twice as fast. After the settled
  // stretch, re-measurement moves back to the pool.
  Drive(c, 50 + 8, 15'000, 30'000);
  EXPECT_FALSE(c.Solo());
  EXPECT_EQ(c.pool_median_ns(), 15'000);
}

TEST(ThreadModeChooser, MedianIgnoresOutliers) {
  ThreadModeChooser c(Options{.window = 5, .explore_every = 100, .short_pass_ns = 500'000});
  // One pool pass hit a page fault (10 ms): the median still says the pool is short.
  for (int64_t ns : {10'000'000, 40'000, 41'000, 39'000, 40'000}) {
    ASSERT_FALSE(c.Solo());
    c.Record(ns);
  }
  EXPECT_EQ(c.pool_median_ns(), 40'000);
  EXPECT_TRUE(c.Solo()) << "a short pool median measures solo next";
}

}  // namespace
}  // namespace flotilla
