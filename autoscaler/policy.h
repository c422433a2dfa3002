// The scaling policy for one model pool: plain data in (signals read from metrics, the
// backend's replica counts), a decision out. No threads, no I/O; time comes from an injected
// Clock so tests drive it with FakeClock. Not thread-safe: one controller thread owns it.
//
// How it decides (docs/autoscaler.md has the long version):
//  1. min/max are enforced first, whatever the metrics say.
//  2. Unreadable, stale or incomplete metrics => HOLD the current size (never scale on absent
//     data). At zero replicas only the activation signal matters: demand wakes the pool.
//  3. Each enabled target yields a replica count (HPA's AverageValue rule, over sums):
//       waiting per replica (up-only: a queue never argues for fewer replicas),
//       in-flight (running+waiting) per replica, KV usage per replica (both directions),
//       p95 TTFT vs SLO (up-only: low latency says nothing about spare capacity).
//     The recommendation is their maximum; within `tolerance` of a target means "as is".
//  4. Stabilisation windows as in the Kubernetes HPA: scale up to the lowest recommendation
//     of the up-window (0 s by default: fast), down to the highest of the down-window (slow).
//  5. Rate limits per period (pods or percent, the larger wins), cooldowns, and start-up
//     awareness: replicas still starting count toward capacity and, while they are younger
//     than `startup_time_s`, no further scale-up is made.
//  6. With min_replicas = 0 a pool idle for `scale_to_zero_after_s` goes to zero.
#pragma once

#include <deque>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "autoscaler/signals.h"
#include "common/clock.h"

namespace flotilla::autoscaler {

// Limits for one direction of change.
struct ScaleRules {
  double stabilization_window_s = 0;
  // At most max(max_pods, max_percent% of the count at the period's start) change per period;
  // a rule set to 0 is off, both off means no limit.
  double period_s = 15;
  int max_pods = 4;
  double max_percent = 100;
  // Up: minimum time between scale-ups. Down: minimum time since any scale event.
  double cooldown_s = 0;
};

struct PolicyConfig {
  std::string pool;  // the model name workers export as label `model`
  int min_replicas = 1;
  int max_replicas = 4;

  // Targets; 0 turns a signal off. At least one must be on.
  double target_waiting_per_replica = 2;
  double target_inflight_per_replica = 0;
  double target_kv_usage = 0.8;
  double ttft_p95_slo_s = 0;
  double tolerance = 0.1;

  ScaleRules scale_up{.stabilization_window_s = 0, .period_s = 15, .max_pods = 4,
                      .max_percent = 100, .cooldown_s = 0};
  ScaleRules scale_down{.stabilization_window_s = 300, .period_s = 60, .max_pods = 0,
                        .max_percent = 100, .cooldown_s = 30};

  // How long a worker normally takes to become ready.
  double startup_time_s = 60;
  // min_replicas = 0 only: idle (nothing running, waiting or asked for) this long => zero.
  double scale_to_zero_after_s = 300;
  // Replicas started when demand arrives at a pool that is at zero.
  int activation_replicas = 1;
  // Signals or samples older than this are not acted on.
  double max_metric_age_s = 60;

  absl::Status Validate() const;
};

enum class Action {
  kSteady,     // no change needed
  kScaleUp,
  kScaleDown,
  kActivate,   // zero -> activation_replicas on demand
  kToZero,     // idle long enough
  kHold,       // metrics unavailable: size kept, said so
  kWarming,    // a scale-up was wanted but replicas are still starting
  kCooldown,   // a change was wanted but a cooldown or rate limit forbids it for now
};

const char* ActionName(Action action);

// What one signal asked for.
struct SignalVote {
  std::string signal;  // waiting, inflight, kv_usage, ttft_p95
  double value = 0;    // the per-replica figure (or p95 seconds)
  double target = 0;
  int replicas = 0;    // what this signal alone would want
};

struct Decision {
  std::string pool;
  Action action = Action::kSteady;
  int current = 0;      // backend's desired count before this decision
  int ready = 0;
  int starting = 0;
  int recommended = 0;  // from the signals, before windows and limits (= current when holding)
  int target = 0;       // what the backend should be asked for
  bool metrics_ok = false;
  std::string reason;
  std::vector<SignalVote> votes;
  PoolSignals inputs;
  TimeNs at = 0;

  bool Changes() const { return target != current; }
  // One line with every input, for the log.
  std::string ToLogLine() const;
};

class PoolPolicy {
 public:
  // `config` must have passed Validate(); `clock` must outlive the policy.
  PoolPolicy(PolicyConfig config, const Clock* clock);

  // `signals` is the reader's answer (an error when the metrics could not be read).
  // Assumes the returned target is applied; the next call's state shows whether it was.
  Decision Decide(const absl::StatusOr<PoolSignals>& signals, const ReplicaState& state);

  const PolicyConfig& config() const { return config_; }

 private:
  struct Recommendation {
    TimeNs at;
    int replicas;
    bool down_only = false;  // the size found at first sight: evidence against shrinking only
  };
  struct ScaleEvent {
    TimeNs at;
    int from;
    int to;
  };

  // Returns an empty string when the signals can be acted on, else why not.
  std::string CheckSignals(const absl::StatusOr<PoolSignals>& signals,
                           const ReplicaState& state) const;
  int Recommend(const PoolSignals& s, const ReplicaState& state, std::vector<SignalVote>* votes) const;
  int Stabilize(int current, int recommended) const;
  // Applies rate limits, cooldowns and start-up awareness; sets action and reason.
  int Limit(int current, int stabilized, const ReplicaState& state, Decision* d) const;
  void Record(TimeNs now, int from, int to);
  void Trim(TimeNs now);

  const PolicyConfig config_;
  const Clock* clock_;
  std::deque<Recommendation> recommendations_;
  std::deque<ScaleEvent> events_;
  TimeNs last_scale_up_ = 0;
  TimeNs last_scale_event_ = 0;
  bool ever_scaled_ = false;
  bool seen_nonzero_ = false;
  TimeNs last_busy_;        // last time any demand was seen
  TimeNs starting_since_ = 0;  // when the current run of "some replicas starting" began
};

}  // namespace flotilla::autoscaler
