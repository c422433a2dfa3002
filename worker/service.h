// flotilla.worker.v1.Worker over gRPC's callback API: no thread is held per open stream.
// Generate streams are fed by the engine thread through a per-request sink; WatchLoad streams
// are fed by one ticker thread. Cancellation of a call cancels its request in the engine.
#pragma once

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <memory>
#include <string>
#include <thread>

#include "flotilla/worker/v1/worker.grpc.pb.h"
#include "worker/engine.h"

namespace flotilla::worker {

struct ServiceInfo {
  std::string worker_id;
  std::string model_name;
  std::string model_path;
  std::string zone;
  std::string region;
  std::string chat_template_family;  // configured; empty lets the gateway detect it
  std::string version;
};

class LoadWatchers;

class WorkerService final : public flotilla::worker::v1::Worker::CallbackService {
 public:
  WorkerService(Engine* engine, ServiceInfo info, const Clock* clock);
  ~WorkerService() override;

  // Called when draining starts (by Drain or SIGTERM), e.g. to flip the health status.
  void SetOnDrainStart(std::function<void()> f) { on_drain_start_ = std::move(f); }
  void StartDrain();
  // Set once after the server has bound its port, before any call is served.
  void SetWorkerId(const std::string& id) { info_.worker_id = id; }

  grpc::ServerWriteReactor<v1::GenerateResponse>* Generate(grpc::CallbackServerContext* ctx,
                                                           const v1::GenerateRequest* req) override;
  grpc::ServerUnaryReactor* GetLoad(grpc::CallbackServerContext* ctx, const v1::GetLoadRequest* req,
                                    v1::LoadReport* resp) override;
  grpc::ServerWriteReactor<v1::LoadReport>* WatchLoad(grpc::CallbackServerContext* ctx,
                                                      const v1::WatchLoadRequest* req) override;
  grpc::ServerUnaryReactor* Info(grpc::CallbackServerContext* ctx, const v1::InfoRequest* req,
                                 v1::InfoResponse* resp) override;
  grpc::ServerUnaryReactor* Drain(grpc::CallbackServerContext* ctx, const v1::DrainRequest* req,
                                  v1::DrainResponse* resp) override;
  grpc::ServerUnaryReactor* Tokenize(grpc::CallbackServerContext* ctx, const v1::TokenizeRequest* req,
                                     v1::TokenizeResponse* resp) override;
  grpc::ServerUnaryReactor* GetTokenizer(grpc::CallbackServerContext* ctx, const v1::GetTokenizerRequest* req,
                                         v1::TokenizerResponse* resp) override;

  void FillLoad(v1::LoadReport* r) const;

 private:
  Engine* engine_;
  ServiceInfo info_;
  const Clock* clock_;
  std::function<void()> on_drain_start_;
  std::atomic<bool> drain_started_{false};
  std::unique_ptr<LoadWatchers> watchers_;
};

// Maps an absl::Status to a grpc::Status (same codes).
grpc::Status ToGrpc(const absl::Status& s);

}  // namespace flotilla::worker
