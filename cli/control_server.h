// The server side of the control endpoint (control_api.h), run by `flotilla up`. It acts on
// the LocalFleet the `up` process owns and serves the autoscaler's metrics registry.
// Thread-safety: requests are served on the server's own threads; LocalFleet is thread-safe.
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "autoscaler/local_fleet.h"

namespace httplib {
class Server;
}
namespace prometheus {
class Registry;
}

namespace flotilla::cli {

class ControlServer {
 public:
  // Listens on host:0. `registry` (may be null) is served at /metrics; `autoscaler` says whether
  // a policy loop is running (reported so `scale` can warn that it may be overridden).
  static absl::StatusOr<std::unique_ptr<ControlServer>> Start(autoscaler::LocalFleet* fleet, std::string token,
                                                              std::shared_ptr<prometheus::Registry> registry,
                                                              bool autoscaler, const std::string& host = "127.0.0.1");
  ~ControlServer();  // Stop()
  void Stop();

  int port() const { return port_; }
  std::string url() const;

 private:
  ControlServer() = default;
  void Route();

  autoscaler::LocalFleet* fleet_ = nullptr;
  std::string token_;
  std::shared_ptr<prometheus::Registry> registry_;
  bool autoscaler_ = false;
  std::string host_;
  int port_ = 0;
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
};

}  // namespace flotilla::cli
