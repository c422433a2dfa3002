#include "async_generation.h"

#include <utility>

namespace flotilla::sdk::internal {

// One gRPC call. Reads one message at a time (one read in flight, as the reactor API wants).
class AsyncCall::Attempt final : public grpc::ClientReadReactor<flotilla::v1::GenerateResponse> {
 public:
  explicit Attempt(std::shared_ptr<AsyncCall> owner) : owner_(std::move(owner)) {}

  grpc::ClientContext* context() { return &ctx_; }

  void Begin(std::shared_ptr<Attempt> self) {
    self_ = std::move(self);
    owner_->shared_->stub->async()->Generate(&ctx_, &owner_->request_, this);
    StartRead(&chunk_);
    StartCall();
  }

  void OnReadDone(bool ok) override {
    if (!ok) return;  // the stream is over; OnDone follows
    got_chunk_ = true;
    owner_->OnChunk(chunk_);
    StartRead(&chunk_);
  }

  void OnDone(const grpc::Status& status) override {
    // Locals are destroyed in reverse order: this attempt (and its context) first, then the
    // call, whose destruction is what ~Client waits for.
    std::shared_ptr<AsyncCall> owner = std::move(owner_);
    std::shared_ptr<Attempt> self = std::move(self_);
    owner->OnAttemptDone(status, got_chunk_, ServerRetryDelay(status));
  }

 private:
  std::shared_ptr<Attempt> self_;
  std::shared_ptr<AsyncCall> owner_;
  grpc::ClientContext ctx_;
  flotilla::v1::GenerateResponse chunk_;
  bool got_chunk_ = false;
};

AsyncCall::AsyncCall(std::shared_ptr<const Shared> shared, flotilla::v1::GenerateRequest request,
                     AsyncCallbacks callbacks, CallOptions call)
    : live_(*shared),
      shared_(std::move(shared)),
      request_(std::move(request)),
      callbacks_(std::move(callbacks)),
      call_(std::move(call)),
      deadline_(CallDeadline(shared_->options, call_, absl::Now())) {}

void AsyncCall::Start() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    self_ = shared_from_this();
  }
  StartAttempt();
}

void AsyncCall::StartAttempt() {
  auto attempt = std::make_shared<Attempt>(shared_from_this());
  PrepareContext(shared_->options, call_, deadline_, attempt->context());
  bool cancelled = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    cancelled = cancelled_;
    if (!cancelled) {
      current_ = attempt;
      ++attempts_;
    }
  }
  if (cancelled) return Done(absl::CancelledError("cancelled by the caller"));
  // A Cancel() from here on reaches this attempt's context (TryCancel before the call starts
  // is remembered by gRPC and applied when it does).
  attempt->Begin(attempt);
}

void AsyncCall::OnChunk(const flotilla::v1::GenerateResponse& chunk) {
  if (callbacks_.on_chunk) callbacks_.on_chunk(chunk);
}

void AsyncCall::OnAttemptDone(const grpc::Status& grpc_status, bool got_chunk, absl::Duration server_delay) {
  const absl::Status status = FromGrpc(grpc_status);
  bool cancelled = false;
  int attempts = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    cancelled = cancelled_;
    attempts = attempts_;
  }
  // A call the caller cancelled is reported as such, whatever the transport made of it.
  if (cancelled && !status.ok()) return Done(absl::CancelledError("cancelled by the caller"));
  if (status.ok() || got_chunk) return Done(status);
  const std::optional<absl::Duration> wait =
      RetryWait(shared_->options.retry, status, attempts, server_delay, deadline_, absl::Now(), UnitRandom());
  if (!wait.has_value()) return Done(status);
  auto alarm = std::make_shared<grpc::Alarm>();
  {
    std::lock_guard<std::mutex> lock(mu_);
    alarm_ = alarm;
  }
  // `this` stays alive until Done (self_), and Done is reached only through this callback while
  // the alarm is pending. ok is false when Cancel() cancelled the alarm.
  alarm->Set(absl::ToChronoTime(absl::Now() + *wait), [this](bool ok) {
    if (ok) {
      StartAttempt();
    } else {
      Done(absl::CancelledError("cancelled by the caller"));
    }
  });
}

void AsyncCall::Done(const absl::Status& status) {
  std::shared_ptr<AsyncCall> keep;
  int attempts = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (done_) return;
    done_ = true;
    keep = std::move(self_);
    attempts = attempts_;
    current_.reset();
  }
  if (callbacks_.on_done) callbacks_.on_done(status, attempts);
}

void AsyncCall::Cancel() {
  std::shared_ptr<Attempt> attempt;
  std::shared_ptr<grpc::Alarm> alarm;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (cancelled_ || done_) return;
    cancelled_ = true;
    attempt = current_;
    alarm = alarm_;
  }
  // Outside the lock: gRPC may run this call's reactions inline.
  if (attempt != nullptr) attempt->context()->TryCancel();
  if (alarm != nullptr) alarm->Cancel();
}

}  // namespace flotilla::sdk::internal
