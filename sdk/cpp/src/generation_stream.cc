#include "generation_stream.h"

#include <utility>

namespace flotilla::sdk::internal {

SyncStream::SyncStream(std::shared_ptr<const Shared> shared, flotilla::v1::GenerateRequest request,
                       CallOptions call)
    : shared_(std::move(shared)),
      request_(std::move(request)),
      call_(std::move(call)),
      deadline_(CallDeadline(shared_->options, call_, absl::Now())) {}

SyncStream::~SyncStream() {
  if (!done_ && reader_ != nullptr) {
    // Dropped mid-stream: cancel, then drain so the call's resources are released.
    Cancel();
    flotilla::v1::GenerateResponse ignored;
    while (reader_->Read(&ignored)) {
    }
    (void)reader_->Finish();
  }
}

bool SyncStream::StartAttempt() {
  auto ctx = std::make_unique<grpc::ClientContext>();
  PrepareContext(shared_->options, call_, deadline_, ctx.get());
  std::lock_guard<std::mutex> lock(mu_);
  if (cancelled_) return false;
  reader_ = shared_->stub->Generate(ctx.get(), request_);
  ctx_ = std::move(ctx);
  ++attempts_;
  return true;
}

bool SyncStream::Backoff(absl::Duration wait) {
  return BackoffWithReconnect(*shared_->channel, wait, [this] {
    std::lock_guard<std::mutex> lock(mu_);
    return cancelled_;
  });
}

void SyncStream::End(absl::Status status) {
  done_ = true;
  status_ = std::move(status);
}

bool SyncStream::Next(flotilla::v1::GenerateResponse* chunk) {
  while (!done_) {
    if (reader_ == nullptr && !StartAttempt()) {
      End(absl::CancelledError("cancelled by the caller"));
      return false;
    }
    if (reader_->Read(chunk)) {
      got_chunk_ = true;
      return true;
    }
    const grpc::Status grpc_status = reader_->Finish();
    const absl::Status status = FromGrpc(grpc_status);
    const absl::Duration server_delay = ServerRetryDelay(grpc_status);
    reader_.reset();
    int attempts = 0;
    bool cancelled = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      attempts = attempts_;
      cancelled = cancelled_;
    }
    if (status.ok() || got_chunk_ || cancelled) {
      End(cancelled && !status.ok() ? absl::CancelledError("cancelled by the caller") : status);
      return false;
    }
    const std::optional<absl::Duration> wait =
        RetryWait(shared_->options.retry, status, attempts, server_delay, deadline_, absl::Now(), UnitRandom());
    if (!wait.has_value()) {
      End(status);
      return false;
    }
    if (!Backoff(*wait)) {
      End(absl::CancelledError("cancelled by the caller"));
      return false;
    }
  }
  return false;
}

void SyncStream::Cancel() {
  std::lock_guard<std::mutex> lock(mu_);
  cancelled_ = true;
  if (ctx_ != nullptr) ctx_->TryCancel();
}

absl::Status SyncStream::Finish() {
  if (!done_) return absl::FailedPreconditionError("Finish() before the stream ended (Next returned true)");
  return status_;
}

int SyncStream::attempts() const {
  std::lock_guard<std::mutex> lock(mu_);
  return attempts_;
}

}  // namespace flotilla::sdk::internal
