#include "cli/fleet_view.h"

#include <grpcpp/grpcpp.h>

#include <future>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "autoscaler/fleet_file.h"
#include "autoscaler/http_client.h"
#include "autoscaler/metrics_text.h"
#include "cli/control_api.h"
#include "cli/table.h"
#include "flotilla/worker/v1/worker.grpc.pb.h"

namespace flotilla::cli {
namespace {

// Reads one worker's load report; a short deadline keeps status snappy when a worker hangs.
void ReadLoad(WorkerView* w) {
  auto channel = grpc::CreateChannel(w->address, grpc::InsecureChannelCredentials());
  auto stub = flotilla::worker::v1::Worker::NewStub(channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(2));
  flotilla::worker::v1::LoadReport r;
  if (!stub->GetLoad(&ctx, {}, &r).ok()) return;
  w->load_ok = true;
  w->running = static_cast<int>(r.running());
  w->waiting = static_cast<int>(r.waiting());
  w->kv_usage = r.kv_usage();
  w->tokens_per_second = r.tokens_per_second();
  w->prefix_cache_hit_rate = r.prefix_cache_hit_rate();
  if (w->zone.empty()) w->zone = r.zone();
  if (w->model.empty()) w->model = r.model();
  if (w->state.empty()) w->state = r.draining() ? "draining" : (r.healthy() ? "ready" : "unhealthy");
}

void ReadLoads(std::vector<WorkerView>& workers) {
  std::vector<std::future<void>> pending;
  for (WorkerView& w : workers) {
    if (!w.address.empty()) pending.push_back(std::async(std::launch::async, ReadLoad, &w));
  }
  for (auto& f : pending) f.get();
}

absl::StatusOr<autoscaler::MetricsText> Scrape(const std::string& url) {
  autoscaler::HttpRequest req;
  req.url = url;
  autoscaler::HttpOptions o;
  o.timeout_s = 3;
  absl::StatusOr<autoscaler::HttpResponse> res = autoscaler::SendHttp(req, o);
  if (!res.ok()) return res.status();
  if (res->status != 200) return absl::UnavailableError(absl::StrCat(url, ": HTTP ", res->status));
  return autoscaler::ParseMetricsText(res->body);
}

void ReadGateway(const std::string& gateway_http, FleetView* v) {
  if (gateway_http.empty()) return;
  absl::StatusOr<autoscaler::MetricsText> m = Scrape(absl::StrCat("http://", gateway_http, "/metrics"));
  if (!m.ok()) {
    v->problems.push_back(absl::StrCat("gateway metrics: ", m.status().message()));
    return;
  }
  GatewayView& g = v->gateway;
  g.ok = true;
  for (const autoscaler::Sample& s : m->samples) {
    if (s.name == "flotilla_gateway_requests_total") {
      const std::string* code = s.Label("code");
      (code != nullptr && *code == "OK" ? g.requests_ok : g.requests_failed) += s.value;
    } else if (s.name == "flotilla_gateway_healthy_workers") {
      const std::string* model = s.Label("model");
      g.healthy_workers[model != nullptr ? *model : ""] += s.value;
    }
  }
  g.open_streams = m->Sum("flotilla_gateway_open_streams", {});
  g.queue_depth = m->Sum("flotilla_gateway_queue_depth", {});
  g.shed = m->Sum("flotilla_gateway_shed_total", {});
  g.rate_limited = m->Sum("flotilla_gateway_rate_limited_total", {});
  g.retries = m->Sum("flotilla_gateway_retries_total", {});
  g.completion_tokens = m->Sum("flotilla_gateway_completion_tokens_total", {});
}

void ReadAutoscaler(const std::string& url, FleetView* v) {
  if (url.empty() || !v->autoscaler) return;
  absl::StatusOr<autoscaler::MetricsText> m = Scrape(url);
  if (!m.ok()) {
    v->problems.push_back(absl::StrCat("autoscaler metrics: ", m.status().message()));
    return;
  }
  for (PoolView& p : v->pools) {
    int found = 0;
    const double desired =
        m->Sum("flotilla_autoscaler_replicas", {{"pool", p.model}, {"kind", "desired"}}, &found);
    if (found > 0) p.autoscaler_desired = static_cast<int>(desired);
  }
}

}  // namespace

FleetView GatherFromUp(const FleetState& state) {
  FleetView v;
  v.gateway_grpc = state.gateway_grpc;
  v.gateway_http = state.gateway_http;
  v.prometheus_url = state.prometheus_url;
  absl::StatusOr<ControlSnapshot> snap = GetFleet(state);
  if (!snap.ok()) {
    v.problems.push_back(std::string(snap.status().message()));
  } else {
    v.autoscaler = snap->autoscaler;
    for (const ControlPool& p : snap->pools) v.pools.push_back({p.model, p.desired, p.ready, p.starting, std::nullopt});
    // The fleet file has each worker's zone.
    std::map<std::string, std::string> zones;
    if (auto entries = autoscaler::ReadFleetFile(state.fleet_file); entries.ok()) {
      for (const auto& e : *entries) zones[e.id] = e.zone;
    }
    for (const ControlWorker& w : snap->workers) {
      WorkerView wv;
      wv.id = w.id;
      wv.model = w.model;
      wv.state = w.state;
      wv.pid = w.pid;
      wv.restarts = w.restarts;
      wv.last_exit = w.last_exit;
      wv.zone = zones.count(w.id) ? zones[w.id] : "";
      if (w.grpc_port > 0) wv.address = absl::StrCat("127.0.0.1:", w.grpc_port);
      v.workers.push_back(std::move(wv));
    }
  }
  ReadLoads(v.workers);
  ReadGateway(state.gateway_http, &v);
  ReadAutoscaler(state.autoscaler_metrics_url, &v);
  return v;
}

FleetView GatherFromFleetFile(const std::string& fleet_file, const std::string& gateway_http) {
  FleetView v;
  v.gateway_http = gateway_http;
  absl::StatusOr<std::vector<autoscaler::FleetEntry>> entries = autoscaler::ReadFleetFile(fleet_file);
  if (!entries.ok()) {
    v.problems.push_back(std::string(entries.status().message()));
  } else {
    for (const auto& e : *entries) {
      WorkerView wv;
      wv.id = e.id.empty() ? e.address : e.id;
      wv.model = e.model;
      wv.zone = e.zone;
      wv.address = e.address;
      wv.pid = static_cast<int>(e.pid);
      v.workers.push_back(std::move(wv));
    }
  }
  ReadLoads(v.workers);
  ReadGateway(gateway_http, &v);
  return v;
}

std::string FleetViewToText(const FleetView& v) {
  std::string out;
  if (!v.gateway_grpc.empty() || !v.gateway_http.empty()) {
    absl::StrAppend(&out, "gateway  grpc ", v.gateway_grpc.empty() ? "-" : v.gateway_grpc, "  http ",
                    v.gateway_http.empty() ? "-" : v.gateway_http, "\n");
  }
  if (v.gateway.ok) {
    const GatewayView& g = v.gateway;
    absl::StrAppendFormat(&out,
                          "         requests ok %.0f, failed %.0f; open streams %.0f; queued %.0f; shed %.0f; "
                          "rate-limited %.0f; retries %.0f; completion tokens %.0f\n",
                          g.requests_ok, g.requests_failed, g.open_streams, g.queue_depth, g.shed, g.rate_limited,
                          g.retries, g.completion_tokens);
  }
  if (!v.prometheus_url.empty()) absl::StrAppend(&out, "prometheus  ", v.prometheus_url, "\n");
  for (const PoolView& p : v.pools) {
    absl::StrAppendFormat(&out, "pool %s: %d desired, %d ready, %d starting", p.model, p.desired, p.ready, p.starting);
    auto hw = v.gateway.healthy_workers.find(p.model);
    if (hw != v.gateway.healthy_workers.end()) absl::StrAppendFormat(&out, "; gateway sees %.0f healthy", hw->second);
    if (v.autoscaler) {
      absl::StrAppend(&out, "; autoscaler ",
                      p.autoscaler_desired.has_value() ? absl::StrCat("wants ", *p.autoscaler_desired) : "on");
    }
    out += "\n";
  }
  out += "\n";
  Table t({"WORKER", "STATE", "MODEL", "ZONE", "ADDRESS", "RUNNING", "WAITING", "KV %", "TOK/S", "RESTARTS"});
  for (const WorkerView& w : v.workers) {
    t.AddRow({w.id, w.state, w.model, w.zone.empty() ? "-" : w.zone, w.address.empty() ? "-" : w.address,
              w.load_ok ? std::to_string(w.running) : "-", w.load_ok ? std::to_string(w.waiting) : "-",
              w.load_ok ? absl::StrFormat("%.1f", w.kv_usage * 100) : "-",
              w.load_ok ? absl::StrFormat("%.0f", w.tokens_per_second) : "-", std::to_string(w.restarts)});
  }
  out += t.Render();
  for (const std::string& p : v.problems) absl::StrAppend(&out, "warning: ", p, "\n");
  return out;
}

std::string FleetViewToJson(const FleetView& v) {
  using Json = nlohmann::json;
  Json pools = Json::array();
  for (const PoolView& p : v.pools) {
    Json j = {{"model", p.model}, {"desired", p.desired}, {"ready", p.ready}, {"starting", p.starting}};
    if (p.autoscaler_desired.has_value()) j["autoscaler_desired"] = *p.autoscaler_desired;
    pools.push_back(j);
  }
  Json workers = Json::array();
  for (const WorkerView& w : v.workers) {
    Json j = {{"id", w.id},       {"state", w.state},     {"model", w.model},       {"zone", w.zone},
              {"address", w.address}, {"pid", w.pid},     {"restarts", w.restarts}, {"last_exit", w.last_exit},
              {"load_ok", w.load_ok}};
    if (w.load_ok) {
      j["running"] = w.running;
      j["waiting"] = w.waiting;
      j["kv_usage"] = w.kv_usage;
      j["tokens_per_second"] = w.tokens_per_second;
      j["prefix_cache_hit_rate"] = w.prefix_cache_hit_rate;
    }
    workers.push_back(j);
  }
  Json gateway = {{"ok", v.gateway.ok},
                  {"requests_ok", v.gateway.requests_ok},
                  {"requests_failed", v.gateway.requests_failed},
                  {"open_streams", v.gateway.open_streams},
                  {"queue_depth", v.gateway.queue_depth},
                  {"shed", v.gateway.shed},
                  {"rate_limited", v.gateway.rate_limited},
                  {"retries", v.gateway.retries},
                  {"completion_tokens", v.gateway.completion_tokens},
                  {"healthy_workers", v.gateway.healthy_workers}};
  Json j = {{"gateway_grpc", v.gateway_grpc},
            {"gateway_http", v.gateway_http},
            {"prometheus_url", v.prometheus_url},
            {"autoscaler", v.autoscaler},
            {"pools", pools},
            {"workers", workers},
            {"gateway", gateway},
            {"problems", v.problems}};
  return j.dump(2) + "\n";
}

}  // namespace flotilla::cli
