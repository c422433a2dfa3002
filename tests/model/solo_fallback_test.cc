#include "model/solo_fallback.h"

#include <gtest/gtest.h>

namespace flotilla {
namespace {

// A host for `passes` one-token passes: on the pool each takes pool_ns with `slow` of 90
// barriers waiting past the spin window; alone each takes alone_ns. Returns the passes alone.
int Drive(SoloFallback& f, int passes, int64_t pool_ns, int64_t slow, int64_t alone_ns) {
  int alone = 0;
  for (int i = 0; i < passes; ++i) {
    if (f.alone()) {
      ++alone;
      f.RecordAlone(1, alone_ns);
    } else {
      f.RecordPool(1, pool_ns, slow, 90);
    }
  }
  return alone;
}

TEST(SoloFallback, OnTimeBarriersNeverRunAlone) {
  SoloFallback f;
  EXPECT_EQ(Drive(f, 500, 15'000'000, 0, 1'000), 0);
  EXPECT_EQ(f.trials(), 0);
}

TEST(SoloFallback, AFewSlowBarriersAreImbalanceNotALatePeer) {
  SoloFallback f;
  // At most max(2, 90 / 8) = 11 of 90 barriers slow: no trial.
  EXPECT_EQ(Drive(f, 500, 15'000'000, 11, 1'000), 0);
  EXPECT_EQ(f.trials(), 0);
}

TEST(SoloFallback, ALatePeerSendsPassesAloneWhenAloneIsFaster) {
  SoloFallback f(SoloFallback::Options{.trial = 4, .first_stretch = 16});
  // The peer is descheduled for whole slices: 30 ms on the pool, 18 ms alone. The first pass
  // starts a trial of 4 passes alone, which wins, then 16 more alone.
  EXPECT_TRUE(f.RecordPool(1, 30'000'000, 60, 90));
  EXPECT_TRUE(f.alone());
  for (int i = 0; i < 3; ++i) EXPECT_FALSE(f.RecordAlone(1, 18'000'000));
  EXPECT_TRUE(f.RecordAlone(1, 18'000'000)) << "the trial's last pass gives the verdict";
  EXPECT_EQ(f.trials_won(), 1);
  EXPECT_EQ(Drive(f, 16, 30'000'000, 60, 18'000'000), 16);
  EXPECT_FALSE(f.alone()) << "after the stretch the pool is tried again";
}

TEST(SoloFallback, ASlowButRunningPeerKeepsThePool) {
  SoloFallback f(SoloFallback::Options{.trial = 4, .first_stretch = 16});
  // One vCPU 1.5x slower: 15 ms a pass on the pool with 48 of 90 barriers slow, 17.5 ms alone.
  // A trial of 4 passes alone loses; the pool stays and its slow barriers are ignored for 16
  // passes; then another trial, which loses again, and 32 passes on the pool.
  EXPECT_EQ(Drive(f, 1 + 4, 15'000'000, 48, 17'500'000), 4);
  EXPECT_FALSE(f.alone());
  EXPECT_EQ(f.trials(), 1);
  EXPECT_EQ(f.trials_won(), 0);
  EXPECT_EQ(Drive(f, 16, 15'000'000, 48, 17'500'000), 0);
  EXPECT_EQ(Drive(f, 1 + 4 + 32, 15'000'000, 48, 17'500'000), 4);
  EXPECT_EQ(f.trials(), 2);
  // Over 1000 passes alone runs only its trials (4 of every 5 + 2^k passes).
  const int alone = Drive(f, 1000, 15'000'000, 48, 17'500'000);
  EXPECT_LE(alone, 4 * 5);
  EXPECT_EQ(f.trials_won(), 0);
}

TEST(SoloFallback, AloneMustWinByTheMargin) {
  SoloFallback f(SoloFallback::Options{.trial = 4, .margin = 0.95});
  Drive(f, 5, 20'000'000, 60, 19'500'000);  // 2.5 % faster alone: not enough
  EXPECT_EQ(f.trials(), 1);
  EXPECT_EQ(f.trials_won(), 0);
  EXPECT_FALSE(f.alone());
}

TEST(SoloFallback, StretchesDoubleWhileTheVerdictHoldsAndResetAfterACleanPass) {
  SoloFallback f(SoloFallback::Options{.trial = 4, .first_stretch = 16, .max_stretch = 64});
  auto stretch = [&] {  // one slow pool pass, its trial (won), then the stretch's length
    Drive(f, 1 + 4, 30'000'000, 60, 18'000'000);
    int n = 0;
    while (f.alone()) {
      f.RecordAlone(1, 18'000'000);
      ++n;
    }
    return n;
  };
  EXPECT_EQ(stretch(), 16);
  EXPECT_EQ(stretch(), 32);
  EXPECT_EQ(stretch(), 64);
  EXPECT_EQ(stretch(), 64) << "capped";
  Drive(f, 1, 10'000'000, 0, 0);  // the peer is back: a pass with no slow barrier
  EXPECT_EQ(stretch(), 16);
}

TEST(SoloFallback, OnlyPassesOfTheSameSizeAreCompared) {
  SoloFallback f(SoloFallback::Options{.trial = 2});
  // A 128-token prompt on the pool with a late peer (0.25 ms a token), then one-token decode
  // passes alone (18 ms): nothing to compare them with, so the pool runs again...
  EXPECT_TRUE(f.RecordPool(128, 32'000'000, 60, 90));
  f.RecordAlone(1, 18'000'000);
  EXPECT_FALSE(f.RecordAlone(1, 18'000'000));
  EXPECT_FALSE(f.alone());
  EXPECT_EQ(f.trials_won(), 0);
  // ...and its next late decode pass (30 ms) starts a trial that alone wins.
  EXPECT_TRUE(f.RecordPool(1, 30'000'000, 60, 90));
  f.RecordAlone(1, 18'000'000);
  EXPECT_TRUE(f.RecordAlone(1, 18'000'000));
  EXPECT_TRUE(f.alone());
}

TEST(SoloFallback, MixedSizesCompareTheSizesBothSidesRan) {
  SoloFallback f(SoloFallback::Options{.trial = 3, .history = 4});
  // On the pool: batches of 16 (1 ms a token) and of 4 (5 ms a token, the last one late).
  f.RecordPool(16, 16'000'000, 0, 90);
  f.RecordPool(4, 20'000'000, 0, 90);
  EXPECT_TRUE(f.RecordPool(4, 20'000'000, 60, 90));
  // Alone: a batch of 4 at 3 ms a token and two of 2 at 20 ms a token (no pool pass of 2 to
  // compare them with). Against the pool's batches of 4 alone wins; the batches of 2 and of 16,
  // which would have said the opposite per token, are left out.
  f.RecordAlone(4, 12'000'000);
  f.RecordAlone(2, 40'000'000);
  EXPECT_TRUE(f.RecordAlone(2, 40'000'000));
  EXPECT_TRUE(f.alone());
}

TEST(SoloFallback, ATrialComparesWithThePoolPassesSinceTheLastTrial) {
  SoloFallback f(SoloFallback::Options{.trial = 1, .history = 4, .first_stretch = 1});
  // A trial at 30 ms a pass on the pool that alone (18 ms) wins; the stretch of 1 ends.
  Drive(f, 1 + 1 + 1, 30'000'000, 60, 18'000'000);
  ASSERT_EQ(f.trials_won(), 1);
  ASSERT_FALSE(f.alone());
  // The host recovers: the pool now takes 10 ms even with slow barriers. The next trial
  // compares with that pass only, not with the 30 ms passes before the last trial: alone loses.
  EXPECT_TRUE(f.RecordPool(1, 10'000'000, 60, 90));
  EXPECT_FALSE(f.RecordAlone(1, 18'000'000));
  EXPECT_FALSE(f.alone());
  EXPECT_EQ(f.trials_won(), 1);
}

}  // namespace
}  // namespace flotilla
