// Internal: GenerateAsync. One AsyncCall per logical generation; each gRPC call (attempt) is
// a ClientReadReactor that reports back to it. A retry waits on a grpc::Alarm, so nothing
// blocks and no thread is held per stream.
//
// Lifetime: the AsyncCall keeps itself alive (self_) from Start until on_done has run; the
// caller's handle is only for Cancel. An attempt keeps itself alive until its OnDone; the
// AsyncCall also holds the current one, so Cancel can reach its context without holding a lock
// while gRPC runs (TryCancel may run reactions inline on the calling thread).
#pragma once

#include <grpcpp/alarm.h>

#include <memory>
#include <mutex>

#include "absl/base/thread_annotations.h"
#include "call_setup.h"
#include "flotilla/sdk/client.h"

namespace flotilla::sdk::internal {

class AsyncCall final : public AsyncGeneration, public std::enable_shared_from_this<AsyncCall> {
 public:
  AsyncCall(std::shared_ptr<const Shared> shared, flotilla::v1::GenerateRequest request, AsyncCallbacks callbacks,
            CallOptions call);

  // Starts the first attempt. Call once, right after construction (needs shared_from_this).
  void Start();
  void Cancel() override;

 private:
  class Attempt;
  friend class Attempt;

  void StartAttempt();
  void OnChunk(const flotilla::v1::GenerateResponse& chunk);
  // An attempt ended; retries or finishes.
  void OnAttemptDone(const grpc::Status& status, bool got_chunk, absl::Duration server_delay);
  void Done(const absl::Status& status);

  // Declared first, so destroyed last: the count drops only after this call has released
  // Shared, so the client (whose destructor waits for the count) drops the last reference and
  // the channel is never destroyed on a gRPC thread.
  const LiveCall live_;
  const std::shared_ptr<const Shared> shared_;
  const flotilla::v1::GenerateRequest request_;
  const AsyncCallbacks callbacks_;
  const CallOptions call_;
  const absl::Time deadline_;

  std::mutex mu_;
  std::shared_ptr<AsyncCall> self_ ABSL_GUARDED_BY(mu_);
  std::shared_ptr<Attempt> current_ ABSL_GUARDED_BY(mu_);  // the latest attempt
  std::shared_ptr<grpc::Alarm> alarm_ ABSL_GUARDED_BY(mu_);  // the latest backoff
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  bool done_ ABSL_GUARDED_BY(mu_) = false;
  int attempts_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace flotilla::sdk::internal
