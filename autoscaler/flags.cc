#include "autoscaler/flags.h"

#include <CLI/CLI.hpp>

#include <fstream>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace flotilla::autoscaler {
namespace {

using Json = nlohmann::json;

// Keys whose values stay strings even when they look like numbers (a model called "7b").
const std::set<std::string>& StringKeys() {
  static const auto* keys = new std::set<std::string>{"model", "model_path", "zone", "deployment"};
  return *keys;
}
const std::set<std::string>& ListKeys() {
  static const auto* keys = new std::set<std::string>{"command", "extra_args", "env"};
  return *keys;
}

Json TypedValue(const std::string& key, const std::string& v) {
  if (ListKeys().count(key)) {
    Json list = Json::array();
    for (absl::string_view part : absl::StrSplit(v, ' ', absl::SkipEmpty())) list.push_back(std::string(part));
    return list;
  }
  if (StringKeys().count(key)) return v;
  int64_t i = 0;
  if (absl::SimpleAtoi(v, &i)) return i;
  double d = 0;
  if (absl::SimpleAtod(v, &d)) return d;
  if (v == "true") return true;
  if (v == "false") return false;
  return v;
}

absl::StatusOr<Json> ParsePoolFlag(const std::string& spec) {
  Json pool = Json::object();
  for (absl::string_view pair : absl::StrSplit(spec, ',', absl::SkipEmpty())) {
    std::pair<std::string, std::string> kv = absl::StrSplit(pair, absl::MaxSplits('=', 1));
    if (kv.first.empty() || pair.find('=') == absl::string_view::npos) {
      return absl::InvalidArgumentError(absl::StrCat("--pool: '", pair, "' is not key=value"));
    }
    std::vector<std::string> path = absl::StrSplit(kv.first, '.');
    Json* at = &pool;
    for (size_t i = 0; i + 1 < path.size(); ++i) at = &(*at)[path[i]];
    (*at)[path.back()] = TypedValue(path.back(), kv.second);
  }
  if (!pool.contains("model") || !pool["model"].is_string()) {
    return absl::InvalidArgumentError(absl::StrCat("--pool '", spec, "' needs model=NAME"));
  }
  return pool;
}

// Merges `patch` into `base` key by key (objects recursively), as JSON merge-patch does.
void MergeInto(Json& base, const Json& patch) {
  for (auto it = patch.begin(); it != patch.end(); ++it) {
    if (it->is_object() && base.contains(it.key()) && base[it.key()].is_object()) {
      MergeInto(base[it.key()], *it);
    } else {
      base[it.key()] = *it;
    }
  }
}

}  // namespace

void AddAutoscalerFlags(CLI::App& app, AutoscalerFlags* f) {
  app.add_option("--config", f->config_file, "JSON config file (docs/autoscaler.md); flags override it");
  app.add_option("--interval", f->interval_s, "Seconds between decisions (default 5)");
  app.add_option("--metrics-address", f->metrics_address, "host:port for the autoscaler's own /metrics (port 0: any)");
  app.add_option("--reader", f->reader, "Where metrics come from: scrape (each /metrics) or promql (Prometheus)")
      ->check(CLI::IsMember({"scrape", "promql"}));
  app.add_option("--prometheus-url", f->prometheus_url, "Prometheus base URL for --reader promql");
  app.add_option("--extra-selector", f->extra_selector, "Extra PromQL label matchers, e.g. job=\"flotilla-worker\"");
  app.add_option("--scrape-target", f->scrape_targets, "POOL=URL of a worker's /metrics (repeatable)");
  app.add_option("--scrape-fleet-file", f->scrape_fleet_file, "Scrape the workers listed in this fleet file");
  app.add_option("--activation-url", f->activation_urls, "A gateway's /metrics URL, for scale-from-zero (repeatable)");
  app.add_option("--window", f->window_s, "Seconds over which TTFT p95 and counters are taken (default 60)");
  app.add_option("--backend", f->backend, "local (worker processes here) or kubernetes (Deployment scale)")
      ->check(CLI::IsMember({"local", "kubernetes"}));
  app.add_option("--work-dir", f->work_dir, "Local backend: folder for ready files and worker logs");
  app.add_option("--fleet-file", f->fleet_file, "Local backend: discovery file to write (default <work-dir>/fleet.txt)");
  app.add_option("--prometheus-sd-file", f->prometheus_sd_file, "Local backend: also write a Prometheus file_sd JSON");
  app.add_option("--worker-binary", f->worker_binary, "Local backend: flotilla-worker to run");
  app.add_option("--k8s-api-server", f->k8s_api_server, "Kubernetes API server URL (default: in-cluster)");
  app.add_option("--k8s-namespace", f->k8s_namespace, "Namespace of the Deployments (default: the pod's)");
  app.add_option("--k8s-token-file", f->k8s_token_file, "Bearer token file (default: service-account token)");
  app.add_option("--k8s-ca-file", f->k8s_ca_file, "CA bundle for the API server (default: service-account ca.crt)");
  app.add_option("--pool", f->pools,
                 "A pool: model=NAME,min_replicas=N,max_replicas=N,model_path=PATH,... (repeatable)");
  app.add_option("--log-format", f->log_format, "text or json");
  app.add_option("--log-level", f->log_level, "trace, debug, info, warn, error");
}

