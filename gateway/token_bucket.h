// A token bucket on caller-supplied time: `rate` tokens per second refill up to `capacity`.
// The balance may go negative through Debit (usage reconciled after the fact), which then delays
// later takers until it refills. Not thread-safe: the owner locks.
#pragma once

#include <cstdint>

#include "common/clock.h"

namespace flotilla::gateway {

class TokenBucket {
 public:
  // Starts full. rate <= 0 means "never refills"; capacity <= 0 means the bucket admits nothing.
  TokenBucket(double rate_per_sec, double capacity, TimeNs now);

  // Takes `cost` when the balance covers it; otherwise takes nothing.
  bool TryTake(double cost, TimeNs now);
  // Takes `cost` unconditionally (the balance may go negative).
  void Debit(double cost, TimeNs now);
  // Gives back up to `amount` (never above capacity).
  void Credit(double amount, TimeNs now);

  // How long until `cost` could be taken; 0 when it can be taken now. A cost above capacity can
  // never be taken: the result is then kNever.
  TimeNs TimeUntil(double cost, TimeNs now) const;
  double Available(TimeNs now) const;

  // Changes rate and capacity, keeping the current balance (clamped to the new capacity).
  void Reconfigure(double rate_per_sec, double capacity, TimeNs now);

  double rate() const { return rate_; }
  double capacity() const { return capacity_; }

  static constexpr TimeNs kNever = INT64_MAX;

 private:
  void Refill(TimeNs now);

  double rate_;
  double capacity_;
  double tokens_;
  TimeNs last_;
};

}  // namespace flotilla::gateway
