#include "tests/gateway/e2e_env.h"

#include <gtest/gtest.h>
#include <httplib.h>

#include <algorithm>
#include <chrono>
#include <sstream>

#include "gateway/auth.h"

namespace flotilla::gateway::testing {

using namespace std::chrono_literals;

E2eEnv::E2eEnv() { dir_ = MakeTempDir("flotilla-gw-e2e"); }

E2eEnv::~E2eEnv() {
  extra_.clear();
  if (!::testing::Test::HasFailure()) RemoveTree(dir_);
}

std::unique_ptr<WorkerProcess> E2eEnv::StartWorker(const std::vector<std::string>& extra) {
  auto w = std::make_unique<WorkerProcess>();
  const int n = ++counter_;
  const std::string ready = dir_ + "/worker" + std::to_string(n) + ".ready";
  w->log = dir_ + "/worker" + std::to_string(n) + ".log";
  logs_.push_back(w->log);
  std::vector<std::string> argv = {BinDir() + "/flotilla-worker", "--model", kModelFile, "--threads", "1",
                                   "--ready-file", ready, "--worker-id", "w" + std::to_string(n)};
  if (std::find(extra.begin(), extra.end(), "--ctx-size") == extra.end()) {
    argv.insert(argv.end(), {"--ctx-size", "512"});
  }
  argv.insert(argv.end(), extra.begin(), extra.end());
  if (!w->proc.Start(argv, w->log)) {
    ADD_FAILURE() << "cannot start flotilla-worker from " << BinDir();
    return nullptr;
  }
  if (!WaitFor([&] { return !ReadFileOr(ready).empty() || !w->proc.Running(); }, 60s) || !w->proc.Running()) {
    ADD_FAILURE() << "worker did not become ready:\n" << ReadFileOr(w->log);
    return nullptr;
  }
  auto j = nlohmann::json::parse(ReadFileOr(ready));
  w->grpc_port = j["grpc_port"].get<int>();
  w->metrics_port = j["metrics_port"].get<int>();
  w->address = "127.0.0.1:" + std::to_string(w->grpc_port);
  return w;
}

std::unique_ptr<GatewayProcess> E2eEnv::StartGateway(const std::vector<std::string>& flags) {
  auto g = std::make_unique<GatewayProcess>();
  const int n = ++counter_;
  const std::string ready = dir_ + "/gateway" + std::to_string(n) + ".ready";
  g->log = dir_ + "/gateway" + std::to_string(n) + ".log";
  logs_.push_back(g->log);
  std::vector<std::string> argv = {BinDir() + "/flotilla-gateway", "--ready-file", ready};
  argv.insert(argv.end(), flags.begin(), flags.end());
  if (!g->proc.Start(argv, g->log)) {
    ADD_FAILURE() << "cannot start flotilla-gateway from " << BinDir();
    return nullptr;
  }
  if (!WaitFor([&] { return !ReadFileOr(ready).empty() || !g->proc.Running(); }, 30s) || !g->proc.Running()) {
    ADD_FAILURE() << "gateway did not start:\n" << ReadFileOr(g->log);
    return nullptr;
  }
  auto j = nlohmann::json::parse(ReadFileOr(ready));
  g->grpc_port = j["grpc_port"].get<int>();
  g->http_port = j["http_port"].get<int>();
  return g;
}

int E2eEnv::StartRedis() {
  if (!HaveExecutable("redis-server")) {
    ADD_FAILURE() << "redis-server is not installed";
    return 0;
  }
  const int port = FreePort();
  auto p = std::make_unique<Subprocess>();
  const std::string log = dir_ + "/redis.log";
  logs_.push_back(log);
  if (!p->Start({"redis-server", "--port", std::to_string(port), "--bind", "127.0.0.1", "--save", "", "--appendonly",
                 "no", "--dir", dir_},
                log)) {
    ADD_FAILURE() << "cannot start redis-server";
    return 0;
  }
  // Ready when it accepts a PING.
  bool up = WaitFor(
      [&] {
        httplib::Client probe("127.0.0.1", port);  // any TCP connect works as a probe
        probe.set_connection_timeout(0, 100000);
        auto r = probe.Get("/");
        return r.error() != httplib::Error::Connection;
      },
      10s);
  if (!up) {
    ADD_FAILURE() << "redis did not come up:\n" << ReadFileOr(log);
    return 0;
  }
  extra_.push_back(std::move(p));
  return port;
}

std::string E2eEnv::WriteKeyFile(const std::vector<nlohmann::json>& tenants,
                                 const std::vector<std::pair<std::string, std::string>>& keys, const std::string& name) {
  nlohmann::json j;
  j["tenants"] = tenants;
  j["keys"] = nlohmann::json::array();
  for (const auto& [key, tenant] : keys) j["keys"].push_back({{"sha256", Sha256Hex(key)}, {"tenant", tenant}});
  const std::string path = dir_ + "/" + name;
  WriteFileAtomic(path, j.dump(2));
  return path;
}

std::string E2eEnv::Logs() const {
  std::string out;
  for (const auto& l : logs_) out += "==== " + l + "\n" + ReadFileOr(l) + "\n";
  return out;
}

std::string HttpResult::Header(const std::string& name) const {
  for (const auto& [k, v] : headers) {
    if (strcasecmp(k.c_str(), name.c_str()) == 0) return v;
  }
  return "";
}

namespace {

std::pair<std::string, int> Split(const std::string& hostport) {
  size_t c = hostport.rfind(':');
  return {hostport.substr(0, c), std::stoi(hostport.substr(c + 1))};
}

HttpResult From(const httplib::Result& r) {
  HttpResult out;
  if (!r) return out;
  out.status = r->status;
  out.body = r->body;
  for (const auto& [k, v] : r->headers) out.headers.emplace(k, v);
  return out;
}

}  // namespace

HttpResult HttpPost(const std::string& hostport, const std::string& path, const std::string& body,
                    const std::string& api_key, const std::vector<std::pair<std::string, std::string>>& headers) {
  auto [host, port] = Split(hostport);
  httplib::Client c(host, port);
  c.set_read_timeout(60, 0);
  httplib::Headers h;
  if (!api_key.empty()) h.emplace("Authorization", "Bearer " + api_key);
  for (const auto& [k, v] : headers) h.emplace(k, v);
  return From(c.Post(path, h, body, "application/json"));
}

HttpResult HttpGet(const std::string& hostport, const std::string& path, const std::string& api_key) {
  auto [host, port] = Split(hostport);
  httplib::Client c(host, port);
  c.set_read_timeout(30, 0);
  httplib::Headers h;
  if (!api_key.empty()) h.emplace("Authorization", "Bearer " + api_key);
  return From(c.Get(path, h));
}

double MetricValue(const std::string& exposition, const std::string& name,
                   const std::vector<std::pair<std::string, std::string>>& labels) {
  double sum = 0;
  std::istringstream in(exposition);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    if (line.compare(0, name.size(), name) != 0) continue;
    const char next = line.size() > name.size() ? line[name.size()] : '\0';
    if (next != '{' && next != ' ') continue;
    bool match = true;
    for (const auto& [k, v] : labels) {
      if (line.find(k + "=\"" + v + "\"") == std::string::npos) match = false;
    }
    if (!match) continue;
    size_t sp = line.rfind(' ');
    sum += std::stod(line.substr(sp + 1));
  }
  return sum;
}

}  // namespace flotilla::gateway::testing
