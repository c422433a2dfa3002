// Plain data passed between the autoscaler's parts: what a metrics reader saw for one model
// pool, and what a backend says about the pool's replicas. No behaviour lives here.
#pragma once

#include <optional>
#include <string>

#include "common/clock.h"

namespace flotilla::autoscaler {

// Load of one model pool as read from its replicas' metrics (sums over the replicas that
// reported). Sums rather than means: a replica that is still starting and reports zeros must
// not dilute the figures the policy divides by its targets.
struct PoolSignals {
  std::string pool;
  // Replicas whose metrics were read (series present and fresh).
  int reporting = 0;
  double waiting = 0;       // sum of flotilla_requests_waiting
  double running = 0;       // sum of flotilla_requests_running
  double kv_usage_sum = 0;  // sum of flotilla_kv_cache_usage_ratio (0..1 each)
  // p95 time to first token over the reader's window; absent when no request got its first
  // token in the window (an idle pool has no latency to judge).
  std::optional<double> ttft_p95_s;
  // Demand seen in front of the pool (the gateway's requests waiting for, or refused for lack
  // of, a replica of this model). What wakes a pool that is at zero replicas.
  double activation = 0;
  // False when no activation source answered: a pool at zero then stays at zero.
  bool activation_known = false;
  // Age of the oldest sample that went into these figures, as the reader measured it.
  double max_sample_age_s = 0;
  // When the reader produced this, on the autoscaler's clock.
  TimeNs read_at = 0;
};

// What a backend says about one pool right now.
struct ReplicaState {
  int desired = 0;   // replicas the backend is asked to keep (Deployment spec.replicas)
  int ready = 0;     // serving traffic
  int starting = 0;  // launched, not ready yet: they count toward capacity
};

}  // namespace flotilla::autoscaler
