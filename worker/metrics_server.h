// The worker's Prometheus endpoint: GET /metrics serialises the registry in the text format.
// Served by cpp-httplib rather than prometheus-cpp's civetweb exposer: civetweb fails to start
// in a process that has loaded cuBLAS (seen with CUDA 13 on Debian 12), and its shutdown polls
// for seconds. A metrics port sees few connections, so a thread per connection is fine here.
#pragma once

#include <prometheus/registry.h>

#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"

namespace httplib {
class Server;
}

namespace flotilla::worker {

class MetricsServer {
 public:
  explicit MetricsServer(std::shared_ptr<prometheus::Registry> registry);
  ~MetricsServer();
  MetricsServer(const MetricsServer&) = delete;
  MetricsServer& operator=(const MetricsServer&) = delete;

  // Binds host:port (0: any free port) and starts serving. Returns the bound port.
  absl::StatusOr<int> Start(const std::string& host, int port);
  void Stop();

 private:
  std::shared_ptr<prometheus::Registry> registry_;
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
};

}  // namespace flotilla::worker
