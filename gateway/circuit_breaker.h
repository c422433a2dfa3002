// Per-worker circuit breaker. Closed: every request may go. After `failures_to_open` consecutive
// failures it opens: the worker is ejected for an ejection time that doubles with each
// consecutive ejection (up to a cap). When that time is up it is half-open: exactly one request
// (or active health probe) is let through as a probe; success closes it, failure opens it again.
// Not thread-safe: the owner locks. Time is passed in, so tests run on a fake clock.
#pragma once

#include <cstdint>

#include "common/clock.h"

namespace flotilla::gateway {

struct CircuitBreakerConfig {
  uint32_t failures_to_open = 3;
  TimeNs base_ejection = 2 * kNsPerSec;
  TimeNs max_ejection = 60 * kNsPerSec;
};

class CircuitBreaker {
 public:
  enum class State { kClosed, kOpen, kHalfOpen };

  explicit CircuitBreaker(CircuitBreakerConfig config = {}) : config_(config) {}

  // Whether a request may be sent now. In half-open state the first caller gets true and becomes
  // the probe; everyone else gets false until the probe reports.
  bool Allow(TimeNs now);
  // Whether the worker would be allowed now, without claiming the probe (for routing views).
  bool WouldAllow(TimeNs now) const;

  void RecordSuccess(TimeNs now);
  void RecordFailure(TimeNs now);
  // The probe was claimed but never sent (e.g. the router chose another worker): release it.
  void ReleaseProbe();

  State state(TimeNs now) const;
  uint32_t consecutive_failures() const { return consecutive_failures_; }
  uint32_t ejections() const { return ejections_total_; }
  TimeNs open_until() const { return open_until_; }

 private:
  CircuitBreakerConfig config_;
  bool open_ = false;
  bool probe_in_flight_ = false;
  uint32_t consecutive_failures_ = 0;
  uint32_t consecutive_ejections_ = 0;
  uint32_t ejections_total_ = 0;
  TimeNs open_until_ = 0;
};

}  // namespace flotilla::gateway
