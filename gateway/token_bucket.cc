#include "gateway/token_bucket.h"

#include <algorithm>
#include <cmath>

namespace flotilla::gateway {

TokenBucket::TokenBucket(double rate_per_sec, double capacity, TimeNs now)
    : rate_(rate_per_sec), capacity_(capacity), tokens_(std::max(0.0, capacity)), last_(now) {}

void TokenBucket::Refill(TimeNs now) {
  // Time never runs backwards here, even if a caller passes an older timestamp.
  if (now <= last_) return;
  if (rate_ > 0) tokens_ = std::min(capacity_, tokens_ + rate_ * NsToSec(now - last_));
  last_ = now;
}

bool TokenBucket::TryTake(double cost, TimeNs now) {
  Refill(now);
  if (cost > tokens_) return false;
  tokens_ -= cost;
  return true;
}

void TokenBucket::Debit(double cost, TimeNs now) {
  Refill(now);
  tokens_ -= cost;
}

void TokenBucket::Credit(double amount, TimeNs now) {
  Refill(now);
  tokens_ = std::min(capacity_, tokens_ + amount);
}

TimeNs TokenBucket::TimeUntil(double cost, TimeNs now) const {
  if (cost > capacity_) return kNever;
  double tokens = tokens_;
  if (now > last_ && rate_ > 0) tokens = std::min(capacity_, tokens + rate_ * NsToSec(now - last_));
  if (tokens >= cost) return 0;
  if (rate_ <= 0) return kNever;
  return static_cast<TimeNs>(std::ceil((cost - tokens) / rate_ * kNsPerSec));
}

double TokenBucket::Available(TimeNs now) const {
  double tokens = tokens_;
  if (now > last_ && rate_ > 0) tokens = std::min(capacity_, tokens + rate_ * NsToSec(now - last_));
  return tokens;
}

void TokenBucket::Reconfigure(double rate_per_sec, double capacity, TimeNs now) {
  Refill(now);
  rate_ = rate_per_sec;
  capacity_ = capacity;
  tokens_ = std::min(tokens_, capacity_);
}

}  // namespace flotilla::gateway
