#include "autoscaler/config.h"

#include <fstream>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "autoscaler/metrics_text.h"

namespace flotilla::autoscaler {
namespace {

using Json = nlohmann::json;

// Reads the keys of one JSON object with type checks, and reports keys nobody asked for.
// No exceptions: every access checks the type first.
class ObjectReader {
 public:
  ObjectReader(const Json& j, std::string where) : j_(j), where_(std::move(where)) {
    if (!j_.is_object()) status_ = absl::InvalidArgumentError(absl::StrCat(where_, ": want a JSON object"));
  }

  void Number(const char* key, double* out) {
    if (const Json* v = Find(key)) {
      if (v->is_number()) {
        *out = v->get<double>();
      } else {
        Fail(key, "a number");
      }
    }
  }
  void Int(const char* key, int* out) {
    if (const Json* v = Find(key)) {
      if (v->is_number_integer()) {
        *out = v->get<int>();
      } else {
        Fail(key, "an integer");
      }
    }
  }
  void Bool(const char* key, bool* out) {
    if (const Json* v = Find(key)) {
      if (v->is_boolean()) {
        *out = v->get<bool>();
      } else {
        Fail(key, "true or false");
      }
    }
  }
  void String(const char* key, std::string* out) {
    if (const Json* v = Find(key)) {
      if (v->is_string()) {
        *out = v->get<std::string>();
      } else {
        Fail(key, "a string");
      }
    }
  }
  void Strings(const char* key, std::vector<std::string>* out) {
    if (const Json* v = Find(key)) {
      if (!v->is_array()) return Fail(key, "a list of strings");
      out->clear();
      for (const Json& e : *v) {
        if (!e.is_string()) return Fail(key, "a list of strings");
        out->push_back(e.get<std::string>());
      }
    }
  }
  // A nested object or list, for the caller to read.
  const Json* Raw(const char* key) { return Find(key); }
  std::string Where(const char* key) const { return absl::StrCat(where_, ".", key); }

  void Merge(const absl::Status& st) {
    if (status_.ok() && !st.ok()) status_ = st;
  }
  absl::Status Finish() {
    if (!status_.ok()) return status_;
    std::vector<std::string> unknown;
    for (auto it = j_.begin(); it != j_.end(); ++it) {
      if (!seen_.count(it.key())) unknown.push_back(it.key());
    }
    if (!unknown.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(where_, ": unknown key(s) ", absl::StrJoin(unknown, ", ")));
    }
    return absl::OkStatus();
  }

 private:
  const Json* Find(const char* key) {
    seen_.insert(key);
    if (!status_.ok() || !j_.is_object() || !j_.contains(key) || j_[key].is_null()) return nullptr;
    return &j_[key];
  }
  void Fail(const char* key, const char* want) {
    if (status_.ok()) status_ = absl::InvalidArgumentError(absl::StrCat(Where(key), ": want ", want));
  }

