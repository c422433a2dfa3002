// Internal to the dispatcher: one client request from Submit to OnFinish (Dispatcher::Request).
// dispatcher.cc holds the pool-level side (admission queue, routing, concurrency), request.cc the
// per-request state machine. Not part of the gateway's public headers.
#pragma once

#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_format.h"
#include "gateway/dispatcher.h"
#include "gateway/upstream_call.h"

namespace flotilla::gateway {

class Dispatcher::Request final : public RequestHandle,
                                  public UpstreamCall::Owner,
                                  public std::enable_shared_from_this<Dispatcher::Request> {
 public:
  enum class Phase { kPreparing, kRateLimit, kQueued, kRouting, kUpstream, kDone };

  Request(Dispatcher* d, GenerateInput in, std::shared_ptr<ResponseSink> sink)
      : d_(d), in_(std::move(in)), sink_(std::move(sink)), start_(d->clock_->Now()), serial_(d->next_id_.fetch_add(1)) {
    if (in_.request_id.empty()) in_.request_id = absl::StrFormat("req-%016x", serial_ * 0x9e3779b97f4a7c15ULL);
    info_.request_id = in_.request_id;
    info_.model = in_.model;
  }

  void Begin();
  void Dispatch();
  void FailFromQueue(const absl::Status& st);
  const std::string& model() const { return in_.model; }
  TimeNs deadline() const { return in_.deadline; }
  uint32_t prompt_tokens() const { return static_cast<uint32_t>(prompt_ids_.size()); }
  uint64_t serial() const { return serial_; }

  void Next() override;
  void Cancel() override;
  void OnUpstreamMessage(UpstreamCall* call, worker::v1::GenerateResponse&& message) override;
  void OnUpstreamDone(UpstreamCall* call, const grpc::Status& status) override;

 private:
  absl::Status Prepare();
  void OnRateLimit(const absl::Status& st, const RateLimitDecision& decision);
  bool ServeFromCache();
  void Finish(absl::Status st);

  Dispatcher* const d_;
  GenerateInput in_;
  std::shared_ptr<ResponseSink> sink_;  // reset after OnFinish: the sink holds us too
  const TimeNs start_;
  const uint64_t serial_;

  // Set by Prepare, read-only afterwards.
  std::shared_ptr<const Tenant> tenant_;
  std::shared_ptr<const ModelFacts> facts_;
  bool known_model_ = false;  // the model exists (metrics may name it)
  std::vector<int32_t> prompt_ids_;
  worker::v1::GenerateRequest upstream_;
  RouteKey route_key_;
  std::string cache_key_;  // empty: not cacheable
  bool holds_concurrency_ = false;

  absl::Mutex mu_;
  Phase phase_ ABSL_GUARDED_BY(mu_) = Phase::kPreparing;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  bool started_ ABSL_GUARDED_BY(mu_) = false;  // something went to the client: no more retries
  bool final_ ABSL_GUARDED_BY(mu_) = false;    // the worker sent its finish reason
  std::set<std::string> tried_ ABSL_GUARDED_BY(mu_);
  std::shared_ptr<UpstreamCall> call_ ABSL_GUARDED_BY(mu_);
  absl::Status last_error_ ABSL_GUARDED_BY(mu_);
  uint32_t completion_tokens_ ABSL_GUARDED_BY(mu_) = 0;
  // Read-ahead: the worker stream is read while the sink writes the previous chunk; what arrives
  // meanwhile is merged into one pending chunk (fewer, larger writes when the client is the
  // slower side), up to kMaxBufferedTokens, beyond which reading pauses until the sink catches up.
  static constexpr int kMaxBufferedTokens = 256;
  bool sink_busy_ ABSL_GUARDED_BY(mu_) = false;
  bool reading_paused_ ABSL_GUARDED_BY(mu_) = false;
  bool has_pending_ ABSL_GUARDED_BY(mu_) = false;
  worker::v1::GenerateResponse pending_ ABSL_GUARDED_BY(mu_);
  std::optional<absl::Status> deferred_finish_ ABSL_GUARDED_BY(mu_);  // ends once the sink drained
  worker::v1::GenerateResponse aggregate_ ABSL_GUARDED_BY(mu_);  // for the cache and prompt logs
  FinishInfo info_ ABSL_GUARDED_BY(mu_);
};

}  // namespace flotilla::gateway
