// Real flotilla-worker and flotilla-gateway processes for SDK and CLI tests: free ports, ready
// files, a workers file the gateway watches. Header-only; shared by tests/sdk and tests/cli.
#pragma once

#include <algorithm>
#include <grpcpp/grpcpp.h>
#include <httplib.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "flotilla/worker/v1/worker.grpc.pb.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/common/subprocess.h"
#include "tests/common/temp_dir.h"

namespace flotilla::testing {

class TestWorker {
 public:
  // Starts stories260K (q8_0 unless told) with a 512 context unless extra sets --ctx-size; check
  // ok() afterwards.
  explicit TestWorker(const std::string& dir, const std::string& name, std::vector<std::string> extra = {},
                      const std::string& model = "stories260K-q8_0.gguf") {
    ready_ = dir + "/" + name + ".ready.json";
    std::vector<std::string> argv = {BinDir() + "/flotilla-worker", "--model", model, "--model-name",
                                     "stories260K", "--threads", "1", "--worker-id", name, "--ready-file", ready_};
    if (std::find(extra.begin(), extra.end(), "--ctx-size") == extra.end()) {
      argv.insert(argv.end(), {"--ctx-size", "512"});
    }
    argv.insert(argv.end(), extra.begin(), extra.end());
    EXPECT_TRUE(proc_.Start(argv, dir + "/" + name + ".log"));
    nlohmann::json ready = proc_.WaitReady(ready_);
    EXPECT_FALSE(ready.is_null()) << proc_.Log();
    if (ready.is_null()) return;
    address_ = "127.0.0.1:" + std::to_string(ready["grpc_port"].get<int>());
    metrics_port_ = ready["metrics_port"].get<int>();
    stub_ = flotilla::worker::v1::Worker::NewStub(grpc::CreateChannel(address_, grpc::InsecureChannelCredentials()));
  }
  ~TestWorker() { proc_.Stop(SIGKILL); }

  bool ok() const { return !address_.empty(); }
  const std::string& address() const { return address_; }
  Subprocess& proc() { return proc_; }

  flotilla::worker::v1::LoadReport Load() {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(2));
    flotilla::worker::v1::LoadReport r;
    EXPECT_TRUE(stub_->GetLoad(&ctx, {}, &r).ok());
    return r;
  }
  // Sum of a metric's samples whose line contains `filter`, from the worker's /metrics.
  double Metric(const std::string& name, const std::string& filter = "") {
    httplib::Client cli("127.0.0.1", metrics_port_);
    auto res = cli.Get("/metrics");
    if (!res || res->status != 200) return -1;
    double sum = 0;
    std::istringstream in(res->body);
    std::string line;
    while (std::getline(in, line)) {
      if (line.rfind(name, 0) != 0 || line.size() <= name.size()) continue;
      if (line[name.size()] != ' ' && line[name.size()] != '{') continue;
      if (!filter.empty() && line.find(filter) == std::string::npos) continue;
      sum += std::stod(line.substr(line.rfind(' ') + 1));
    }
    return sum;
  }

  // Polls until the worker holds no request and no KV block (a cancelled request's blocks
  // come back within an engine step or two).
  bool WaitIdle(std::chrono::seconds timeout = std::chrono::seconds(10)) {
    const auto until = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < until) {
      const auto r = Load();
      if (r.running() == 0 && r.waiting() == 0 && r.kv_usage() == 0) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return false;
  }

 private:
  Subprocess proc_;
  std::string ready_;
  std::string address_;
  int metrics_port_ = 0;
  std::unique_ptr<flotilla::worker::v1::Worker::Stub> stub_;
};

// Replaces the workers file atomically (the gateway polls it).
inline void WriteWorkersFile(const std::string& path, const std::vector<std::string>& addresses) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp);
    for (const auto& a : addresses) out << a << " stories260K local\n";
  }
  std::rename(tmp.c_str(), path.c_str());
}

class TestGateway {
 public:
  // Starts a gateway watching `workers_file`. extra: more flags (e.g. --api-keys, TLS).
  TestGateway(const std::string& dir, const std::string& workers_file, std::vector<std::string> extra = {},
              int grpc_port = 0, bool no_auth = true) {
    ready_ = dir + "/gateway.ready.json";
    std::remove(ready_.c_str());
    std::vector<std::string> argv = {BinDir() + "/flotilla-gateway", "--grpc-port", std::to_string(grpc_port),
                                     "--http-port", "0", "--workers-file", workers_file, "--ready-file", ready_};
    if (no_auth) argv.push_back("--no-auth");
    argv.insert(argv.end(), extra.begin(), extra.end());
    EXPECT_TRUE(proc_.Start(argv, dir + "/gateway.log"));
    nlohmann::json ready = proc_.WaitReady(ready_, std::chrono::seconds(30));
    EXPECT_FALSE(ready.is_null()) << proc_.Log();
    if (ready.is_null()) return;
    grpc_address_ = "127.0.0.1:" + std::to_string(ready["grpc_port"].get<int>());
    http_address_ = "127.0.0.1:" + std::to_string(ready["http_port"].get<int>());
  }
  ~TestGateway() { proc_.Stop(SIGKILL); }

  bool ok() const { return !grpc_address_.empty(); }
  const std::string& grpc_address() const { return grpc_address_; }
  const std::string& http_address() const { return http_address_; }
  Subprocess& proc() { return proc_; }

 private:
  Subprocess proc_;
  std::string ready_;
  std::string grpc_address_;
  std::string http_address_;
};

// A port that was free a moment ago (for a server that must come up on a known port later).
inline int ReservePort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);
  return ntohs(addr.sin_port);
}

}  // namespace flotilla::testing
