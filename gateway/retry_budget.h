// A retry budget (as in Finagle and Envoy): retries are allowed while, over a sliding window,
// retries <= ratio * requests + min_per_second * window. It keeps retries from multiplying load
// when a whole pool is failing, while a single bad worker's failures are still retried.
// Not thread-safe: the owner locks. Time is passed in.
#pragma once

#include <array>
#include <cstdint>

#include "common/clock.h"

namespace flotilla::gateway {

struct RetryBudgetConfig {
  double ratio = 0.2;            // retries per request allowed on top of the floor
  double min_per_second = 3;     // floor, so low traffic can still retry
  TimeNs window = 10 * kNsPerSec;
};

class RetryBudget {
 public:
  explicit RetryBudget(RetryBudgetConfig config = {});

  void RecordRequest(TimeNs now);
  // Takes one retry from the budget when available.
  bool TryRetry(TimeNs now);

  int64_t requests_in_window(TimeNs now);
  int64_t retries_in_window(TimeNs now);

 private:
  static constexpr int kSlots = 10;
  struct Slot {
    int64_t epoch = -1;
    int64_t requests = 0;
    int64_t retries = 0;
  };
  Slot& Current(TimeNs now);
  void Sum(TimeNs now, int64_t& requests, int64_t& retries);

  RetryBudgetConfig config_;
  TimeNs slot_width_;
  std::array<Slot, kSlots> slots_;
};

}  // namespace flotilla::gateway
