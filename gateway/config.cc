#include "gateway/config.h"

#include <fstream>
#include <set>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "gateway/auth.h"
#include "gateway/chat_template.h"
#include "gateway/discovery.h"
#include "nlohmann/json.hpp"

namespace flotilla::gateway {
namespace {

using json = nlohmann::json;

// Reads typed values out of one JSON object and remembers which keys were known.
class Obj {
 public:
  Obj(const json& j, std::string where) : j_(j), where_(std::move(where)) {}

  absl::Status CheckKnown() const {
    for (auto it = j_.begin(); it != j_.end(); ++it) {
      if (!known_.count(it.key())) return absl::InvalidArgumentError(absl::StrCat("unknown config key '", where_, it.key(), "'"));
    }
    return absl::OkStatus();
  }
  template <typename T>
  absl::Status Get(const char* key, T* out) {
    known_.insert(key);
    if (!j_.contains(key) || j_[key].is_null()) return absl::OkStatus();
    const json& v = j_[key];
    if constexpr (std::is_same_v<T, bool>) {
      if (!v.is_boolean()) return Type(key, "true or false");
      *out = v.get<bool>();
    } else if constexpr (std::is_same_v<T, std::string>) {
      if (!v.is_string()) return Type(key, "a string");
      *out = v.get<std::string>();
    } else if constexpr (std::is_integral_v<T>) {
      if (!v.is_number_integer() || v.get<int64_t>() < 0) return Type(key, "an integer >= 0");
      *out = static_cast<T>(v.get<int64_t>());
    } else if constexpr (std::is_floating_point_v<T>) {
      if (!v.is_number()) return Type(key, "a number");
      *out = static_cast<T>(v.get<double>());
    } else if constexpr (std::is_same_v<T, std::vector<std::string>>) {
      if (!v.is_array()) return Type(key, "a list of strings");
      out->clear();
      for (const auto& x : v) {
        if (!x.is_string()) return Type(key, "a list of strings");
        out->push_back(x.get<std::string>());
      }
    }
    return absl::OkStatus();
  }
  // A nested object (or null when absent).
  const json* Sub(const char* key) {
    known_.insert(key);
    if (!j_.contains(key) || !j_[key].is_object()) return nullptr;
    return &j_[key];
  }
  bool HasNonObject(const char* key) const { return j_.contains(key) && !j_[key].is_object() && !j_[key].is_null(); }
  const std::string& where() const { return where_; }

