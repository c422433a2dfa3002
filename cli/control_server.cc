#include "cli/control_server.h"

#include <httplib.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "cli/control_api.h"

namespace flotilla::cli {
namespace {

using Json = nlohmann::json;

void Error(httplib::Response& res, int status, const std::string& message) {
  res.status = status;
  res.set_content(Json{{"error", message}}.dump(), "application/json");
}

int HttpStatusOf(const absl::Status& st) {
  switch (st.code()) {
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kOutOfRange:
      return 400;
    case absl::StatusCode::kNotFound:
      return 404;
    case absl::StatusCode::kFailedPrecondition:
      return 409;
    default:
      return 500;
  }
}

}  // namespace

absl::StatusOr<std::unique_ptr<ControlServer>> ControlServer::Start(autoscaler::LocalFleet* fleet, std::string token,
                                                                    std::shared_ptr<prometheus::Registry> registry,
                                                                    bool autoscaler, const std::string& host) {
  std::unique_ptr<ControlServer> s(new ControlServer());
  s->fleet_ = fleet;
  s->token_ = std::move(token);
  s->registry_ = std::move(registry);
  s->autoscaler_ = autoscaler;
  s->host_ = host;
  s->server_ = std::make_unique<httplib::Server>();
  s->Route();
  s->port_ = s->server_->bind_to_any_port(host);
  if (s->port_ <= 0) return absl::UnavailableError(absl::StrCat("control endpoint: cannot listen on ", host));
  httplib::Server* server = s->server_.get();
  s->thread_ = std::thread([server] { server->listen_after_bind(); });
  return s;
}

ControlServer::~ControlServer() { Stop(); }

void ControlServer::Stop() {
  if (server_ != nullptr) server_->stop();
  if (thread_.joinable()) thread_.join();
}

std::string ControlServer::url() const { return absl::StrCat("http://", host_, ":", port_); }

void ControlServer::Route() {
  auto authorized = [this](const httplib::Request& req, httplib::Response& res) {
    if (req.get_header_value("Authorization") == absl::StrCat("Bearer ", token_)) return true;
    Error(res, 401, "missing or wrong control token (see the state file of `flotilla up`)");
    return false;
  };

  server_->Get("/v1/fleet", [this, authorized](const httplib::Request& req, httplib::Response& res) {
    if (!authorized(req, res)) return;
    ControlSnapshot snap;
    snap.autoscaler = autoscaler_;
    std::vector<autoscaler::WorkerStatus> workers = fleet_->Workers();
    // Every pool, also those at zero replicas (which have no workers to name them).
    std::vector<std::string> pools = fleet_->Pools();
    for (const autoscaler::WorkerStatus& w : workers) {
      if (std::find(pools.begin(), pools.end(), w.pool) == pools.end()) pools.push_back(w.pool);
      snap.workers.push_back({w.id, w.pool, autoscaler::WorkerStateName(w.state), w.pid, w.grpc_port,
                              w.metrics_port, w.restarts, w.last_exit});
    }
    for (const std::string& model : pools) {
      absl::StatusOr<autoscaler::ReplicaState> r = fleet_->GetReplicas(model);
      if (r.ok()) snap.pools.push_back({model, r->desired, r->ready, r->starting});
    }
    res.set_content(ControlSnapshotToJson(snap), "application/json");
  });

  server_->Post("/v1/scale", [this, authorized](const httplib::Request& req, httplib::Response& res) {
    if (!authorized(req, res)) return;
    Json j = Json::parse(req.body, nullptr, /*allow_exceptions=*/false);
    if (!j.is_object() || !j.contains("model") || !j["model"].is_string() || !j.contains("replicas") ||
        !j["replicas"].is_number_integer() || j["replicas"].get<int>() < 0) {
      return Error(res, 400, "want {\"model\": NAME, \"replicas\": N >= 0}");
    }
    if (absl::Status st = fleet_->SetReplicas(j["model"].get<std::string>(), j["replicas"].get<int>()); !st.ok()) {
      return Error(res, HttpStatusOf(st), std::string(st.message()));
    }
    res.set_content(R"({"ok":true})", "application/json");
  });

  server_->Post("/v1/drain", [this, authorized](const httplib::Request& req, httplib::Response& res) {
    if (!authorized(req, res)) return;
    Json j = Json::parse(req.body, nullptr, /*allow_exceptions=*/false);
    if (!j.is_object() || !j.contains("worker") || !j["worker"].is_string()) {
      return Error(res, 400, "want {\"worker\": ID, \"replace\": bool}");
    }
    const bool replace = j.contains("replace") && j["replace"].is_boolean() && j["replace"].get<bool>();
    if (absl::Status st = fleet_->DrainWorker(j["worker"].get<std::string>(), replace); !st.ok()) {
      return Error(res, HttpStatusOf(st), std::string(st.message()));
    }
    res.set_content(R"({"ok":true})", "application/json");
  });

  server_->Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    std::string text;
    if (registry_ != nullptr) text = prometheus::TextSerializer().Serialize(registry_->Collect());
    res.set_content(text, "text/plain; version=0.0.4");
  });
}

}  // namespace flotilla::cli
