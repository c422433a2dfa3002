#include "cli/local_stack.h"

#include <prometheus/registry.h>
#include <unistd.h>

#include <chrono>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <random>
#include <thread>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "autoscaler/autoscaler_metrics.h"
#include "autoscaler/flags.h"
#include "autoscaler/run.h"
#include "cli/fleet_view.h"
#include "cli/prometheus_config.h"
#include "common/model_path.h"

namespace flotilla::cli {

namespace fs = std::filesystem;

namespace {

// Shutdown's steps are logged as they happen (a slow drain shows where it is) and returned.
void LogLine(std::vector<std::string>& log, std::string line) {
  spdlog::info("{}", line);
  log.push_back(std::move(line));
}

std::string RandomToken() {
  std::random_device rd;
  return absl::StrFormat("%08x%08x%08x%08x", rd(), rd(), rd(), rd());
}

std::string NowIso8601() {
  std::time_t t = std::time(nullptr);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&t));
  return buf;
}

// "stories260K-q8_0.gguf" -> "stories260K-q8_0".
std::string DefaultModelName(const std::string& path) {
  std::string name = fs::path(path).filename().string();
  for (const char* ext : {".gguf", ".bin"}) {
    const std::string e = ext;
    if (name.size() > e.size() && name.compare(name.size() - e.size(), e.size(), e) == 0) {
      name.resize(name.size() - e.size());
    }
  }
  return name;
}

}  // namespace