 private:
  absl::Status Type(const char* key, const char* want) const {
    return absl::InvalidArgumentError(absl::StrCat("config key '", where_, key, "' must be ", want));
  }
  const json& j_;
  std::string where_;
  std::set<std::string> known_;
};

#define CFG_RETURN_IF_ERROR(expr)  \
  do {                             \
    absl::Status _st = (expr);     \
    if (!_st.ok()) return _st;     \
  } while (0)

absl::Status SubObject(Obj& parent, const char* key, const std::function<absl::Status(Obj&)>& fn) {
  if (parent.HasNonObject(key)) {
    return absl::InvalidArgumentError(absl::StrCat("config key '", parent.where(), key, "' must be an object"));
  }
  const json* j = parent.Sub(key);
  if (!j) return absl::OkStatus();
  Obj o(*j, absl::StrCat(parent.where(), key, "."));
  CFG_RETURN_IF_ERROR(fn(o));
  return o.CheckKnown();
}

}  // namespace

absl::Status ApplyConfigJson(absl::string_view text, GatewayConfig* c) {
  json root = json::parse(text.begin(), text.end(), nullptr, false);
  if (root.is_discarded() || !root.is_object()) return absl::InvalidArgumentError("config is not a JSON object");
  Obj o(root, "");
  CFG_RETURN_IF_ERROR(o.Get("host", &c->host));
  CFG_RETURN_IF_ERROR(o.Get("grpc_port", &c->grpc_port));
  CFG_RETURN_IF_ERROR(o.Get("http_port", &c->http_port));
  CFG_RETURN_IF_ERROR(o.Get("http_threads", &c->http_threads));
  CFG_RETURN_IF_ERROR(SubObject(o, "tls", [&](Obj& t) -> absl::Status {
    CFG_RETURN_IF_ERROR(t.Get("cert_file", &c->tls_cert_file));
    return t.Get("key_file", &c->tls_key_file);
  }));
  CFG_RETURN_IF_ERROR(SubObject(o, "worker_tls", [&](Obj& t) -> absl::Status {
    CFG_RETURN_IF_ERROR(t.Get("ca_file", &c->worker_tls_ca_file));
    CFG_RETURN_IF_ERROR(t.Get("cert_file", &c->worker_tls_cert_file));
    return t.Get("key_file", &c->worker_tls_key_file);
  }));
  CFG_RETURN_IF_ERROR(o.Get("workers", &c->workers));
  CFG_RETURN_IF_ERROR(o.Get("workers_dns", &c->workers_dns));
  CFG_RETURN_IF_ERROR(o.Get("dns_interval_ms", &c->dns_interval_ms));
  CFG_RETURN_IF_ERROR(o.Get("workers_file", &c->workers_file));
  CFG_RETURN_IF_ERROR(o.Get("file_poll_ms", &c->file_poll_ms));
  CFG_RETURN_IF_ERROR(SubObject(o, "auth", [&](Obj& a) -> absl::Status {
    CFG_RETURN_IF_ERROR(a.Get("api_keys_file", &c->api_keys_file));
    CFG_RETURN_IF_ERROR(a.Get("reload_interval_ms", &c->keys_reload_ms));
    CFG_RETURN_IF_ERROR(a.Get("no_auth", &c->no_auth));
    if (const json* t = a.Sub("no_auth_tenant")) {
      auto tenant = ParseTenantJson(t->dump());
      if (!tenant.ok()) return absl::InvalidArgumentError(absl::StrCat("auth.no_auth_tenant: ", tenant.status().message()));
      c->no_auth_tenant = *std::move(tenant);
    }
    return absl::OkStatus();
  }));
  CFG_RETURN_IF_ERROR(SubObject(o, "rate_limit", [&](Obj& r) -> absl::Status {
    CFG_RETURN_IF_ERROR(r.Get("backend", &c->rate_limit_backend));
    return SubObject(r, "redis", [&](Obj& rd) -> absl::Status {
      CFG_RETURN_IF_ERROR(rd.Get("host", &c->redis.host));
      CFG_RETURN_IF_ERROR(rd.Get("port", &c->redis.port));
      CFG_RETURN_IF_ERROR(rd.Get("password", &c->redis.password));
      CFG_RETURN_IF_ERROR(rd.Get("key_prefix", &c->redis.key_prefix));
      CFG_RETURN_IF_ERROR(rd.Get("command_timeout_ms", &c->redis.command_timeout_ms));
      return rd.Get("connect_timeout_ms", &c->redis.connect_timeout_ms);
    });
  }));
  CFG_RETURN_IF_ERROR(SubObject(o, "admission", [&](Obj& a) -> absl::Status {
    int64_t timeout_ms = c->dispatch.admission.queue_timeout / kNsPerMs;
    int64_t activation_ms = c->dispatch.admission.activation_timeout / kNsPerMs;
    int64_t min_retry_ms = c->dispatch.admission.min_retry_after / kNsPerMs;
    CFG_RETURN_IF_ERROR(a.Get("queue_size", &c->dispatch.admission.queue_size));
    CFG_RETURN_IF_ERROR(a.Get("queue_timeout_ms", &timeout_ms));
    CFG_RETURN_IF_ERROR(a.Get("activation_timeout_ms", &activation_ms));
    c->dispatch.admission.activation_timeout = activation_ms * kNsPerMs;
    CFG_RETURN_IF_ERROR(a.Get("min_retry_after_ms", &min_retry_ms));
    c->dispatch.admission.queue_timeout = timeout_ms * kNsPerMs;
    c->dispatch.admission.min_retry_after = min_retry_ms * kNsPerMs;
    return absl::OkStatus();
  }));
  CFG_RETURN_IF_ERROR(SubObject(o, "routing", [&](Obj& r) -> absl::Status {
    std::string policy;
    double load_factor = 1.25;
    CFG_RETURN_IF_ERROR(r.Get("policy", &policy));
    CFG_RETURN_IF_ERROR(r.Get("load_factor", &load_factor));
    if (!policy.empty()) {
      auto p = ParseRoutingPolicy(policy);
      if (!p) return absl::InvalidArgumentError(absl::StrCat("routing.policy '", policy, "' is not round_robin, least_load or prefix_affinity"));
      c->dispatch.router.policy = *p;
    }
    if (auto* pa = std::get_if<PrefixAffinity>(&c->dispatch.router.policy)) pa->load_factor = load_factor;
    CFG_RETURN_IF_ERROR(r.Get("locality", &c->dispatch.router.locality));
    CFG_RETURN_IF_ERROR(r.Get("queue_depth", &c->dispatch.router.queue_depth));
    return r.Get("affinity_prefix_tokens", &c->dispatch.affinity_prefix_tokens);
  }));
  CFG_RETURN_IF_ERROR(SubObject(o, "failover", [&](Obj& f) -> absl::Status {
    int64_t base_ms = c->worker.breaker.base_ejection / kNsPerMs;
    int64_t max_ms = c->worker.breaker.max_ejection / kNsPerMs;
    CFG_RETURN_IF_ERROR(f.Get("max_attempts", &c->dispatch.max_attempts));
    CFG_RETURN_IF_ERROR(f.Get("retry_budget_ratio", &c->dispatch.retry_budget.ratio));
    CFG_RETURN_IF_ERROR(f.Get("retry_budget_min_per_second", &c->dispatch.retry_budget.min_per_second));
    CFG_RETURN_IF_ERROR(f.Get("failures_to_eject", &c->worker.breaker.failures_to_open));
    CFG_RETURN_IF_ERROR(f.Get("base_ejection_ms", &base_ms));
    CFG_RETURN_IF_ERROR(f.Get("max_ejection_ms", &max_ms));
    c->worker.breaker.base_ejection = base_ms * kNsPerMs;
    c->worker.breaker.max_ejection = max_ms * kNsPerMs;
    return absl::OkStatus();
  }));
  CFG_RETURN_IF_ERROR(SubObject(o, "health", [&](Obj& h) -> absl::Status {
    int64_t interval = c->worker.health_interval / kNsPerMs, timeout = c->worker.health_timeout / kNsPerMs;
    CFG_RETURN_IF_ERROR(h.Get("interval_ms", &interval));
    CFG_RETURN_IF_ERROR(h.Get("timeout_ms", &timeout));
    CFG_RETURN_IF_ERROR(h.Get("load_interval_ms", &c->worker.load_interval_ms));
    c->worker.health_interval = interval * kNsPerMs;
    c->worker.health_timeout = timeout * kNsPerMs;
    return absl::OkStatus();
  }));
  CFG_RETURN_IF_ERROR(SubObject(o, "response_cache", [&](Obj& r) -> absl::Status {
    int64_t ttl_ms = c->cache.ttl / kNsPerMs;
    CFG_RETURN_IF_ERROR(r.Get("enabled", &c->response_cache));
    CFG_RETURN_IF_ERROR(r.Get("max_bytes", &c->cache.max_bytes));
    CFG_RETURN_IF_ERROR(r.Get("max_entry_bytes", &c->cache.max_entry_bytes));
    CFG_RETURN_IF_ERROR(r.Get("ttl_ms", &ttl_ms));
    c->cache.ttl = ttl_ms * kNsPerMs;
    return absl::OkStatus();
  }));
  if (const json* t = o.Sub("chat_templates")) {
    for (auto it = t->begin(); it != t->end(); ++it) {
      if (!it.value().is_string() || !ParseChatTemplateFamily(it.value().get<std::string>())) {
        return absl::InvalidArgumentError(absl::StrCat("chat_templates.", it.key(), " must be plain, llama-2, llama-3, chatml or mistral"));
      }
      c->chat_templates[it.key()] = it.value().get<std::string>();
    }
  }
  CFG_RETURN_IF_ERROR(o.Get("default_chat_template", &c->default_chat_template));
  CFG_RETURN_IF_ERROR(o.Get("models", &c->models));
  for (const auto& m : c->models) {
    if (m.empty() || m.find_first_of(" \t\n") != std::string::npos) {
      return absl::InvalidArgumentError(absl::StrCat("models: '", m, "' is not a model name (empty or has whitespace)"));
    }
  }
  CFG_RETURN_IF_ERROR(o.Get("default_max_tokens", &c->dispatch.default_max_tokens));
  CFG_RETURN_IF_ERROR(SubObject(o, "log", [&](Obj& l) -> absl::Status {
    CFG_RETURN_IF_ERROR(l.Get("format", &c->log_format));
    CFG_RETURN_IF_ERROR(l.Get("level", &c->log_level));
    CFG_RETURN_IF_ERROR(l.Get("requests", &c->dispatch.log_requests));
    return l.Get("prompts", &c->dispatch.log_prompts);
  }));
  CFG_RETURN_IF_ERROR(o.Get("drain_timeout_ms", &c->drain_timeout_ms));
  return o.CheckKnown();
}

absl::Status LoadConfigFile(const std::string& path, GatewayConfig* config) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open config file ", path));
  std::stringstream ss;
  ss << in.rdbuf();
  absl::Status st = ApplyConfigJson(ss.str(), config);
  if (!st.ok()) return absl::Status(st.code(), absl::StrCat(path, ": ", st.message()));
  return absl::OkStatus();
}

