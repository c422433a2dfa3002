// End-to-end test environment: real flotilla-worker and flotilla-gateway processes (and
// redis-server) on free ports, started from the build's bin directory, each writing a ready file
// that the helpers wait for. Everything is stopped when the objects go away.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "nlohmann/json.hpp"
#include "tests/gateway/process_util.h"

namespace flotilla::gateway::testing {

inline constexpr const char* kModelFile = "stories260K-q8_0.gguf";
inline constexpr const char* kModel = "stories260K-q8_0";

struct WorkerProcess {
  Subprocess proc;
  int grpc_port = 0;
  int metrics_port = 0;
  std::string address;  // 127.0.0.1:port
  std::string log;
};

struct GatewayProcess {
  Subprocess proc;
  int grpc_port = 0;
  int http_port = 0;
  std::string log;
  std::string http() const { return "127.0.0.1:" + std::to_string(http_port); }
  std::string grpc() const { return "127.0.0.1:" + std::to_string(grpc_port); }
};

class E2eEnv {
 public:
  E2eEnv();
  ~E2eEnv();

  const std::string& dir() const { return dir_; }

  // Starts a worker on stories260K-q8_0 (context 512, 1 thread) with extra flags; waits until
  // it serves. Null (and a test failure) when it does not come up.
  std::unique_ptr<WorkerProcess> StartWorker(const std::vector<std::string>& extra = {});
  // Starts a gateway with these flags (plus --ready-file); waits for its ports.
  std::unique_ptr<GatewayProcess> StartGateway(const std::vector<std::string>& flags);
  // redis-server on a free port; returns the port (0 on failure).
  int StartRedis();

  // Writes a key file with `tenants` (JSON objects) and keys (plain key -> tenant); returns its path.
  std::string WriteKeyFile(const std::vector<nlohmann::json>& tenants,
                           const std::vector<std::pair<std::string, std::string>>& keys,
                           const std::string& name = "keys.json");

  // Dumps every log this environment wrote (for failing tests).
  std::string Logs() const;

 private:
  std::string dir_;
  int counter_ = 0;
  std::vector<std::string> logs_;
  std::vector<std::unique_ptr<Subprocess>> extra_;
};

// HTTP helpers on cpp-httplib.
struct HttpResult {
  int status = 0;  // 0: connection failed
  std::string body;
  std::multimap<std::string, std::string> headers;
  std::string Header(const std::string& name) const;
};
HttpResult HttpPost(const std::string& hostport, const std::string& path, const std::string& body,
                    const std::string& api_key = "", const std::vector<std::pair<std::string, std::string>>& headers = {});
HttpResult HttpGet(const std::string& hostport, const std::string& path, const std::string& api_key = "");

// The value of a Prometheus sample line "name{labels} value" whose name and every given label
// match (sum over matching lines); 0 when absent.
double MetricValue(const std::string& exposition, const std::string& name,
                   const std::vector<std::pair<std::string, std::string>>& labels = {});

}  // namespace flotilla::gateway::testing
