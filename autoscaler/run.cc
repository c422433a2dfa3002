#include "autoscaler/run.h"

#include <prometheus/exposer.h>
#include <prometheus/registry.h>
#include <signal.h>
#include <unistd.h>

#include <exception>
#include <filesystem>
#include <thread>

#include <spdlog/spdlog.h>

#include "absl/strings/str_cat.h"
#include "autoscaler/autoscaler_metrics.h"
#include "autoscaler/kubernetes_backend.h"
#include "autoscaler/local_fleet.h"
#include "autoscaler/promql_reader.h"
#include "autoscaler/scrape_reader.h"

namespace flotilla::autoscaler {

absl::StatusOr<std::unique_ptr<MetricsReader>> MakeReader(const ReaderConfig& config,
                                                          const std::string& local_fleet_file,
                                                          const Clock* clock) {
  if (config.kind == "promql") {
    PromqlReaderOptions o;
    o.url = config.prometheus_url;
    o.names = config.names;
    o.extra_selector = config.extra_selector;
    o.window_s = config.window_s;
    o.timeout_s = config.timeout_s;
    o.clock = clock;
    return std::unique_ptr<MetricsReader>(new PromqlReader(std::move(o)));
  }
  if (config.kind != "scrape") return absl::InvalidArgumentError("reader kind must be scrape or promql");
  ScrapeReaderOptions o;
  o.names = config.names;
  o.activation_urls = config.activation_urls;
  o.window_s = config.window_s;
  o.timeout_s = config.timeout_s;
  o.clock = clock;
  const std::string fleet_file = !config.fleet_file.empty() ? config.fleet_file : local_fleet_file;
  if (!config.targets.empty() && !fleet_file.empty()) {
    TargetSource fixed = StaticTargets(config.targets);
    TargetSource from_file = FleetFileTargets(fleet_file);
    o.workers = [fixed, from_file]() -> absl::StatusOr<std::vector<ScrapeTarget>> {
      absl::StatusOr<std::vector<ScrapeTarget>> a = fixed();
      absl::StatusOr<std::vector<ScrapeTarget>> b = from_file();
      if (!b.ok()) return b.status();
      a->insert(a->end(), b->begin(), b->end());
      return a;
    };
  } else if (!fleet_file.empty()) {
    o.workers = FleetFileTargets(fleet_file);
  } else {
    o.workers = StaticTargets(config.targets);
  }
  return std::unique_ptr<MetricsReader>(new ScrapeReader(std::move(o)));
}

absl::Status RunAutoscaler(const AutoscalerConfig& config, StopSignal* stop) {
  if (absl::Status st = config.Validate(); !st.ok()) return st;
  const Clock* clock = SystemClock::Get();

  std::unique_ptr<ScalingBackend> backend;
  LocalFleet* fleet = nullptr;
  if (config.backend.kind == "local") {
    LocalFleetOptions o = config.backend.local;
    if (o.work_dir.empty()) {
      o.work_dir = (std::filesystem::temp_directory_path() / absl::StrCat("flotilla-fleet-", getpid())).string();
    }
    std::vector<LocalPoolSpec> pools;
    for (const PoolEntry& p : config.pools) pools.push_back(p.local);
    absl::StatusOr<std::unique_ptr<LocalFleet>> f = LocalFleet::Create(std::move(o), std::move(pools));
    if (!f.ok()) return f.status();
    fleet = f->get();
    backend = std::move(*f);
    for (const PoolEntry& p : config.pools) {
      const int initial = p.initial_replicas >= 0 ? p.initial_replicas : p.policy.min_replicas;
      if (absl::Status st = fleet->SetReplicas(p.policy.pool, initial); !st.ok()) return st;
    }
    spdlog::info("local fleet: work dir {}, fleet file {}", config.backend.local.work_dir.empty()
                                                               ? "(temporary)"
                                                               : config.backend.local.work_dir,
                 fleet->fleet_file());
  } else {
    KubernetesOptions options = config.backend.kubernetes;
    for (const PoolEntry& p : config.pools) {
      if (!p.deployment.empty()) options.deployments[p.policy.pool] = p.deployment;
    }
    absl::StatusOr<KubernetesOptions> k = ResolveInCluster(std::move(options));
    if (!k.ok()) return k.status();
    spdlog::info("kubernetes backend: {} namespace {}", k->api_server, k->namespace_name);
    backend = std::make_unique<KubernetesBackend>(std::move(*k));
  }

  absl::StatusOr<std::unique_ptr<MetricsReader>> reader =
      MakeReader(config.reader, fleet != nullptr ? fleet->fleet_file() : "", clock);
  if (!reader.ok()) return reader.status();

  auto registry = std::make_shared<prometheus::Registry>();
  AutoscalerMetrics metrics(*registry);
  std::unique_ptr<prometheus::Exposer> exposer;
  try {
    // civetweb throws on a bad or busy address; this is start-up, not the data path.
    exposer = std::make_unique<prometheus::Exposer>(std::vector<std::string>{
        "listening_ports", config.metrics_address, "num_threads", "2", "enable_keep_alive", "yes",
        "tcp_nodelay", "1"});
  } catch (const std::exception& e) {
    return absl::UnavailableError(absl::StrCat("cannot serve metrics on ", config.metrics_address, ": ", e.what()));
  }
  exposer->RegisterCollectable(registry);
  const std::vector<int> ports = exposer->GetListeningPorts();
  const std::string host = config.metrics_address.substr(0, config.metrics_address.rfind(':'));
  spdlog::info("autoscaler metrics on http://{}:{}/metrics; reader {}, backend {}, {} pool(s), every {} s", host,
               ports.empty() ? 0 : ports[0], config.reader.kind, backend->Name(), config.pools.size(),
               config.interval_s);

  std::vector<PolicyConfig> policies;
  for (const PoolEntry& p : config.pools) policies.push_back(p.policy);
  Controller controller(policies, reader->get(), backend.get(), clock, &metrics);
  controller.Run(config.interval_s, stop);

  if (fleet != nullptr) {
    spdlog::info("stopping: draining every local worker");
    fleet->Shutdown();
  }
  return absl::OkStatus();
}

absl::Status RunAutoscalerUntilSignal(const AutoscalerConfig& config) {
  // A shell starts background jobs with SIGINT ignored, and an ignored signal is discarded
  // even while blocked: restore the default so that sigwait sees it.
  signal(SIGINT, SIG_DFL);
  signal(SIGTERM, SIG_DFL);
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  StopSignal stop;
  std::thread waiter([&] {
    int sig = 0;
    sigwait(&set, &sig);
    if (sig != 0) spdlog::info("signal {}: stopping", sig);
    stop.Stop();
  });
  absl::Status st = RunAutoscaler(config, &stop);
  if (!stop.stopped()) {
    // Start-up failed: wake the waiter, which is blocked in sigwait.
    pthread_kill(waiter.native_handle(), SIGTERM);
  }
  waiter.join();
  return st;
}

}  // namespace flotilla::autoscaler
