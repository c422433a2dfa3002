#include "model/thread_mode.h"

#include <gtest/gtest.h>

#include <array>

namespace flotilla {
namespace {

using Options = ThreadModeChooser::Options;
using Mode = ThreadModeChooser::Mode;

// Runs `passes` passes through the chooser, each taking pool_ns or solo_ns by the mode it chose;
// returns how many ran alone.
int Drive(ThreadModeChooser& c, int passes, int64_t pool_ns, int64_t solo_ns) {
  int solo = 0;
  for (int i = 0; i < passes; ++i) {
    const bool alone = c.mode() == Mode::kSolo;
    solo += alone;
    c.Record(alone ? solo_ns : pool_ns);
  }
  return solo;
}

// The same with three modes, each pass taking ns[mode]; returns the passes per mode.
std::array<int, 3> Drive3(ThreadModeChooser& c, int passes, std::array<int64_t, 3> ns) {
  std::array<int, 3> ran{};
  for (int i = 0; i < passes; ++i) {
    const int m = static_cast<int>(c.mode());
    ++ran[m];
    c.Record(ns[m]);
  }
  return ran;
}

TEST(ThreadModeChooser, LongPassesNeverRunAlone) {
  ThreadModeChooser c(Options{.window = 4, .explore_every = 16, .short_pass_ns = 500'000});
  EXPECT_EQ(Drive(c, 200, 2'000'000, 1'000), 0);
  EXPECT_EQ(c.median_ns(Mode::kPool), 2'000'000);
  EXPECT_EQ(c.median_ns(Mode::kSolo), 0) << "solo was never measured";
}

TEST(ThreadModeChooser, ShortPassesRunAloneWhenThatIsFaster) {
  ThreadModeChooser c(Options{.window = 4, .explore_every = 100, .short_pass_ns = 500'000});
  // 4 pool passes measure the pool, 4 solo passes measure solo, then solo is kept.
  EXPECT_EQ(Drive(c, 8, 40'000, 30'000), 4);
  EXPECT_EQ(c.median_ns(Mode::kPool), 40'000);
  EXPECT_EQ(c.median_ns(Mode::kSolo), 30'000);
  EXPECT_EQ(Drive(c, 100, 40'000, 30'000), 100);
  // Then both are measured again: 4 on the pool, 4 alone, and solo kept.
  EXPECT_EQ(Drive(c, 8, 40'000, 30'000), 4);
  EXPECT_TRUE(c.mode() == Mode::kSolo);
}

TEST(ThreadModeChooser, ShortPassesStayOnThePoolWhenItIsFaster) {
  ThreadModeChooser c(Options{.window = 4, .explore_every = 100, .short_pass_ns = 500'000});
  EXPECT_EQ(Drive(c, 8, 20'000, 38'000), 4);
  EXPECT_FALSE(c.mode() == Mode::kSolo);
  EXPECT_EQ(Drive(c, 100, 20'000, 38'000), 0);
}

TEST(ThreadModeChooser, SoloMustWinByTheMargin) {
  ThreadModeChooser c(Options{.window = 4, .explore_every = 100, .short_pass_ns = 500'000, .margin = 0.95});
  Drive(c, 8, 40'000, 39'000);  // 2.5 % faster alone: not enough
  EXPECT_FALSE(c.mode() == Mode::kSolo);
}

TEST(ThreadModeChooser, FollowsTheHostWhenTheFasterModeChanges) {
  ThreadModeChooser c(Options{.window = 4, .explore_every = 50, .short_pass_ns = 500'000});
  Drive(c, 8, 40'000, 30'000);
  ASSERT_TRUE(c.mode() == Mode::kSolo);
  // The host now places the threads well: the pool is twice as fast. After the settled
  // stretch, re-measurement moves back to the pool.
  Drive(c, 50 + 8, 15'000, 30'000);
  EXPECT_FALSE(c.mode() == Mode::kSolo);
  EXPECT_EQ(c.median_ns(Mode::kPool), 15'000);
}

TEST(ThreadModeChooser, MedianIgnoresOutliers) {
  ThreadModeChooser c(Options{.window = 5, .explore_every = 100, .short_pass_ns = 500'000});
  // One pool pass hit a page fault (10 ms): the median still says the pool is short.
  for (int64_t ns : {10'000'000, 40'000, 41'000, 39'000, 40'000}) {
    ASSERT_FALSE(c.mode() == Mode::kSolo);
    c.Record(ns);
  }
  EXPECT_EQ(c.median_ns(Mode::kPool), 40'000);
  EXPECT_TRUE(c.mode() == Mode::kSolo) << "a short pool median measures solo next";
}

constexpr Options kThree{.window = 4, .explore_every = 100, .short_pass_ns = 500'000};

TEST(ThreadModeChooser, ThreeModesMeasuredInTurnAndTheFastestKept) {
  ThreadModeChooser c(kThree, {Mode::kReplicate, Mode::kSolo});
  // Pool, then replicated, then alone, 4 passes each; replicated is the fastest.
  EXPECT_EQ(Drive3(c, 12, {40'000, 25'000, 30'000}), (std::array<int, 3>{4, 4, 4}));
  EXPECT_EQ(c.mode(), Mode::kReplicate);
  EXPECT_EQ(c.median_ns(Mode::kReplicate), 25'000);
  EXPECT_EQ(Drive3(c, 100, {40'000, 25'000, 30'000}), (std::array<int, 3>{0, 100, 0}));
  // The host moves the threads apart: alone is now the fastest, found at the next measurement.
  EXPECT_EQ(Drive3(c, 12, {60'000, 45'000, 30'000}), (std::array<int, 3>{4, 4, 4}));
  EXPECT_EQ(c.mode(), Mode::kSolo);
}

TEST(ThreadModeChooser, ThreeModesStayOnThePoolUnlessAnotherWinsByTheMargin) {
  ThreadModeChooser c(kThree, {Mode::kReplicate, Mode::kSolo});
  Drive3(c, 12, {40'000, 39'000, 45'000});  // replicated 2.5 % faster: not enough
  EXPECT_EQ(c.mode(), Mode::kPool);
  ThreadModeChooser fast(kThree, {Mode::kReplicate, Mode::kSolo});
  Drive3(fast, 12, {20'000, 25'000, 30'000});
  EXPECT_EQ(fast.mode(), Mode::kPool);
}

TEST(ThreadModeChooser, WithoutAlternativesAlwaysThePool) {
  ThreadModeChooser c(kThree, {});
  EXPECT_EQ(Drive3(c, 50, {40'000, 1'000, 1'000}), (std::array<int, 3>{50, 0, 0}));
  EXPECT_EQ(c.median_ns(Mode::kPool), 40'000);
}

TEST(ThreadModeChooser, LongPassesTryNoOtherMode) {
  ThreadModeChooser c(kThree, {Mode::kReplicate, Mode::kSolo});
  EXPECT_EQ(Drive3(c, 200, {2'000'000, 1'000, 1'000}), (std::array<int, 3>{200, 0, 0}));
}

}  // namespace
}  // namespace flotilla
