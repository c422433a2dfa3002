#include "scheduler/block_pool.h"

#include <vector>

#include "gtest/gtest.h"

namespace flotilla::scheduler {
namespace {

BlockHash H(uint64_t x) { return BlockHash{x, ~x}; }

// Reference counts as the pool should have them, for CheckInvariants.
class Holders {
 public:
  explicit Holders(int n) : refs_(n, 0) {}
  int32_t Allocate(BlockPool& p) {
    const int32_t b = p.Allocate();
    if (b >= 0) ++refs_[b];
    return b;
  }
  void Ref(BlockPool& p, int32_t b) {
    p.Ref(b);
    ++refs_[b];
  }
  void Unref(BlockPool& p, int32_t b) {
    p.Unref(b);
    --refs_[b];
  }
  const std::vector<int>& refs() const { return refs_; }

 private:
  std::vector<int> refs_;
};

TEST(BlockPoolTest, FreshPoolHandsOutLowIdsAndRunsOut) {
  BlockPool pool(3);
  Holders h(3);
  EXPECT_EQ(pool.num_free(), 3);
  EXPECT_EQ(h.Allocate(pool), 0);
  EXPECT_EQ(h.Allocate(pool), 1);
  EXPECT_EQ(h.Allocate(pool), 2);
  EXPECT_EQ(pool.Allocate(), -1);
  EXPECT_EQ(pool.num_free(), 0);
  EXPECT_TRUE(pool.CheckInvariants(h.refs()).ok());
}

TEST(BlockPoolTest, ReferenceCountsKeepABlockUntilTheLastRelease) {
  BlockPool pool(2);
  Holders h(2);
  const int32_t b = h.Allocate(pool);
  ASSERT_TRUE(pool.Register(b, H(1)));
  h.Ref(pool, b);
  EXPECT_EQ(pool.ref_count(b), 2);
  h.Unref(pool, b);
  EXPECT_EQ(pool.ref_count(b), 1);
  EXPECT_EQ(pool.num_free(), 1);
  h.Unref(pool, b);
  EXPECT_EQ(pool.ref_count(b), 0);
  EXPECT_EQ(pool.num_free(), 2);
  EXPECT_EQ(pool.num_evictable(), 1);
  EXPECT_TRUE(pool.CheckInvariants(h.refs()).ok());
}

TEST(BlockPoolTest, UncachedBlocksGoBackToTheFreeList) {
  BlockPool pool(2);
  Holders h(2);
  const int32_t b = h.Allocate(pool);
  h.Unref(pool, b);
  EXPECT_EQ(pool.num_evictable(), 0);
  EXPECT_EQ(pool.num_free(), 2);
  EXPECT_TRUE(pool.CheckInvariants(h.refs()).ok());
}

TEST(BlockPoolTest, TakesTrulyFreeBlocksBeforeEvictingCachedOnes) {
  BlockPool pool(3);
  Holders h(3);
  const int32_t cached = h.Allocate(pool);
  ASSERT_TRUE(pool.Register(cached, H(7)));
  h.Unref(pool, cached);
  const int32_t a = h.Allocate(pool);
  const int32_t b = h.Allocate(pool);
  EXPECT_NE(a, cached);
  EXPECT_NE(b, cached);
  EXPECT_EQ(pool.Find(H(7)), cached);  // still cached
  EXPECT_EQ(h.Allocate(pool), cached);  // only now evicted
  EXPECT_EQ(pool.Find(H(7)), -1);
  EXPECT_FALSE(pool.is_cached(cached));
  EXPECT_TRUE(pool.CheckInvariants(h.refs()).ok());
}

TEST(BlockPoolTest, EvictsLeastRecentlyReleasedFirst) {
  BlockPool pool(4);
  Holders h(4);
  std::vector<int32_t> blocks;
  for (int i = 0; i < 4; ++i) {
    blocks.push_back(h.Allocate(pool));
    ASSERT_TRUE(pool.Register(blocks[i], H(100 + i)));
  }
  // Release order: 2, 0, 3, 1.
  for (int i : {2, 0, 3, 1}) h.Unref(pool, blocks[i]);
  ASSERT_EQ(pool.num_evictable(), 4);
  for (int i : {2, 0, 3, 1}) {
    EXPECT_EQ(h.Allocate(pool), blocks[i]);
    EXPECT_EQ(pool.Find(H(100 + i)), -1);
  }
  EXPECT_TRUE(pool.CheckInvariants(h.refs()).ok());
}

TEST(BlockPoolTest, AHitRevivesAnEvictableBlockAndRefreshesItsAge) {
  BlockPool pool(3);
  Holders h(3);
  std::vector<int32_t> blocks;
  for (int i = 0; i < 3; ++i) {
    blocks.push_back(h.Allocate(pool));
    ASSERT_TRUE(pool.Register(blocks[i], H(i)));
  }
  for (int i = 0; i < 3; ++i) h.Unref(pool, blocks[i]);
  // Hit block 0 (the oldest): it leaves the LRU list while in use.
  ASSERT_EQ(pool.Find(H(0)), blocks[0]);
  h.Ref(pool, blocks[0]);
  EXPECT_EQ(pool.num_free(), 2);
  EXPECT_TRUE(pool.CheckInvariants(h.refs()).ok());
  h.Unref(pool, blocks[0]);  // now the most recently used
  EXPECT_EQ(h.Allocate(pool), blocks[1]);
  EXPECT_EQ(h.Allocate(pool), blocks[2]);
  EXPECT_EQ(h.Allocate(pool), blocks[0]);
  EXPECT_TRUE(pool.CheckInvariants(h.refs()).ok());
}

TEST(BlockPoolTest, RegisterRefusesDuplicatesAndReregistration) {
  BlockPool pool(3);
  Holders h(3);
  const int32_t a = h.Allocate(pool);
  const int32_t b = h.Allocate(pool);
  EXPECT_TRUE(pool.Register(a, H(1)));
  EXPECT_FALSE(pool.Register(a, H(2)));  // a keeps its content
  EXPECT_FALSE(pool.Register(b, H(1)));  // same content already cached in a
  EXPECT_EQ(pool.Find(H(1)), a);
  EXPECT_EQ(pool.Find(H(2)), -1);
  EXPECT_FALSE(pool.is_cached(b));
  EXPECT_EQ(pool.num_cached(), 1);
  // b, uncached, is free again on release; a stays findable.
  h.Unref(pool, b);
  h.Unref(pool, a);
  EXPECT_EQ(pool.num_evictable(), 1);
  EXPECT_EQ(pool.Find(H(1)), a);
  EXPECT_TRUE(pool.CheckInvariants(h.refs()).ok());
}

TEST(BlockPoolTest, CheckInvariantsCatchesAMiscountedHolder) {
  BlockPool pool(2);
  Holders h(2);
  const int32_t b = h.Allocate(pool);
  std::vector<int> wrong = h.refs();
  wrong[b] = 0;  // a table "forgot" its block: a leak
  EXPECT_FALSE(pool.CheckInvariants(wrong).ok());
  wrong[b] = 2;
  EXPECT_FALSE(pool.CheckInvariants(wrong).ok());
  EXPECT_TRUE(pool.CheckInvariants(h.refs()).ok());
}

TEST(BlockPoolTest, EmptyPool) {
  BlockPool pool(0);
  EXPECT_EQ(pool.Allocate(), -1);
  EXPECT_EQ(pool.num_free(), 0);
  EXPECT_TRUE(pool.CheckInvariants({}).ok());
}

}  // namespace
}  // namespace flotilla::scheduler
