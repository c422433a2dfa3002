#include "gateway/gateway.h"

#include "absl/strings/str_cat.h"
#include "common/read_file.h"
#include "gateway/discovery.h"
#include "gateway/grpc_service.h"
#include "gateway/openai_front.h"
#include "gateway/redis_rate_limiter.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/health_check_service_interface.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server.h"
#include "grpcpp/server_builder.h"
#include "spdlog/spdlog.h"

namespace flotilla::gateway {
namespace {

absl::StatusOr<std::string> ReadAll(const std::string& path, const char* what) {
  absl::StatusOr<std::string> text = ReadFileToString(path);
  if (!text.ok()) return absl::NotFoundError(absl::StrCat("cannot read ", what, " ", path));
  return text;
}

}  // namespace

Gateway::Gateway(GatewayConfig config, const Clock* clock) : config_(std::move(config)), clock_(clock) {}

absl::StatusOr<std::unique_ptr<Gateway>> Gateway::Start(GatewayConfig config, const Clock* clock) {
  if (absl::Status st = ValidateConfig(config); !st.ok()) return st;
  std::unique_ptr<Gateway> g(new Gateway(std::move(config), clock));
  if (absl::Status st = g->Init(); !st.ok()) {
    g->Shutdown();
    return st;
  }
  return g;
}

absl::Status Gateway::Init() {
  const GatewayConfig& c = config_;
  metrics_ = std::make_unique<GatewayMetrics>();
  timer_ = std::make_unique<TimerThread>(clock_);

  if (c.no_auth) {
    auth_ = Authenticator::NoAuth(c.no_auth_tenant);
    SPDLOG_WARN("AUTH DISABLED (--no-auth): every request runs as tenant '{}' without an API key; use only for local development",
                c.no_auth_tenant.name);
  } else {
    auto a = Authenticator::FromFile(c.api_keys_file);
    if (!a.ok()) return a.status();
    auth_ = *std::move(a);
    SPDLOG_INFO("API keys: {} keys from {}", auth_->num_keys(), c.api_keys_file);
  }

  if (c.rate_limit_backend == "redis") {
    auto redis = std::make_unique<RedisRateLimiter>(c.redis, std::make_unique<LocalRateLimiter>(clock_));
    redis_ = redis.get();
    // Give the first connection a moment so the first requests are already shared-limited.
    for (int i = 0; i < 50 && !redis_->connected(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(20));
    SPDLOG_INFO("rate limits: shared through Redis at {}:{}{}", c.redis.host, c.redis.port,
                redis_->connected() ? "" : " (not reachable yet; per-gateway limits until it is)");
    limiter_ = std::move(redis);
  } else {
    limiter_ = std::make_unique<LocalRateLimiter>(clock_);
  }
  if (c.response_cache) {
    cache_ = std::make_unique<ResponseCache>(c.cache);
    SPDLOG_INFO("response cache on: {} bytes, TTL {} s", c.cache.max_bytes, NsToSec(c.cache.ttl));
  }

  Fleet::Options fo;
  fo.worker = c.worker;
  fo.chat_templates = c.chat_templates;
  fo.default_chat_template = c.default_chat_template;
  fo.models = c.models;
  if (!c.worker_tls_ca_file.empty()) {
    grpc::SslCredentialsOptions ssl;
    auto ca = ReadAll(c.worker_tls_ca_file, "worker CA");
    if (!ca.ok()) return ca.status();
    ssl.pem_root_certs = *ca;
    if (!c.worker_tls_cert_file.empty()) {
      auto cert = ReadAll(c.worker_tls_cert_file, "worker client certificate");
      if (!cert.ok()) return cert.status();
      auto key = ReadAll(c.worker_tls_key_file, "worker client key");
      if (!key.ok()) return key.status();
      ssl.pem_cert_chain = *cert;
      ssl.pem_private_key = *key;
    }
    fo.credentials = grpc::SslCredentials(ssl);
  } else {
    fo.credentials = grpc::InsecureChannelCredentials();
  }
  fleet_ = std::make_unique<Fleet>(std::move(fo), timer_.get(), clock_);
  DispatcherOptions dispatch = c.dispatch;
  dispatcher_ = std::make_unique<Dispatcher>(dispatch, fleet_.get(), auth_.get(), limiter_.get(), cache_.get(),
                                             metrics_.get(), timer_.get(), clock_);
  Dispatcher* d = dispatcher_.get();
  fleet_->SetOnChange([d](const std::string& model) { d->OnPoolChanged(model); });
  GatewayMetrics* m = metrics_.get();
  fleet_->SetOnEjected([m](const std::string& worker) { m->Ejected(worker); });

  // Discovery: the static list at once, DNS and file on their own thread (DNS may block).
  if (!c.workers.empty()) fleet_->SetEndpoints("static", c.workers);
  if (!c.workers_dns.empty()) discovery_.push_back(DnsDiscovery(c.workers_dns));
  if (!c.workers_file.empty()) discovery_.push_back(FileDiscovery(c.workers_file));
  if (!discovery_.empty()) {
    for (auto& src : discovery_) {
      auto list = src->Resolve();
      if (list.ok()) {
        fleet_->SetEndpoints(src->name(), *list);
      } else {
        SPDLOG_WARN("discovery {}: {}", src->name(), list.status().ToString());
      }
    }
    discovery_thread_ = std::thread([this] { DiscoveryLoop(); });
  }

  // gRPC: Inference, health, reflection.
  std::shared_ptr<grpc::ServerCredentials> server_creds;
  if (!c.tls_cert_file.empty()) {
    auto cert = ReadAll(c.tls_cert_file, "TLS certificate");
    if (!cert.ok()) return cert.status();
    auto key = ReadAll(c.tls_key_file, "TLS key");
    if (!key.ok()) return key.status();
    grpc::SslServerCredentialsOptions opts;
    opts.pem_key_cert_pairs.push_back({*key, *cert});
    server_creds = grpc::SslServerCredentials(opts);
  } else {
    server_creds = grpc::InsecureServerCredentials();
  }
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc_service_ = std::make_unique<InferenceService>(dispatcher_.get(), fleet_.get(), auth_.get(), clock_);
  grpc::ServerBuilder builder;
  builder.AddListeningPort(absl::StrCat(c.host, ":", c.grpc_port), server_creds, &grpc_port_);
  builder.RegisterService(grpc_service_.get());
  builder.SetMaxReceiveMessageSize(16 << 20);
  grpc_server_ = builder.BuildAndStart();
  if (!grpc_server_ || grpc_port_ == 0) {
    return absl::UnavailableError(absl::StrCat("cannot listen for gRPC on ", c.host, ":", c.grpc_port));
  }
  grpc_server_->GetHealthCheckService()->SetServingStatus(false);

  // HTTP.
  front_ = std::make_unique<OpenAiFront>(dispatcher_.get(), fleet_.get(), auth_.get(), metrics_.get(), clock_);
  HttpServerOptions ho;
  ho.host = c.host;
  ho.port = c.http_port;
  ho.threads = c.http_threads;
  ho.tls_cert_file = c.tls_cert_file;
  ho.tls_key_file = c.tls_key_file;
  OpenAiFront* front = front_.get();
  auto http = HttpServer::Start(ho, [front](const HttpRequest& req, std::shared_ptr<HttpResponder> r) {
    front->Handle(req, std::move(r));
  });
  if (!http.ok()) return http.status();
  http_server_ = *std::move(http);

  timer_->Every(250 * kNsPerMs, [this] { Housekeeping(); });
  if (!c.no_auth && c.keys_reload_ms > 0) {
    timer_->Every(c.keys_reload_ms * kNsPerMs, [this] { ReloadKeys(); });
  }
  SPDLOG_INFO("gateway listening: gRPC {}:{}, HTTP {}:{}{}; routing {}{}", c.host, grpc_port_, c.host,
              http_server_->port(), c.tls_cert_file.empty() ? "" : " (TLS)", RoutingPolicyName(c.dispatch.router.policy),
              c.dispatch.router.locality ? " with locality" : "");
  return absl::OkStatus();
}

void Gateway::Housekeeping() {
  bool any = false;
  for (const auto& m : fleet_->Models()) {
    metrics_->SetHealthyWorkers(m.name, m.healthy_workers);
    metrics_->SetWorkers(m.name, m.workers);
    any |= m.healthy_workers > 0;
  }
  if (grpc_server_) {
    const bool serving = any && !draining_.load();
    grpc_server_->GetHealthCheckService()->SetServingStatus(serving);
    grpc_server_->GetHealthCheckService()->SetServingStatus("flotilla.v1.Inference", serving);
  }
  if (redis_) metrics_->RateLimiterFallbacks(static_cast<double>(redis_->fallbacks()));
}

void Gateway::ReloadKeys() {
  if (!auth_ || !auth_->enabled()) return;
  auto r = auth_->ReloadIfChanged();
  if (!r.ok()) {
    metrics_->KeyReload(false);
    SPDLOG_ERROR("API key file {} not reloaded, previous keys stay in force: {}", auth_->path(), r.status().ToString());
  } else if (*r) {
    metrics_->KeyReload(true);
    SPDLOG_INFO("API key file {} reloaded: {} keys", auth_->path(), auth_->num_keys());
  }
}

void Gateway::DiscoveryLoop() {
  std::vector<TimeNs> next(discovery_.size(), 0);
  while (!stop_discovery_.HasBeenNotified()) {
    const TimeNs now = clock_->Now();
    TimeNs soonest = now + kNsPerSec;
    for (size_t i = 0; i < discovery_.size(); ++i) {
      const bool dns = discovery_[i]->name().rfind("dns:", 0) == 0;
      const TimeNs period = (dns ? config_.dns_interval_ms : config_.file_poll_ms) * kNsPerMs;
      if (now >= next[i]) {
        auto list = discovery_[i]->Resolve();
        if (list.ok()) {
          fleet_->SetEndpoints(discovery_[i]->name(), *list);
        } else {
          // Keep the last good list: a transient DNS failure must not empty the pool.
          SPDLOG_WARN("discovery {}: {}", discovery_[i]->name(), list.status().ToString());
        }
        next[i] = now + period;
      }
      soonest = std::min(soonest, next[i]);
    }
    stop_discovery_.WaitForNotificationWithTimeout(absl::Nanoseconds(std::max<TimeNs>(soonest - clock_->Now(), kNsPerMs)));
  }
}

void Gateway::Shutdown() {
  if (shut_down_) return;
  shut_down_ = true;
  draining_ = true;
  if (front_) front_->SetDraining(true);
  if (grpc_server_) {
    grpc_server_->GetHealthCheckService()->SetServingStatus(false);
  }
  if (dispatcher_) {
    dispatcher_->StopAccepting();
    if (http_server_) http_server_->StopAccepting();
    const TimeNs deadline = clock_->Now() + config_.drain_timeout_ms * kNsPerMs;
    while (dispatcher_->open_requests() > 0 && clock_->Now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    if (dispatcher_->open_requests() > 0) {
      SPDLOG_WARN("drain timeout: {} requests still open are cancelled", dispatcher_->open_requests());
      dispatcher_->CancelAll();
    }
  }
  if (grpc_server_) grpc_server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
  if (http_server_) {
    // Give cancelled streams a moment to write their last event, and finished responses time to
    // reach their clients: a request the dispatcher has closed may still have its response
    // queued on the connection, and Stop drops it (a drained request answered with nothing).
    auto busy = [&] { return (dispatcher_ && dispatcher_->open_requests() > 0) || http_server_->open_responses() > 0; };
    for (int i = 0; i < 100 && busy(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(20));
    http_server_->Stop();
  }
  stop_discovery_.Notify();
  if (discovery_thread_.joinable()) discovery_thread_.join();
  if (fleet_) fleet_->Shutdown();
  if (timer_) timer_->Stop();
  SPDLOG_INFO("gateway stopped");
}

Gateway::~Gateway() { Shutdown(); }

}  // namespace flotilla::gateway
