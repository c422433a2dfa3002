#include "scheduler/block_hash.h"

#include <numeric>
#include <vector>

#include "gtest/gtest.h"

namespace flotilla::scheduler {
namespace {

std::vector<int32_t> Iota(int n, int32_t start = 0) {
  std::vector<int32_t> v(n);
  std::iota(v.begin(), v.end(), start);
  return v;
}

std::vector<BlockHash> Hashes(const std::vector<int32_t>& tokens, int bs, const std::string& tenant, int shared = 0) {
  std::vector<BlockHash> h;
  ExtendBlockHashes(tokens, bs, TenantSalt(tenant), shared, &h);
  return h;
}

TEST(BlockHashTest, OnlyFullBlocksAreHashed) {
  EXPECT_EQ(Hashes(Iota(15), 16, "a").size(), 0u);
  EXPECT_EQ(Hashes(Iota(16), 16, "a").size(), 1u);
  EXPECT_EQ(Hashes(Iota(47), 16, "a").size(), 2u);
}

TEST(BlockHashTest, SameTokensAndTenantGiveSameChain) {
  EXPECT_EQ(Hashes(Iota(64), 16, "a"), Hashes(Iota(64), 16, "a"));
}

TEST(BlockHashTest, ChainIsTheLinkFunctionAppliedInOrder) {
  const std::vector<int32_t> t = Iota(32);
  const BlockHash salt = TenantSalt("a");
  const BlockHash b0 = HashBlock(kRootBlockHash, salt, std::span(t).subspan(0, 16));
  const BlockHash b1 = HashBlock(b0, salt, std::span(t).subspan(16, 16));
  EXPECT_EQ(Hashes(t, 16, "a"), (std::vector<BlockHash>{b0, b1}));
}

TEST(BlockHashTest, EqualBlockAfterDifferentPrefixHashesDifferently) {
  std::vector<int32_t> a = Iota(32);
  std::vector<int32_t> b = a;
  b[3] = 999;  // first block differs, second block's tokens are equal
  const auto ha = Hashes(a, 16, "t");
  const auto hb = Hashes(b, 16, "t");
  EXPECT_NE(ha[0], hb[0]);
  EXPECT_NE(ha[1], hb[1]);
}

TEST(BlockHashTest, AnyTokenChangeChangesTheBlock) {
  const std::vector<int32_t> a = Iota(16);
  for (int i = 0; i < 16; ++i) {
    std::vector<int32_t> b = a;
    b[i] += 1;
    EXPECT_NE(Hashes(a, 16, "t")[0], Hashes(b, 16, "t")[0]) << "token " << i;
  }
}

TEST(BlockHashTest, TenantsAreSalted) {
  EXPECT_NE(Hashes(Iota(16), 16, "a")[0], Hashes(Iota(16), 16, "b")[0]);
  EXPECT_NE(Hashes(Iota(16), 16, "")[0], Hashes(Iota(16), 16, "a")[0]);
}

TEST(BlockHashTest, NoTenantSaltEqualsTheSharedSalt) {
  for (const char* tenant : {"", "s", "t", "shared", "\x01"}) {
    EXPECT_NE(TenantSalt(tenant), SharedSalt()) << tenant;
  }
  EXPECT_EQ(SharedSalt(), SharedSalt());
}

TEST(BlockHashTest, SharedPrefixBlocksMatchAcrossTenantsTheRestDoesNot) {
  const std::vector<int32_t> t = Iota(64);
  const auto a = Hashes(t, 16, "a", /*shared=*/32);
  const auto b = Hashes(t, 16, "b", /*shared=*/32);
  EXPECT_EQ(a[0], b[0]);
  EXPECT_EQ(a[1], b[1]);
  EXPECT_NE(a[2], b[2]);
  EXPECT_NE(a[3], b[3]);
  // Shared blocks do not match a tenant that did not mark the prefix shared.
  EXPECT_NE(a[0], Hashes(t, 16, "a")[0]);
}

TEST(BlockHashTest, OnlyBlocksEntirelyInsideTheSharedPrefixAreShared) {
  const std::vector<int32_t> t = Iota(48);
  const auto a = Hashes(t, 16, "a", /*shared=*/31);
  const auto b = Hashes(t, 16, "b", /*shared=*/31);
  EXPECT_EQ(a[0], b[0]);
  EXPECT_NE(a[1], b[1]);  // straddles the end of the shared prefix
}

TEST(BlockHashTest, ExtendingInPiecesEqualsHashingAtOnce) {
  const std::vector<int32_t> t = Iota(100, 7);
  const BlockHash salt = TenantSalt("x");
  std::vector<BlockHash> pieces;
  for (size_t n = 1; n <= t.size(); n += 7) {
    ExtendBlockHashes(std::span(t).first(n), 8, salt, 20, &pieces);
  }
  ExtendBlockHashes(t, 8, salt, 20, &pieces);
  std::vector<BlockHash> once;
  ExtendBlockHashes(t, 8, salt, 20, &once);
  EXPECT_EQ(pieces, once);
  EXPECT_EQ(once.size(), 12u);
}

}  // namespace
}  // namespace flotilla::scheduler