absl::StatusOr<AutoscalerConfig> ConfigFromFlags(const AutoscalerFlags& f) {
  Json j = Json::object();
  if (!f.config_file.empty()) {
    std::ifstream in(f.config_file);
    if (!in) return absl::NotFoundError(absl::StrCat("cannot open config ", f.config_file));
    std::stringstream ss;
    ss << in.rdbuf();
    j = Json::parse(ss.str(), nullptr, false, true);
    if (j.is_discarded() || !j.is_object()) {
      return absl::InvalidArgumentError(absl::StrCat(f.config_file, ": not a JSON object"));
    }
  }
  Json patch = Json::object();
  if (f.interval_s > 0) patch["interval_s"] = f.interval_s;
  if (!f.metrics_address.empty()) patch["metrics_address"] = f.metrics_address;
  Json reader = Json::object();
  if (!f.reader.empty()) reader["kind"] = f.reader;
  if (!f.prometheus_url.empty()) reader["prometheus_url"] = f.prometheus_url;
  if (!f.extra_selector.empty()) reader["extra_selector"] = f.extra_selector;
  if (!f.scrape_fleet_file.empty()) reader["fleet_file"] = f.scrape_fleet_file;
  if (!f.activation_urls.empty()) reader["activation_urls"] = f.activation_urls;
  if (f.window_s > 0) reader["window_s"] = f.window_s;
  if (!f.scrape_targets.empty()) {
    Json targets = Json::array();
    for (const std::string& t : f.scrape_targets) {
      size_t eq = t.find('=');
      if (eq == std::string::npos || eq == 0) {
        return absl::InvalidArgumentError(absl::StrCat("--scrape-target '", t, "' is not POOL=URL"));
      }
      targets.push_back({{"pool", t.substr(0, eq)}, {"url", t.substr(eq + 1)}});
    }
    reader["targets"] = targets;
  }
  if (!reader.empty()) patch["reader"] = reader;
  Json backend = Json::object();
  auto set = [](Json& o, const char* key, const std::string& v) {
    if (!v.empty()) o[key] = v;
  };
  set(backend, "kind", f.backend);
  set(backend, "work_dir", f.work_dir);
  set(backend, "fleet_file", f.fleet_file);
  set(backend, "prometheus_sd_file", f.prometheus_sd_file);
  set(backend, "worker_binary", f.worker_binary);
  set(backend, "api_server", f.k8s_api_server);
  set(backend, "namespace", f.k8s_namespace);
  set(backend, "token_file", f.k8s_token_file);
  set(backend, "ca_file", f.k8s_ca_file);
  if (!backend.empty()) patch["backend"] = backend;
  MergeInto(j, patch);
  // Pools from flags replace same-named pools of the file key by key, or are added.
  for (const std::string& spec : f.pools) {
    absl::StatusOr<Json> pool = ParsePoolFlag(spec);
    if (!pool.ok()) return pool.status();
    if (!j.contains("pools") || !j["pools"].is_array()) j["pools"] = Json::array();
    bool merged = false;
    for (Json& existing : j["pools"]) {
      if (existing.is_object() && existing.value("model", "") == (*pool)["model"].get<std::string>()) {
        MergeInto(existing, *pool);
        merged = true;
      }
    }
    if (!merged) j["pools"].push_back(*pool);
  }
  return ParseConfigJson(j.dump());
}

}  // namespace flotilla::autoscaler
