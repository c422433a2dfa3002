#include <algorithm>
#include <cmath>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "gateway/dispatcher_request.h"
#include "gateway/errors.h"
#include "spdlog/spdlog.h"

namespace flotilla::gateway {
namespace {

using flotilla::v1::FinishReason;


std::string CodeName(absl::StatusCode code) { return absl::StatusCodeToString(code); }

std::string GrpcCodeName(grpc::StatusCode code) {
  return absl::StatusCodeToString(static_cast<absl::StatusCode>(code));
}

// Worker outcomes that say something about the worker's health.
bool WorkerFault(grpc::StatusCode c) {
  return c == grpc::StatusCode::UNAVAILABLE || c == grpc::StatusCode::INTERNAL || c == grpc::StatusCode::UNKNOWN ||
         c == grpc::StatusCode::DATA_LOSS || c == grpc::StatusCode::UNIMPLEMENTED;
}

// Failures another worker might not have.
bool Retriable(grpc::StatusCode c) {
  return WorkerFault(c) || c == grpc::StatusCode::RESOURCE_EXHAUSTED || c == grpc::StatusCode::ABORTED ||
         c == grpc::StatusCode::CANCELLED;
}

// A worker's error as the client should see it (before any token was sent).
absl::Status ClientError(const grpc::Status& st, const std::string& worker) {
  const std::string& msg = st.error_message();
  switch (st.error_code()) {
    case grpc::StatusCode::INVALID_ARGUMENT: return absl::InvalidArgumentError(msg);
    case grpc::StatusCode::OUT_OF_RANGE: return absl::OutOfRangeError(msg);
    case grpc::StatusCode::FAILED_PRECONDITION: return absl::FailedPreconditionError(msg);
    case grpc::StatusCode::DEADLINE_EXCEEDED: return absl::DeadlineExceededError(absl::StrCat("deadline exceeded: ", msg));
    case grpc::StatusCode::RESOURCE_EXHAUSTED: return Overloaded(absl::StrCat("workers are full: ", msg), 1000);
    default:
      return WithReason(WithRetryAfter(absl::UnavailableError(absl::StrCat("worker ", worker, " failed: ", msg)), 1000),
                        "worker_failed");
  }
}

absl::Status ValidateSampling(const flotilla::v1::SamplingParams& s) {
  if (s.has_temperature() && (s.temperature() < 0 || s.temperature() > 2 || std::isnan(s.temperature()))) {
    return absl::InvalidArgumentError("temperature must be between 0 and 2");
  }
  if (s.has_top_p() && (s.top_p() <= 0 || s.top_p() > 1)) return absl::InvalidArgumentError("top_p must be in (0, 1]");
  if (s.has_top_k() && s.top_k() < 0) return absl::InvalidArgumentError("top_k must be >= 0");
  if (s.has_min_p() && (s.min_p() < 0 || s.min_p() > 1)) return absl::InvalidArgumentError("min_p must be in [0, 1]");
  if (s.has_repetition_penalty() && (s.repetition_penalty() <= 0 || s.repetition_penalty() > 10)) {
    return absl::InvalidArgumentError("repetition_penalty must be in (0, 10]");
  }
  if (s.has_presence_penalty() && std::fabs(s.presence_penalty()) > 2) {
    return absl::InvalidArgumentError("presence_penalty must be between -2 and 2");
  }
  if (s.has_frequency_penalty() && std::fabs(s.frequency_penalty()) > 2) {
    return absl::InvalidArgumentError("frequency_penalty must be between -2 and 2");
  }
  if (s.logprobs() > 20) return absl::InvalidArgumentError("logprobs must be at most 20");
  return absl::OkStatus();
}

}  // namespace
bool IsDeterministic(const flotilla::v1::SamplingParams& s) {
  return (s.has_temperature() && s.temperature() == 0) || (s.has_top_k() && s.top_k() == 1) || s.has_seed();
}

// One client request from Submit to OnFinish.

void Dispatcher::Request::Begin() {
  if (absl::Status st = Prepare(); !st.ok()) {
    Finish(std::move(st));
    return;
  }
  if (!d_->AcquireConcurrency(*tenant_)) {
    d_->metrics_->RateLimited(tenant_->name, "concurrency");
    Finish(RateLimited("rate_limit_concurrency",
                       absl::StrCat("tenant '", tenant_->name, "' already has ", tenant_->limits.max_concurrent,
                                    " requests open"),
                       1000));
    return;
  }
  holds_concurrency_ = true;
  {
    absl::MutexLock lock(&mu_);
    phase_ = Phase::kRateLimit;
  }
  auto self = shared_from_this();
  d_->limiter_->Acquire(tenant_->name, tenant_->limits, static_cast<int64_t>(prompt_ids_.size()),
                        [self](absl::Status st, RateLimitDecision decision) { self->OnRateLimit(st, decision); });
}

absl::Status Dispatcher::Request::Prepare() {
  if (!d_->accepting_.load()) {
    return WithRetryAfter(absl::UnavailableError("gateway is shutting down"), 1000);
  }
  auto tenant = d_->auth_->Authenticate(in_.api_key);
  if (!tenant.ok()) return tenant.status();
  tenant_ = *std::move(tenant);
  {
    absl::MutexLock lock(&mu_);
    info_.tenant = tenant_->name;
  }
  if (in_.model.empty()) return absl::InvalidArgumentError("'model' is required");
  auto snap = d_->fleet_->Snapshot(in_.model);
  const bool allowed = tenant_->AllowsModel(in_.model);
  std::shared_ptr<const ModelFacts> facts = snap ? snap->facts : nullptr;
  if (!snap && allowed && d_->fleet_->IsKnownModel(in_.model)) {
    // The model exists but no worker of it is ready: its pool is at zero or a worker is being
    // replaced. With what its workers told us earlier (tokenizer, context) the request can wait
    // for one in the admission queue (Dispatcher::Admit); without (never seen since start) it is
    // a retryable refusal. Either way it counts as demand for the model, which wakes a pool at
    // zero, instead of a 404 that clients and SDKs treat as final.
    known_model_ = true;
    facts = d_->fleet_->KnownFacts(in_.model);
    if (!facts) {
      return WithReason(WithRetryAfter(absl::UnavailableError(absl::StrCat(
                                           "no worker of model '", in_.model,
                                           "' is ready (its pool may be starting from zero); retry after the hint")),
                                       1000),
                        "no_workers");
    }
  }
  if (!facts || !allowed) {
    // Same answer whether the model is unknown or not allowed: don't reveal other tenants' models.
    return absl::NotFoundError(absl::StrCat("the model '", in_.model, "' does not exist or you do not have access to it"));
  }
  known_model_ = true;
  facts_ = std::move(facts);
  RETURN_IF_ERROR(ValidateSampling(in_.sampling));
  if (in_.stop.size() > d_->options_.max_stop_sequences) {
    return absl::InvalidArgumentError(absl::StrCat("at most ", d_->options_.max_stop_sequences, " stop sequences"));
  }
  for (const auto& s : in_.stop) {
    if (s.empty()) return absl::InvalidArgumentError("stop sequences must not be empty");
  }
  const PromptEncoder& enc = *facts_->encoder;
  if (in_.chat) {
    if (in_.messages.empty()) return absl::InvalidArgumentError("'messages' must not be empty");
    ASSIGN_OR_RETURN(RenderedPrompt rendered, RenderChat(facts_->chat_family, in_.messages));
    prompt_ids_ = enc.EncodeChat(rendered);
  } else if (!in_.prompt_ids.empty()) {
    for (int32_t id : in_.prompt_ids) {
      if (id < 0 || id >= enc.tokenizer().vocab_size()) {
        return absl::InvalidArgumentError(absl::StrCat("token id ", id, " is outside the vocabulary"));
      }
    }
    prompt_ids_ = in_.prompt_ids;
  } else {
    if (in_.prompt.empty()) return absl::InvalidArgumentError("'prompt' must not be empty");
    prompt_ids_ = enc.EncodeText(in_.prompt, in_.add_bos);
  }
  if (prompt_ids_.empty()) return absl::InvalidArgumentError("the prompt has no tokens");
  const uint32_t ctx = facts_->context_length;
  const uint32_t n = static_cast<uint32_t>(prompt_ids_.size());
  if (ctx > 0 && n >= ctx) {
    return absl::InvalidArgumentError(absl::StrCat("the prompt has ", n, " tokens; this model's context is ", ctx, " tokens"));
  }
  const uint32_t cap = tenant_->limits.max_tokens_per_request;
  uint32_t max_tokens = 0;  // 0: up to the context
  if (in_.max_tokens.has_value()) {
    max_tokens = *in_.max_tokens;
    if (max_tokens == 0) return absl::InvalidArgumentError("max_tokens must be at least 1");
    if (cap > 0 && max_tokens > cap) {
      return absl::InvalidArgumentError(absl::StrCat("max_tokens ", max_tokens, " exceeds this key's limit of ", cap));
    }
    if (ctx > 0 && n + max_tokens > ctx) {
      return absl::InvalidArgumentError(absl::StrCat("this model's maximum context length is ", ctx,
                                                     " tokens; the request asks for ", n + max_tokens, " (", n,
                                                     " in the prompt, ", max_tokens, " to generate)"));
    }
  } else if (!in_.chat) {
    max_tokens = d_->options_.default_max_tokens;
    if (ctx > 0) max_tokens = std::min(max_tokens, ctx - n);
  }
  if (max_tokens == 0 && cap > 0) max_tokens = ctx > 0 ? std::min(cap, ctx - n) : cap;

  upstream_.set_request_id(in_.request_id);
  upstream_.mutable_prompt_ids()->Assign(prompt_ids_.begin(), prompt_ids_.end());
  *upstream_.mutable_sampling() = in_.sampling;
  upstream_.set_max_tokens(max_tokens);
  for (const auto& s : in_.stop) upstream_.add_stop(s);
  upstream_.set_ignore_eos(in_.ignore_eos);
  upstream_.set_priority(std::min(in_.priority, tenant_->limits.max_priority));
  upstream_.set_tenant(tenant_->name);

  route_key_.prefix_hash = PrefixHash(prompt_ids_, d_->options_.affinity_prefix_tokens);
  route_key_.zone = in_.zone;

  if (d_->cache_ && IsDeterministic(in_.sampling)) {
    // Exact match on everything that shapes the output; the request id is not part of it.
    worker::v1::GenerateRequest key_msg = upstream_;
    key_msg.clear_request_id();
    key_msg.clear_priority();
    std::string bytes;
    key_msg.SerializeToString(&bytes);
    cache_key_ = absl::StrCat(tenant_->name, "\n", in_.model, "\n", bytes);
  }
  return absl::OkStatus();
}

void Dispatcher::Request::OnRateLimit(const absl::Status& st, const RateLimitDecision& decision) {
  bool cancelled;
  {
    absl::MutexLock lock(&mu_);
    cancelled = cancelled_;
  }
  if (cancelled) {
    Finish(absl::CancelledError("cancelled by the client"));
    return;
  }
  if (!st.ok()) {
    // The limiter itself failed (not a refusal): fail open rather than refuse everyone.
    SPDLOG_WARN("rate limiter error, admitting: {}", st.ToString());
  } else if (!decision.allowed) {
    d_->metrics_->RateLimited(tenant_->name,
                              decision.limited_by == RateLimitDecision::Limit::kTokens ? "tokens" : "requests");
    Finish(RateLimitStatus(decision, tenant_->name));
    return;
  }
  d_->metrics_->PromptTokens(in_.model, tenant_->name, static_cast<double>(prompt_ids_.size()));
  if (!cache_key_.empty() && ServeFromCache()) return;
  d_->Admit(shared_from_this());
}

bool Dispatcher::Request::ServeFromCache() {
  auto hit = d_->cache_->Get(cache_key_, d_->clock_->Now());
  d_->metrics_->CacheLookup(in_.model, hit.has_value());
  if (!hit) return false;
  worker::v1::GenerateResponse chunk;
  if (!chunk.ParseFromString(*hit)) return false;
  // All of it was computed before: every prompt token counts as cached.
  chunk.mutable_usage()->set_cached_tokens(chunk.usage().prompt_tokens());
  chunk.set_time_to_first_token_s(NsToSec(d_->clock_->Now() - start_));
  std::shared_ptr<ResponseSink> sink;
  FinishInfo info;
  {
    absl::MutexLock lock(&mu_);
    if (phase_ == Phase::kDone) return true;
    phase_ = Phase::kUpstream;
    started_ = final_ = true;
    completion_tokens_ = chunk.usage().completion_tokens();
    info_.cached = true;
    info_.finish_reason = chunk.finish_reason();
    info_.usage = chunk.usage();
    info_.ttft_s = chunk.time_to_first_token_s();
    sink = sink_;
    info = info_;
  }
  if (sink) sink->OnChunk(chunk, info);
  Finish(absl::OkStatus());
  return true;
}

void Dispatcher::Request::Dispatch() {
  bool cancelled;
  {
    absl::MutexLock lock(&mu_);
    if (phase_ == Phase::kDone) return;
    cancelled = cancelled_;
    phase_ = Phase::kRouting;
  }
  if (cancelled) {
    Finish(absl::CancelledError("cancelled by the client"));
    return;
  }
  const TimeNs now = d_->clock_->Now();
  if (in_.deadline > 0 && now >= in_.deadline) {
    Finish(absl::DeadlineExceededError("deadline exceeded before a worker was free"));
    return;
  }
  auto snap = d_->fleet_->Snapshot(in_.model);
  std::shared_ptr<WorkerClient> worker;
  if (snap) {
    std::set<std::string> tried;
    {
      absl::MutexLock lock(&mu_);
      tried = tried_;
    }
    std::vector<bool> excluded(snap->workers.size(), false);
    for (size_t i = 0; i < snap->workers.size(); ++i) excluded[i] = tried.count(snap->workers[i]->address()) > 0;
    // The circuit breaker may refuse a worker the view called available (its one probe slot was
    // just taken): skip it and route again.
    for (size_t round = 0; round < snap->workers.size(); ++round) {
      auto idx = d_->Route(in_.model, *snap, route_key_, excluded);
      if (!idx) break;
      if (snap->workers[*idx]->BeginRequest()) {
        worker = snap->workers[*idx];
        break;
      }
      excluded[*idx] = true;
    }
  }
  if (!worker) {
    absl::Status err;
    {
      absl::MutexLock lock(&mu_);
      err = last_error_;
    }
    if (err.ok()) {
      err = WithReason(WithRetryAfter(absl::UnavailableError(absl::StrCat("no healthy worker for model '", in_.model, "'")), 1000),
                       "no_workers");
    }
    Finish(std::move(err));
    return;
  }
  std::chrono::system_clock::time_point deadline = std::chrono::system_clock::time_point::max();
  if (in_.deadline > 0) deadline = std::chrono::system_clock::now() + std::chrono::nanoseconds(in_.deadline - now);
  auto call = std::make_shared<UpstreamCall>(shared_from_this(), worker, upstream_, deadline);
  call->set_started_at(now);
  {
    absl::MutexLock lock(&mu_);
    if (phase_ == Phase::kDone) {
      worker->EndRequest(false);
      return;
    }
    ++info_.attempts;
    info_.worker = worker->address();
    tried_.insert(worker->address());
    call_ = call;
    phase_ = Phase::kUpstream;
    cancelled = cancelled_;
  }
  call->Start();
  if (cancelled) call->Cancel();
}

void Dispatcher::Request::FailFromQueue(const absl::Status& st) {
  Finish(st);
}

void Dispatcher::Request::Next() {
  std::shared_ptr<UpstreamCall> call;
  std::shared_ptr<ResponseSink> sink;
  std::optional<worker::v1::GenerateResponse> deliver;
  std::optional<absl::Status> finish;
  bool resume = false;
  FinishInfo info;
  {
    absl::MutexLock lock(&mu_);
    if (phase_ != Phase::kUpstream && phase_ != Phase::kRouting) return;
    if (has_pending_) {
      deliver = std::move(pending_);
      pending_.Clear();
      has_pending_ = false;
    } else {
      sink_busy_ = false;
      if (deferred_finish_) {
        finish = std::move(deferred_finish_);
        deferred_finish_.reset();
      }
    }
    resume = reading_paused_;
    reading_paused_ = false;
    call = call_;
    sink = sink_;
    info = info_;
  }
  if (resume && call) call->ReadNext();
  if (deliver && sink) sink->OnChunk(*deliver, info);
  if (finish) Finish(std::move(*finish));
}

void Dispatcher::Request::Cancel() {
  Phase phase;
  std::shared_ptr<UpstreamCall> call;
  {
    absl::MutexLock lock(&mu_);
    if (phase_ == Phase::kDone || cancelled_) return;
    cancelled_ = true;
    phase = phase_;
    call = call_;
  }
  if (phase == Phase::kQueued) {
    bool removed;
    {
      absl::MutexLock lock(&d_->mu_);
      removed = d_->PoolFor(in_.model).queue.Remove(shared_from_this());
      d_->metrics_->SetQueueDepth(in_.model, static_cast<double>(d_->PoolFor(in_.model).queue.size()));
    }
    // Not there any more: it is being dispatched, and Dispatch sees the flag.
    if (removed) Finish(absl::CancelledError("cancelled by the client"));
  } else if (call) {
    call->Cancel();  // OnUpstreamDone finishes the request
  } else if (phase == Phase::kUpstream) {
    // The worker call is over and the rest was waiting for the client (a deferred finish), or a
    // cache hit is being written: the client is gone, so end it here.
    Finish(absl::CancelledError("cancelled by the client"));
  }
  // kPreparing / kRateLimit / kRouting: the next step sees the flag.
}

void Dispatcher::Request::OnUpstreamMessage(UpstreamCall* call, worker::v1::GenerateResponse&& message) {
  std::shared_ptr<ResponseSink> sink;
  FinishInfo info;
  bool deliver_now = false;
  bool read_more = false;
  {
    absl::MutexLock lock(&mu_);
    if (call != call_.get() || phase_ != Phase::kUpstream) return;  // stale: no more reads
    const TimeNs now = d_->clock_->Now();
    if (!started_) {
      started_ = true;
      info_.ttft_s = NsToSec(now - start_);
      message.set_time_to_first_token_s(info_.ttft_s);
      d_->metrics_->UpstreamTtft(in_.model, NsToSec(now - call->started_at()));
    }
    completion_tokens_ += static_cast<uint32_t>(message.token_ids_size());
    if (message.finish_reason() != flotilla::v1::FINISH_REASON_UNSPECIFIED) {
      final_ = true;
      info_.finish_reason = message.finish_reason();
      info_.usage = message.usage();
    }
    if (!cache_key_.empty() || d_->options_.log_prompts) {
      aggregate_.mutable_token_ids()->MergeFrom(message.token_ids());
      aggregate_.mutable_text()->append(message.text());
      aggregate_.mutable_logprobs()->MergeFrom(message.logprobs());
      if (final_) {
        aggregate_.set_finish_reason(message.finish_reason());
        *aggregate_.mutable_usage() = message.usage();
      }
    }
    if (!sink_busy_) {
      sink_busy_ = true;
      deliver_now = true;
    } else {
      pending_.mutable_token_ids()->MergeFrom(message.token_ids());
      pending_.mutable_text()->append(message.text());
      pending_.mutable_logprobs()->MergeFrom(message.logprobs());
      if (message.finish_reason() != flotilla::v1::FINISH_REASON_UNSPECIFIED) {
        pending_.set_finish_reason(message.finish_reason());
        *pending_.mutable_usage() = message.usage();
      }
      has_pending_ = true;
    }
    // Keep reading (the stream's end must be read too) unless the buffer is full.
    read_more = !has_pending_ || pending_.token_ids_size() < kMaxBufferedTokens;
    if (!read_more) reading_paused_ = true;
    sink = sink_;
    info = info_;
  }
  if (read_more) call->ReadNext();
  if (deliver_now && sink) sink->OnChunk(message, info);
}

void Dispatcher::Request::OnUpstreamDone(UpstreamCall* call, const grpc::Status& status) {
  const TimeNs now = d_->clock_->Now();
  bool cancelled_by_us;
  {
    absl::MutexLock lock(&mu_);
    cancelled_by_us = cancelled_ || phase_ == Phase::kDone;
  }
  const bool worker_failed = !cancelled_by_us && WorkerFault(status.error_code());
  call->worker()->EndRequest(worker_failed);
  const double seconds = NsToSec(now - call->started_at());
  d_->metrics_->UpstreamDuration(in_.model, GrpcCodeName(status.error_code()), seconds);
  if (status.ok()) d_->RecordDuration(in_.model, seconds);

  // One critical section decides what happens next, so a concurrent Cancel (which may finish the
  // request once the call is gone) and this decision cannot interleave.
  absl::Status outcome;
  bool retry = false;
  bool stale = false;
  bool deferred = false;
  {
    absl::MutexLock lock(&mu_);
    stale = call != call_.get() || phase_ == Phase::kDone;
    if (!stale) {
      call_.reset();
      if (status.ok() && final_) {
        outcome = absl::OkStatus();
      } else if (cancelled_) {
        outcome = absl::CancelledError("cancelled by the client");
      } else if (started_) {
        info_.finish_reason = flotilla::v1::FINISH_REASON_ERROR;
        info_.usage.set_prompt_tokens(static_cast<uint32_t>(prompt_ids_.size()));
        info_.usage.set_completion_tokens(completion_tokens_);
        outcome = WithReason(absl::UnavailableError(absl::StrCat(
                                 "worker ", call->worker()->address(), " failed after streaming ", completion_tokens_,
                                 " tokens; the output is incomplete: ",
                                 status.ok() ? std::string("stream ended without a finish reason") : status.error_message())),
                             "stream_broken");
      } else {
        grpc::Status effective = status.ok() ? grpc::Status(grpc::StatusCode::UNAVAILABLE, "stream ended without output")
                                             : status;
        last_error_ = ClientError(effective, call->worker()->address());
        outcome = last_error_;
        retry = Retriable(effective.error_code()) && info_.attempts < static_cast<int>(d_->options_.max_attempts);
        if (retry) phase_ = Phase::kRouting;
      }
      // Chunks still on their way to the client go first; Next() finishes once they are written.
      if (!retry && (sink_busy_ || has_pending_) && !absl::IsCancelled(outcome)) {
        deferred_finish_ = outcome;
        deferred = true;
      }
    }
  }
  if (stale || deferred) {
    d_->DrainQueue(in_.model);  // its worker slot is free now
    return;
  }
  if (retry && d_->TakeRetry(in_.model)) {
    d_->metrics_->Retried(in_.model, GrpcCodeName(status.error_code()));
    spdlog::debug("request {}: retrying after {} from {}", JsonEscape(in_.request_id),
                 GrpcCodeName(status.error_code()), call->worker()->address());
    Dispatch();
  } else {
    Finish(std::move(outcome));
  }
  d_->DrainQueue(in_.model);
}

void Dispatcher::Request::Finish(absl::Status st) {
  std::shared_ptr<ResponseSink> sink;
  std::shared_ptr<UpstreamCall> call;
  FinishInfo info;
  uint32_t completion = 0;
  bool cache_it = false;
  std::string completion_text;
  {
    absl::MutexLock lock(&mu_);
    if (phase_ == Phase::kDone) return;
    phase_ = Phase::kDone;
    call = std::move(call_);
    sink = std::move(sink_);
    completion = info_.usage.completion_tokens() > 0 ? info_.usage.completion_tokens() : completion_tokens_;
    if (!st.ok() && !started_) info_.worker.clear();
    info = info_;
    cache_it = st.ok() && !cache_key_.empty() && !info_.cached && final_ &&
               (info_.finish_reason == flotilla::v1::FINISH_REASON_LENGTH ||
                info_.finish_reason == flotilla::v1::FINISH_REASON_STOP ||
                info_.finish_reason == flotilla::v1::FINISH_REASON_EOS);
    if (cache_it) {
      std::string bytes;
      aggregate_.SerializeToString(&bytes);
      d_->cache_->Put(cache_key_, std::move(bytes), d_->clock_->Now());
    }
    if (d_->options_.log_prompts) completion_text = aggregate_.text();
  }
  if (call) call->Cancel();
  if (holds_concurrency_) d_->ReleaseConcurrency(tenant_->name);
  const std::string tenant = tenant_ ? tenant_->name : "unauthenticated";
  if (tenant_ && completion > 0 && !info.cached) {
    // Prompt tokens were taken at admission; completion tokens are known only now.
    d_->limiter_->Debit(tenant_->name, tenant_->limits, completion);
  }
  const double seconds = NsToSec(d_->clock_->Now() - start_);
  // Only names of models that exist become label values (clients choose the name).
  const std::string model = known_model_ ? in_.model : std::string("unknown");
  d_->metrics_->RequestDone(CodeName(st.code()), model, tenant, in_.api, seconds);
  if (completion > 0) d_->metrics_->CompletionTokens(model, tenant, completion);
  if (auto reason = ErrorReason(st); !reason.empty() &&
      (reason == "overloaded" || reason == "deadline_infeasible" || reason == "queue_timeout" || reason == "no_workers")) {
    d_->metrics_->Shed(model, reason);
  }
  if (d_->options_.log_requests && spdlog::should_log(spdlog::level::info)) {
    std::string extra;
    if (d_->options_.log_prompts) {
      std::string prompt = in_.prompt;
      for (const auto& m : in_.messages) absl::StrAppend(&prompt, prompt.empty() ? "" : "\n", m.role, ": ", m.content);
      extra = absl::StrCat(" prompt=\"", JsonEscape(prompt), "\" completion=\"", JsonEscape(completion_text), "\"");
    }
    std::string line = absl::StrFormat(
        "request %s api=%s tenant=%s model=%s code=%s prompt_tokens=%d completion_tokens=%d ttft_ms=%.1f "
        "duration_ms=%.1f worker=%s attempts=%d cached=%s%s%s",
        JsonEscape(in_.request_id), in_.api, tenant, JsonEscape(model), CodeName(st.code()), prompt_ids_.size(),
        completion, info.ttft_s * 1e3, seconds * 1e3, info.worker, info.attempts, info.cached ? "true" : "false",
        st.ok() ? std::string() : absl::StrCat(" error=\"", JsonEscape(std::string(st.message())), "\""), extra);
    SPDLOG_INFO("{}", line);
  }
  d_->open_.fetch_sub(1);
  {
    absl::MutexLock lock(&d_->open_mu_);
    d_->open_set_.erase(serial_);
  }
  d_->metrics_->StreamClosed(in_.api);
  if (sink) sink->OnFinish(st, info);
}

}  // namespace flotilla::gateway
