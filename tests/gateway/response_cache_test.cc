#include "gateway/response_cache.h"

#include <gtest/gtest.h>

namespace flotilla::gateway {
namespace {

TEST(ResponseCacheTest, HitMissAndTtl) {
  FakeClock clock;
  ResponseCache c({1 << 20, 1 << 16, 10 * kNsPerSec});
  EXPECT_FALSE(c.Get("k", clock.Now()).has_value());
  c.Put("k", "value", clock.Now());
  EXPECT_EQ(*c.Get("k", clock.Now()), "value");
  clock.AdvanceSec(9.9);
  EXPECT_TRUE(c.Get("k", clock.Now()).has_value());
  clock.AdvanceSec(0.1);
  EXPECT_FALSE(c.Get("k", clock.Now()).has_value());
  EXPECT_EQ(c.entries(), 0u);
  EXPECT_EQ(c.bytes(), 0u);
}

TEST(ResponseCacheTest, BoundedBytesEvictsLeastRecentlyUsed) {
  FakeClock clock;
  // Each entry costs key (2) + value (100) + 64 = 166 bytes; 500 bytes hold 3.
  ResponseCache c({500, 1000, 100 * kNsPerSec});
  std::string v(100, 'x');
  c.Put("k1", v, clock.Now());
  c.Put("k2", v, clock.Now());
  c.Put("k3", v, clock.Now());
  EXPECT_TRUE(c.Get("k1", clock.Now()).has_value());  // k1 is now the most recent
  c.Put("k4", v, clock.Now());
  EXPECT_FALSE(c.Get("k2", clock.Now()).has_value());
  EXPECT_TRUE(c.Get("k1", clock.Now()).has_value());
  EXPECT_TRUE(c.Get("k3", clock.Now()).has_value());
  EXPECT_TRUE(c.Get("k4", clock.Now()).has_value());
  EXPECT_LE(c.bytes(), 500u);
  EXPECT_EQ(c.evictions(), 1);
}

TEST(ResponseCacheTest, OversizedEntriesAreNotCached) {
  FakeClock clock;
  ResponseCache c({1 << 20, 10, 100 * kNsPerSec});
  c.Put("k", std::string(11, 'x'), clock.Now());
  EXPECT_EQ(c.entries(), 0u);
}

TEST(ResponseCacheTest, ReplaceKeepsAccountingExact) {
  FakeClock clock;
  ResponseCache c({1 << 20, 1 << 16, 100 * kNsPerSec});
  c.Put("k", "aaaa", clock.Now());
  c.Put("k", "bb", clock.Now());
  EXPECT_EQ(*c.Get("k", clock.Now()), "bb");
  EXPECT_EQ(c.entries(), 1u);
  EXPECT_EQ(c.bytes(), 1u + 2u + 64u);
}

}  // namespace
}  // namespace flotilla::gateway