absl::StatusOr<std::unique_ptr<LocalStack>> LocalStack::Start(const UpOptions& options) {
  std::unique_ptr<LocalStack> s(new LocalStack(options));
  absl::StatusOr<std::string> path = ResolveModelPath(options.model);
  if (!path.ok()) return path.status();
  s->model_path_ = fs::weakly_canonical(fs::absolute(*path)).string();
  s->model_name_ = options.model_name.empty() ? DefaultModelName(s->model_path_) : options.model_name;
  if (options.workers < 0) return absl::InvalidArgumentError("--workers must be >= 0");

  if (options.work_dir.empty()) {
    std::string tmpl = (fs::temp_directory_path() / "flotilla-up-XXXXXX").string();
    if (mkdtemp(tmpl.data()) == nullptr) return absl::InternalError("cannot create a temporary work dir");
    s->work_dir_ = tmpl;
    // Removed at shutdown only after a successful start: after a failure its logs explain why.
  } else {
    s->work_dir_ = fs::absolute(options.work_dir).string();
    std::error_code ec;
    fs::create_directories(s->work_dir_, ec);
    if (ec) return absl::InternalError(absl::StrCat("cannot create ", s->work_dir_, ": ", ec.message()));
  }

  // Each step leaves what it started to the destructor if a later one fails.
  if (absl::Status st = s->StartFleet(); !st.ok()) return st;
  if (absl::Status st = s->StartGateway(); !st.ok()) return st;
  if (absl::Status st = s->StartControl(); !st.ok()) return st;
  if (options.prometheus) {
    if (absl::Status st = s->StartPrometheus(); !st.ok()) return st;
  }

  // Serving: every worker ready and the gateway routing to them.
  if (!s->fleet_->WaitForSteady(s->model_name_, options.workers, options.start_timeout_s)) {
    return absl::DeadlineExceededError(absl::StrCat(options.workers, " worker(s) not ready after ",
                                                    options.start_timeout_s, " s; see the logs in ", s->work_dir_));
  }
  if (options.workers > 0) {
    const std::string ready = absl::StrCat("http://127.0.0.1:", s->gateway_http_port_, "/ready");
    if (absl::Status st = WaitForHttpOk(ready, options.start_timeout_s, s->gateway_->child()); !st.ok()) {
      return absl::Status(st.code(), absl::StrCat("gateway: ", st.message()));
    }
    // /ready means the gateway routes to at least one worker; its health checks reach the
    // others within their interval. Ready for `up` means routing to every one of them.
    const std::string gateway_http = absl::StrCat("127.0.0.1:", s->gateway_http_port_);
    const auto until = std::chrono::steady_clock::now() + std::chrono::duration<double>(options.start_timeout_s);
    for (;;) {
      const FleetView v = GatherFromFleetFile(s->fleet_->fleet_file(), gateway_http);
      const auto hw = v.gateway.healthy_workers.find(s->model_name_);
      if (hw != v.gateway.healthy_workers.end() && hw->second >= options.workers) break;
      if (std::chrono::steady_clock::now() >= until) {
        return absl::DeadlineExceededError(absl::StrCat("gateway: routes to ", hw == v.gateway.healthy_workers.end() ? 0 : hw->second,
                                                        " of ", options.workers, " ready worker(s) after ",
                                                        options.start_timeout_s, " s"));
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  }
  if (options.autoscale || options.prometheus) {
    if (absl::Status st = s->StartAutoscaler(); !st.ok()) return st;
  }

  FleetState& fs_ = s->state_;
  fs_.pid = getpid();
  fs_.started_at = NowIso8601();
  fs_.gateway_grpc = absl::StrCat("127.0.0.1:", s->gateway_grpc_port_);
  fs_.gateway_http = absl::StrCat("127.0.0.1:", s->gateway_http_port_);
  fs_.fleet_file = s->fleet_->fleet_file();
  fs_.work_dir = s->work_dir_;
  fs_.models = {s->model_name_};
  s->own_work_dir_ = options.work_dir.empty() && !options.keep_work_dir;
  return s;
}

absl::Status LocalStack::StartFleet() {
  autoscaler::AutoscalerFlags flags;
  flags.backend = "local";
  flags.work_dir = work_dir_;
  flags.fleet_file = absl::StrCat(work_dir_, "/fleet.txt");
  flags.prometheus_sd_file = absl::StrCat(work_dir_, "/workers_sd.json");
  flags.worker_binary = options_.worker_binary;
  flags.reader = options_.prometheus ? "promql" : "scrape";
  if (options_.window_s > 0) flags.window_s = options_.window_s;
  // A pool at zero wakes on demand counted by our gateway; its port is known only once it
  // listens, so StartAutoscaler replaces this with the real /metrics URL.
  flags.activation_urls = {"http://127.0.0.1/metrics"};
  const int max_replicas = options_.max_replicas > 0 ? options_.max_replicas : std::max(options_.workers, 4);
  // Worker arguments travel as one space-separated list (the pool flag's syntax).
  std::vector<std::string> args = {"--ctx-size", std::to_string(options_.ctx_size), "--threads",
                                   std::to_string(options_.worker_threads)};
  args.insert(args.end(), options_.worker_args.begin(), options_.worker_args.end());
  for (const std::string& a : args) {
    if (a.find_first_of(" ,") != std::string::npos) {
      return absl::InvalidArgumentError(absl::StrCat("--worker-arg '", a, "': spaces and commas are not supported"));
    }
  }
  std::string pool = absl::StrCat("model=", model_name_, ",model_path=", model_path_, ",zone=", options_.zone,
                                  ",min_replicas=", options_.min_replicas, ",max_replicas=",
                                  std::max(max_replicas, options_.workers), ",initial_replicas=", options_.workers,
                                  ",extra_args=", absl::StrJoin(args, " "));
  for (const std::string& p : options_.policy) absl::StrAppend(&pool, ",", p);
  flags.pools = {pool};
  absl::StatusOr<autoscaler::AutoscalerConfig> config = autoscaler::ConfigFromFlags(flags);
  if (!config.ok()) return absl::Status(config.status().code(), absl::StrCat("fleet: ", config.status().message()));
  config_ = *std::move(config);
  config_.interval_s = options_.autoscale_interval_s;
  config_.backend.local.drain_timeout_s = options_.drain_timeout_s;

  std::vector<autoscaler::LocalPoolSpec> pools;
  for (const autoscaler::PoolEntry& p : config_.pools) pools.push_back(p.local);
  absl::StatusOr<std::unique_ptr<autoscaler::LocalFleet>> fleet =
      autoscaler::LocalFleet::Create(config_.backend.local, std::move(pools));
  if (!fleet.ok()) return fleet.status();
  fleet_ = *std::move(fleet);
  return fleet_->SetReplicas(model_name_, options_.workers);
}

absl::Status LocalStack::StartGateway() {
  const std::string binary =
      options_.gateway_binary.empty() ? FindSiblingBinary("flotilla-gateway") : options_.gateway_binary;
  const std::string ready = absl::StrCat(work_dir_, "/gateway.ready.json");
  autoscaler::ProcessSpec spec;
  spec.argv = {binary,          "--grpc-port",    std::to_string(options_.grpc_port),
               "--http-port",   std::to_string(options_.http_port), "--workers-file",
               fleet_->fleet_file(), "--no-auth", "--ready-file", ready,
               // The pool may scale to zero: the gateway must still know the model (503 and
               // counted demand, which wakes the pool, rather than 404).
               "--serve-model", model_name_};
  spec.argv.insert(spec.argv.end(), options_.gateway_args.begin(), options_.gateway_args.end());
  spec.log_file = absl::StrCat(work_dir_, "/gateway.log");
  gateway_ = std::make_unique<ManagedProcess>("gateway", spec);
  std::error_code ec;
  fs::remove(ready, ec);
  if (absl::Status st = gateway_->Start(); !st.ok()) return st;
  absl::StatusOr<std::string> text = WaitForReadyFile(ready, 30, gateway_->child());
  if (!text.ok()) {
    // The usual cause is a port in use (another `flotilla up`, or anything on 50051/8080).
    return absl::Status(text.status().code(),
                        absl::StrCat("gateway: ", text.status().message(), "; see ", spec.log_file,
                                     " (a port in use? --grpc-port 0 --http-port 0 pick free ones)"));
  }
  nlohmann::json j = nlohmann::json::parse(*text, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object() || !j.contains("grpc_port") || !j.contains("http_port")) {
    return absl::InternalError(absl::StrCat("gateway ready file is malformed: ", *text));
  }
  gateway_grpc_port_ = j["grpc_port"].get<int>();
  gateway_http_port_ = j["http_port"].get<int>();
  spdlog::info("gateway ready: grpc 127.0.0.1:{} http 127.0.0.1:{} (pid {}, log {})", gateway_grpc_port_,
               gateway_http_port_, gateway_->child()->pid(), spec.log_file);
  // A restart must come back on the same ports: clients and Prometheus hold them.
  for (size_t i = 0; i + 1 < gateway_->mutable_spec().argv.size(); ++i) {
    std::string& a = gateway_->mutable_spec().argv[i];
    if (a == "--grpc-port") gateway_->mutable_spec().argv[i + 1] = std::to_string(gateway_grpc_port_);
    if (a == "--http-port") gateway_->mutable_spec().argv[i + 1] = std::to_string(gateway_http_port_);
  }
  return absl::OkStatus();
}

absl::Status LocalStack::StartControl() {
  registry_ = std::make_shared<prometheus::Registry>();
  metrics_ = std::make_unique<autoscaler::AutoscalerMetrics>(*registry_);
  state_.control_token = RandomToken();
  absl::StatusOr<std::unique_ptr<ControlServer>> control =
      ControlServer::Start(fleet_.get(), state_.control_token, registry_, options_.autoscale || options_.prometheus);
  if (!control.ok()) return control.status();
  control_ = *std::move(control);
  state_.control_url = control_->url();
  state_.autoscaler_metrics_url = absl::StrCat(control_->url(), "/metrics");
  return absl::OkStatus();
}

absl::Status LocalStack::StartPrometheus() {
  const std::string config_path = absl::StrCat(work_dir_, "/prometheus.yml");
  // A fixed port may be taken; a picked one may be taken between picking and binding: a few tries.
  absl::Status last;
  for (int attempt = 0; attempt < 3; ++attempt) {
    int port = options_.prometheus_port;
    if (port == 0) {
      absl::StatusOr<int> p = PickFreePort();
      if (!p.ok()) return p.status();
      port = *p;
    }
    PrometheusTargets t;
    t.workers_sd_file = config_.backend.local.prometheus_sd_file;
    t.gateway = absl::StrCat("127.0.0.1:", gateway_http_port_);
    t.autoscaler = absl::StrCat("127.0.0.1:", control_->port());
    t.self = absl::StrCat("127.0.0.1:", port);
    t.scrape_interval_s = options_.scrape_interval_s;
    {
      std::ofstream out(config_path);
      out << MakePrometheusConfig(t);
      if (!out) return absl::InternalError(absl::StrCat("cannot write ", config_path));
    }
    autoscaler::ProcessSpec spec;
    spec.argv = {"prometheus",
                 absl::StrCat("--config.file=", config_path),
                 absl::StrCat("--storage.tsdb.path=", work_dir_, "/prometheus-data"),
                 absl::StrCat("--web.listen-address=127.0.0.1:", port),
                 "--storage.tsdb.retention.time=1d",
                 "--log.level=warn"};
    spec.log_file = absl::StrCat(work_dir_, "/prometheus.log");
    prometheus_ = std::make_unique<ManagedProcess>("prometheus", spec);
    if (absl::Status st = prometheus_->Start(); !st.ok()) {
      return absl::Status(st.code(), absl::StrCat(st.message(), " (install Debian's `prometheus` package)"));
    }
    last = WaitForHttpOk(absl::StrCat("http://127.0.0.1:", port, "/-/ready"), 30, prometheus_->child());
    if (last.ok()) {
      spdlog::info("prometheus ready: http://127.0.0.1:{} (config {}, scraping every {} s)", port, config_path,
                   options_.scrape_interval_s);
      prometheus_port_ = port;
      state_.prometheus_url = absl::StrCat("http://127.0.0.1:", port);
      return absl::OkStatus();
    }
    prometheus_->Stop(5);
    if (options_.prometheus_port != 0) break;  // a fixed port will not get better
  }
  return absl::Status(last.code(), absl::StrCat("prometheus: ", last.message(), "; see ", work_dir_, "/prometheus.log"));
}

absl::Status LocalStack::StartAutoscaler() {
  autoscaler::ReaderConfig reader = config_.reader;
  if (options_.prometheus) {
    reader.kind = "promql";
    reader.prometheus_url = state_.prometheus_url;
    // Only this fleet's workers: another Prometheus job could carry the same model label.
    reader.extra_selector = "job=\"flotilla-worker\"";
  } else {
    reader.kind = "scrape";
  }
  reader.activation_urls = {absl::StrCat("http://127.0.0.1:", gateway_http_port_, "/metrics")};
  absl::StatusOr<std::unique_ptr<autoscaler::MetricsReader>> r =
      autoscaler::MakeReader(reader, fleet_->fleet_file(), SystemClock::Get());
  if (!r.ok()) return r.status();
  reader_ = *std::move(r);
  std::vector<autoscaler::PolicyConfig> policies;
  for (const autoscaler::PoolEntry& p : config_.pools) policies.push_back(p.policy);
  controller_ = std::make_unique<autoscaler::Controller>(policies, reader_.get(), fleet_.get(), SystemClock::Get(),
                                                         metrics_.get());
  spdlog::info("autoscaler: {} reader, every {} s, pool {} min {} max {}", reader.kind, config_.interval_s,
               model_name_, config_.pools[0].policy.min_replicas, config_.pools[0].policy.max_replicas);
  autoscaler_thread_ = std::thread([this] { controller_->Run(config_.interval_s, &autoscaler_stop_); });
  return absl::OkStatus();
}

std::string LocalStack::Supervise() {
  std::string out;
  for (ManagedProcess* p : {gateway_.get(), prometheus_.get()}) {
    if (p == nullptr || p->Running()) continue;
    p->CountRestart();
    absl::StrAppend(&out, p->name(), " exited (", p->last_exit(), "); restarting (restart ", p->restarts(), ")");
    if (absl::Status st = p->Start(); !st.ok()) absl::StrAppend(&out, ": failed: ", st.message());
  }
  return out;
}

std::vector<std::string> LocalStack::Shutdown() {
  std::vector<std::string> log;
  if (shut_down_) return log;
  shut_down_ = true;
  if (autoscaler_thread_.joinable()) {
    autoscaler_stop_.Stop();
    autoscaler_thread_.join();
    LogLine(log, "autoscaler stopped");
  }
  if (gateway_ != nullptr) {
    // The gateway drains: it refuses new requests and lets open streams finish.
    LogLine(log, absl::StrCat("gateway stopped (", gateway_->Stop(options_.drain_timeout_s + 5), ")"));
  }
  if (fleet_ != nullptr) {
    const size_t n = fleet_->Workers().size();
    fleet_->Shutdown();  // drain, SIGTERM, SIGKILL after the stop timeout
    LogLine(log, absl::StrCat(n, " worker(s) drained and stopped"));
  }
  if (prometheus_ != nullptr) LogLine(log, absl::StrCat("prometheus stopped (", prometheus_->Stop(10), ")"));
  if (control_ != nullptr) control_->Stop();
  if (own_work_dir_ && !work_dir_.empty()) {
    std::error_code ec;
    fs::remove_all(work_dir_, ec);
  }
  return log;
}

LocalStack::~LocalStack() { Shutdown(); }

}  // namespace flotilla::cli
