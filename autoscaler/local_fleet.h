// LocalFleet: worker processes on this machine, one pool per model. The autoscaler's local
// backend, and the engine of `flotilla up` (which adds a gateway reading the fleet file).
//
// What it does:
//  - starts workers from a command template ({model}, {model_name}, {worker_id}, {ready_file},
//    {zone} substituted; the default is flotilla-worker with --port 0 --metrics-port 0), and
//    learns their ports from the --ready-file JSON {"grpc_port":P,"metrics_port":M,"pid":N}
//    each worker writes once it is SERVING;
//  - writes the fleet file (autoscaler/fleet_file.h) listing ready workers, and optionally a
//    Prometheus file_sd JSON of their /metrics ports;
//  - scales down by draining: the victim leaves the fleet file first, then after
//    `drain_grace_s` gets Drain(wait=true), then SIGTERM, then SIGKILL after `stop_timeout_s`.
//    Victims are chosen restarting/starting first (they carry no traffic), then the newest;
//  - restarts a worker that exits on its own (or never becomes ready in `start_timeout_s`),
//    with exponential back-off, under the same worker id.
//
// Thread-safety: all public methods are thread-safe. A supervisor thread owns the processes
// (children are started from it, so their parent-death signal is tied to its lifetime) and
// applies targets every `poll_interval_s`; drains run on their own short-lived threads.
#pragma once

#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "autoscaler/backend.h"
#include "autoscaler/child_process.h"
#include "autoscaler/fleet_file.h"
#include "common/clock.h"

namespace flotilla::autoscaler {

struct LocalPoolSpec {
  std::string model_name;  // pool name; the worker's --model-name and metrics label
  std::string model_path;  // --model
  std::string zone = "local";
  // Command template; empty means DefaultWorkerCommand(options.worker_binary).
  std::vector<std::string> command;
  std::vector<std::string> extra_args;  // appended to the command (e.g. --threads 1)
  std::vector<std::string> env;         // KEY=VALUE for the worker's environment
};

struct LocalFleetOptions {
  std::string work_dir;             // ready files and worker logs; created if missing
  std::string fleet_file;           // empty: <work_dir>/fleet.txt
  std::string prometheus_sd_file;   // empty: not written
  std::string worker_binary;        // empty: FindWorkerBinary()
  std::string host = "127.0.0.1";   // the address written in the fleet file
  double start_timeout_s = 120;
  double drain_grace_s = 1;         // out of the fleet file -> Drain: lets gateways notice
  double drain_timeout_s = 60;
  double stop_timeout_s = 15;       // SIGTERM -> SIGKILL
  double restart_backoff_s = 1;
  double max_restart_backoff_s = 30;
  double poll_interval_s = 0.1;
  const Clock* clock = nullptr;     // nullptr: SystemClock
};

enum class WorkerState { kStarting, kReady, kDraining, kStopping, kBackoff };
const char* WorkerStateName(WorkerState s);

struct WorkerStatus {
  std::string id;
  std::string pool;
  WorkerState state = WorkerState::kStarting;
  int pid = 0;
  int grpc_port = 0;
  int metrics_port = 0;
  int restarts = 0;
  std::string last_exit;  // how the previous process of this id ended
  std::string log_file;
};

// The built-in template: <binary> --model {model} --model-name {model_name} --port 0
// --metrics-port 0 --worker-id {worker_id} --zone {zone} --ready-file {ready_file}
std::vector<std::string> DefaultWorkerCommand(const std::string& worker_binary);
// flotilla-worker beside the running executable, else $FLOTILLA_BIN_DIR/, else "flotilla-worker" (PATH).
std::string FindWorkerBinary();

class LocalFleet final : public ScalingBackend {
 public:
  // Validates the pools, prepares work_dir, writes an empty fleet file and starts the
  // supervisor. Every pool starts at 0 replicas: call SetReplicas.
  static absl::StatusOr<std::unique_ptr<LocalFleet>> Create(LocalFleetOptions options,
                                                            std::vector<LocalPoolSpec> pools);
  ~LocalFleet() override;  // Shutdown()

  absl::StatusOr<ReplicaState> GetReplicas(const std::string& pool) override;
  absl::Status SetReplicas(const std::string& pool, int replicas) override;
  std::string Name() const override { return "local"; }

  std::vector<WorkerStatus> Workers() const;
  // Every pool's name, including pools at zero replicas.
  std::vector<std::string> Pools() const;
  // Takes one worker out through the drain sequence. With replace, the pool keeps its size (a
  // new worker is started, like deleting a Kubernetes pod); without, its target drops by one.
  absl::Status DrainWorker(const std::string& worker_id, bool replace);
  // Blocks until `pool` has exactly `ready` ready workers and nothing starting or leaving,
  // or the timeout passes (false). For tests and `flotilla up`'s start-up.
  bool WaitForSteady(const std::string& pool, int ready, double timeout_s);
  // Drains and stops every worker, then the supervisor. Idempotent.
  void Shutdown();

  const std::string& fleet_file() const { return options_.fleet_file; }

 private:
  struct Worker;
  LocalFleet(LocalFleetOptions options, std::vector<LocalPoolSpec> pools);

  void SupervisorLoop();
  void ReconcileLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ReapLocked(Worker& w) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void StartProcessLocked(Worker& w) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void BeginRemovalLocked(Worker& w) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void WriteFleetFileLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  const LocalPoolSpec* PoolLocked(const std::string& pool) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  TimeNs Now() const { return options_.clock->Now(); }

  LocalFleetOptions options_;
  mutable std::mutex mu_;
  std::condition_variable cv_;  // wakes the supervisor (targets changed, shutdown)
  std::condition_variable changed_;  // wakes WaitForSteady
  std::vector<LocalPoolSpec> pools_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, int> targets_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, int> next_index_ ABSL_GUARDED_BY(mu_);
  std::vector<std::unique_ptr<Worker>> workers_ ABSL_GUARDED_BY(mu_);
  std::string last_fleet_text_ ABSL_GUARDED_BY(mu_);
  bool shutting_down_ ABSL_GUARDED_BY(mu_) = false;
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
  std::thread supervisor_;
};

}  // namespace flotilla::autoscaler
