#include "gateway/circuit_breaker.h"

#include <algorithm>

namespace flotilla::gateway {

CircuitBreaker::State CircuitBreaker::state(TimeNs now) const {
  if (!open_) return State::kClosed;
  return now >= open_until_ ? State::kHalfOpen : State::kOpen;
}

bool CircuitBreaker::WouldAllow(TimeNs now) const {
  switch (state(now)) {
    case State::kClosed: return true;
    case State::kOpen: return false;
    case State::kHalfOpen: return !probe_in_flight_;
  }
  return false;
}

bool CircuitBreaker::Allow(TimeNs now) {
  if (!WouldAllow(now)) return false;
  if (state(now) == State::kHalfOpen) probe_in_flight_ = true;
  return true;
}

void CircuitBreaker::ReleaseProbe() { probe_in_flight_ = false; }

void CircuitBreaker::RecordSuccess(TimeNs now) {
  consecutive_failures_ = 0;
  if (open_ && (now >= open_until_ || probe_in_flight_)) {
    open_ = false;
    consecutive_ejections_ = 0;
  }
  probe_in_flight_ = false;
}

void CircuitBreaker::RecordFailure(TimeNs now) {
  ++consecutive_failures_;
  const bool probe_failed = open_ && (probe_in_flight_ || now >= open_until_);
  probe_in_flight_ = false;
  if (open_ && !probe_failed) return;  // already ejected; late failures of older calls don't extend it
  if (!open_ && consecutive_failures_ < config_.failures_to_open) return;
  // Open (or re-open after a failed probe) with an exponentially longer ejection.
  TimeNs ejection = config_.base_ejection;
  for (uint32_t i = 0; i < consecutive_ejections_ && ejection < config_.max_ejection; ++i) ejection *= 2;
  ejection = std::min(ejection, config_.max_ejection);
  open_ = true;
  open_until_ = now + ejection;
  ++consecutive_ejections_;
  ++ejections_total_;
}

}  // namespace flotilla::gateway
