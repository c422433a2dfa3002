// Wiring of one worker process: model, executor, engine, gRPC server, metrics, signals.
#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "common/fmt_absl.h"
#include "common/logging.h"
#include "common/model_path.h"
#include "common/read_file.h"
#include "model/loader.h"
#include "worker/backend.h"
#include "worker/engine_metrics.h"
#include "worker/metrics_server.h"
#include "worker/options.h"
#include "worker/service.h"

namespace flotilla::worker {
namespace {

constexpr const char* kServiceName = "flotilla.worker.v1.Worker";
constexpr const char* kVersion = "0.1.0";

absl::Status WriteReadyFile(const std::string& path, int grpc_port, int metrics_port) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << "{\"grpc_port\": " << grpc_port << ", \"metrics_port\": " << metrics_port << ", \"pid\": " << getpid() << "}\n";
    if (!out) return absl::PermissionDeniedError("cannot write ready file '" + path + "'");
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) return absl::PermissionDeniedError("cannot write ready file '" + path + "': " + ec.message());
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> ServerCredentials(const WorkerOptions& o) {
  if (o.tls_cert.empty()) return grpc::InsecureServerCredentials();
  absl::StatusOr<std::string> key = ReadFileToString(o.tls_key), cert = ReadFileToString(o.tls_cert);
  if (!key.ok()) return key.status();
  if (!cert.ok()) return cert.status();
  grpc::SslServerCredentialsOptions ssl;
  ssl.pem_key_cert_pairs.push_back({*key, *cert});
  if (!o.tls_client_ca.empty()) {
    absl::StatusOr<std::string> ca = ReadFileToString(o.tls_client_ca);
    if (!ca.ok()) return ca.status();
    ssl.pem_root_certs = *ca;
    ssl.client_certificate_request = GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY;
  }
  return grpc::SslServerCredentials(ssl);
}

}  // namespace

int RunWorker(const WorkerOptions& o) {
  // Signals are taken by sigwait on this thread; every thread started later inherits the mask.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  if (absl::Status s = SetupLogging({o.log_format, o.log_level, "worker"}); !s.ok()) {
    std::fprintf(stderr, "error: %s\n", std::string(s.message()).c_str());
    return 2;
  }
  auto path = ResolveModelPath(o.model);
  if (!path.ok()) {
    spdlog::error("{}", path.status().message());
    return 1;
  }
  LoadOptions lo;
  lo.tokenizer_path = o.tokenizer;
  lo.context_length = o.ctx_size;
  auto loaded = LoadModel(*path, lo);
  if (!loaded.ok()) {
    spdlog::error("cannot load model: {}", loaded.status().message());
    return 1;
  }
  std::shared_ptr<const LoadedModel> model = std::move(*loaded);
  auto tokenizer = std::make_shared<const Tokenizer>(model->vocab);
  const std::string model_name =
      o.model_name.empty() ? std::filesystem::path(*path).stem().string() : o.model_name;

  auto executor = MakeBackend(model, o);
  if (!executor.ok()) {
    spdlog::error("cannot start the {} backend: {}", o.backend, executor.status().message());
    return 1;
  }
  if (absl::Status s = WarmUp(**executor); !s.ok()) {
    spdlog::error("warm-up failed: {}", s.message());
    return 1;
  }

  auto registry = std::make_shared<prometheus::Registry>();
  MetricsServer metrics_server(registry);
  auto metrics_bound = metrics_server.Start(o.host, o.metrics_port);
  if (!metrics_bound.ok()) {
    spdlog::error("{}", metrics_bound.status().message());
    return 1;
  }
  const int metrics_port = *metrics_bound;
  EngineMetrics metrics(*registry, model_name);

  EngineConfig ec;
  ec.max_num_seqs = o.max_num_seqs;
  ec.max_tokens_per_step = o.max_tokens_per_step;
  ec.max_waiting = o.max_waiting;
  ec.enable_prefix_cache = o.prefix_cache;
  ec.model_name = model_name;
  const std::string backend = (*executor)->Describe();
  const int blocks = (*executor)->num_kv_blocks();
  Engine engine(std::move(*executor), tokenizer, ec, SystemClock::Get(), &metrics);

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  ServiceInfo info;
  info.model_name = model_name;
  info.model_path = *path;
  info.zone = o.zone;
  info.region = o.region;
  info.chat_template_family = o.chat_template;
  info.version = kVersion;
  int grpc_port = 0;
  absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> credentials = ServerCredentials(o);
  if (!credentials.ok()) {
    spdlog::error("TLS: {}", credentials.status().message());
    return 1;
  }
  grpc::ServerBuilder builder;
  builder.AddListeningPort(absl::StrCat(o.host, ":", o.port), *credentials, &grpc_port);
  // The worker_id defaults to the address, known only after binding; the service reads it lazily.
  WorkerService service(&engine, info, SystemClock::Get());
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server || grpc_port == 0) {
    spdlog::error("cannot listen for gRPC on {}:{}", o.host, o.port);
    return 1;
  }
  service.SetWorkerId(o.worker_id.empty() ? absl::StrCat(o.host, ":", grpc_port) : o.worker_id);
  auto* health = server->GetHealthCheckService();
  service.SetOnDrainStart([health] {
    health->SetServingStatus(false);  // every service, "" included
  });
  health->SetServingStatus(true);
  health->SetServingStatus(kServiceName, true);
  spdlog::info("serving {} ({}, {} KV blocks of {} tokens, context {}) on {}:{} (metrics :{}) with {}", model_name,
               kernels::Info(model->config.weight_type).name, blocks, engine.executor().block_size(),
               model->config.context_length, o.host, grpc_port, metrics_port, backend);
  if (!o.ready_file.empty()) {
    if (absl::Status s = WriteReadyFile(o.ready_file, grpc_port, metrics_port); !s.ok()) {
      spdlog::error("{}", s.message());
      return 1;
    }
  }
  // For people at a terminal; in JSON mode the "serving" line above says the same and every
  // line of output stays JSON.
  if (o.log_format != "json") {
    std::printf("flotilla-worker ready grpc=%s:%d metrics=%s:%d\n", o.host.c_str(), grpc_port, o.host.c_str(), metrics_port);
    std::fflush(stdout);
  }

  int sig = 0;
  sigwait(&signals, &sig);
  spdlog::info("received {}: draining (up to {} s)", sig == SIGTERM ? "SIGTERM" : "SIGINT", o.drain_timeout_s);
  service.StartDrain();
  if (!engine.WaitIdle(static_cast<TimeNs>(o.drain_timeout_s) * kNsPerSec)) {
    spdlog::warn("drain timed out with {} requests in flight; cancelling them", engine.in_flight());
  }
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  spdlog::info("stopped");
  spdlog::shutdown();
  std::fflush(nullptr);
  // Every request has ended and nothing is left to persist: skip the destructors, whose
  // thread joins (gRPC, pools, metrics) only slow scale-down and restarts.
  _exit(0);
}

}  // namespace flotilla::worker
