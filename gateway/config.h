// The gateway's configuration: a JSON file (every key optional, unknown keys rejected so typos
// surface) with command-line flags applied on top by main. Plain data.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "gateway/admission.h"
#include "gateway/circuit_breaker.h"
#include "gateway/dispatcher.h"
#include "gateway/redis_rate_limiter.h"
#include "gateway/response_cache.h"
#include "gateway/retry_budget.h"
#include "gateway/router.h"
#include "gateway/tenant.h"
#include "gateway/worker_client.h"

namespace flotilla::gateway {

struct GatewayConfig {
  std::string host = "127.0.0.1";
  int grpc_port = 0;
  int http_port = 0;
  int http_threads = 2;
  std::string tls_cert_file;  // TLS on both public ports when set
  std::string tls_key_file;
  // mTLS to workers: a CA to verify them, and our client certificate.
  std::string worker_tls_ca_file;
  std::string worker_tls_cert_file;
  std::string worker_tls_key_file;

  // Discovery.
  std::vector<std::string> workers;
  std::string workers_dns;  // name:port
  int64_t dns_interval_ms = 5000;
  std::string workers_file;
  int64_t file_poll_ms = 500;

  // Auth.
  std::string api_keys_file;
  int64_t keys_reload_ms = 2000;
  bool no_auth = false;
  Tenant no_auth_tenant = DefaultNoAuthTenant();

  // Rate limits.
  std::string rate_limit_backend = "local";  // local | redis
  RedisOptions redis;

  DispatcherOptions dispatch;
  WorkerClientOptions worker;
  bool response_cache = false;
  ResponseCacheConfig cache;
  std::map<std::string, std::string> chat_templates;  // model -> family
  std::string default_chat_template;
  // Models this gateway serves even while none of their workers is ready (a pool scaled to zero,
  // or between a worker leaving and its replacement arriving): requests for them are refused
  // with 503 + Retry-After and counted as shed demand ("no_workers"), which is what wakes a
  // pool at zero, instead of 404. Models seen on a worker are remembered the same way.
  std::vector<std::string> models;

  std::string log_format = "text";
  std::string log_level = "info";
  int64_t drain_timeout_ms = 10000;

  static Tenant DefaultNoAuthTenant() {
    Tenant t;
    t.name = "anonymous";
    return t;
  }
};

// Applies the JSON text onto `config` (keys absent from the text keep their values).
absl::Status ApplyConfigJson(absl::string_view json_text, GatewayConfig* config);
absl::Status LoadConfigFile(const std::string& path, GatewayConfig* config);
// Consistency checks after file and flags: ports, TLS pairs, auth mode, a discovery source.
absl::Status ValidateConfig(const GatewayConfig& config);

}  // namespace flotilla::gateway
