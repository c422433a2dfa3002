// The Redis rate limiter against a real redis-server started on a free port.
#include "gateway/redis_rate_limiter.h"

#include <gtest/gtest.h>

#include <atomic>
#include <future>

#include "tests/gateway/process_util.h"

namespace flotilla::gateway {
namespace {

using namespace std::chrono_literals;
using testing::FreePort;
using testing::Subprocess;
using testing::WaitFor;

class RedisRateLimiterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!testing::HaveExecutable("redis-server")) GTEST_FAIL() << "redis-server not installed (apt install redis-server)";
    dir_ = testing::MakeTempDir("flotilla-redis");
    port_ = FreePort();
    StartRedis();
  }
  void TearDown() override {
    redis_.Stop();
    testing::RemoveTree(dir_);
  }
  void StartRedis() {
    ASSERT_TRUE(redis_.Start({"redis-server", "--port", std::to_string(port_), "--bind", "127.0.0.1",
                              "--save", "", "--appendonly", "no", "--dir", dir_},
                             dir_ + "/redis.log"));
  }
  std::unique_ptr<RedisRateLimiter> Limiter() {
    RedisOptions o;
    o.port = port_;
    auto rl = std::make_unique<RedisRateLimiter>(o, std::make_unique<LocalRateLimiter>(SystemClock::Get()));
    EXPECT_TRUE(WaitFor([&] { return rl->connected(); }, 10s)) << testing::ReadFileOr(dir_ + "/redis.log");
    return rl;
  }
  static RateLimitDecision AcquireSync(RateLimiter& rl, const std::string& tenant, const TenantLimits& l, int64_t tokens) {
    std::promise<RateLimitDecision> p;
    rl.Acquire(tenant, l, tokens, [&](absl::Status st, RateLimitDecision d) {
      EXPECT_TRUE(st.ok());
      p.set_value(d);
    });
    return p.get_future().get();
  }

  std::string dir_;
  int port_ = 0;
  Subprocess redis_;
};

TEST_F(RedisRateLimiterTest, TwoReplicasShareOneRequestBucket) {
  auto a = Limiter();
  auto b = Limiter();
  TenantLimits l;
  l.requests_per_second = 0.1;  // refills one request per 10 s: nothing refills during the test
  l.request_burst = 6;
  int allowed = 0;
  RateLimitDecision last;
  for (int i = 0; i < 10; ++i) {
    RateLimitDecision d = AcquireSync(i % 2 ? *a : *b, "shared", l, 0);
    allowed += d.allowed;
    if (!d.allowed) last = d;
  }
  EXPECT_EQ(allowed, 6);
  EXPECT_EQ(last.limited_by, RateLimitDecision::Limit::kRequests);
  EXPECT_GT(last.retry_after_ms, 5000);
  EXPECT_LE(last.retry_after_ms, 10000);
  // Another tenant has its own bucket.
  EXPECT_TRUE(AcquireSync(*a, "other", l, 0).allowed);
  EXPECT_EQ(a->fallbacks() + b->fallbacks(), 0);
}

TEST_F(RedisRateLimiterTest, TokensTakenThenDebitedAcrossReplicas) {
  auto a = Limiter();
  auto b = Limiter();
  TenantLimits l;
  l.tokens_per_minute = 6;  // 0.1 token/s
  l.token_burst = 100;
  EXPECT_TRUE(AcquireSync(*a, "t", l, 60).allowed);
  b->Debit("t", l, 30);  // completion tokens reported by the other replica
  AcquireSync(*b, "barrier", TenantLimits{0.1, 1}, 0);  // b's queue is FIFO: the debit has landed
  // 10 left: 11 must be refused by either replica, 10 allowed.
  RateLimitDecision d = AcquireSync(*a, "t", l, 11);
  EXPECT_FALSE(d.allowed);
  EXPECT_EQ(d.limited_by, RateLimitDecision::Limit::kTokens);
  EXPECT_TRUE(AcquireSync(*b, "t", l, 10).allowed);
  EXPECT_FALSE(AcquireSync(*a, "t", l, 5).allowed);
  // Larger than the bucket: refused for good.
  EXPECT_EQ(AcquireSync(*a, "t", l, 101).retry_after_ms, -1);
}

TEST_F(RedisRateLimiterTest, ConcurrentAcquiresNeverOverAdmit) {
  auto a = Limiter();
  auto b = Limiter();
  TenantLimits l;
  l.requests_per_second = 0.01;
  l.request_burst = 50;
  std::atomic<int> allowed{0}, done{0};
  for (int i = 0; i < 400; ++i) {
    (i % 2 ? *a : *b).Acquire("burst", l, 0, [&](absl::Status st, RateLimitDecision d) {
      allowed += d.allowed;
      ++done;
    });
  }
  ASSERT_TRUE(WaitFor([&] { return done.load() == 400; }, 10s));
  EXPECT_EQ(allowed.load(), 50);
}

TEST_F(RedisRateLimiterTest, FallsBackWhenRedisIsDownAndReconnects) {
  auto a = Limiter();
  TenantLimits l;
  l.requests_per_second = 100;
  redis_.Kill();
  // Operations keep being answered (by the local fallback), never hang.
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(AcquireSync(*a, "t", l, 0).allowed);
  EXPECT_TRUE(WaitFor([&] { return !a->connected(); }, 5s));
  EXPECT_GT(a->fallbacks(), 0);
  StartRedis();
  EXPECT_TRUE(WaitFor([&] { return a->connected(); }, 10s));
  const int64_t before = a->fallbacks();
  EXPECT_TRUE(AcquireSync(*a, "t", l, 0).allowed);
  EXPECT_EQ(a->fallbacks(), before);
}

}  // namespace
}  // namespace flotilla::gateway
