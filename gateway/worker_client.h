// The gateway's connection to one worker: a gRPC channel, the worker's static facts (Info and
// tokenizer, fetched once it is up), its live load (a WatchLoad stream, re-opened when it breaks),
// active health checks (grpc.health.v1.Health/Check), a circuit breaker fed by request outcomes,
// and the count of this gateway's open calls to it.
// Nothing here blocks: every RPC uses gRPC's callback API; periodic work runs on the TimerThread.
// Thread-safety: every public method may be called from any thread.
#pragma once

#include <array>
#include <atomic>
#include <deque>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "common/clock.h"
#include "flotilla/worker/v1/worker.grpc.pb.h"
#include "gateway/circuit_breaker.h"
#include "gateway/prompt_encoder.h"
#include "gateway/router.h"
#include "gateway/timer.h"
#include "grpcpp/channel.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/security/credentials.h"

namespace flotilla::gateway {

struct WorkerClientOptions {
  uint32_t load_interval_ms = 100;
  TimeNs health_interval = 1 * kNsPerSec;
  TimeNs health_timeout = 1 * kNsPerSec;
  TimeNs info_retry = 500 * kNsPerMs;
  TimeNs load_stale_after = 3 * kNsPerSec;  // an older report no longer counts
  CircuitBreakerConfig breaker;
};

// What a worker told us about itself; immutable once fetched.
struct WorkerStatic {
  worker::v1::InfoResponse info;
  std::shared_ptr<const PromptEncoder> encoder;
};

class WorkerClient : public std::enable_shared_from_this<WorkerClient> {
 public:
  enum class Health { kUnknown, kServing, kNotServing, kUnreachable };

  struct Hooks {
    // Called (on a gRPC or timer thread, no locks held) when the worker became ready, changed
    // health, or reported load. Must not block.
    std::function<void(WorkerClient*)> on_change;
    // Looks up an encoder for this model (shared by every worker of the model), so only the
    // first worker's vocabulary is downloaded. May return null.
    std::function<std::shared_ptr<const PromptEncoder>(const worker::v1::InfoResponse&)> find_encoder;
    std::function<void(const std::string& worker)> on_ejected;
  };

  WorkerClient(std::string address, std::shared_ptr<grpc::ChannelCredentials> creds, WorkerClientOptions options,
               TimerThread* timer, const Clock* clock, Hooks hooks);
  ~WorkerClient();

  void Start();
  // Stops health checks and the load stream; open requests finish on their own. Once it returns
  // no hook runs and the timer is not touched again (see Gated). Must not be called from a hook.
  void Shutdown();

  const std::string& address() const { return address_; }
  worker::v1::Worker::Stub* stub() { return stub_.get(); }
  // Null until Info and the tokenizer arrived.
  std::shared_ptr<const WorkerStatic> statics() const;
  Health health() const;
  // The router's view of this worker now.
  WorkerView View(TimeNs now) const;
  // The latest load report (default when none yet) and whether it is fresh.
  worker::v1::LoadReport Load(bool* fresh) const;

  // A request is about to be sent here: false when the circuit breaker refuses (another
  // request is already probing). On true, the caller must call EndRequest exactly once.
  bool BeginRequest();
  // `worker_failed`: the outcome counts against the worker (unreachable, internal error).
  void EndRequest(bool worker_failed);
  uint32_t inflight() const { return inflight_.load(std::memory_order_relaxed); }
  uint32_t ejections() const;

 private:
  class LoadWatcher;
  void FetchInfo();
  void FetchTokenizer(worker::v1::InfoResponse info);
  void StartLoadWatch();
  void OnLoadReport(const worker::v1::LoadReport& report);
  void OnLoadStreamDone(const grpc::Status& status);
  void CheckHealth();
  void SetHealth(Health h);
  void Notify();
  // Runs f unless Shutdown has begun; Shutdown waits for every f already running. What the hooks
  // reach (the fleet, its dispatcher) and the timer may go away once Shutdown returns, while
  // gRPC callbacks of this client are still in flight: they touch neither except through here.
  template <class F>
  void Gated(F&& f);

  const std::string address_;
  const WorkerClientOptions options_;
  TimerThread* const timer_;
  const Clock* const clock_;
  const Hooks hooks_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<worker::v1::Worker::Stub> stub_;
  std::unique_ptr<grpc::GenericStub> generic_stub_;
  std::atomic<uint32_t> inflight_{0};
  std::atomic<bool> shutdown_{false};
  absl::Mutex gate_;
  bool closed_ ABSL_GUARDED_BY(gate_) = false;
  int gated_running_ ABSL_GUARDED_BY(gate_) = 0;

  mutable absl::Mutex mu_;
  std::shared_ptr<const WorkerStatic> statics_ ABSL_GUARDED_BY(mu_);
  bool fetching_ ABSL_GUARDED_BY(mu_) = false;
  Health health_ ABSL_GUARDED_BY(mu_) = Health::kUnknown;
  worker::v1::LoadReport load_ ABSL_GUARDED_BY(mu_);
  TimeNs load_at_ ABSL_GUARDED_BY(mu_) = 0;
  // Requests on the worker that are not ours (other gateways'). A report is taken some time before
  // it arrives; our requests that started or ended in between are accounted for with the report's
  // timestamp and our recent start/end events (unix microseconds, +1 start / -1 end).
  // Even so a report can show one of ours that just ended as still there (the worker's books and
  // its final message are not one event): real load from elsewhere persists across reports, such
  // phantoms do not, so the estimate is the smallest of the last three.
  uint32_t others_ ABSL_GUARDED_BY(mu_) = 0;
  std::array<uint32_t, 3> others_recent_ ABSL_GUARDED_BY(mu_) = {0, 0, 0};
  size_t others_next_ ABSL_GUARDED_BY(mu_) = 0;
  std::deque<std::pair<int64_t, int>> events_ ABSL_GUARDED_BY(mu_);
  CircuitBreaker breaker_ ABSL_GUARDED_BY(mu_);
  LoadWatcher* watcher_ ABSL_GUARDED_BY(mu_) = nullptr;
  TimerThread::TaskId health_task_ = 0;
};

const char* HealthName(WorkerClient::Health h);

}  // namespace flotilla::gateway
