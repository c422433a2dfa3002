#include "gateway/token_bucket.h"

#include <gtest/gtest.h>

#include "gateway/errors.h"
#include "gateway/rate_limiter.h"

namespace flotilla::gateway {
namespace {

TEST(TokenBucketTest, StartsFullAndRefillsAtRate) {
  FakeClock clock;
  TokenBucket b(/*rate=*/2, /*capacity=*/4, clock.Now());
  for (int i = 0; i < 4; ++i) EXPECT_TRUE(b.TryTake(1, clock.Now()));
  EXPECT_FALSE(b.TryTake(1, clock.Now()));
  EXPECT_EQ(b.TimeUntil(1, clock.Now()), kNsPerSec / 2);
  clock.AdvanceMs(499);
  EXPECT_FALSE(b.TryTake(1, clock.Now()));
  clock.AdvanceMs(1);
  EXPECT_TRUE(b.TryTake(1, clock.Now()));
  clock.AdvanceSec(100);  // refill is capped at capacity
  EXPECT_DOUBLE_EQ(b.Available(clock.Now()), 4);
}

TEST(TokenBucketTest, RefusalTakesNothing) {
  FakeClock clock;
  TokenBucket b(1, 10, clock.Now());
  EXPECT_TRUE(b.TryTake(7, clock.Now()));
  EXPECT_FALSE(b.TryTake(5, clock.Now()));
  EXPECT_DOUBLE_EQ(b.Available(clock.Now()), 3);
}

TEST(TokenBucketTest, DebitGoesNegativeAndDelaysLaterTakers) {
  FakeClock clock;
  TokenBucket b(10, 10, clock.Now());
  b.Debit(30, clock.Now());  // usage reconciled after the fact
  EXPECT_DOUBLE_EQ(b.Available(clock.Now()), -20);
  EXPECT_EQ(b.TimeUntil(1, clock.Now()), static_cast<TimeNs>(2.1 * kNsPerSec));
  clock.AdvanceSec(2.1);
  EXPECT_TRUE(b.TryTake(1, clock.Now()));
}

TEST(TokenBucketTest, CostAboveCapacityNeverFits) {
  FakeClock clock;
  TokenBucket b(100, 10, clock.Now());
  EXPECT_EQ(b.TimeUntil(11, clock.Now()), TokenBucket::kNever);
}

TEST(TokenBucketTest, ReconfigureKeepsBalanceWithinNewCapacity) {
  FakeClock clock;
  TokenBucket b(1, 10, clock.Now());
  b.TryTake(2, clock.Now());
  b.Reconfigure(5, 4, clock.Now());
  EXPECT_DOUBLE_EQ(b.Available(clock.Now()), 4);
  EXPECT_TRUE(b.TryTake(4, clock.Now()));
  clock.AdvanceMs(200);
  EXPECT_DOUBLE_EQ(b.Available(clock.Now()), 1);
}

TenantLimits Limits(double rps, double tpm) {
  TenantLimits l;
  l.requests_per_second = rps;
  l.tokens_per_minute = tpm;
  return l;
}

TEST(LocalRateLimiterTest, RequestsPerSecondWithRetryAfter) {
  FakeClock clock;
  LocalRateLimiter rl(&clock);
  TenantLimits l = Limits(2, 0);  // burst defaults to 2
  EXPECT_TRUE(rl.TryAcquire("a", l, 0).allowed);
  EXPECT_TRUE(rl.TryAcquire("a", l, 0).allowed);
  RateLimitDecision d = rl.TryAcquire("a", l, 0);
  EXPECT_FALSE(d.allowed);
  EXPECT_EQ(d.limited_by, RateLimitDecision::Limit::kRequests);
  EXPECT_EQ(d.retry_after_ms, 500);
  absl::Status st = RateLimitStatus(d, "a");
  EXPECT_EQ(st.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(RetryAfterMs(st), 500);
  EXPECT_EQ(ErrorReason(st), "rate_limit_requests");
  // Tenants are independent.
  EXPECT_TRUE(rl.TryAcquire("b", l, 0).allowed);
  clock.AdvanceMs(500);
  EXPECT_TRUE(rl.TryAcquire("a", l, 0).allowed);
}

TEST(LocalRateLimiterTest, TokensTakenAtAdmissionAndDebitedAfter) {
  FakeClock clock;
  LocalRateLimiter rl(&clock);
  TenantLimits l = Limits(0, 600);  // 10 tokens/s, bucket 600
  EXPECT_TRUE(rl.TryAcquire("t", l, 500).allowed);
  rl.Debit("t", l, 200);  // completion tokens: balance -100
  RateLimitDecision d = rl.TryAcquire("t", l, 50);
  EXPECT_FALSE(d.allowed);
  EXPECT_EQ(d.limited_by, RateLimitDecision::Limit::kTokens);
  EXPECT_EQ(d.retry_after_ms, 15000);  // (50 - (-100)) / 10 per second
  clock.AdvanceSec(15);
  EXPECT_TRUE(rl.TryAcquire("t", l, 50).allowed);
}

TEST(LocalRateLimiterTest, BothOrNeither) {
  FakeClock clock;
  LocalRateLimiter rl(&clock);
  TenantLimits l = Limits(10, 60);  // 1 token/s, 60 bucket
  EXPECT_FALSE(rl.TryAcquire("t", l, 61).allowed);  // larger than the bucket: never
  EXPECT_EQ(rl.TryAcquire("t", l, 61).retry_after_ms, -1);
  EXPECT_EQ(RateLimitStatus(rl.TryAcquire("t", l, 61), "t").code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(rl.TryAcquire("t", l, 60).allowed);
  for (int i = 0; i < 9; ++i) {
    // Refused on tokens: the request bucket must not be charged.
    EXPECT_FALSE(rl.TryAcquire("t", l, 1).allowed);
  }
  clock.AdvanceSec(1);
  EXPECT_TRUE(rl.TryAcquire("t", l, 1).allowed);
}

TEST(LocalRateLimiterTest, UnlimitedTenantIsNeverRefused) {
  FakeClock clock;
  LocalRateLimiter rl(&clock);
  for (int i = 0; i < 1000; ++i) EXPECT_TRUE(rl.TryAcquire("free", TenantLimits{}, 1'000'000).allowed);
}

TEST(ErrorsTest, HttpMappingAndRetryAfterHeader) {
  EXPECT_EQ(HttpStatusFor(absl::InvalidArgumentError("")), 400);
  EXPECT_EQ(HttpStatusFor(absl::UnauthenticatedError("")), 401);
  EXPECT_EQ(HttpStatusFor(absl::NotFoundError("")), 404);
  EXPECT_EQ(HttpStatusFor(absl::ResourceExhaustedError("")), 429);
  EXPECT_EQ(HttpStatusFor(absl::UnavailableError("")), 503);
  EXPECT_EQ(RetryAfterSeconds(1), "1");
  EXPECT_EQ(RetryAfterSeconds(1001), "2");
  EXPECT_FALSE(RetryAfterMs(absl::UnavailableError("x")).has_value());
}

}  // namespace
}  // namespace flotilla::gateway
