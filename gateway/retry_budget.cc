#include "gateway/retry_budget.h"

namespace flotilla::gateway {

RetryBudget::RetryBudget(RetryBudgetConfig config)
    : config_(config), slot_width_(config.window / kSlots > 0 ? config.window / kSlots : 1) {}

RetryBudget::Slot& RetryBudget::Current(TimeNs now) {
  const int64_t epoch = now / slot_width_;
  Slot& s = slots_[static_cast<size_t>(epoch % kSlots)];
  if (s.epoch != epoch) s = Slot{epoch, 0, 0};
  return s;
}

void RetryBudget::Sum(TimeNs now, int64_t& requests, int64_t& retries) {
  const int64_t epoch = now / slot_width_;
  requests = retries = 0;
  for (const Slot& s : slots_) {
    if (s.epoch > epoch - kSlots && s.epoch <= epoch) {
      requests += s.requests;
      retries += s.retries;
    }
  }
}

void RetryBudget::RecordRequest(TimeNs now) { ++Current(now).requests; }

bool RetryBudget::TryRetry(TimeNs now) {
  int64_t requests = 0, retries = 0;
  Sum(now, requests, retries);
  const double allowed = config_.ratio * static_cast<double>(requests) + config_.min_per_second * NsToSec(config_.window);
  if (static_cast<double>(retries) + 1 > allowed) return false;
  ++Current(now).retries;
  return true;
}

int64_t RetryBudget::requests_in_window(TimeNs now) {
  int64_t requests = 0, retries = 0;
  Sum(now, requests, retries);
  return requests;
}

int64_t RetryBudget::retries_in_window(TimeNs now) {
  int64_t requests = 0, retries = 0;
  Sum(now, requests, retries);
  return retries;
}

}  // namespace flotilla::gateway
