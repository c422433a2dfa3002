// flotilla-gateway: flags and an optional JSON config file (flags win), logging, signals
// (SIGTERM/SIGINT drain and exit, SIGHUP reloads the API key file), and a ready file announcing
// the ports once both servers listen.
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <iostream>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "common/logging.h"
#include "gateway/auth.h"
#include "gateway/gateway.h"
#include "spdlog/spdlog.h"

namespace {

using flotilla::gateway::GatewayConfig;

int WaitForSignal(flotilla::gateway::Gateway& gw) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGHUP);
  while (true) {
    int sig = 0;
    if (sigwait(&set, &sig) != 0) return 1;
    if (sig == SIGHUP) {
      SPDLOG_INFO("SIGHUP: reloading the API key file");
      gw.ReloadKeys();
      continue;
    }
    SPDLOG_INFO("signal {}: draining", sig);
    return 0;
  }
}

bool WriteReadyFile(const std::string& path, int grpc_port, int http_port) {
  std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp);
    if (!out) return false;
    out << "{\"grpc_port\":" << grpc_port << ",\"http_port\":" << http_port << ",\"pid\":" << getpid() << "}\n";
  }
  return std::rename(tmp.c_str(), path.c_str()) == 0;
}

}  // namespace

int main(int argc, char** argv) {
  // Block the signals in every thread; the main thread takes them with sigwait.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  signal(SIGPIPE, SIG_IGN);
  // Abseil's mutex deadlock detection keeps a lock graph on every acquisition; it showed up in
  // profiles of the streaming path. Lock order is reviewed (and annotated) instead.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);

  CLI::App app{"flotilla-gateway: the stateless front of a Flotilla fleet (gRPC + OpenAI-compatible HTTP)"};
  std::string config_file, ready_file, hash_key, redis, routing;
  std::vector<std::string> workers, chat_templates;
  GatewayConfig flags;
  bool no_auth = false, log_prompts = false, no_locality = false, response_cache = false;
  int64_t queue_size = -1, queue_timeout_ms = -1, max_attempts = -1, queue_depth = -1;
  app.add_option("--config", config_file, "JSON config file (flags override it)");
  app.add_option("--host", flags.host, "Address to listen on")->default_val("127.0.0.1");
  app.add_option("--grpc-port", flags.grpc_port, "gRPC port (0: any free port)");
  app.add_option("--http-port", flags.http_port, "HTTP port (0: any free port)");
  app.add_option("--http-threads", flags.http_threads, "HTTP I/O threads");
  app.add_option("--workers", workers, "Worker addresses host:port (comma separated or repeated)")->delimiter(',');
  app.add_option("--workers-dns", flags.workers_dns, "DNS name:port re-resolved periodically (headless Service)");
  app.add_option("--workers-file", flags.workers_file, "File listing workers, re-read when it changes");
  app.add_option("--api-keys", flags.api_keys_file, "API key file (JSON, SHA-256 hashes; reloaded on change and SIGHUP)");
  app.add_flag("--no-auth", no_auth, "Accept requests without keys (local use only; logged loudly)");
  app.add_option("--rate-limit-backend", flags.rate_limit_backend, "local or redis");
  app.add_option("--redis", redis, "Redis host:port for shared rate limits (implies --rate-limit-backend redis)");
  app.add_option("--routing", routing, "round_robin, least_load or prefix_affinity");
  app.add_flag("--no-locality", no_locality, "Ignore the caller's zone when routing");
  app.add_option("--queue-size", queue_size, "Requests per model that may wait in the gateway");
  app.add_option("--queue-timeout-ms", queue_timeout_ms, "Longest wait in that queue");
  int64_t activation_timeout_ms = -1;
  app.add_option("--activation-timeout-ms", activation_timeout_ms,
                 "How long a request for a known model with no ready worker (pool at zero) waits for one "
                 "(default 30000; 0: refuse at once with 503)");
  app.add_option("--queue-depth", queue_depth, "Requests a worker may hold waiting beyond its sequence slots");
  app.add_option("--max-attempts", max_attempts, "Worker calls per request before the first token (first included)");
  app.add_flag("--response-cache", response_cache, "Cache responses of deterministic requests");
  app.add_option("--chat-template", chat_templates, "MODEL=FAMILY (plain, llama-2, llama-3, chatml, mistral)");
  app.add_option("--default-chat-template", flags.default_chat_template, "Family for models not listed");
  std::vector<std::string> serve_models;
  app.add_option("--serve-model", serve_models,
                 "A model served even while it has no ready worker (503 + Retry-After, counted as demand; "
                 "repeatable; for pools that scale to zero)");
  app.add_option("--tls-cert", flags.tls_cert_file, "TLS certificate (PEM) for the public ports");
  app.add_option("--tls-key", flags.tls_key_file, "TLS private key (PEM)");
  app.add_option("--worker-tls-ca", flags.worker_tls_ca_file, "CA that signed the workers' certificates (TLS to workers)");
  app.add_option("--worker-tls-cert", flags.worker_tls_cert_file, "Client certificate for mTLS to workers");
  app.add_option("--worker-tls-key", flags.worker_tls_key_file, "Client key for mTLS to workers");
  app.add_option("--log-format", flags.log_format, "text or json");
  app.add_option("--log-level", flags.log_level, "trace, debug, info, warn, error");
  app.add_flag("--log-prompts", log_prompts, "Include prompt and completion text in request logs (off by default)");
  app.add_option("--ready-file", ready_file, "Write {\"grpc_port\",\"http_port\",\"pid\"} here once listening");
  app.add_option("--hash-key", hash_key, "Print the SHA-256 of an API key for the key file and exit ('-' reads stdin)");
  CLI11_PARSE(app, argc, argv);

  if (!hash_key.empty()) {
    if (hash_key == "-") std::getline(std::cin, hash_key);
    std::cout << flotilla::gateway::Sha256Hex(hash_key) << "\n";
    return 0;
  }

  // The file first, then every flag the user actually gave.
  GatewayConfig config;
  if (!config_file.empty()) {
    if (auto st = flotilla::gateway::LoadConfigFile(config_file, &config); !st.ok()) {
      std::cerr << "flotilla-gateway: " << st.message() << "\n";
      return 2;
    }
  }
  auto given = [&](const char* name) { return app.count(name) > 0; };
  if (given("--host")) config.host = flags.host;
  if (given("--grpc-port")) config.grpc_port = flags.grpc_port;
  if (given("--http-port")) config.http_port = flags.http_port;
  if (given("--http-threads")) config.http_threads = flags.http_threads;
  if (!workers.empty()) config.workers = workers;
  if (given("--workers-dns")) config.workers_dns = flags.workers_dns;
  if (given("--workers-file")) config.workers_file = flags.workers_file;
  if (given("--api-keys")) config.api_keys_file = flags.api_keys_file;
  if (no_auth) config.no_auth = true;
  if (given("--rate-limit-backend")) config.rate_limit_backend = flags.rate_limit_backend;
  if (!redis.empty()) {
    std::vector<std::string> hp = absl::StrSplit(redis, absl::MaxSplits(':', 1));
    config.redis.host = hp[0];
    if (hp.size() > 1 && !absl::SimpleAtoi(hp[1], &config.redis.port)) {
      std::cerr << "flotilla-gateway: --redis must be host:port\n";
      return 2;
    }
    config.rate_limit_backend = "redis";
  }
  if (!routing.empty()) {
    auto p = flotilla::gateway::ParseRoutingPolicy(routing);
    if (!p) {
      std::cerr << "flotilla-gateway: --routing must be round_robin, least_load or prefix_affinity\n";
      return 2;
    }
    config.dispatch.router.policy = *p;
  }
  if (no_locality) config.dispatch.router.locality = false;
  if (queue_size >= 0) config.dispatch.admission.queue_size = static_cast<uint32_t>(queue_size);
  if (queue_timeout_ms >= 0) config.dispatch.admission.queue_timeout = queue_timeout_ms * flotilla::kNsPerMs;
  if (activation_timeout_ms >= 0) {
    config.dispatch.admission.activation_timeout = activation_timeout_ms * flotilla::kNsPerMs;
  }
  if (queue_depth >= 0) config.dispatch.router.queue_depth = static_cast<uint32_t>(queue_depth);
  if (max_attempts >= 0) config.dispatch.max_attempts = static_cast<uint32_t>(max_attempts);
  if (response_cache) config.response_cache = true;
  for (const auto& ct : chat_templates) {
    std::vector<std::string> kv = absl::StrSplit(ct, absl::MaxSplits('=', 1));
    if (kv.size() != 2) {
      std::cerr << "flotilla-gateway: --chat-template wants MODEL=FAMILY\n";
      return 2;
    }
    config.chat_templates[kv[0]] = kv[1];
  }
  if (given("--default-chat-template")) config.default_chat_template = flags.default_chat_template;
  for (const auto& m : serve_models) {
    if (m.empty() || m.find_first_of(" \t\n") != std::string::npos) {
      std::cerr << "flotilla-gateway: --serve-model '" << m << "' is not a model name\n";
      return 2;
    }
    config.models.push_back(m);
  }
  if (given("--tls-cert")) config.tls_cert_file = flags.tls_cert_file;
  if (given("--tls-key")) config.tls_key_file = flags.tls_key_file;
  if (given("--worker-tls-ca")) config.worker_tls_ca_file = flags.worker_tls_ca_file;
  if (given("--worker-tls-cert")) config.worker_tls_cert_file = flags.worker_tls_cert_file;
  if (given("--worker-tls-key")) config.worker_tls_key_file = flags.worker_tls_key_file;
  if (given("--log-format")) config.log_format = flags.log_format;
  if (given("--log-level")) config.log_level = flags.log_level;
  if (log_prompts) config.dispatch.log_prompts = true;

  if (auto st = flotilla::SetupLogging({config.log_format, config.log_level, "gateway"}); !st.ok()) {
    std::cerr << "flotilla-gateway: " << st.message() << "\n";
    return 2;
  }
  if (config.dispatch.log_prompts) SPDLOG_WARN("--log-prompts: request logs will contain prompt and completion text");

  auto gw = flotilla::gateway::Gateway::Start(config);
  if (!gw.ok()) {
    SPDLOG_ERROR("cannot start: {}", gw.status().ToString());
    return 1;
  }
  if (!ready_file.empty() && !WriteReadyFile(ready_file, (*gw)->grpc_port(), (*gw)->http_port())) {
    SPDLOG_ERROR("cannot write ready file {}", ready_file);
    return 1;
  }
  int rc = WaitForSignal(**gw);
  (*gw)->Shutdown();
  gw->reset();  // every gRPC object goes before the process ends
  flotilla::ExitAfterShutdown(rc);
}
