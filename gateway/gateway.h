// The gateway assembled: discovery feeding the fleet, the dispatcher with its policies, the
// public gRPC server (Inference + health + reflection) and the OpenAI HTTP server, and the
// periodic housekeeping (key-file reloads, health status, metrics). main.cc is a thin wrapper.
// Thread-safety: Start/Shutdown from one thread; accessors from any.
#pragma once

#include <memory>
#include <thread>

#include "absl/status/statusor.h"
#include "absl/synchronization/notification.h"
#include "common/clock.h"
#include "gateway/config.h"
#include "gateway/dispatcher.h"
#include "gateway/fleet.h"
#include "gateway/http_server.h"
#include "gateway/metrics.h"
#include "gateway/timer.h"

namespace grpc {
class Server;
}

namespace flotilla::gateway {

class InferenceService;
class OpenAiFront;
class Discovery;

class Gateway {
 public:
  static absl::StatusOr<std::unique_ptr<Gateway>> Start(GatewayConfig config, const Clock* clock = SystemClock::Get());
  ~Gateway();

  int grpc_port() const { return grpc_port_; }
  int http_port() const { return http_server_->port(); }

  // Re-reads the API key file now (SIGHUP).
  void ReloadKeys();
  // Drains: stops accepting, reports NOT_SERVING / 503 on /ready, waits up to the drain timeout
  // for open requests, cancels what is left, stops the servers.
  void Shutdown();

  Dispatcher* dispatcher() { return dispatcher_.get(); }
  Fleet* fleet() { return fleet_.get(); }
  GatewayMetrics* metrics() { return metrics_.get(); }

 private:
  Gateway(GatewayConfig config, const Clock* clock);
  absl::Status Init();
  void DiscoveryLoop();
  void Housekeeping();

  GatewayConfig config_;
  const Clock* clock_;
  std::unique_ptr<GatewayMetrics> metrics_;
  std::unique_ptr<TimerThread> timer_;
  std::unique_ptr<Authenticator> auth_;
  std::unique_ptr<RateLimiter> limiter_;
  class RedisRateLimiter* redis_ = nullptr;  // limiter_ when the backend is Redis
  std::unique_ptr<ResponseCache> cache_;
  std::unique_ptr<Fleet> fleet_;
  std::unique_ptr<Dispatcher> dispatcher_;
  std::unique_ptr<InferenceService> grpc_service_;
  std::unique_ptr<grpc::Server> grpc_server_;
  int grpc_port_ = 0;
  std::unique_ptr<OpenAiFront> front_;
  std::unique_ptr<HttpServer> http_server_;
  std::vector<std::unique_ptr<Discovery>> discovery_;
  std::thread discovery_thread_;
  absl::Notification stop_discovery_;
  std::atomic<bool> draining_{false};
  bool shut_down_ = false;
};

}  // namespace flotilla::gateway