absl::Status ValidateConfig(const GatewayConfig& c) {
  if (c.grpc_port < 0 || c.grpc_port > 65535 || c.http_port < 0 || c.http_port > 65535) {
    return absl::InvalidArgumentError("ports must be between 0 and 65535");
  }
  if (c.tls_cert_file.empty() != c.tls_key_file.empty()) {
    return absl::InvalidArgumentError("TLS needs both --tls-cert and --tls-key");
  }
  if (c.worker_tls_cert_file.empty() != c.worker_tls_key_file.empty()) {
    return absl::InvalidArgumentError("worker mTLS needs both a client certificate and key");
  }
  if (!c.worker_tls_cert_file.empty() && c.worker_tls_ca_file.empty()) {
    return absl::InvalidArgumentError("worker mTLS needs --worker-tls-ca to verify the workers");
  }
  if (c.no_auth == !c.api_keys_file.empty()) {
    return absl::InvalidArgumentError(c.no_auth ? "--no-auth and --api-keys exclude each other"
                                                : "give --api-keys FILE, or --no-auth for local use without keys");
  }
  if (c.rate_limit_backend != "local" && c.rate_limit_backend != "redis") {
    return absl::InvalidArgumentError("rate_limit.backend must be local or redis");
  }
  if (c.workers.empty() && c.workers_dns.empty() && c.workers_file.empty()) {
    return absl::InvalidArgumentError("no workers: give --workers, --workers-dns or --workers-file");
  }
  for (const auto& w : c.workers) {
    if (absl::Status st = ValidateAddress(w); !st.ok()) return st;
  }
  if (c.dispatch.max_attempts < 1) return absl::InvalidArgumentError("failover.max_attempts must be at least 1");
  if (c.http_threads < 1) return absl::InvalidArgumentError("http_threads must be at least 1");
  return absl::OkStatus();
}

}  // namespace flotilla::gateway
