#include <gtest/gtest.h>

#include "gateway/circuit_breaker.h"
#include "gateway/retry_budget.h"

namespace flotilla::gateway {
namespace {

using State = CircuitBreaker::State;

TEST(CircuitBreakerTest, OpensAfterConsecutiveFailuresOnly) {
  FakeClock clock;
  CircuitBreaker cb({3, 2 * kNsPerSec, 60 * kNsPerSec});
  cb.RecordFailure(clock.Now());
  cb.RecordFailure(clock.Now());
  cb.RecordSuccess(clock.Now());  // resets the streak
  cb.RecordFailure(clock.Now());
  cb.RecordFailure(clock.Now());
  EXPECT_EQ(cb.state(clock.Now()), State::kClosed);
  EXPECT_TRUE(cb.Allow(clock.Now()));
  cb.RecordFailure(clock.Now());
  EXPECT_EQ(cb.state(clock.Now()), State::kOpen);
  EXPECT_FALSE(cb.Allow(clock.Now()));
  EXPECT_EQ(cb.ejections(), 1u);
}

TEST(CircuitBreakerTest, HalfOpenLetsExactlyOneProbe) {
  FakeClock clock;
  CircuitBreaker cb({1, 2 * kNsPerSec, 60 * kNsPerSec});
  cb.RecordFailure(clock.Now());
  clock.AdvanceMs(1999);
  EXPECT_FALSE(cb.Allow(clock.Now()));
  clock.AdvanceMs(1);
  EXPECT_EQ(cb.state(clock.Now()), State::kHalfOpen);
  EXPECT_TRUE(cb.WouldAllow(clock.Now()));
  EXPECT_TRUE(cb.Allow(clock.Now()));   // the probe
  EXPECT_FALSE(cb.Allow(clock.Now()));  // everyone else waits for it
  EXPECT_FALSE(cb.WouldAllow(clock.Now()));
  cb.RecordSuccess(clock.Now());
  EXPECT_EQ(cb.state(clock.Now()), State::kClosed);
  EXPECT_TRUE(cb.Allow(clock.Now()));
}

TEST(CircuitBreakerTest, FailedProbeDoublesEjectionUpToCap) {
  FakeClock clock;
  CircuitBreaker cb({1, 1 * kNsPerSec, 5 * kNsPerSec});
  cb.RecordFailure(clock.Now());
  TimeNs expected[] = {1, 2, 4, 5, 5};
  for (TimeNs e : expected) {
    EXPECT_EQ(cb.open_until() - clock.Now(), e * kNsPerSec);
    clock.Advance(e * kNsPerSec);
    ASSERT_TRUE(cb.Allow(clock.Now()));
    cb.RecordFailure(clock.Now());
  }
  // A success after the last ejection resets the back-off.
  clock.Advance(5 * kNsPerSec);
  ASSERT_TRUE(cb.Allow(clock.Now()));
  cb.RecordSuccess(clock.Now());
  cb.RecordFailure(clock.Now());
  EXPECT_EQ(cb.open_until() - clock.Now(), 1 * kNsPerSec);
}

TEST(CircuitBreakerTest, LateFailuresDoNotExtendEjection) {
  FakeClock clock;
  CircuitBreaker cb({1, 2 * kNsPerSec, 60 * kNsPerSec});
  cb.RecordFailure(clock.Now());
  const TimeNs until = cb.open_until();
  clock.AdvanceMs(500);
  cb.RecordFailure(clock.Now());  // a call that started before the ejection
  EXPECT_EQ(cb.open_until(), until);
}

TEST(CircuitBreakerTest, UnusedProbeIsReleased) {
  FakeClock clock;
  CircuitBreaker cb({1, kNsPerSec, 60 * kNsPerSec});
  cb.RecordFailure(clock.Now());
  clock.AdvanceSec(1);
  EXPECT_TRUE(cb.Allow(clock.Now()));
  cb.ReleaseProbe();
  EXPECT_TRUE(cb.Allow(clock.Now()));
}

TEST(RetryBudgetTest, FloorThenRatio) {
  FakeClock clock;
  RetryBudget b({0.2, 1, 10 * kNsPerSec});  // floor: 10 retries per window
  for (int i = 0; i < 10; ++i) EXPECT_TRUE(b.TryRetry(clock.Now()));
  EXPECT_FALSE(b.TryRetry(clock.Now()));
  for (int i = 0; i < 50; ++i) b.RecordRequest(clock.Now());  // +10 allowed
  for (int i = 0; i < 10; ++i) EXPECT_TRUE(b.TryRetry(clock.Now()));
  EXPECT_FALSE(b.TryRetry(clock.Now()));
  EXPECT_EQ(b.retries_in_window(clock.Now()), 20);
}

TEST(RetryBudgetTest, WindowSlides) {
  FakeClock clock;
  RetryBudget b({0.0, 0.5, 10 * kNsPerSec});  // 5 per window
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(b.TryRetry(clock.Now()));
  EXPECT_FALSE(b.TryRetry(clock.Now()));
  clock.AdvanceSec(5);
  EXPECT_FALSE(b.TryRetry(clock.Now()));
  clock.AdvanceSec(5.5);  // the first slot left the window
  EXPECT_TRUE(b.TryRetry(clock.Now()));
  EXPECT_EQ(b.retries_in_window(clock.Now()), 1);
}

}  // namespace
}  // namespace flotilla::gateway
