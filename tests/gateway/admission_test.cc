#include "gateway/admission.h"

#include <gtest/gtest.h>

#include "gateway/errors.h"

namespace flotilla::gateway {
namespace {

std::vector<WorkerView> Pool(int n, uint32_t slots, uint32_t outstanding_each) {
  std::vector<WorkerView> ws(n);
  for (int i = 0; i < n; ++i) {
    ws[i].id = "w" + std::to_string(i);
    ws[i].max_num_seqs = slots;
    ws[i].running = std::min(slots, outstanding_each);
    ws[i].waiting = outstanding_each - ws[i].running;
  }
  return ws;
}

TEST(AdmissionTest, DispatchWhileAWorkerHasRoom) {
  auto ws = Pool(2, 4, 3);
  PoolLoad load = SummarisePool(ws, 2, 1.0, 0);
  EXPECT_EQ(load.available_workers, 2u);
  EXPECT_EQ(load.open_workers, 2u);
  EXPECT_EQ(load.total_slots, 8u);
  EXPECT_EQ(load.outstanding, 6u);
  AdmissionDecision d = Admit({}, load, 0, 0, 10);
  EXPECT_EQ(d.verdict, AdmissionVerdict::kDispatch);
}

TEST(AdmissionTest, QueueWhenSaturatedThenShedWithRetryAfter) {
  AdmissionConfig cfg;
  cfg.queue_size = 3;
  cfg.min_retry_after = 100 * kNsPerMs;
  auto ws = Pool(2, 4, 6);  // 6 >= 4 + 2: saturated
  PoolLoad load = SummarisePool(ws, 2, 2.0, 0);
  EXPECT_EQ(load.open_workers, 0u);
  EXPECT_EQ(Admit(cfg, load, 0, 0, 10).verdict, AdmissionVerdict::kQueue);
  EXPECT_EQ(Admit(cfg, load, 2, 0, 10).verdict, AdmissionVerdict::kQueue);
  AdmissionDecision d = Admit(cfg, load, 3, 0, 10);
  ASSERT_EQ(d.verdict, AdmissionVerdict::kReject);
  EXPECT_EQ(d.status.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(ErrorReason(d.status), "overloaded");
  // (3 queued + 1) * 2 s / 8 slots = 1 s.
  EXPECT_EQ(RetryAfterMs(d.status), 1000);
}

TEST(AdmissionTest, NewcomersQueueBehindWaiters) {
  auto ws = Pool(1, 4, 0);
  PoolLoad load = SummarisePool(ws, 2, 1.0, 0);
  EXPECT_EQ(Admit({}, load, 1, 0, 1).verdict, AdmissionVerdict::kQueue);
}

TEST(AdmissionTest, NoWorkersIsUnavailable) {
  auto ws = Pool(2, 4, 0);
  ws[0].available = ws[1].available = false;
  AdmissionDecision d = Admit({}, SummarisePool(ws, 2, 1.0, 0), 0, 0, 1);
  ASSERT_EQ(d.verdict, AdmissionVerdict::kReject);
  EXPECT_EQ(d.status.code(), absl::StatusCode::kUnavailable);
  EXPECT_TRUE(RetryAfterMs(d.status).has_value());
}

TEST(AdmissionTest, InfeasibleDeadlineRefusedAtOnce) {
  // One worker, 4 slots, 12 outstanding, requests take 2 s: a newcomer waits (13 - 4) * 2 / 4 =
  // 4.5 s, plus 1000 prompt tokens at 1000 tok/s = 5.5 s to its first token.
  auto ws = Pool(1, 4, 12);
  PoolLoad load = SummarisePool(ws, 100, 2.0, 1000);
  EXPECT_NEAR(load.best_wait_s, 4.5, 1e-9);
  AdmissionDecision d = Admit({}, load, 0, 5 * kNsPerSec, 1000);
  EXPECT_NEAR(d.estimated_ttft_s, 5.5, 1e-9);
  ASSERT_EQ(d.verdict, AdmissionVerdict::kReject);
  EXPECT_EQ(d.status.code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(ErrorReason(d.status), "deadline_infeasible");
  EXPECT_EQ(Admit({}, load, 0, 6 * kNsPerSec, 1000).verdict, AdmissionVerdict::kDispatch);
  EXPECT_EQ(Admit({}, load, 0, 0, 1000).verdict, AdmissionVerdict::kDispatch);  // no deadline
}

TEST(AdmissionTest, UnknownDurationNeverRefusesOnDeadline) {
  auto ws = Pool(1, 4, 40);
  PoolLoad load = SummarisePool(ws, 100, 0.0, 0);  // nothing measured yet
  EXPECT_EQ(Admit({}, load, 0, 1 * kNsPerMs, 100).verdict, AdmissionVerdict::kDispatch);
}

TEST(AdmissionQueueTest, BoundedFifoWithExpiry) {
  FakeClock clock;
  AdmissionQueue<int> q(3);
  EXPECT_TRUE(q.Push(1, clock.Now() + 100));
  EXPECT_TRUE(q.Push(2, clock.Now() + 50));
  EXPECT_TRUE(q.Push(3, clock.Now() + 200));
  EXPECT_FALSE(q.Push(4, clock.Now() + 10));
  EXPECT_EQ(*q.NextExpiry(), clock.Now() + 50);
  clock.Advance(100);
  auto expired = q.Expire(clock.Now());
  EXPECT_EQ(expired, (std::vector<int>{1, 2}));
  EXPECT_TRUE(q.Push(5, clock.Now() + 10));
  EXPECT_TRUE(q.Remove(5));
  EXPECT_FALSE(q.Remove(5));
  EXPECT_EQ(*q.Pop(), 3);
  EXPECT_FALSE(q.Pop().has_value());
}

}  // namespace
}  // namespace flotilla::gateway