  const Json& j_;
  std::string where_;
  std::set<std::string> seen_;
  absl::Status status_;
};

absl::Status ParseRules(const Json& j, const std::string& where, ScaleRules* r) {
  ObjectReader o(j, where);
  o.Number("stabilization_window_s", &r->stabilization_window_s);
  o.Number("period_s", &r->period_s);
  o.Int("max_pods", &r->max_pods);
  o.Number("max_percent", &r->max_percent);
  o.Number("cooldown_s", &r->cooldown_s);
  return o.Finish();
}

absl::Status ParseNames(const Json& j, const std::string& where, MetricNames* n) {
  ObjectReader o(j, where);
  o.String("running", &n->running);
  o.String("waiting", &n->waiting);
  o.String("kv_usage", &n->kv_usage);
  o.String("ttft", &n->ttft);
  o.String("model_label", &n->model_label);
  o.Strings("activation", &n->activation);
  return o.Finish();
}

absl::Status ParseReader(const Json& j, ReaderConfig* r) {
  ObjectReader o(j, "reader");
  o.String("kind", &r->kind);
  o.String("prometheus_url", &r->prometheus_url);
  o.String("extra_selector", &r->extra_selector);
  o.String("fleet_file", &r->fleet_file);
  o.Strings("activation_urls", &r->activation_urls);
  o.Number("window_s", &r->window_s);
  o.Number("timeout_s", &r->timeout_s);
  if (const Json* t = o.Raw("targets")) {
    if (!t->is_array()) return absl::InvalidArgumentError("reader.targets: want a list");
    for (size_t i = 0; i < t->size(); ++i) {
      ObjectReader to((*t)[i], absl::StrCat("reader.targets[", i, "]"));
      ScrapeTarget target;
      to.String("pool", &target.pool);
      to.String("url", &target.url);
      if (absl::Status st = to.Finish(); !st.ok()) return st;
      r->targets.push_back(std::move(target));
    }
  }
  if (const Json* n = o.Raw("metric_names")) o.Merge(ParseNames(*n, "reader.metric_names", &r->names));
  return o.Finish();
}

absl::Status ParseBackend(const Json& j, BackendConfig* b) {
  ObjectReader o(j, "backend");
  o.String("kind", &b->kind);
  LocalFleetOptions& l = b->local;
  o.String("work_dir", &l.work_dir);
  o.String("fleet_file", &l.fleet_file);
  o.String("prometheus_sd_file", &l.prometheus_sd_file);
  o.String("worker_binary", &l.worker_binary);
  o.String("host", &l.host);
  o.Number("start_timeout_s", &l.start_timeout_s);
  o.Number("drain_grace_s", &l.drain_grace_s);
  o.Number("drain_timeout_s", &l.drain_timeout_s);
  o.Number("stop_timeout_s", &l.stop_timeout_s);
  o.Number("restart_backoff_s", &l.restart_backoff_s);
  o.Number("max_restart_backoff_s", &l.max_restart_backoff_s);
  KubernetesOptions& k = b->kubernetes;
  o.String("api_server", &k.api_server);
  o.String("token_file", &k.token_file);
  o.String("ca_file", &k.ca_file);
  o.String("namespace", &k.namespace_name);
  o.Bool("read_ready_from_deployment", &k.read_ready_from_deployment);
  o.Number("api_timeout_s", &k.timeout_s);
  return o.Finish();
}

absl::Status ParsePool(const Json& j, size_t index, PoolEntry* p) {
  ObjectReader o(j, absl::StrCat("pools[", index, "]"));
  PolicyConfig& c = p->policy;
  o.String("model", &c.pool);
  o.Int("min_replicas", &c.min_replicas);
  o.Int("max_replicas", &c.max_replicas);
  o.Number("target_waiting_per_replica", &c.target_waiting_per_replica);
  o.Number("target_inflight_per_replica", &c.target_inflight_per_replica);
  o.Number("target_kv_usage", &c.target_kv_usage);
  o.Number("ttft_p95_slo_s", &c.ttft_p95_slo_s);
  o.Number("tolerance", &c.tolerance);
  o.Number("startup_time_s", &c.startup_time_s);
  o.Number("scale_to_zero_after_s", &c.scale_to_zero_after_s);
  o.Int("activation_replicas", &c.activation_replicas);
  o.Number("max_metric_age_s", &c.max_metric_age_s);
  if (const Json* r = o.Raw("scale_up")) o.Merge(ParseRules(*r, o.Where("scale_up"), &c.scale_up));
  if (const Json* r = o.Raw("scale_down")) o.Merge(ParseRules(*r, o.Where("scale_down"), &c.scale_down));
  o.Int("initial_replicas", &p->initial_replicas);
  o.String("model_path", &p->local.model_path);
  o.String("zone", &p->local.zone);
  o.Strings("command", &p->local.command);
  o.Strings("extra_args", &p->local.extra_args);
  o.Strings("env", &p->local.env);
  o.String("deployment", &p->deployment);
  p->local.model_name = c.pool;
  return o.Finish();
}

}  // namespace

