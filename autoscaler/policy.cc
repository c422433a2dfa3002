#include "autoscaler/policy.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace flotilla::autoscaler {
namespace {

TimeNs Sec(double s) { return static_cast<TimeNs>(s * kNsPerSec); }

int CeilDiv(double load, double target) {
  return static_cast<int>(std::ceil(load / target - 1e-9));
}

absl::Status CheckRules(const ScaleRules& r, absl::string_view which) {
  if (r.stabilization_window_s < 0 || r.period_s < 0 || r.max_pods < 0 || r.max_percent < 0 ||
      r.cooldown_s < 0) {
    return absl::InvalidArgumentError(absl::StrCat(which, ": windows, periods and limits must be >= 0"));
  }
  if ((r.max_pods > 0 || r.max_percent > 0) && r.period_s <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(which, ": a rate limit needs period_s > 0"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status PolicyConfig::Validate() const {
  if (pool.empty()) return absl::InvalidArgumentError("pool needs a model name");
  auto err = [&](absl::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat("pool '", pool, "': ", why));
  };
  if (min_replicas < 0 || max_replicas < 1 || min_replicas > max_replicas) {
    return err("need 0 <= min_replicas <= max_replicas and max_replicas >= 1");
  }
  if (target_waiting_per_replica < 0 || target_inflight_per_replica < 0 || target_kv_usage < 0 ||
      ttft_p95_slo_s < 0) {
    return err("targets must be >= 0 (0 turns a signal off)");
  }
  if (target_kv_usage > 1) return err("target_kv_usage is a ratio in (0, 1]");
  if (target_waiting_per_replica == 0 && target_inflight_per_replica == 0 &&
      target_kv_usage == 0 && ttft_p95_slo_s == 0) {
    return err("at least one target must be set");
  }
  if (tolerance < 0 || tolerance >= 1) return err("tolerance must be in [0, 1)");
  if (absl::Status st = CheckRules(scale_up, "scale_up"); !st.ok()) return err(st.message());
  if (absl::Status st = CheckRules(scale_down, "scale_down"); !st.ok()) return err(st.message());
  if (startup_time_s < 0 || scale_to_zero_after_s < 0) return err("times must be >= 0");
  if (activation_replicas < 1 || activation_replicas > max_replicas) {
    return err("activation_replicas must be in [1, max_replicas]");
  }
  if (max_metric_age_s <= 0) return err("max_metric_age_s must be > 0");
  return absl::OkStatus();
}

const char* ActionName(Action action) {
  switch (action) {
    case Action::kSteady: return "steady";
    case Action::kScaleUp: return "scale_up";
    case Action::kScaleDown: return "scale_down";
    case Action::kActivate: return "activate";
    case Action::kToZero: return "to_zero";
    case Action::kHold: return "hold";
    case Action::kWarming: return "warming";
    case Action::kCooldown: return "cooldown";
  }
  return "unknown";
}

std::string Decision::ToLogLine() const {
  std::string line = absl::StrFormat(
      "pool=%s action=%s current=%d ready=%d starting=%d recommended=%d target=%d metrics_ok=%d",
      pool, ActionName(action), current, ready, starting, recommended, target, metrics_ok);
  if (metrics_ok || inputs.reporting > 0) {
    absl::StrAppendFormat(&line,
                          " reporting=%d waiting=%g running=%g kv_usage_sum=%.3f activation=%g "
                          "max_sample_age_s=%.1f",
                          inputs.reporting, inputs.waiting, inputs.running, inputs.kv_usage_sum,
                          inputs.activation, inputs.max_sample_age_s);
    if (inputs.ttft_p95_s) absl::StrAppendFormat(&line, " ttft_p95_s=%.3f", *inputs.ttft_p95_s);
  }
  for (const SignalVote& v : votes) {
    absl::StrAppendFormat(&line, " vote.%s=%d(%.3g/%.3g)", v.signal, v.replicas, v.value, v.target);
  }
  absl::StrAppend(&line, " reason=\"", reason, "\"");
  return line;
}

PoolPolicy::PoolPolicy(PolicyConfig config, const Clock* clock)
    : config_(std::move(config)), clock_(clock), last_busy_(clock->Now()) {}

std::string PoolPolicy::CheckSignals(const absl::StatusOr<PoolSignals>& signals,
                                     const ReplicaState& state) const {
  if (!signals.ok()) return absl::StrCat("metrics unavailable: ", signals.status().message());
  const TimeNs now = clock_->Now();
  const double read_age = NsToSec(now - signals->read_at);
  if (read_age > config_.max_metric_age_s) {
    return absl::StrFormat("signals read %.0f s ago (max %.0f s)", read_age, config_.max_metric_age_s);
  }
  if (signals->max_sample_age_s > config_.max_metric_age_s) {
    return absl::StrFormat("stale samples: %.0f s old (max %.0f s)", signals->max_sample_age_s,
                           config_.max_metric_age_s);
  }
  if (signals->reporting < state.ready) {
    return absl::StrFormat("%d of %d ready replicas missing from metrics",
                           state.ready - signals->reporting, state.ready);
  }
  return "";
}

int PoolPolicy::Recommend(const PoolSignals& s, const ReplicaState& state,
                          std::vector<SignalVote>* votes) const {
  // Per-replica figures are over ready replicas: those are the ones carrying the load; the
  // replica counts themselves come from sums, so starting replicas never dilute them.
  const int base = std::max(1, state.ready);
  const double tol = config_.tolerance;
  auto proportional = [&](const std::string& name, double total, double target) {
    SignalVote v{name, total / base, target, 0};
    const double ratio = v.value / target;
    if (std::abs(ratio - 1) <= tol) {
      v.replicas = base;  // close enough to the target: as is
    } else {
      v.replicas = CeilDiv(total, target);
    }
    votes->push_back(v);
  };
  const double demand_waiting = s.waiting + s.activation;
  if (config_.target_waiting_per_replica > 0 && demand_waiting > 0) {
    // Up-only: an empty queue says nothing about how many replicas are needed, and a
    // non-empty one argues against shrinking.
    proportional("waiting", demand_waiting, config_.target_waiting_per_replica);
    votes->back().replicas = std::max(votes->back().replicas, state.ready);
  }
  if (config_.target_inflight_per_replica > 0) {
    proportional("inflight", s.running + demand_waiting, config_.target_inflight_per_replica);
  }
  if (config_.target_kv_usage > 0) {
    proportional("kv_usage", s.kv_usage_sum, config_.target_kv_usage);
  }
  if (config_.ttft_p95_slo_s > 0 && s.ttft_p95_s.has_value()) {
    const double ratio = *s.ttft_p95_s / config_.ttft_p95_slo_s;
    if (ratio > 1 + tol) {  // up-only: meeting the SLO is not evidence of spare capacity
      votes->push_back({"ttft_p95", *s.ttft_p95_s, config_.ttft_p95_slo_s,
                        static_cast<int>(std::ceil(base * ratio - 1e-9))});
    }
  }
  if (votes->empty()) return state.desired;  // no signal has an opinion: as is
  int best = 0;
  for (const SignalVote& v : *votes) best = std::max(best, v.replicas);
  // Zero is reached only through the idle rule, never by a proportional signal reading 0.
  return std::max(best, 1);
}

int PoolPolicy::Stabilize(int current, int recommended) const {
  // Kubernetes HPA: up to the lowest recommendation in the up-window, down to the highest in
  // the down-window; the newest recommendation is already in the history.
  const TimeNs now = clock_->Now();
  int up = recommended;
  int down = recommended;
  for (const Recommendation& r : recommendations_) {
    if (!r.down_only && now - r.at <= Sec(config_.scale_up.stabilization_window_s)) {
      up = std::min(up, r.replicas);
    }
    if (now - r.at <= Sec(config_.scale_down.stabilization_window_s)) {
      down = std::max(down, r.replicas);
    }
  }
  int out = current;
  if (out < up) out = up;
  if (out > down) out = down;
  return out;
}

int PoolPolicy::Limit(int current, int stabilized, const ReplicaState& state, Decision* d) const {
  const TimeNs now = clock_->Now();
  if (stabilized > current) {
    if (state.starting > 0 && now - starting_since_ < Sec(config_.startup_time_s)) {
      d->action = Action::kWarming;
      d->reason = absl::StrFormat("wants %d but %d replica(s) still starting (for %.0f s of an "
                                  "expected %.0f s): they count as capacity",
                                  stabilized, state.starting, NsToSec(now - starting_since_),
                                  config_.startup_time_s);
      return current;
    }
    if (ever_scaled_ && now - last_scale_up_ < Sec(config_.scale_up.cooldown_s)) {
      d->action = Action::kCooldown;
      d->reason = absl::StrFormat("wants %d; scale-up cooldown (%.0f s) not over", stabilized,
                                  config_.scale_up.cooldown_s);
      return current;
    }
    int added = 0;
    for (const ScaleEvent& e : events_) {
      if (now - e.at < Sec(config_.scale_up.period_s) && e.to > e.from) added += e.to - e.from;
    }
    const int start = current - added;
    const ScaleRules& r = config_.scale_up;
    int target = stabilized;
    if (r.max_pods > 0 || r.max_percent > 0) {
      int allowed = start;
      if (r.max_pods > 0) allowed = std::max(allowed, start + r.max_pods);
      if (r.max_percent > 0) {
        allowed = std::max(allowed, static_cast<int>(std::ceil(start * (1 + r.max_percent / 100))));
      }
      target = std::min(target, allowed);
    }
    if (target <= current) {
      d->action = Action::kCooldown;
      d->reason = absl::StrFormat("wants %d; scale-up rate limit reached for this period", stabilized);
      return current;
    }
    d->action = Action::kScaleUp;
    d->reason = target < stabilized
                    ? absl::StrFormat("wants %d; limited to %d this period", stabilized, target)
                    : "load above target";
    return target;
  }
  if (stabilized < current) {
    if (ever_scaled_ && now - last_scale_event_ < Sec(config_.scale_down.cooldown_s)) {
      d->action = Action::kCooldown;
      d->reason = absl::StrFormat("wants %d; scale-down cooldown (%.0f s) not over", stabilized,
                                  config_.scale_down.cooldown_s);
      return current;
    }
    int removed = 0;
    for (const ScaleEvent& e : events_) {
      if (now - e.at < Sec(config_.scale_down.period_s) && e.to < e.from) removed += e.from - e.to;
    }
    const int start = current + removed;
    const ScaleRules& r = config_.scale_down;
    int target = stabilized;
    if (r.max_pods > 0 || r.max_percent > 0) {
      int allowed = start;
      if (r.max_pods > 0) allowed = std::min(allowed, start - r.max_pods);
      if (r.max_percent > 0) {
        allowed = std::min(allowed, static_cast<int>(std::floor(start * (1 - r.max_percent / 100))));
      }
      target = std::max(target, allowed);
    }
    if (target >= current) {
      d->action = Action::kCooldown;
      d->reason = absl::StrFormat("wants %d; scale-down rate limit reached for this period", stabilized);
      return current;
    }
    d->action = Action::kScaleDown;
    d->reason = "load below target for the whole stabilisation window";
    return target;
  }
  d->action = Action::kSteady;
  d->reason = d->recommended == current ? "at target" : "stabilisation window holds the size";
  return current;
}

void PoolPolicy::Record(TimeNs now, int from, int to) {
  if (from == to) return;
  events_.push_back({now, from, to});
  ever_scaled_ = true;
  last_scale_event_ = now;
  if (to > from) last_scale_up_ = now;
}

void PoolPolicy::Trim(TimeNs now) {
  const TimeNs keep_recs = Sec(std::max(config_.scale_up.stabilization_window_s,
                                        config_.scale_down.stabilization_window_s));
  while (!recommendations_.empty() && now - recommendations_.front().at > keep_recs) {
    recommendations_.pop_front();
  }
  const TimeNs keep_events = Sec(std::max(config_.scale_up.period_s, config_.scale_down.period_s));
  while (!events_.empty() && now - events_.front().at > keep_events) events_.pop_front();
}

Decision PoolPolicy::Decide(const absl::StatusOr<PoolSignals>& signals, const ReplicaState& state) {
  const TimeNs now = clock_->Now();
  Trim(now);
  Decision d;
  d.pool = config_.pool;
  d.at = now;
  d.current = state.desired;
  d.ready = state.ready;
  d.starting = state.starting;
  d.recommended = state.desired;
  d.target = state.desired;
  if (signals.ok()) d.inputs = *signals;
  if (state.starting == 0) {
    starting_since_ = 0;
  } else if (starting_since_ == 0) {
    starting_since_ = now;
  }

  const std::string problem = CheckSignals(signals, state);
  d.metrics_ok = problem.empty();

  // Bounds first: they are configuration, not a judgement on metrics.
  if (state.desired < config_.min_replicas || state.desired > config_.max_replicas) {
    d.target = std::clamp(state.desired, config_.min_replicas, config_.max_replicas);
    d.action = d.target > state.desired ? Action::kScaleUp : Action::kScaleDown;
    d.reason = absl::StrFormat("outside [%d, %d]", config_.min_replicas, config_.max_replicas);
    if (!problem.empty()) absl::StrAppend(&d.reason, "; ", problem);
    Record(now, d.current, d.target);
    return d;
  }
  if (!problem.empty()) {
    d.action = Action::kHold;
    d.reason = absl::StrCat("holding size: ", problem);
    return d;
  }
  const PoolSignals& s = *signals;
  const bool busy = s.running + s.waiting + s.activation > 0;
  if (busy) last_busy_ = now;

  if (state.desired == 0) {
    if (s.activation > 0 || s.waiting > 0) {
      d.target = std::min(config_.activation_replicas, config_.max_replicas);
      d.recommended = d.target;
      d.action = Action::kActivate;
      d.reason = absl::StrFormat("demand at zero replicas (activation=%g)", s.activation);
      Record(now, d.current, d.target);
      return d;
    }
    if (!s.activation_known) {
      d.action = Action::kHold;
      d.metrics_ok = false;
      d.reason = "at zero and no activation signal could be read";
      return d;
    }
    d.action = Action::kSteady;
    d.reason = "at zero, no demand";
    return d;
  }

  d.recommended = Recommend(s, state, &d.votes);
  if (!seen_nonzero_) {
    // As the HPA does on first sight of a target: the size found counts as a recommendation,
    // so a restarted autoscaler does not shrink a fleet before a full down-window of evidence.
    recommendations_.push_back({now, state.desired, /*down_only=*/true});
    seen_nonzero_ = true;
  }
  recommendations_.push_back({now, d.recommended});

  if (config_.min_replicas == 0 && !busy && now - last_busy_ >= Sec(config_.scale_to_zero_after_s)) {
    d.target = 0;
    d.action = Action::kToZero;
    d.reason = absl::StrFormat("idle for %.0f s", NsToSec(now - last_busy_));
    Record(now, d.current, d.target);
    return d;
  }

  const int stabilized = std::clamp(Stabilize(state.desired, d.recommended),
                                    std::max(1, config_.min_replicas), config_.max_replicas);
  d.target = Limit(state.desired, stabilized, state, &d);
  Record(now, d.current, d.target);
  return d;
}

}  // namespace flotilla::autoscaler
