// Everything `flotilla up` runs, started in order and stopped in reverse:
//   1. the local fleet (autoscaler::LocalFleet): N workers, a fleet file the gateway watches,
//      a Prometheus file_sd JSON; crashed workers are restarted by it;
//   2. the gateway (flotilla-gateway watching the fleet file), restarted if it crashes;
//   3. the control endpoint (control_api.h), which also serves the autoscaler's metrics;
//   4. with --prometheus, a real Prometheus scraping all of the above (config generated);
//   5. with --prometheus or --autoscale, the autoscaler's control loop on its own thread,
//      reading Prometheus (PromQL) or scraping /metrics directly.
// Shutdown: stop the autoscaler, SIGTERM the gateway (it finishes open streams), drain and
// stop the workers, then stop Prometheus and the control endpoint.
// Thread-safety: Start, Supervise and Shutdown are called from one thread (the `up` main thread).
#pragma once

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "autoscaler/config.h"
#include "autoscaler/controller.h"
#include "autoscaler/local_fleet.h"
#include "cli/control_server.h"
#include "cli/fleet_state.h"
#include "cli/local_process.h"

namespace prometheus {
class Registry;
}

namespace flotilla::autoscaler {
class AutoscalerMetrics;
class MetricsReader;
}  // namespace flotilla::autoscaler

namespace flotilla::cli {

struct UpOptions {
  std::string model;        // file or name on the model search path
  std::string model_name;   // pool name; default: the file name without .gguf/.bin
  int workers = 2;
  int ctx_size = 512;
  int worker_threads = 1;
  std::vector<std::string> worker_args;
  std::vector<std::string> gateway_args;
  std::string zone = "local";
  int grpc_port = 50051;  // the gateway's; 0 picks a free port
  int http_port = 8080;
  bool prometheus = false;
  int prometheus_port = 9090;
  double scrape_interval_s = 5;
  bool autoscale = false;  // implied by prometheus
  int min_replicas = 1;
  int max_replicas = 0;    // 0: max(workers, 4)
  double autoscale_interval_s = 5;
  double window_s = 30;    // the reader's rate()/increase() window
  std::vector<std::string> policy;  // KEY=VALUE of the pool's policy (autoscaler/config.h keys)
  std::string work_dir;             // empty: a new temporary folder, removed at the end
  bool keep_work_dir = false;
  double start_timeout_s = 120;
  double drain_timeout_s = 30;
  std::string gateway_binary;  // empty: beside this executable, $FLOTILLA_BIN_DIR, PATH
  std::string worker_binary;
};

class LocalStack {
 public:
  // Starts everything and waits until the gateway serves with every worker ready. On failure
  // whatever was started is stopped again.
  static absl::StatusOr<std::unique_ptr<LocalStack>> Start(const UpOptions& options);
  ~LocalStack();  // Shutdown()

  // Restarts the gateway or Prometheus if they exited (workers are the fleet's job). Returns a
  // line for the log when it did something.
  std::string Supervise();
  // Orderly stop; idempotent. Returns one line per component for the log.
  std::vector<std::string> Shutdown();

  // Endpoints, for the state file and the banner.
  FleetState state() const { return state_; }
  const std::string& model_name() const { return model_name_; }
  const std::string& model_path() const { return model_path_; }
  const UpOptions& options() const { return options_; }

 private:
  explicit LocalStack(UpOptions options) : options_(std::move(options)) {}
  absl::Status StartFleet();
  absl::Status StartGateway();
  absl::Status StartControl();
  absl::Status StartPrometheus();
  absl::Status StartAutoscaler();

  UpOptions options_;
  std::string model_path_;
  std::string model_name_;
  std::string work_dir_;
  bool own_work_dir_ = false;
  autoscaler::AutoscalerConfig config_;
  std::unique_ptr<autoscaler::LocalFleet> fleet_;
  std::unique_ptr<ManagedProcess> gateway_;
  int gateway_grpc_port_ = 0;
  int gateway_http_port_ = 0;
  std::shared_ptr<prometheus::Registry> registry_;
  std::unique_ptr<autoscaler::AutoscalerMetrics> metrics_;
  std::unique_ptr<ControlServer> control_;
  std::unique_ptr<ManagedProcess> prometheus_;
  int prometheus_port_ = 0;
  std::unique_ptr<autoscaler::MetricsReader> reader_;
  std::unique_ptr<autoscaler::Controller> controller_;
  autoscaler::StopSignal autoscaler_stop_;
  std::thread autoscaler_thread_;
  FleetState state_;
  bool shut_down_ = false;
};

}  // namespace flotilla::cli
