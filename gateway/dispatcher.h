// The request path shared by the gRPC and HTTP fronts:
//   auth -> model and validation -> chat template and tokenization -> tenant concurrency ->
//   rate limits (async with Redis) -> response cache -> admission (dispatch, queue, or refuse) ->
//   route to a worker -> stream back, retrying on another worker until the first token.
// A front end turns its request into GenerateInput, calls Submit with a ResponseSink, and drives
// flow control through the returned handle (Next after each chunk is written; Cancel when the
// client goes away).
// Thread-safety: Submit and the handle's methods may be called from any thread. Sink callbacks run
// on gateway threads (gRPC callbacks, timer, Redis I/O); for one request they never overlap.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "common/clock.h"
#include "flotilla/v1/types.pb.h"
#include "flotilla/worker/v1/worker.pb.h"
#include "gateway/admission.h"
#include "gateway/auth.h"
#include "gateway/chat_template.h"
#include "gateway/fleet.h"
#include "gateway/metrics.h"
#include "gateway/rate_limiter.h"
#include "gateway/response_cache.h"
#include "gateway/retry_budget.h"
#include "gateway/router.h"
#include "gateway/timer.h"

namespace flotilla::gateway {

struct GenerateInput {
  std::string api = "grpc";  // for metrics: grpc | http
  std::string api_key;
  std::string model;
  bool chat = false;
  std::string prompt;                 // completions
  std::vector<int32_t> prompt_ids;    // completions given as token ids (used when non-empty)
  std::vector<ChatTurn> messages;     // chat
  flotilla::v1::SamplingParams sampling;
  std::optional<uint32_t> max_tokens;
  std::vector<std::string> stop;
  int32_t priority = 0;
  std::string request_id;             // generated when empty
  bool ignore_eos = false;
  std::string zone;
  std::optional<bool> add_bos;
  TimeNs deadline = 0;                // absolute, on the gateway's clock; 0: none
};

struct FinishInfo {
  std::string request_id;
  std::string model;
  std::string tenant;
  std::string worker;  // the worker that served it ("" for cache hits and refusals)
  flotilla::v1::FinishReason finish_reason = flotilla::v1::FINISH_REASON_UNSPECIFIED;
  flotilla::v1::Usage usage;  // partial when the stream broke after the first token
  double ttft_s = 0;
  bool cached = false;        // served from the response cache
  int attempts = 0;
};

class RequestHandle;

class ResponseSink {
 public:
  virtual ~ResponseSink() = default;
  // Flow control and cancellation for this request; set by Submit before any callback runs.
  // The sink should drop it after OnFinish (it and the request refer to each other until then).
  std::shared_ptr<RequestHandle> handle() const { return handle_; }
  void ReleaseHandle() { handle_.reset(); }
  // New tokens (the last chunk also carries finish_reason and usage). Once written, the sink calls
  // RequestHandle::Next() for the next one.
  virtual void OnChunk(const worker::v1::GenerateResponse& chunk, const FinishInfo& so_far) = 0;
  // The end. OK: finished (finish reason and usage in info). Otherwise the error, carrying
  // retry-after when retrying later may help; info.usage is the partial usage if tokens were sent.
  virtual void OnFinish(const absl::Status& status, const FinishInfo& info) = 0;

 private:
  friend class Dispatcher;
  std::shared_ptr<RequestHandle> handle_;
};

class RequestHandle {
 public:
  virtual ~RequestHandle() = default;
  virtual void Next() = 0;
  virtual void Cancel() = 0;
};

struct DispatcherOptions {
  AdmissionConfig admission;
  RouterConfig router;
  RetryBudgetConfig retry_budget;
  uint32_t max_attempts = 3;             // worker calls per request, first included
  uint32_t affinity_prefix_tokens = 64;  // leading tokens hashed for prefix affinity
  uint32_t default_max_tokens = 16;      // completions without max_tokens (OpenAI's default)
  uint32_t max_stop_sequences = 8;
  bool log_requests = true;              // one line per request (never the text)
  bool log_prompts = false;              // ...with prompt and completion text (opt-in)
};

class Dispatcher {
 public:
  Dispatcher(DispatcherOptions options, Fleet* fleet, Authenticator* auth, RateLimiter* limiter,
             ResponseCache* cache /* nullable: off */, GatewayMetrics* metrics, TimerThread* timer,
             const Clock* clock);
  ~Dispatcher();

  // May call sink->OnFinish before returning (e.g. on a bad key). The handle stays valid for as
  // long as the caller holds it.
  std::shared_ptr<RequestHandle> Submit(GenerateInput input, std::shared_ptr<ResponseSink> sink);

  // A worker of `model` changed (load report, health): queued requests may proceed.
  void OnPoolChanged(const std::string& model);

  // New requests are refused with UNAVAILABLE from now on (shutdown drain).
  void StopAccepting() { accepting_.store(false); }
  int64_t open_requests() const { return open_.load(); }
  // Cancels every open request (end of a drain).
  void CancelAll();

  const DispatcherOptions& options() const { return options_; }

 private:
  class Request;
  friend class Request;

  struct Pool {
    explicit Pool(const DispatcherOptions& o)
        : router(o.router), budget(o.retry_budget), queue(o.admission.queue_size) {}
    Router router;
    RetryBudget budget;
    AdmissionQueue<std::shared_ptr<Request>> queue;
    double mean_request_s = 0;  // EWMA of worker call durations
  };
  Pool& PoolFor(const std::string& model) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Admit(const std::shared_ptr<Request>& r);
  void DrainQueue(const std::string& model);
  void ExpireQueued(const std::string& model);
  void RecordDuration(const std::string& model, double seconds);
  bool TakeRetry(const std::string& model);
  std::optional<size_t> Route(const std::string& model, const PoolSnapshot& snap, const RouteKey& key,
                              const std::vector<bool>& excluded);
  bool AcquireConcurrency(const Tenant& t);
  void ReleaseConcurrency(const std::string& tenant);

  const DispatcherOptions options_;
  Fleet* const fleet_;
  Authenticator* const auth_;
  RateLimiter* const limiter_;
  ResponseCache* const cache_;
  GatewayMetrics* const metrics_;
  TimerThread* const timer_;
  const Clock* const clock_;
  std::atomic<bool> accepting_{true};
  std::atomic<int64_t> open_{0};
  std::atomic<uint64_t> next_id_{1};

  absl::Mutex mu_;
  std::map<std::string, std::unique_ptr<Pool>> pools_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, uint32_t> tenant_open_ ABSL_GUARDED_BY(mu_);
  absl::Mutex open_mu_;
  std::map<uint64_t, std::weak_ptr<Request>> open_set_ ABSL_GUARDED_BY(open_mu_);
};

// Whether a request's output is a function of its input alone (greedy, or a fixed seed).
bool IsDeterministic(const flotilla::v1::SamplingParams& sampling);

}  // namespace flotilla::gateway
