// A real HTTP server for tests (cpp-httplib) on a free loopback port, serving in a thread.
#pragma once

#include <httplib.h>

#include <chrono>
#include <memory>
#include <string>
#include <thread>

namespace flotilla::autoscaler::testing {

class TestHttpServer {
 public:
  // `server` may be an httplib::SSLServer. Handlers are registered before Start().
  explicit TestHttpServer(std::unique_ptr<httplib::Server> server = std::make_unique<httplib::Server>())
      : server_(std::move(server)) {}
  ~TestHttpServer() { Stop(); }

  httplib::Server& server() { return *server_; }

  // Binds 127.0.0.1 on a free port and serves; returns the port (0 on failure).
  int Start() {
    port_ = server_->bind_to_any_port("127.0.0.1");
    if (port_ <= 0) return 0;
    thread_ = std::thread([this] { server_->listen_after_bind(); });
    for (int i = 0; i < 500 && !server_->is_running(); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    return port_;
  }
  void Stop() {
    if (thread_.joinable()) {
      server_->stop();
      thread_.join();
    }
  }
  int port() const { return port_; }
  std::string Url(const std::string& path = "") const {
    return "http://127.0.0.1:" + std::to_string(port_) + path;
  }

 private:
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  int port_ = 0;
};

}  // namespace flotilla::autoscaler::testing
