#include "cli/control_api.h"

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "autoscaler/http_client.h"

namespace flotilla::cli {
namespace {

using Json = nlohmann::json;

absl::StatusOr<Json> Call(const FleetState& state, const std::string& method, const std::string& path,
                          const std::string& body) {
  autoscaler::HttpRequest req;
  req.method = method;
  req.url = autoscaler::JoinUrl(state.control_url, path);
  req.headers.push_back({"Authorization", absl::StrCat("Bearer ", state.control_token)});
  if (!body.empty()) {
    req.body = body;
    req.content_type = "application/json";
  }
  autoscaler::HttpOptions options;
  options.timeout_s = 10;
  absl::StatusOr<autoscaler::HttpResponse> res = autoscaler::SendHttp(req, options);
  if (!res.ok()) {
    return absl::UnavailableError(
        absl::StrCat("cannot reach `flotilla up` at ", state.control_url, ": ", res.status().message()));
  }
  Json j = Json::parse(res->body, nullptr, /*allow_exceptions=*/false);
  if (res->status / 100 != 2) {
    const std::string message =
        j.is_object() && j.contains("error") && j["error"].is_string() ? j["error"].get<std::string>() : res->body;
    switch (res->status) {
      case 400:
        return absl::InvalidArgumentError(message);
      case 401:
        return absl::UnauthenticatedError(message);
      case 404:
        return absl::NotFoundError(message);
      default:
        return absl::InternalError(absl::StrCat("HTTP ", res->status, ": ", message));
    }
  }
  if (j.is_discarded()) return absl::InternalError("control endpoint answered with invalid JSON");
  return j;
}

int IntOr(const Json& j, const char* key) {
  return j.contains(key) && j[key].is_number_integer() ? j[key].get<int>() : 0;
}
std::string StrOr(const Json& j, const char* key) {
  return j.contains(key) && j[key].is_string() ? j[key].get<std::string>() : "";
}

}  // namespace

std::string ControlSnapshotToJson(const ControlSnapshot& s) {
  Json pools = Json::array();
  for (const ControlPool& p : s.pools) {
    pools.push_back({{"model", p.model}, {"desired", p.desired}, {"ready", p.ready}, {"starting", p.starting}});
  }
  Json workers = Json::array();
  for (const ControlWorker& w : s.workers) {
    workers.push_back({{"id", w.id},
                       {"model", w.model},
                       {"state", w.state},
                       {"pid", w.pid},
                       {"grpc_port", w.grpc_port},
                       {"metrics_port", w.metrics_port},
                       {"restarts", w.restarts},
                       {"last_exit", w.last_exit}});
  }
  return Json{{"autoscaler", s.autoscaler}, {"pools", pools}, {"workers", workers}}.dump();
}

absl::StatusOr<ControlSnapshot> ControlSnapshotFromJson(const std::string& text) {
  Json j = Json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return absl::InvalidArgumentError("fleet snapshot is not a JSON object");
  ControlSnapshot s;
  s.autoscaler = j.contains("autoscaler") && j["autoscaler"].is_boolean() && j["autoscaler"].get<bool>();
  if (j.contains("pools") && j["pools"].is_array()) {
    for (const Json& p : j["pools"]) {
      if (!p.is_object()) continue;
      s.pools.push_back({StrOr(p, "model"), IntOr(p, "desired"), IntOr(p, "ready"), IntOr(p, "starting")});
    }
  }
  if (j.contains("workers") && j["workers"].is_array()) {
    for (const Json& w : j["workers"]) {
      if (!w.is_object()) continue;
      ControlWorker cw;
      cw.id = StrOr(w, "id");
      cw.model = StrOr(w, "model");
      cw.state = StrOr(w, "state");
      cw.pid = IntOr(w, "pid");
      cw.grpc_port = IntOr(w, "grpc_port");
      cw.metrics_port = IntOr(w, "metrics_port");
      cw.restarts = IntOr(w, "restarts");
      cw.last_exit = StrOr(w, "last_exit");
      s.workers.push_back(std::move(cw));
    }
  }
  return s;
}

absl::StatusOr<ControlSnapshot> GetFleet(const FleetState& state) {
  absl::StatusOr<Json> j = Call(state, "GET", "/v1/fleet", "");
  if (!j.ok()) return j.status();
  return ControlSnapshotFromJson(j->dump());
}

absl::Status ScaleFleet(const FleetState& state, const std::string& model, int replicas) {
  return Call(state, "POST", "/v1/scale", Json{{"model", model}, {"replicas", replicas}}.dump()).status();
}

absl::Status DrainFleetWorker(const FleetState& state, const std::string& worker, bool replace) {
  return Call(state, "POST", "/v1/drain", Json{{"worker", worker}, {"replace", replace}}.dump()).status();
}

}  // namespace flotilla::cli
