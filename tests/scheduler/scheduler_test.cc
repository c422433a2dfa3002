// Policy tests: admission checks, chunked prefill, ordering, priorities, preemption, cancel,
// deadlines, and how sequences end.
#include "scheduler/scheduler.h"

#include <algorithm>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/scheduler/fake_engine.h"
#include "tests/scheduler/test_util.h"

namespace flotilla::scheduler {
namespace {

using testing::Config;
using testing::FakeEngine;
using testing::ReferenceOutput;
using testing::Spec;
using ::testing::ElementsAre;

bool Contains(const StepPlan& plan, uint64_t id) {
  return std::any_of(plan.seqs.begin(), plan.seqs.end(), [&](const ScheduledSeq& s) { return s.id == id; });
}
const ScheduledSeq* Find(const StepPlan& plan, uint64_t id) {
  for (const ScheduledSeq& s : plan.seqs) {
    if (s.id == id) return &s;
  }
  return nullptr;
}
bool EndedWith(const std::vector<FinishedRequest>& v, uint64_t id, FinishReason r) {
  return std::any_of(v.begin(), v.end(), [&](const FinishedRequest& f) { return f.id == id && f.reason == r; });
}
std::vector<SeqResult> Tokens(const StepPlan& plan, int32_t token = 7) {
  std::vector<SeqResult> out;
  for (const ScheduledSeq& s : plan.seqs) {
    if (s.sample) out.push_back(SeqResult{s.id, token, FinishReason::kNone});
  }
  return out;
}

TEST(SchedulerTest, AddRejectsBadRequests) {
  FakeClock clock;
  SchedulerConfig c = Config(/*num_blocks=*/8);
  c.max_context = 12;
  c.max_waiting = 2;
  Scheduler s(c, &clock);
  RequestSpec empty = Spec(1, 1, 4);
  empty.prompt.clear();
  EXPECT_EQ(s.Add(empty).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(s.Add(Spec(1, 4, 0)).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(s.Add(Spec(1, 12, 4)).code(), absl::StatusCode::kInvalidArgument);  // no room for one token
  EXPECT_TRUE(s.Add(Spec(1, 11, 4)).ok());
  EXPECT_EQ(s.Add(Spec(1, 3, 4)).code(), absl::StatusCode::kInvalidArgument);  // duplicate id
  EXPECT_TRUE(s.Add(Spec(2, 3, 4)).ok());
  EXPECT_EQ(s.Add(Spec(3, 3, 4)).code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(s.stats().waiting, 2);
  EXPECT_TRUE(s.CheckInvariants().ok());
}

TEST(SchedulerTest, AddRejectsPromptsThatCannotFitThePool) {
  FakeClock clock;
  Scheduler s(Config(/*num_blocks=*/4, /*block_size=*/4), &clock);  // 16 tokens in all
  EXPECT_EQ(s.Add(Spec(1, 16, 1)).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(s.Add(Spec(2, 15, 1)).ok());
  Scheduler none(Config(0), &clock);
  EXPECT_EQ(none.Add(Spec(1, 1, 1)).code(), absl::StatusCode::kInvalidArgument);
}

TEST(SchedulerTest, IdleSchedulerPlansNothing) {
  FakeClock clock;
  Scheduler s(Config(8), &clock);
  EXPECT_TRUE(s.idle());
  StepPlan plan = s.Schedule();
  EXPECT_TRUE(plan.seqs.empty());
  EXPECT_TRUE(plan.finished.empty());
  EXPECT_TRUE(s.Update(plan, {}).empty());
  EXPECT_TRUE(s.tokens(42).empty());
  EXPECT_EQ(s.prompt_len(42), 0);
}

TEST(SchedulerTest, ChunkedPrefillSpreadsOverStepsAndSamplesOnlyAtTheEnd) {
  FakeClock clock;
  FakeEngine e(Config(/*num_blocks=*/16, /*block_size=*/4, /*budget=*/8), &clock);
  ASSERT_TRUE(e.Add(Spec(1, 21, 3)).ok());
  std::vector<std::tuple<int, int, bool>> chunks;  // start, length, sample
  while (!e.scheduler().idle()) {
    StepPlan plan;
    ASSERT_TRUE(e.Step(&plan).ok());
    ASSERT_EQ(plan.seqs.size(), 1u);
    chunks.emplace_back(plan.seqs[0].start_pos, plan.seqs[0].tokens.size(), plan.seqs[0].sample);
  }
  EXPECT_THAT(chunks, ElementsAre(std::make_tuple(0, 8, false), std::make_tuple(8, 8, false),
                                  std::make_tuple(16, 5, true), std::make_tuple(21, 1, true),
                                  std::make_tuple(22, 1, true)));
  EXPECT_EQ(e.ended().at(1).reason, FinishReason::kLength);
  EXPECT_EQ(e.model().Output(1), ReferenceOutput(testing::Prompt(21, 1), 3, 1 << 20, 1000));
}

TEST(SchedulerTest, DecodesComeFirstThenPrefillsThenAdmissions) {
  FakeClock clock;
  FakeEngine e(Config(/*num_blocks=*/32, /*block_size=*/4, /*budget=*/8), &clock);
  ASSERT_TRUE(e.Add(Spec(1, 3, 10)).ok());
  ASSERT_TRUE(e.Step().ok());  // 1 prefills and samples
  ASSERT_TRUE(e.Add(Spec(2, 20, 2)).ok());
  StepPlan plan;
  ASSERT_TRUE(e.Step(&plan).ok());
  ASSERT_EQ(plan.seqs.size(), 2u);
  EXPECT_EQ(plan.seqs[0].id, 1u);
  EXPECT_EQ(plan.seqs[0].tokens.size(), 1u);
  EXPECT_EQ(plan.seqs[1].id, 2u);
  EXPECT_EQ(plan.seqs[1].tokens.size(), 7u);
  EXPECT_EQ(plan.num_tokens, 8);
  ASSERT_TRUE(e.Add(Spec(3, 4, 2)).ok());
  ASSERT_TRUE(e.Step(&plan).ok());  // 1 decodes, 2 continues with all the rest: 3 waits
  ASSERT_EQ(plan.seqs.size(), 2u);
  EXPECT_EQ(plan.seqs[0].id, 1u);
  EXPECT_EQ(plan.seqs[1].id, 2u);
  EXPECT_EQ(plan.seqs[1].start_pos, 7);
  EXPECT_EQ(plan.seqs[1].tokens.size(), 7u);
  ASSERT_TRUE(e.RunUntilIdle().ok());
}

TEST(SchedulerTest, EqualPrioritiesRunInArrivalOrder) {
  FakeClock clock;
  FakeEngine e(Config(/*num_blocks=*/32, 4, 64, /*max_seqs=*/1), &clock);
  for (uint64_t id : {5, 3, 9, 1}) ASSERT_TRUE(e.Add(Spec(id, 6, 3)).ok());
  ASSERT_TRUE(e.RunUntilIdle().ok());
  EXPECT_LT(e.ended_at(5), e.ended_at(3));
  EXPECT_LT(e.ended_at(3), e.ended_at(9));
  EXPECT_LT(e.ended_at(9), e.ended_at(1));
  EXPECT_EQ(e.total_preempted(), 0);
}

TEST(SchedulerTest, HigherPriorityIsAdmittedFirst) {
  FakeClock clock;
  FakeEngine e(Config(32, 4, 64, /*max_seqs=*/1), &clock);
  ASSERT_TRUE(e.Add(Spec(1, 6, 3, /*priority=*/0)).ok());
  ASSERT_TRUE(e.Add(Spec(2, 6, 3, /*priority=*/5)).ok());
  ASSERT_TRUE(e.Add(Spec(3, 6, 3, /*priority=*/5)).ok());
  ASSERT_TRUE(e.RunUntilIdle().ok());
  EXPECT_LT(e.ended_at(2), e.ended_at(3));
  EXPECT_LT(e.ended_at(3), e.ended_at(1));
}

TEST(SchedulerTest, HigherPriorityNewcomerPreemptsAndTheVictimRecomputes) {
  FakeClock clock;
  FakeEngine e(Config(32, 4, 64, /*max_seqs=*/1), &clock);
  ASSERT_TRUE(e.Add(Spec(1, 6, 12, /*priority=*/0)).ok());
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(e.Step().ok());  // prefill + 3 decodes
  ASSERT_EQ(e.model().Output(1).size(), 4u);
  ASSERT_TRUE(e.Add(Spec(2, 5, 3, /*priority=*/1)).ok());
  StepPlan plan;
  ASSERT_TRUE(e.Step(&plan).ok());
  EXPECT_EQ(plan.num_preempted, 1);
  EXPECT_TRUE(Contains(plan, 2));
  EXPECT_FALSE(Contains(plan, 1));
  EXPECT_EQ(e.scheduler().stats().preemptions, 1u);
  EXPECT_EQ(e.scheduler().stats().waiting, 1);
  // The victim keeps its tokens and comes back as one prefill of prompt + output, sampled at the end.
  EXPECT_EQ(e.scheduler().tokens(1).size(), 10u);
  const ScheduledSeq* back = nullptr;
  while (back == nullptr) {
    ASSERT_TRUE(e.Step(&plan).ok());
    back = Find(plan, 1);
  }
  EXPECT_NE(e.ended_at(2), 0);
  EXPECT_EQ(back->tokens.size(), 10u - back->start_pos);
  EXPECT_TRUE(back->sample);
  ASSERT_TRUE(e.RunUntilIdle().ok());
  EXPECT_EQ(e.model().Output(1), ReferenceOutput(testing::Prompt(6, 1), 12, 1 << 20, 1000));
  EXPECT_EQ(e.ended().at(1).output_tokens, 12);
}

TEST(SchedulerTest, EqualPriorityNewcomerNeverPreempts) {
  FakeClock clock;
  FakeEngine e(Config(32, 4, 64, /*max_seqs=*/1), &clock);
  ASSERT_TRUE(e.Add(Spec(1, 6, 8, /*priority=*/3)).ok());
  ASSERT_TRUE(e.Step().ok());
  ASSERT_TRUE(e.Add(Spec(2, 5, 3, /*priority=*/3)).ok());
  ASSERT_TRUE(e.Add(Spec(3, 5, 3, /*priority=*/1)).ok());
  ASSERT_TRUE(e.RunUntilIdle().ok());
  EXPECT_EQ(e.total_preempted(), 0);
  EXPECT_LT(e.ended_at(1), e.ended_at(2));
  EXPECT_LT(e.ended_at(2), e.ended_at(3));
}

TEST(SchedulerTest, OutOfBlocksPreemptsTheLowestPriorityLatestArrival) {
  FakeClock clock;
  // 6 blocks of 4: three sequences of 4-token prompts fit until each needs a third block.
  FakeEngine e(Config(/*num_blocks=*/6, 4, 64, 8), &clock);
  ASSERT_TRUE(e.Add(Spec(1, 4, 12, /*priority=*/1)).ok());
  ASSERT_TRUE(e.Add(Spec(2, 4, 12, /*priority=*/0)).ok());
  ASSERT_TRUE(e.Add(Spec(3, 4, 12, /*priority=*/0)).ok());
  StepPlan plan;
  do {
    ASSERT_TRUE(e.Step(&plan).ok());
  } while (plan.num_preempted == 0);
  EXPECT_EQ(plan.num_preempted, 1);
  EXPECT_TRUE(Contains(plan, 1));
  EXPECT_TRUE(Contains(plan, 2));
  EXPECT_FALSE(Contains(plan, 3));
  ASSERT_TRUE(e.RunUntilIdle().ok());
  for (uint64_t id : {1, 2, 3}) {
    EXPECT_EQ(e.model().Output(id), ReferenceOutput(testing::Prompt(4, id), 12, 1 << 20, 1000)) << id;
  }
}

TEST(SchedulerTest, HigherPriorityNewcomerPreemptsForBlocks) {
  FakeClock clock;
  FakeEngine e(Config(/*num_blocks=*/4, 4, 64, 8), &clock);
  ASSERT_TRUE(e.Add(Spec(1, 11, 4, /*priority=*/0)).ok());  // 3 blocks
  ASSERT_TRUE(e.Step().ok());
  ASSERT_TRUE(e.Add(Spec(2, 8, 2, /*priority=*/1)).ok());  // needs 2, 1 free
  StepPlan plan;
  ASSERT_TRUE(e.Step(&plan).ok());
  EXPECT_EQ(plan.num_preempted, 1);
  EXPECT_TRUE(Contains(plan, 2));
  EXPECT_FALSE(Contains(plan, 1));
  ASSERT_TRUE(e.RunUntilIdle().ok());
  EXPECT_LT(e.ended_at(2), e.ended_at(1));
  EXPECT_EQ(e.model().Output(1), ReferenceOutput(testing::Prompt(11, 1), 4, 1 << 20, 1000));
}

TEST(SchedulerTest, NoPreemptionThatCannotMakeRoom) {
  FakeClock clock;
  FakeEngine e(Config(/*num_blocks=*/8, 4, 64, 8), &clock);
  ASSERT_TRUE(e.Add(Spec(1, 15, 8, /*priority=*/1)).ok());  // 4 blocks
  ASSERT_TRUE(e.Add(Spec(2, 11, 8, /*priority=*/0)).ok());  // 3 blocks
  ASSERT_TRUE(e.Step().ok());
  // Needs 5 blocks; only 1 free plus the 3 of the one lower-priority request: nobody moves.
  ASSERT_TRUE(e.Add(Spec(3, 20, 2, /*priority=*/1)).ok());
  StepPlan plan;
  ASSERT_TRUE(e.Step(&plan).ok());
  EXPECT_EQ(plan.num_preempted, 0);
  EXPECT_TRUE(Contains(plan, 1));
  EXPECT_TRUE(Contains(plan, 2));
  EXPECT_FALSE(Contains(plan, 3));
  ASSERT_TRUE(e.RunUntilIdle().ok());
}

TEST(SchedulerTest, LongLowPriorityPrefillDoesNotHoldOffAHigherPriorityNewcomer) {
  FakeClock clock;
  FakeEngine e(Config(/*num_blocks=*/64, 4, /*budget=*/8, 8), &clock);
  ASSERT_TRUE(e.Add(Spec(1, 60, 2, /*priority=*/0)).ok());
  ASSERT_TRUE(e.Step().ok());
  ASSERT_TRUE(e.Add(Spec(2, 5, 2, /*priority=*/1)).ok());
  ASSERT_TRUE(e.Add(Spec(3, 5, 2, /*priority=*/0)).ok());  // equal priority: waits its turn
  StepPlan plan;
  ASSERT_TRUE(e.Step(&plan).ok());
  ASSERT_EQ(plan.seqs.size(), 2u);
  EXPECT_EQ(plan.seqs[0].id, 2u);
  EXPECT_EQ(plan.seqs[0].tokens.size(), 5u);
  EXPECT_EQ(plan.seqs[1].id, 1u);
  EXPECT_EQ(plan.seqs[1].tokens.size(), 3u);
  EXPECT_EQ(plan.num_preempted, 0);
  // 3 ranks below the running prefill of 1: it gets only what 1's prefill leaves over.
  bool one_sampled = false;
  while (!e.scheduler().idle()) {
    ASSERT_TRUE(e.Step(&plan).ok());
    const ScheduledSeq* one = Find(plan, 1);
    if (one != nullptr && one->sample) one_sampled = true;
    if (Contains(plan, 3)) {
      EXPECT_TRUE(one_sampled);
    }
  }
}

TEST(SchedulerTest, CancelFreesBlocksInTheSameStep) {
  FakeClock clock;
  FakeEngine e(Config(/*num_blocks=*/8, 4, 64, /*max_seqs=*/1), &clock);
  ASSERT_TRUE(e.Add(Spec(1, 10, 50)).ok());
  ASSERT_TRUE(e.Add(Spec(2, 10, 50)).ok());
  ASSERT_TRUE(e.Step().ok());
  ASSERT_TRUE(e.Step().ok());
  ASSERT_GT(e.scheduler().stats().kv_usage, 0.0);
  e.scheduler().Cancel(1);
  e.scheduler().Cancel(2);   // waiting
  e.scheduler().Cancel(77);  // unknown: ignored
  e.scheduler().Cancel(1);   // twice: once
  StepPlan plan = e.scheduler().Schedule();
  EXPECT_TRUE(plan.seqs.empty());
  ASSERT_EQ(plan.finished.size(), 2u);
  EXPECT_TRUE(EndedWith(plan.finished, 1, FinishReason::kCancelled));
  EXPECT_TRUE(EndedWith(plan.finished, 2, FinishReason::kCancelled));
  const SchedulerStats st = e.scheduler().stats();
  EXPECT_EQ(st.free_blocks, st.total_blocks);
  EXPECT_EQ(st.kv_usage, 0.0);
  EXPECT_TRUE(e.scheduler().idle());
  EXPECT_TRUE(e.scheduler().CheckInvariants().ok());
}

TEST(SchedulerTest, CancelDuringAStepTakesEffectAtTheNextSchedule) {
  FakeClock clock;
  Scheduler s(Config(8), &clock);
  ASSERT_TRUE(s.Add(Spec(1, 5, 10)).ok());
  StepPlan plan = s.Schedule();
  s.Cancel(1);
  EXPECT_TRUE(s.Update(plan, Tokens(plan)).empty());
  EXPECT_EQ(s.tokens(1).size(), 6u);
  plan = s.Schedule();
  EXPECT_TRUE(plan.seqs.empty());
  EXPECT_TRUE(EndedWith(plan.finished, 1, FinishReason::kCancelled));
  EXPECT_EQ(plan.finished[0].output_tokens, 1);
  EXPECT_TRUE(s.idle());
}

TEST(SchedulerTest, ACancelDoesNotReachALaterRequestWithTheSameId) {
  FakeClock clock;
  Scheduler s(Config(8), &clock);
  ASSERT_TRUE(s.Add(Spec(1, 5, 1)).ok());
  StepPlan plan = s.Schedule();
  s.Cancel(1);
  auto done = s.Update(plan, Tokens(plan));  // ends by length before the cancel lands
  ASSERT_TRUE(EndedWith(done, 1, FinishReason::kLength));
  ASSERT_TRUE(s.Add(Spec(1, 5, 3)).ok());
  plan = s.Schedule();
  EXPECT_TRUE(plan.finished.empty());
  EXPECT_TRUE(Contains(plan, 1));
}

TEST(SchedulerTest, ExpiresWhileWaiting) {
  FakeClock clock;
  FakeEngine e(Config(16, 4, 64, /*max_seqs=*/1), &clock);
  ASSERT_TRUE(e.Add(Spec(1, 5, 30)).ok());
  RequestSpec late = Spec(2, 5, 3);
  late.deadline = clock.Now() + 5 * kNsPerMs;
  ASSERT_TRUE(e.Add(late).ok());
  ASSERT_TRUE(e.Step().ok());
  clock.AdvanceMs(5);  // deadline == now: not yet
  ASSERT_TRUE(e.Step().ok());
  EXPECT_EQ(e.ended_at(2), 0);
  clock.AdvanceMs(1);
  ASSERT_TRUE(e.Step().ok());
  ASSERT_NE(e.ended_at(2), 0);
  EXPECT_EQ(e.ended().at(2).reason, FinishReason::kExpired);
  EXPECT_EQ(e.ended().at(2).output_tokens, 0);
  ASSERT_TRUE(e.RunUntilIdle().ok());
  EXPECT_EQ(e.ended().at(1).reason, FinishReason::kLength);
}

TEST(SchedulerTest, ExpiresWhileRunningAndFreesItsBlocks) {
  FakeClock clock;
  FakeEngine e(Config(16), &clock);
  RequestSpec r = Spec(1, 9, 100);
  r.deadline = clock.Now() + 10 * kNsPerMs;
  ASSERT_TRUE(e.Add(r).ok());
  for (int i = 0; i < 3; ++i) {  // steps at +0, +4, +8 ms: prefill and two decodes
    ASSERT_TRUE(e.Step().ok());
    clock.AdvanceMs(4);
  }
  EXPECT_EQ(e.ended_at(1), 0);
  ASSERT_TRUE(e.Step().ok());  // +12 ms
  ASSERT_NE(e.ended_at(1), 0);
  EXPECT_EQ(e.ended().at(1).reason, FinishReason::kExpired);
  EXPECT_EQ(e.ended().at(1).output_tokens, 3);
  EXPECT_EQ(e.scheduler().stats().free_blocks, 16);
}

TEST(SchedulerTest, AlreadyExpiredOnArrivalEndsAtTheNextStep) {
  FakeClock clock;
  Scheduler s(Config(8), &clock);
  RequestSpec r = Spec(1, 5, 3);
  r.deadline = clock.Now() - 1;
  ASSERT_TRUE(s.Add(r).ok());
  StepPlan plan = s.Schedule();
  EXPECT_TRUE(plan.seqs.empty());
  EXPECT_TRUE(EndedWith(plan.finished, 1, FinishReason::kExpired));
}

TEST(SchedulerTest, EndsAtMaxNewTokensTheContextOrThePool) {
  FakeClock clock;
  {
    FakeEngine e(Config(64), &clock);
    ASSERT_TRUE(e.Add(Spec(1, 5, 7)).ok());
    ASSERT_TRUE(e.RunUntilIdle().ok());
    EXPECT_EQ(e.ended().at(1).reason, FinishReason::kLength);
    EXPECT_EQ(e.ended().at(1).output_tokens, 7);
  }
  {
    SchedulerConfig c = Config(64);
    c.max_context = 20;
    FakeEngine e(c, &clock);
    ASSERT_TRUE(e.Add(Spec(1, 15, 100)).ok());
    ASSERT_TRUE(e.RunUntilIdle().ok());
    EXPECT_EQ(e.ended().at(1).reason, FinishReason::kLength);
    EXPECT_EQ(e.ended().at(1).output_tokens, 5);
  }
  {
    FakeEngine e(Config(/*num_blocks=*/3, /*block_size=*/4), &clock);  // 12 tokens
    ASSERT_TRUE(e.Add(Spec(1, 9, 100)).ok());
    ASSERT_TRUE(e.RunUntilIdle().ok());
    EXPECT_EQ(e.ended().at(1).reason, FinishReason::kLength);
    EXPECT_EQ(e.ended().at(1).output_tokens, 3);
  }
}

TEST(SchedulerTest, EngineDecidesEosStopAndError) {
  FakeClock clock;
  Scheduler s(Config(32), &clock);
  for (uint64_t id = 1; id <= 4; ++id) ASSERT_TRUE(s.Add(Spec(id, 6, 10)).ok());
  StepPlan plan = s.Schedule();
  ASSERT_EQ(plan.seqs.size(), 4u);
  std::vector<SeqResult> results = {{1, 2, FinishReason::kEos}, {2, 3, FinishReason::kStop},
                                     {3, -1, FinishReason::kError}};  // 4 gets no result
  auto done = s.Update(plan, results);
  EXPECT_EQ(done.size(), 4u);
  EXPECT_TRUE(EndedWith(done, 1, FinishReason::kEos));
  EXPECT_TRUE(EndedWith(done, 2, FinishReason::kStop));
  EXPECT_TRUE(EndedWith(done, 3, FinishReason::kError));
  EXPECT_TRUE(EndedWith(done, 4, FinishReason::kError));
  for (const FinishedRequest& f : done) EXPECT_EQ(f.output_tokens, f.id <= 2 ? 1 : 0) << f.id;
  EXPECT_TRUE(s.idle());
  EXPECT_EQ(s.stats().free_blocks, 32);
  EXPECT_TRUE(s.CheckInvariants().ok());
}

TEST(SchedulerTest, ErrorOnAPrefillChunkEndsTheRequest) {
  FakeClock clock;
  Scheduler s(Config(32, 4, /*budget=*/4), &clock);
  ASSERT_TRUE(s.Add(Spec(1, 10, 3)).ok());
  StepPlan plan = s.Schedule();
  ASSERT_FALSE(plan.seqs[0].sample);
  std::vector<SeqResult> results = {{1, -1, FinishReason::kError}};
  auto done = s.Update(plan, results);
  EXPECT_TRUE(EndedWith(done, 1, FinishReason::kError));
  EXPECT_TRUE(s.idle());
  EXPECT_TRUE(s.CheckInvariants().ok());
}

TEST(SchedulerTest, StatsCountRunningWaitingAndKvUsage) {
  FakeClock clock;
  Scheduler s(Config(/*num_blocks=*/10, 4, 64, /*max_seqs=*/1), &clock);
  ASSERT_TRUE(s.Add(Spec(1, 8, 4)).ok());
  ASSERT_TRUE(s.Add(Spec(2, 8, 4)).ok());
  StepPlan plan = s.Schedule();
  s.Update(plan, Tokens(plan));
  const SchedulerStats st = s.stats();
  EXPECT_EQ(st.running, 1);
  EXPECT_EQ(st.waiting, 1);
  EXPECT_EQ(st.total_blocks, 10);
  EXPECT_EQ(st.free_blocks, 8);
  EXPECT_DOUBLE_EQ(st.kv_usage, 0.2);
  EXPECT_EQ(st.prefix_queries, 8u);
  EXPECT_EQ(st.prefix_hits, 0u);
}

TEST(SchedulerTest, FinishReasonNames) {
  EXPECT_STREQ(FinishReasonName(FinishReason::kLength), "length");
  EXPECT_STREQ(FinishReasonName(FinishReason::kCancelled), "cancelled");
  EXPECT_STREQ(FinishReasonName(FinishReason::kExpired), "expired");
  EXPECT_STREQ(FinishReasonName(FinishReason::kEos), "eos");
}

}  // namespace
}  // namespace flotilla::scheduler
