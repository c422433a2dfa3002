// Admission: whether a request goes to a worker now, waits in the gateway's bounded per-model
// queue, or is refused at once. Pure functions of a load snapshot; the queue is a plain container
// with expiry on caller-supplied time. Refusals are statuses with retry-after:
//   no routable worker               -> UNAVAILABLE (503), reason "no_workers"
//   deadline cannot be met           -> DEADLINE_EXCEEDED, reason "deadline_infeasible"
//   every worker saturated, queue full -> RESOURCE_EXHAUSTED (429), reason "overloaded"
// Memory is bounded by queue_size per model: nothing else is held for a refused request.
#pragma once

#include <cstdint>
#include <deque>
#include <optional>
#include <span>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "common/clock.h"
#include "gateway/router.h"

namespace flotilla::gateway {

struct AdmissionConfig {
  uint32_t queue_size = 64;                 // requests per model waiting in the gateway
  TimeNs queue_timeout = 2 * kNsPerSec;     // longest wait there
  // A request for a known model with no ready worker (its pool at zero, or being replaced) waits
  // in the same queue this long for one to become ready (0: refuse at once with 503).
  TimeNs activation_timeout = 30 * kNsPerSec;
  TimeNs min_retry_after = 500 * kNsPerMs;  // floor of the Retry-After hint when shedding
  TimeNs max_retry_after = 30 * kNsPerSec;
};

// What admission needs to know about a model's pool right now.
struct PoolLoad {
  size_t available_workers = 0;   // routable (healthy, serving, circuit not open)
  size_t open_workers = 0;        // available and not saturated
  uint64_t total_slots = 0;       // sequence slots of the available workers
  uint64_t outstanding = 0;       // requests on them, as far as we know
  double mean_request_s = 0;      // recent mean request duration in this pool (0: unknown)
  double prefill_tokens_per_s = 0;  // best reported prefill rate (0: unknown)
  double best_wait_s = 0;         // estimated queueing at the least-loaded available worker
};

// Summarises worker views for admission. queue_depth as in RouterConfig.
PoolLoad SummarisePool(std::span<const WorkerView> workers, uint32_t queue_depth, double mean_request_s,
                       double prefill_tokens_per_s);

enum class AdmissionVerdict { kDispatch, kQueue, kReject };

struct AdmissionDecision {
  AdmissionVerdict verdict = AdmissionVerdict::kDispatch;
  absl::Status status;          // the refusal, for kReject
  double estimated_ttft_s = 0;  // what the estimate was (for logs and tests)
};

// `queued` is how many requests of this model already wait in the gateway; `deadline_left` the
// time the client still allows (<= 0: no deadline).
AdmissionDecision Admit(const AdmissionConfig& config, const PoolLoad& load, size_t queued,
                        TimeNs deadline_left, uint32_t prompt_tokens);

// The Retry-After hint when shedding: roughly how long until a queue slot frees.
int64_t ShedRetryAfterMs(const AdmissionConfig& config, const PoolLoad& load, size_t queued);

// A FIFO of waiting requests with per-entry expiry. Not thread-safe: the owner locks.
template <typename T>
class AdmissionQueue {
 public:
  explicit AdmissionQueue(size_t capacity) : capacity_(capacity) {}

  bool full() const { return items_.size() >= capacity_; }
  size_t size() const { return items_.size(); }
  bool empty() const { return items_.empty(); }
  void set_capacity(size_t capacity) { capacity_ = capacity; }

  // False (and `item` untouched) when full.
  bool Push(T item, TimeNs expires_at) {
    if (full()) return false;
    items_.push_back({std::move(item), expires_at});
    return true;
  }
  std::optional<T> Pop() {
    if (items_.empty()) return std::nullopt;
    T item = std::move(items_.front().first);
    items_.pop_front();
    return item;
  }
  // Removes the first entry equal to `item` (a cancelled waiter); true when found.
  bool Remove(const T& item) {
    for (auto it = items_.begin(); it != items_.end(); ++it) {
      if (it->first == item) {
        items_.erase(it);
        return true;
      }
    }
    return false;
  }
  // Removes and returns every entry whose expiry is <= now.
  std::vector<T> Expire(TimeNs now) {
    std::vector<T> out;
    for (auto it = items_.begin(); it != items_.end();) {
      if (it->second <= now) {
        out.push_back(std::move(it->first));
        it = items_.erase(it);
      } else {
        ++it;
      }
    }
    return out;
  }
  // Earliest expiry, for arming a timer.
  std::optional<TimeNs> NextExpiry() const {
    std::optional<TimeNs> t;
    for (const auto& [item, at] : items_) {
      if (!t || at < *t) t = at;
    }
    return t;
  }

 private:
  size_t capacity_;
  std::deque<std::pair<T, TimeNs>> items_;
};

}  // namespace flotilla::gateway
