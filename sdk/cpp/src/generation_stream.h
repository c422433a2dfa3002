// Internal: the blocking stream behind Generate, GenerateStream and StartGenerate.
#pragma once

#include <condition_variable>
#include <memory>
#include <mutex>

#include "absl/base/thread_annotations.h"
#include "call_setup.h"
#include "flotilla/sdk/client.h"

namespace flotilla::sdk::internal {

// One logical generation over one or more gRPC calls: a call that fails retryably before its
// first chunk is replaced by a new one after a backoff, inside Next().
class SyncStream final : public GenerationStream {
 public:
  SyncStream(std::shared_ptr<const Shared> shared, flotilla::v1::GenerateRequest request, CallOptions call);
  ~SyncStream() override;

  bool Next(flotilla::v1::GenerateResponse* chunk) override;
  void Cancel() override;
  absl::Status Finish() override;
  int attempts() const override;

 private:
  // Starts a call; false when cancelled meanwhile.
  bool StartAttempt();
  // Waits `wait` (reconnecting meanwhile) unless cancelled first; false when cancelled.
  bool Backoff(absl::Duration wait);
  void End(absl::Status status);

  const std::shared_ptr<const Shared> shared_;
  const flotilla::v1::GenerateRequest request_;
  const CallOptions call_;
  const absl::Time deadline_;

  // Owned by the reading thread; ctx_ is also read by Cancel() under mu_.
  std::unique_ptr<grpc::ClientReader<flotilla::v1::GenerateResponse>> reader_;
  bool got_chunk_ = false;
  bool done_ = false;
  absl::Status status_;

  mutable std::mutex mu_;
  std::unique_ptr<grpc::ClientContext> ctx_ ABSL_GUARDED_BY(mu_);
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  int attempts_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace flotilla::sdk::internal
