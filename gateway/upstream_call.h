// One Generate call to one worker, on gRPC's callback API (no thread waits on it). Reads are
// demand-driven: after each message the owner must call ReadNext() once the message has been
// passed on to the client, so a slow client slows the worker stream instead of filling memory.
// A hold keeps the call open between reads; it is released when the stream ends or the call is
// cancelled, and OnDone then reports the status.
// Thread-safety: ReadNext and Cancel may be called from any thread; owner callbacks run on gRPC
// threads, one at a time per call.
#pragma once

#include <memory>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "common/clock.h"
#include "flotilla/worker/v1/worker.grpc.pb.h"
#include "gateway/worker_client.h"

namespace flotilla::gateway {

class UpstreamCall : public grpc::ClientReadReactor<worker::v1::GenerateResponse>,
                     public std::enable_shared_from_this<UpstreamCall> {
 public:
  class Owner {
   public:
    virtual ~Owner() = default;
    virtual void OnUpstreamMessage(UpstreamCall* call, worker::v1::GenerateResponse&& message) = 0;
    virtual void OnUpstreamDone(UpstreamCall* call, const grpc::Status& status) = 0;
  };

  // `deadline` is a system_clock time (gRPC's); max() means none.
  UpstreamCall(std::shared_ptr<Owner> owner, std::shared_ptr<WorkerClient> worker,
               worker::v1::GenerateRequest request, std::chrono::system_clock::time_point deadline);

  void Start();
  void ReadNext();
  void Cancel();
  // The worker this call went to (its BeginRequest was called; EndRequest is the owner's job).
  const std::shared_ptr<WorkerClient>& worker() const { return worker_; }
  TimeNs started_at() const { return started_at_; }
  void set_started_at(TimeNs t) { started_at_ = t; }

  void OnReadDone(bool ok) override;
  void OnDone(const grpc::Status& status) override;

 private:
  void ReleaseHoldOnce();

  std::shared_ptr<Owner> owner_;
  const std::shared_ptr<WorkerClient> worker_;
  TimeNs started_at_ = 0;
  grpc::ClientContext ctx_;
  worker::v1::GenerateRequest request_;
  worker::v1::GenerateResponse message_;
  std::shared_ptr<UpstreamCall> self_;  // alive until OnDone

  absl::Mutex mu_;
  bool started_ ABSL_GUARDED_BY(mu_) = false;
  bool reading_ ABSL_GUARDED_BY(mu_) = false;
  bool hold_released_ ABSL_GUARDED_BY(mu_) = false;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace flotilla::gateway
