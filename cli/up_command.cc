// `flotilla up`: a whole local fleet in the foreground (gateway, workers, optionally Prometheus
// and the autoscaler; see local_stack.h). Prints the endpoints and example requests, writes the
// state file other commands use (fleet_state.h), and on Ctrl-C drains and stops everything.
#include <CLI/CLI.hpp>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <mutex>

#include <spdlog/spdlog.h>

#include "absl/strings/str_cat.h"
#include "cli/client_flags.h"
#include "cli/commands.h"
#include "cli/fleet_state.h"
#include "cli/local_stack.h"
#include "cli/signal_watch.h"
#include "common/fmt_absl.h"
#include "common/logging.h"
#include "common/model_path.h"

namespace flotilla::cli {
namespace {

struct UpArgs {
  UpOptions up;
  std::string state_dir;
  std::string ready_file;
  std::string log_level = "info";
};

std::string Banner(const LocalStack& stack, const std::string& state_path) {
  const FleetState s = stack.state();
  const UpOptions& o = stack.options();
  std::string b;
  absl::StrAppend(&b, "\nFlotilla is up: ", o.workers, " worker(s) of ", stack.model_name(), " (", stack.model_path(),
                  ", context ", o.ctx_size, ")\n");
  absl::StrAppend(&b, "  gRPC API     ", s.gateway_grpc, "   (flotilla.v1.Inference)\n");
  absl::StrAppend(&b, "  OpenAI API   http://", s.gateway_http, "/v1   (completions, chat/completions, models)\n");
  absl::StrAppend(&b, "  metrics      http://", s.gateway_http, "/metrics (gateway); workers: flotilla status\n");
  if (!s.prometheus_url.empty()) absl::StrAppend(&b, "  Prometheus   ", s.prometheus_url, "\n");
  if (o.autoscale || o.prometheus) {
    absl::StrAppend(&b, "  autoscaler   on (", o.prometheus ? "PromQL" : "scrape", " reader), metrics ",
                    s.autoscaler_metrics_url, "\n");
  }
  absl::StrAppend(&b, "  state        ", state_path, "   logs ", s.work_dir, "\n");
  absl::StrAppend(&b, "\nTry:\n");
  absl::StrAppend(&b, "  flotilla generate \"Once upon a time\" -n 64\n");
  absl::StrAppend(&b, "  curl -s http://", s.gateway_http,
                  "/v1/completions -H 'Content-Type: application/json' \\\n"
                  "    -d '{\"model\": \"",
                  stack.model_name(), "\", \"prompt\": \"Once upon a time\", \"max_tokens\": 64}'\n");
  absl::StrAppend(&b, "  flotilla status\n");
  absl::StrAppend(&b, "  flotilla scale --replicas 3\n");
  absl::StrAppend(&b, "  flotilla bench --scenario rate --rate 20 --duration 10\n");
  absl::StrAppend(&b, "\nCtrl-C drains the workers and stops everything.\n");
  return b;
}

int RunUp(UpArgs& a) {
  std::mutex mu;
  std::condition_variable cv;
  int signals = 0;
  SignalWatch watch([&](int sig) {
    std::lock_guard<std::mutex> lock(mu);
    ++signals;
    cv.notify_all();
    if (signals > 1) spdlog::warn("signal {} again: still draining; a third one kills everything at once", sig);
    if (signals > 2) std::_Exit(130);  // children get SIGTERM from their parent-death signal
  });

  (void)SetupLogging({.format = "text", .level = a.log_level, .component = "up"});
  spdlog::info("starting: model {}, {} worker(s), gateway, {}", a.up.model, a.up.workers,
               a.up.prometheus ? "Prometheus and the autoscaler" : (a.up.autoscale ? "the autoscaler" : "no autoscaler"));
  absl::StatusOr<std::unique_ptr<LocalStack>> stack = LocalStack::Start(a.up);
  if (!stack.ok()) {
    spdlog::error("flotilla up failed: {}", stack.status().message());
    return 1;
  }
  const std::string state_path = StateFilePath(a.state_dir);
  if (absl::Status st = WriteFleetState(state_path, (*stack)->state()); !st.ok()) {
    spdlog::warn("cannot write the state file ({}): status/scale/drain will not find this fleet", st.message());
  }
  if (!a.ready_file.empty()) (void)WriteFleetState(a.ready_file, (*stack)->state());
  std::fputs(Banner(**stack, state_path).c_str(), stdout);
  std::fflush(stdout);

  {
    std::unique_lock<std::mutex> lock(mu);
    while (signals == 0) {
      cv.wait_for(lock, std::chrono::milliseconds(500));
      if (signals > 0) break;
      lock.unlock();
      if (std::string what = (*stack)->Supervise(); !what.empty()) spdlog::warn("{}", what);
      lock.lock();
    }
  }
  spdlog::info("stopping: draining workers (Ctrl-C twice more to kill at once)");
  // Other commands must not reach a fleet that is going away.
  if (absl::StatusOr<FleetState> st = ReadFleetState(state_path); st.ok() && st->pid == getpid()) {
    std::remove(state_path.c_str());
  }
  if (!a.ready_file.empty()) std::remove(a.ready_file.c_str());
  (void)(*stack)->Shutdown();  // logs each step
  spdlog::info("stopped cleanly");
  return 0;
}

}  // namespace

void RegisterUp(CLI::App& app, int* exit_code) {
  auto a = std::make_shared<UpArgs>();
  a->up.model = kDefaultModel;
  CLI::App* cmd = app.add_subcommand("up", "Run a local fleet (gateway + workers [+ Prometheus + autoscaler]) until Ctrl-C");
  UpOptions& o = a->up;
  cmd->add_option("-m,--model", o.model, "Model file or name on the search path")->capture_default_str();
  cmd->add_option("--model-name", o.model_name, "Name clients use (default: the file name without extension)");
  cmd->add_option("-w,--workers", o.workers, "Workers to start")->capture_default_str()->check(CLI::Range(0, 64));
  cmd->add_option("-c,--ctx-size", o.ctx_size, "Context length of each worker")->capture_default_str();
  cmd->add_option("--worker-threads", o.worker_threads, "CPU threads per worker")->capture_default_str();
  cmd->add_option("--worker-arg", o.worker_args, "Extra flotilla-worker argument (repeatable), e.g. --worker-arg=--max-num-seqs=8")
      ->allow_extra_args(false);
  cmd->add_option("--gateway-arg", o.gateway_args, "Extra flotilla-gateway argument (repeatable)")->allow_extra_args(false);
  cmd->add_option("--zone", o.zone, "Zone label of the workers")->capture_default_str();
  cmd->add_option("--grpc-port", o.grpc_port, "Gateway gRPC port (0: any free port)")->capture_default_str();
  cmd->add_option("--http-port", o.http_port, "Gateway HTTP port (0: any free port)")->capture_default_str();
  cmd->add_flag("--prometheus", o.prometheus, "Also run a Prometheus server scraping everything, and the autoscaler on it");
  cmd->add_option("--prometheus-port", o.prometheus_port, "Prometheus port (0: any free port)")->capture_default_str();
  cmd->add_option("--scrape-interval", o.scrape_interval_s, "Prometheus scrape interval, seconds")->capture_default_str();
  cmd->add_flag("--autoscale", o.autoscale, "Run the autoscaler (scraping /metrics directly unless --prometheus)");
  cmd->add_option("--min-replicas", o.min_replicas, "Autoscaler: fewest workers")->capture_default_str();
  cmd->add_option("--max-replicas", o.max_replicas, "Autoscaler: most workers (default max(workers, 4))");
  cmd->add_option("--autoscale-interval", o.autoscale_interval_s, "Autoscaler: seconds between decisions")
      ->capture_default_str();
  cmd->add_option("--window", o.window_s, "Autoscaler: seconds of history for rates and TTFT p95")->capture_default_str();
  cmd->add_option("--policy", o.policy,
                  "Autoscaler policy KEY=VALUE (repeatable; keys as in docs/autoscaler.md, e.g. "
                  "target_waiting_per_replica=2, scale_down.stabilization_window_s=60)")
      ->allow_extra_args(false);
  cmd->add_option("--work-dir", o.work_dir, "Folder for logs, ready files and the fleet file (default: a temporary one)");
  cmd->add_flag("--keep-work-dir", o.keep_work_dir, "Keep the temporary work dir (logs) after stopping");
  cmd->add_option("--start-timeout", o.start_timeout_s, "Seconds to wait for everything to be ready")->capture_default_str();
  cmd->add_option("--drain-timeout", o.drain_timeout_s, "Seconds a worker may take to finish its requests when stopped")
      ->capture_default_str();
  cmd->add_option("--gateway-binary", o.gateway_binary, "flotilla-gateway to run (default: beside this binary)");
  cmd->add_option("--worker-binary", o.worker_binary, "flotilla-worker to run (default: beside this binary)");
  AddStateDirFlag(*cmd, &a->state_dir);
  cmd->add_option("--ready-file", a->ready_file, "Also write the state JSON here once everything serves (for scripts)");
  cmd->add_option("--log-level", a->log_level, "trace, debug, info, warn, error")->capture_default_str();
  cmd->callback([a, exit_code] { *exit_code = RunUp(*a); });
}

}  // namespace flotilla::cli
