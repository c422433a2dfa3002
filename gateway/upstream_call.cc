#include "gateway/upstream_call.h"

namespace flotilla::gateway {

UpstreamCall::UpstreamCall(std::shared_ptr<Owner> owner, std::shared_ptr<WorkerClient> worker,
                           worker::v1::GenerateRequest request, std::chrono::system_clock::time_point deadline)
    : owner_(std::move(owner)), worker_(std::move(worker)), request_(std::move(request)) {
  if (deadline != std::chrono::system_clock::time_point::max()) ctx_.set_deadline(deadline);
}

void UpstreamCall::Start() {
  self_ = shared_from_this();
  worker_->stub()->async()->Generate(&ctx_, &request_, this);
  AddHold();
  bool cancelled;
  {
    absl::MutexLock lock(&mu_);
    started_ = true;
    reading_ = true;
    cancelled = cancelled_;
  }
  StartRead(&message_);
  StartCall();
  // Cancelled before it started: the pending read fails, which releases the hold.
  if (cancelled) ctx_.TryCancel();
}

void UpstreamCall::ReleaseHoldOnce() {
  {
    absl::MutexLock lock(&mu_);
    if (hold_released_) return;
    hold_released_ = true;
  }
  // Outside the lock: RemoveHold may run OnDone on this thread.
  RemoveHold();
}

void UpstreamCall::ReadNext() {
  auto keep = shared_from_this();
  bool release = false;
  {
    absl::MutexLock lock(&mu_);
    if (hold_released_ || reading_) return;
    if (cancelled_) {
      release = true;
    } else {
      reading_ = true;
    }
  }
  if (release) {
    ReleaseHoldOnce();
    return;
  }
  StartRead(&message_);
}

void UpstreamCall::Cancel() {
  auto keep = shared_from_this();
  bool release = false;
  {
    absl::MutexLock lock(&mu_);
    if (cancelled_) return;
    cancelled_ = true;
    if (!started_) return;  // Start sees the flag
    release = !reading_;
  }
  ctx_.TryCancel();
  if (release) ReleaseHoldOnce();
}

void UpstreamCall::OnReadDone(bool ok) {
  auto keep = shared_from_this();
  bool cancelled;
  {
    absl::MutexLock lock(&mu_);
    reading_ = false;
    cancelled = cancelled_;
  }
  if (!ok || cancelled) {
    ReleaseHoldOnce();
    return;
  }
  // Moved out before the owner runs: it may call ReadNext, which reuses the buffer at once.
  worker::v1::GenerateResponse message = std::move(message_);
  message_.Clear();
  owner_->OnUpstreamMessage(this, std::move(message));
}

void UpstreamCall::OnDone(const grpc::Status& status) {
  owner_->OnUpstreamDone(this, status);
  owner_.reset();
  self_.reset();  // may delete this
}

}  // namespace flotilla::gateway
