// Paged-KV correctness through the fake model (see fake_engine.h): preemption with recompute
// and prefix-cache sharing must leave every sequence's KV, and so its greedy output, unchanged;
// the prefix cache is shared within a tenant, not across tenants unless the prefix is marked shared.
#include <vector>

#include "gtest/gtest.h"
#include "scheduler/scheduler.h"
#include "tests/scheduler/fake_engine.h"
#include "tests/scheduler/test_util.h"

namespace flotilla::scheduler {
namespace {

using testing::Config;
using testing::FakeEngine;
using testing::ReferenceOutput;
using testing::Spec;

constexpr int kVocab = 1000;
constexpr int kUnbounded = 1 << 20;

std::vector<RequestSpec> MixedWorkload() {
  std::vector<RequestSpec> specs;
  const int prompt[] = {5, 40, 17, 9, 33, 3, 26, 12, 21, 8, 30, 14};
  const int max_new[] = {20, 10, 25, 30, 12, 28, 15, 22, 18, 26, 11, 24};
  for (int i = 0; i < 12; ++i) specs.push_back(Spec(i + 1, prompt[i], max_new[i], /*priority=*/i % 3));
  return specs;
}

// Runs `spec` alone in a pool big enough to never preempt.
std::vector<int32_t> RunAlone(const RequestSpec& spec) {
  FakeClock clock;
  FakeEngine e(Config(/*num_blocks=*/256, 4, 512, 64), &clock, kVocab);
  EXPECT_TRUE(e.Add(spec).ok());
  EXPECT_TRUE(e.RunUntilIdle().ok());
  return e.model().Output(spec.id);
}

void ExpectPreemptionKeepsOutputs(bool prefix_cache) {
  FakeClock clock;
  SchedulerConfig c = Config(/*num_blocks=*/16, /*block_size=*/4, /*budget=*/16, /*max_seqs=*/6);
  c.enable_prefix_cache = prefix_cache;
  FakeEngine e(c, &clock, kVocab);
  const std::vector<RequestSpec> specs = MixedWorkload();
  for (const RequestSpec& s : specs) ASSERT_TRUE(e.Add(s).ok());
  absl::Status st = e.RunUntilIdle();
  ASSERT_TRUE(st.ok()) << st;
  EXPECT_GT(e.total_preempted(), 5) << "the pool should be tight enough to preempt";
  EXPECT_EQ(e.scheduler().stats().free_blocks, 16);
  for (const RequestSpec& s : specs) {
    EXPECT_EQ(e.ended().at(s.id).reason, FinishReason::kLength) << s.id;
    const std::vector<int32_t> alone = RunAlone(s);
    EXPECT_EQ(e.model().Output(s.id), alone) << "request " << s.id;
    EXPECT_EQ(alone, ReferenceOutput(s.prompt, s.max_new_tokens, kUnbounded, kVocab)) << s.id;
  }
}

TEST(SchedulerKvTest, PreemptionAndRecomputeGiveTheSameOutputAsRunningAlone) {
  ExpectPreemptionKeepsOutputs(/*prefix_cache=*/true);
}

TEST(SchedulerKvTest, PreemptionAndRecomputeWithoutPrefixCache) { ExpectPreemptionKeepsOutputs(/*prefix_cache=*/false); }

RequestSpec WithPrompt(uint64_t id, std::vector<int32_t> prompt, const std::string& tenant, int max_new = 8,
                       int shared = 0) {
  RequestSpec s;
  s.id = id;
  s.prompt = std::move(prompt);
  s.tenant = tenant;
  s.max_new_tokens = max_new;
  s.shared_prefix_tokens = shared;
  return s;
}

TEST(SchedulerKvTest, RepeatedPromptHitsWithinATenantAndKeepsTheOutput) {
  FakeClock clock;
  FakeEngine e(Config(64, 4, 256, 8), &clock, kVocab);
  const std::vector<int32_t> prompt = testing::Prompt(30, 7);
  ASSERT_TRUE(e.Add(WithPrompt(1, prompt, "acme")).ok());
  ASSERT_TRUE(e.RunUntilIdle().ok());
  EXPECT_EQ(e.ended().at(1).cached_tokens, 0);
  ASSERT_TRUE(e.Add(WithPrompt(2, prompt, "acme")).ok());
  ASSERT_TRUE(e.RunUntilIdle().ok());
  // 7 full blocks before the block of the last prompt token (29 / 4).
  EXPECT_EQ(e.ended().at(2).cached_tokens, 28);
  EXPECT_EQ(e.scheduler().stats().prefix_queries, 60u);
  EXPECT_EQ(e.scheduler().stats().prefix_hits, 28u);
  EXPECT_EQ(e.model().Output(2), e.model().Output(1));
  EXPECT_EQ(e.model().Output(2), ReferenceOutput(prompt, 8, kUnbounded, kVocab));
}

TEST(SchedulerKvTest, ConcurrentRequestsShareACommonPrefixAndNeverWriteIntoIt) {
  FakeClock clock;
  FakeEngine e(Config(64, 4, 256, 8), &clock, kVocab);
  std::vector<int32_t> a = testing::Prompt(22, 3);
  std::vector<int32_t> b = a;
  b.resize(18);  // same first 18 tokens; diverges inside block 4
  b.push_back(5);
  b.push_back(6);
  ASSERT_TRUE(e.Add(WithPrompt(1, a, "acme", 40)).ok());
  ASSERT_TRUE(e.Step().ok());  // a's prompt computed and its full blocks cached
  ASSERT_TRUE(e.Add(WithPrompt(2, b, "acme", 40)).ok());
  ASSERT_TRUE(e.Add(WithPrompt(3, a, "acme", 40)).ok());
  absl::Status st = e.RunUntilIdle();  // the model checks every read, so a write into a shared block fails here
  ASSERT_TRUE(st.ok()) << st;
  EXPECT_EQ(e.ended().at(2).cached_tokens, 16);
  EXPECT_EQ(e.ended().at(3).cached_tokens, 20);
  EXPECT_EQ(e.model().Output(3), e.model().Output(1));
  EXPECT_EQ(e.model().Output(1), ReferenceOutput(a, 40, kUnbounded, kVocab));
  EXPECT_EQ(e.model().Output(2), ReferenceOutput(b, 40, kUnbounded, kVocab));
}

TEST(SchedulerKvTest, AHitAlwaysLeavesTheLastPromptTokenToCompute) {
  FakeClock clock;
  FakeEngine e(Config(64, 4, 256, 8), &clock, kVocab);
  const std::vector<int32_t> prompt = testing::Prompt(8, 9);  // exactly two blocks
  ASSERT_TRUE(e.Add(WithPrompt(1, prompt, "acme", 3)).ok());
  ASSERT_TRUE(e.RunUntilIdle().ok());
  ASSERT_TRUE(e.Add(WithPrompt(2, prompt, "acme", 3)).ok());
  StepPlan plan;
  ASSERT_TRUE(e.Step(&plan).ok());
  ASSERT_EQ(plan.seqs.size(), 1u);
  EXPECT_EQ(plan.seqs[0].start_pos, 4);  // block 1 holds the last token: recomputed, not shared
  EXPECT_EQ(plan.seqs[0].tokens.size(), 4u);
  EXPECT_TRUE(plan.seqs[0].sample);
  ASSERT_TRUE(e.RunUntilIdle().ok());
  EXPECT_EQ(e.model().Output(2), e.model().Output(1));
}

TEST(SchedulerKvTest, NoHitsAcrossTenants) {
  FakeClock clock;
  FakeEngine e(Config(64, 4, 256, 8), &clock, kVocab);
  const std::vector<int32_t> prompt = testing::Prompt(30, 7);
  ASSERT_TRUE(e.Add(WithPrompt(1, prompt, "acme")).ok());
  ASSERT_TRUE(e.RunUntilIdle().ok());
  ASSERT_TRUE(e.Add(WithPrompt(2, prompt, "globex")).ok());
  ASSERT_TRUE(e.RunUntilIdle().ok());
  EXPECT_EQ(e.ended().at(2).cached_tokens, 0);
  EXPECT_EQ(e.scheduler().stats().prefix_hits, 0u);
  EXPECT_EQ(e.model().Output(2), e.model().Output(1));
  // A prefix one tenant marked shared still does not match another that did not mark it.
  ASSERT_TRUE(e.Add(WithPrompt(3, prompt, "acme", 8, /*shared=*/16)).ok());
  ASSERT_TRUE(e.RunUntilIdle().ok());
  ASSERT_TRUE(e.Add(WithPrompt(4, prompt, "initech")).ok());
  ASSERT_TRUE(e.RunUntilIdle().ok());
  EXPECT_EQ(e.ended().at(4).cached_tokens, 0);
}

TEST(SchedulerKvTest, SharedMarkedPrefixHitsAcrossTenants) {
  FakeClock clock;
  FakeEngine e(Config(64, 4, 256, 8), &clock, kVocab);
  const std::vector<int32_t> prompt = testing::Prompt(30, 7);
  ASSERT_TRUE(e.Add(WithPrompt(1, prompt, "acme", 8, /*shared=*/18)).ok());
  ASSERT_TRUE(e.RunUntilIdle().ok());
  ASSERT_TRUE(e.Add(WithPrompt(2, prompt, "globex", 8, /*shared=*/18)).ok());
  ASSERT_TRUE(e.RunUntilIdle().ok());
  EXPECT_EQ(e.ended().at(2).cached_tokens, 16);  // the blocks entirely inside the shared 18 tokens
  EXPECT_EQ(e.scheduler().stats().prefix_hits, 16u);
  EXPECT_EQ(e.model().Output(2), e.model().Output(1));
  // The same tenant again hits the shared blocks and its own private ones.
  ASSERT_TRUE(e.Add(WithPrompt(3, prompt, "acme", 8, /*shared=*/18)).ok());
  ASSERT_TRUE(e.RunUntilIdle().ok());
  EXPECT_EQ(e.ended().at(3).cached_tokens, 28);
}

TEST(SchedulerKvTest, EvictedPrefixesAreRecomputedCorrectly) {
  FakeClock clock;
  FakeEngine e(Config(/*num_blocks=*/12, 4, 64, 4), &clock, kVocab);
  const std::vector<int32_t> prompt = testing::Prompt(20, 1);
  ASSERT_TRUE(e.Add(WithPrompt(1, prompt, "acme")).ok());
  ASSERT_TRUE(e.RunUntilIdle().ok());
  // Churn the pool with other prompts so the cached blocks are evicted.
  for (uint64_t id = 2; id < 8; ++id) ASSERT_TRUE(e.Add(Spec(id, 20, 8, 0, "acme")).ok());
  ASSERT_TRUE(e.RunUntilIdle().ok());
  ASSERT_TRUE(e.Add(WithPrompt(8, prompt, "acme")).ok());
  ASSERT_TRUE(e.RunUntilIdle().ok());
  EXPECT_LT(e.ended().at(8).cached_tokens, 16);
  EXPECT_EQ(e.model().Output(8), e.model().Output(1));
}

}  // namespace
}  // namespace flotilla::scheduler
