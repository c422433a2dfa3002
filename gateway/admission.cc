#include "gateway/admission.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "gateway/errors.h"

namespace flotilla::gateway {

PoolLoad SummarisePool(std::span<const WorkerView> workers, uint32_t queue_depth, double mean_request_s,
                       double prefill_tokens_per_s) {
  PoolLoad load;
  load.mean_request_s = mean_request_s;
  load.prefill_tokens_per_s = prefill_tokens_per_s;
  double best = -1;
  for (const auto& w : workers) {
    if (!w.available) continue;
    ++load.available_workers;
    if (!w.Saturated(queue_depth)) ++load.open_workers;
    load.total_slots += std::max<uint32_t>(1, w.max_num_seqs);
    load.outstanding += w.Outstanding();
    // A new request waits for every request beyond the slots to finish, shared over the slots.
    const double excess = static_cast<double>(w.Outstanding() + 1) - static_cast<double>(std::max<uint32_t>(1, w.max_num_seqs));
    const double wait = excess > 0 ? excess * mean_request_s / std::max<uint32_t>(1, w.max_num_seqs) : 0;
    if (best < 0 || wait < best) best = wait;
  }
  load.best_wait_s = std::max(0.0, best);
  return load;
}

int64_t ShedRetryAfterMs(const AdmissionConfig& config, const PoolLoad& load, size_t queued) {
  double s = 0;
  if (load.total_slots > 0 && load.mean_request_s > 0) {
    s = (static_cast<double>(queued) + 1) * load.mean_request_s / static_cast<double>(load.total_slots);
  }
  TimeNs ns = static_cast<TimeNs>(s * kNsPerSec);
  ns = std::clamp(ns, config.min_retry_after, config.max_retry_after);
  return ns / kNsPerMs;
}

AdmissionDecision Admit(const AdmissionConfig& config, const PoolLoad& load, size_t queued,
                        TimeNs deadline_left, uint32_t prompt_tokens) {
  AdmissionDecision d;
  if (load.available_workers == 0) {
    d.verdict = AdmissionVerdict::kReject;
    d.status = WithReason(WithRetryAfter(absl::UnavailableError("no healthy worker serves this model"),
                                         config.min_retry_after / kNsPerMs),
                          "no_workers");
    return d;
  }
  const bool dispatch_now = load.open_workers > 0 && queued == 0;
  // Time to first token if admitted: queueing (at the best worker, or behind the gateway queue),
  // then prefill.
  double wait = load.best_wait_s;
  if (!dispatch_now && load.total_slots > 0) {
    wait += (static_cast<double>(queued) + 1) * load.mean_request_s / static_cast<double>(load.total_slots);
  }
  const double prefill = load.prefill_tokens_per_s > 0 ? prompt_tokens / load.prefill_tokens_per_s : 0;
  d.estimated_ttft_s = wait + prefill;
  if (deadline_left > 0 && d.estimated_ttft_s > NsToSec(deadline_left)) {
    d.verdict = AdmissionVerdict::kReject;
    d.status = WithReason(
        WithRetryAfter(absl::DeadlineExceededError(absl::StrFormat(
                           "deadline cannot be met: first token expected in %.3f s, deadline in %.3f s",
                           d.estimated_ttft_s, NsToSec(deadline_left))),
                       ShedRetryAfterMs(config, load, queued)),
        "deadline_infeasible");
    return d;
  }
  if (dispatch_now) {
    d.verdict = AdmissionVerdict::kDispatch;
    return d;
  }
  if (queued < config.queue_size) {
    d.verdict = AdmissionVerdict::kQueue;
    return d;
  }
  d.verdict = AdmissionVerdict::kReject;
  d.status = Overloaded(absl::StrCat("every worker of the model is saturated (", load.outstanding, " requests on ",
                                     load.total_slots, " sequence slots) and ", queued,
                                     " requests already wait in the gateway; retry later"),
                        ShedRetryAfterMs(config, load, queued));
  return d;
}

}  // namespace flotilla::gateway
