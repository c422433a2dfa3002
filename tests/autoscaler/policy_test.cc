// The scaling policy on a fake clock: bursts, noise, windows, bounds, zero, missing metrics.
#include "autoscaler/policy.h"

#include <gtest/gtest.h>

#include <random>

#include "common/clock.h"

namespace flotilla::autoscaler {
namespace {

constexpr double kTickS = 5;

PolicyConfig BaseConfig() {
  PolicyConfig c;
  c.pool = "stories";
  c.min_replicas = 1;
  c.max_replicas = 8;
  c.target_waiting_per_replica = 2;
  c.target_kv_usage = 0.8;
  return c;
}

// Signals as a reader would produce them for `ready` replicas sharing a load.
PoolSignals Load(const FakeClock& clock, int reporting, double waiting, double running,
                 double kv_sum) {
  PoolSignals s;
  s.pool = "stories";
  s.reporting = reporting;
  s.waiting = waiting;
  s.running = running;
  s.kv_usage_sum = kv_sum;
  s.activation_known = true;
  s.read_at = clock.Now();
  return s;
}

ReplicaState AllReady(int n) { return {n, n, 0}; }

TEST(AutoscalerPolicyConfigTest, RejectsBadBounds) {
  PolicyConfig c = BaseConfig();
  EXPECT_TRUE(c.Validate().ok());
  c.min_replicas = 5;
  c.max_replicas = 3;
  EXPECT_FALSE(c.Validate().ok());
  c = BaseConfig();
  c.target_waiting_per_replica = 0;
  c.target_kv_usage = 0;
  EXPECT_FALSE(c.Validate().ok()) << "no target at all";
  c = BaseConfig();
  c.target_kv_usage = 1.5;
  EXPECT_FALSE(c.Validate().ok());
  c = BaseConfig();
  c.pool = "";
  EXPECT_FALSE(c.Validate().ok());
}

TEST(AutoscalerPolicyTest, ScalesUpFastOnBurst) {
  FakeClock clock;
  PoolPolicy policy(BaseConfig(), &clock);
  // Quiet: one replica, nothing queued, KV at 30%.
  Decision d = policy.Decide(Load(clock, 1, 0, 2, 0.3), AllReady(1));
  EXPECT_EQ(d.action, Action::kSteady) << d.ToLogLine();
  EXPECT_EQ(d.target, 1);

  // Burst: 20 waiting on one replica wants 10; the first step is capped at +4 (HPA's default
  // "100% or 4 pods per 15 s, whichever is more"), applied at once: no up-window.
  clock.AdvanceSec(kTickS);
  d = policy.Decide(Load(clock, 1, 20, 8, 0.95), AllReady(1));
  EXPECT_EQ(d.action, Action::kScaleUp) << d.ToLogLine();
  EXPECT_EQ(d.recommended, 10);
  EXPECT_EQ(d.target, 5);
  EXPECT_NE(d.ToLogLine().find("vote.waiting=10"), std::string::npos) << d.ToLogLine();

  // Still inside the 15 s period and the new replicas are ready: no further step yet.
  clock.AdvanceSec(kTickS);
  d = policy.Decide(Load(clock, 5, 30, 40, 4.5), AllReady(5));
  EXPECT_EQ(d.target, 5) << d.ToLogLine();
  EXPECT_EQ(d.action, Action::kCooldown);

  // Once the period has passed the burst (still there) gets the rest, up to max.
  clock.AdvanceSec(15);
  d = policy.Decide(Load(clock, 5, 30, 40, 4.5), AllReady(5));
  EXPECT_EQ(d.action, Action::kScaleUp) << d.ToLogLine();
  EXPECT_EQ(d.target, 8);
}

TEST(AutoscalerPolicyTest, StartingReplicasCountAndBlockPilingOn) {
  FakeClock clock;
  PolicyConfig c = BaseConfig();
  c.startup_time_s = 30;
  PoolPolicy policy(c, &clock);
  Decision d = policy.Decide(Load(clock, 1, 6, 8, 0.9), AllReady(1));
  ASSERT_EQ(d.target, 3) << d.ToLogLine();

  // Two replicas are starting; the queue keeps growing on the one ready replica. The policy
  // wants more but waits for the starting ones: they are capacity already paid for.
  for (int i = 0; i < 4; ++i) {
    clock.AdvanceSec(kTickS);
    d = policy.Decide(Load(clock, 1, 14 + 2 * i, 8, 0.95), ReplicaState{3, 1, 2});
    EXPECT_EQ(d.target, 3) << d.ToLogLine();
    EXPECT_EQ(d.action, Action::kWarming) << d.ToLogLine();
  }
  // Starting for longer than the expected start-up time: they are late, act on the load.
  clock.AdvanceSec(30);
  d = policy.Decide(Load(clock, 1, 24, 8, 0.95), ReplicaState{3, 1, 2});
  EXPECT_EQ(d.action, Action::kScaleUp) << d.ToLogLine();
  EXPECT_GT(d.target, 3);
}

TEST(AutoscalerPolicyTest, NoFlappingOnNoisyLoad) {
  FakeClock clock;
  PolicyConfig c = BaseConfig();
  c.target_waiting_per_replica = 0;  // KV usage only: a continuous signal, easy to make noisy
  c.target_kv_usage = 0.7;
  PoolPolicy policy(c, &clock);
  std::mt19937 rng(7);
  std::uniform_real_distribution<double> noise(-0.35, 0.35);
  int replicas = 2;
  int changes = 0;
  int direction_changes = 0;
  int last_direction = 0;
  // 30 minutes of a load worth ~2.5 replicas at target, +-35% every 5 s.
  for (int tick = 0; tick < 360; ++tick) {
    clock.AdvanceSec(kTickS);
    const double kv_sum = 0.7 * 2.5 * (1 + noise(rng));
    Decision d = policy.Decide(Load(clock, replicas, 0, 10, kv_sum), AllReady(replicas));
    if (d.Changes()) {
      ++changes;
      const int dir = d.target > replicas ? 1 : -1;
      if (last_direction != 0 && dir != last_direction) ++direction_changes;
      last_direction = dir;
      replicas = d.target;
    }
  }
  // It settles at the peak of the noise (4 replicas covers +35%) and stays there: at most two
  // steps up, and never back down while the noise keeps reaching that peak.
  EXPECT_LE(changes, 2);
  EXPECT_EQ(direction_changes, 0);
  EXPECT_GE(replicas, 3);
  EXPECT_LE(replicas, 4);
}

TEST(AutoscalerPolicyTest, ScalesDownOnlyAfterTheWindow) {
  FakeClock clock;
  PolicyConfig c = BaseConfig();
  c.scale_down.stabilization_window_s = 300;
  c.scale_down.cooldown_s = 0;
  PoolPolicy policy(c, &clock);
  // Four busy replicas for a minute.
  for (int i = 0; i < 12; ++i) {
    clock.AdvanceSec(kTickS);
    Decision d = policy.Decide(Load(clock, 4, 0, 30, 4 * 0.8), AllReady(4));
    ASSERT_EQ(d.target, 4) << d.ToLogLine();
  }
  // The load drops to almost nothing.
  const TimeNs drop = clock.Now();
  int replicas = 4;
  TimeNs first_down = 0;
  while (NsToSec(clock.Now() - drop) < 400) {
    clock.AdvanceSec(kTickS);
    Decision d = policy.Decide(Load(clock, replicas, 0, 1, 0.1), AllReady(replicas));
    if (d.target < replicas && first_down == 0) first_down = clock.Now();
    replicas = d.target;
  }
  ASSERT_NE(first_down, 0) << "never scaled down";
  EXPECT_GE(NsToSec(first_down - drop), 300) << "scaled down inside the stabilisation window";
  EXPECT_LE(NsToSec(first_down - drop), 300 + 2 * kTickS);
  EXPECT_EQ(replicas, 1);  // down to min
}

TEST(AutoscalerPolicyTest, MinAndMaxRespected) {
  FakeClock clock;
  PolicyConfig c = BaseConfig();
  c.min_replicas = 2;
  c.max_replicas = 3;
  c.scale_down.stabilization_window_s = 0;
  c.scale_down.cooldown_s = 0;
  PoolPolicy policy(c, &clock);
  int replicas = 2;
  for (int i = 0; i < 20; ++i) {  // enormous load
    clock.AdvanceSec(kTickS);
    Decision d = policy.Decide(Load(clock, replicas, 500, 100, 2), AllReady(replicas));
    EXPECT_LE(d.target, 3) << d.ToLogLine();
    replicas = d.target;
  }
  EXPECT_EQ(replicas, 3);
  for (int i = 0; i < 20; ++i) {  // no load at all
    clock.AdvanceSec(kTickS);
    Decision d = policy.Decide(Load(clock, replicas, 0, 0, 0), AllReady(replicas));
    EXPECT_GE(d.target, 2) << d.ToLogLine();
    replicas = d.target;
  }
  EXPECT_EQ(replicas, 2);
  // A size outside the bounds (someone scaled by hand) is corrected even without metrics.
  clock.AdvanceSec(kTickS);
  Decision d = policy.Decide(absl::UnavailableError("prometheus down"), AllReady(7));
  EXPECT_EQ(d.target, 3) << d.ToLogLine();
  EXPECT_FALSE(d.metrics_ok);
}

TEST(AutoscalerPolicyTest, ScaleToZeroAndActivation) {
  FakeClock clock;
  PolicyConfig c = BaseConfig();
  c.min_replicas = 0;
  c.scale_to_zero_after_s = 120;
  c.activation_replicas = 1;
  PoolPolicy policy(c, &clock);
  int replicas = 1;
  clock.AdvanceSec(kTickS);
  Decision d = policy.Decide(Load(clock, 1, 0, 3, 0.3), AllReady(1));
  ASSERT_EQ(d.target, 1);
  const TimeNs idle_from = clock.Now();
  while (replicas > 0) {
    clock.AdvanceSec(kTickS);
    d = policy.Decide(Load(clock, replicas, 0, 0, 0), AllReady(replicas));
    replicas = d.target;
    ASSERT_LT(NsToSec(clock.Now() - idle_from), 200) << "never went to zero";
  }
  EXPECT_EQ(d.action, Action::kToZero);
  EXPECT_GE(NsToSec(clock.Now() - idle_from), 120);

  // At zero with no demand it stays there.
  for (int i = 0; i < 10; ++i) {
    clock.AdvanceSec(kTickS);
    d = policy.Decide(Load(clock, 0, 0, 0, 0), AllReady(0));
    EXPECT_EQ(d.target, 0) << d.ToLogLine();
    EXPECT_EQ(d.action, Action::kSteady);
  }
  // The first request arrives at the gateway: activation, at once (no window, no cooldown).
  clock.AdvanceSec(1);
  PoolSignals s = Load(clock, 0, 0, 0, 0);
  s.activation = 1;
  d = policy.Decide(s, AllReady(0));
  EXPECT_EQ(d.action, Action::kActivate) << d.ToLogLine();
  EXPECT_EQ(d.target, 1);
  // While the replica starts the demand is still queued at the gateway: no piling on.
  clock.AdvanceSec(kTickS);
  d = policy.Decide(s, ReplicaState{1, 0, 1});
  EXPECT_EQ(d.target, 1) << d.ToLogLine();
  // Without any activation source a pool at zero holds and says why.
  PolicyConfig c2 = c;
  PoolPolicy fresh(c2, &clock);
  PoolSignals unknown = Load(clock, 0, 0, 0, 0);
  unknown.activation_known = false;
  d = fresh.Decide(unknown, AllReady(0));
  EXPECT_EQ(d.action, Action::kHold);
  EXPECT_EQ(d.target, 0);
}

TEST(AutoscalerPolicyTest, HoldsWhenMetricsCannotBeRead) {
  FakeClock clock;
  PolicyConfig c = BaseConfig();
  c.max_metric_age_s = 30;
  PoolPolicy policy(c, &clock);
  clock.AdvanceSec(kTickS);
  // Prometheus down.
  Decision d = policy.Decide(absl::UnavailableError("connection refused"), AllReady(3));
  EXPECT_EQ(d.action, Action::kHold);
  EXPECT_EQ(d.target, 3);
  EXPECT_FALSE(d.metrics_ok);
  EXPECT_NE(d.reason.find("connection refused"), std::string::npos) << d.reason;
  // A replica missing from the metrics (2 of 3 report): even a big load does not move it.
  d = policy.Decide(Load(clock, 2, 100, 10, 1.8), AllReady(3));
  EXPECT_EQ(d.action, Action::kHold) << d.ToLogLine();
  EXPECT_EQ(d.target, 3);
  EXPECT_NE(d.reason.find("1 of 3 ready replicas missing"), std::string::npos) << d.reason;
  // Stale samples.
  PoolSignals stale = Load(clock, 3, 0, 0, 0);
  stale.max_sample_age_s = 120;
  d = policy.Decide(stale, AllReady(3));
  EXPECT_EQ(d.action, Action::kHold) << d.ToLogLine();
  // Signals read long ago (a reader stuck).
  PoolSignals old = Load(clock, 3, 0, 0, 0);
  clock.AdvanceSec(60);
  d = policy.Decide(old, AllReady(3));
  EXPECT_EQ(d.action, Action::kHold) << d.ToLogLine();
  EXPECT_NE(d.ToLogLine().find("action=hold"), std::string::npos);
  // Fresh, complete metrics again: it acts.
  d = policy.Decide(Load(clock, 3, 60, 10, 2.8), AllReady(3));
  EXPECT_EQ(d.action, Action::kScaleUp) << d.ToLogLine();
}

TEST(AutoscalerPolicyTest, TtftAboveSloScalesUpAndBelowAbstains) {
  FakeClock clock;
  PolicyConfig c = BaseConfig();
  c.target_waiting_per_replica = 0;
  c.target_kv_usage = 0;
  c.ttft_p95_slo_s = 0.5;
  PoolPolicy policy(c, &clock);
  PoolSignals s = Load(clock, 2, 0, 10, 0);
  s.ttft_p95_s = 0.2;
  Decision d = policy.Decide(s, AllReady(2));
  EXPECT_EQ(d.target, 2) << d.ToLogLine();
  EXPECT_TRUE(d.votes.empty()) << "under the SLO a latency signal has no opinion";
  clock.AdvanceSec(kTickS);
  s = Load(clock, 2, 0, 10, 0);
  s.ttft_p95_s = 1.0;  // twice the SLO on 2 replicas => 4
  d = policy.Decide(s, AllReady(2));
  EXPECT_EQ(d.action, Action::kScaleUp) << d.ToLogLine();
  EXPECT_EQ(d.target, 4);
}

TEST(AutoscalerPolicyTest, WithinToleranceStaysPut) {
  FakeClock clock;
  PolicyConfig c = BaseConfig();
  c.target_waiting_per_replica = 0;
  c.target_inflight_per_replica = 10;
  c.target_kv_usage = 0;
  PoolPolicy policy(c, &clock);
  // 3 replicas with 32 in flight: 10.7 per replica, within 10% of 10.
  Decision d = policy.Decide(Load(clock, 3, 2, 30, 0), AllReady(3));
  EXPECT_EQ(d.recommended, 3) << d.ToLogLine();
  EXPECT_EQ(d.action, Action::kSteady);
  clock.AdvanceSec(kTickS);
  d = policy.Decide(Load(clock, 3, 10, 30, 0), AllReady(3));  // 13.3 per replica => 4
  EXPECT_EQ(d.target, 4) << d.ToLogLine();
}

TEST(AutoscalerPolicyTest, ScaleDownCooldownAfterScaleUp) {
  FakeClock clock;
  PolicyConfig c = BaseConfig();
  c.scale_down.stabilization_window_s = 0;
  c.scale_down.cooldown_s = 60;
  PoolPolicy policy(c, &clock);
  Decision d = policy.Decide(Load(clock, 1, 10, 8, 0.9), AllReady(1));
  ASSERT_EQ(d.action, Action::kScaleUp);
  const int up = d.target;
  clock.AdvanceSec(kTickS);
  d = policy.Decide(Load(clock, up, 0, 0, 0), AllReady(up));
  EXPECT_EQ(d.action, Action::kCooldown) << d.ToLogLine();
  EXPECT_EQ(d.target, up);
  clock.AdvanceSec(60);
  d = policy.Decide(Load(clock, up, 0, 0, 0), AllReady(up));
  EXPECT_EQ(d.action, Action::kScaleDown) << d.ToLogLine();
}

}  // namespace
}  // namespace flotilla::autoscaler