absl::Status AutoscalerConfig::Validate() const {
  if (interval_s <= 0) return absl::InvalidArgumentError("interval_s must be > 0");
  if (pools.empty()) return absl::InvalidArgumentError("no pools configured");
  if (reader.kind != "scrape" && reader.kind != "promql") {
    return absl::InvalidArgumentError("reader.kind must be scrape or promql");
  }
  if (backend.kind != "local" && backend.kind != "kubernetes") {
    return absl::InvalidArgumentError("backend.kind must be local or kubernetes");
  }
  if (reader.window_s <= 0) return absl::InvalidArgumentError("reader.window_s must be > 0");
  for (const std::string& a : reader.names.activation) {
    if (absl::Status st = ParseMetricSelector(a).status(); !st.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("reader.metric_names.activation: ", st.message()));
    }
  }
  if (reader.kind == "scrape" && backend.kind != "local" && reader.targets.empty() && reader.fleet_file.empty()) {
    return absl::InvalidArgumentError(
        "the scrape reader needs reader.targets or reader.fleet_file outside the local backend");
  }
  for (size_t i = 0; i < pools.size(); ++i) {
    const PoolEntry& p = pools[i];
    if (absl::Status st = p.policy.Validate(); !st.ok()) return st;
    for (size_t j = 0; j < i; ++j) {
      if (pools[j].policy.pool == p.policy.pool) {
        return absl::InvalidArgumentError(absl::StrCat("pool '", p.policy.pool, "' configured twice"));
      }
    }
    if (backend.kind == "local" && p.local.model_path.empty() && p.local.command.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("pool '", p.policy.pool, "': the local backend needs model_path (or a command)"));
    }
    if (backend.kind == "kubernetes" && p.deployment.empty()) {
      return absl::InvalidArgumentError(absl::StrCat("pool '", p.policy.pool, "': kubernetes needs deployment"));
    }
    if (p.initial_replicas > p.policy.max_replicas) {
      return absl::InvalidArgumentError(absl::StrCat("pool '", p.policy.pool, "': initial_replicas > max_replicas"));
    }
    // A pool at zero wakes only on an activation signal; without a source it would sleep forever.
    if (p.policy.min_replicas == 0 && reader.kind == "scrape" && reader.activation_urls.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "pool '", p.policy.pool,
          "': min_replicas 0 needs an activation source (reader.activation_urls: the gateway's /metrics)"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<AutoscalerConfig> ParseConfigJson(const std::string& text) {
  Json j = Json::parse(text, nullptr, /*allow_exceptions=*/false, /*ignore_comments=*/true);
  if (j.is_discarded()) return absl::InvalidArgumentError("config is not valid JSON");
  AutoscalerConfig c;
  ObjectReader o(j, "config");
  o.Number("interval_s", &c.interval_s);
  o.String("metrics_address", &c.metrics_address);
  if (const Json* r = o.Raw("reader")) o.Merge(ParseReader(*r, &c.reader));
  if (const Json* b = o.Raw("backend")) o.Merge(ParseBackend(*b, &c.backend));
  if (const Json* p = o.Raw("pools")) {
    if (!p->is_array()) return absl::InvalidArgumentError("config.pools: want a list");
    for (size_t i = 0; i < p->size(); ++i) {
      PoolEntry entry;
      o.Merge(ParsePool((*p)[i], i, &entry));
      c.pools.push_back(std::move(entry));
    }
  }
  if (absl::Status st = o.Finish(); !st.ok()) return st;
  for (const PoolEntry& p : c.pools) {
    if (!p.deployment.empty()) c.backend.kubernetes.deployments[p.policy.pool] = p.deployment;
  }
  if (absl::Status st = c.Validate(); !st.ok()) return st;
  return c;
}

absl::StatusOr<AutoscalerConfig> LoadConfigFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open config ", path));
  std::stringstream ss;
  ss << in.rdbuf();
  absl::StatusOr<AutoscalerConfig> c = ParseConfigJson(ss.str());
  if (!c.ok()) return absl::Status(c.status().code(), absl::StrCat(path, ": ", c.status().message()));
  return c;
}

}  // namespace flotilla::autoscaler
