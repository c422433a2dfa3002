#include "autoscaler/local_fleet.h"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "autoscaler/drain_client.h"

namespace flotilla::autoscaler {
namespace fs = std::filesystem;

struct LocalFleet::Worker {
  std::string id;
  std::string pool;
  int index = 0;  // order of creation within the pool: newest leaves first
  WorkerState state = WorkerState::kStarting;
  std::optional<ChildProcess> proc;
  std::string ready_file;
  std::string log_file;
  int grpc_port = 0;
  int metrics_port = 0;
  TimeNs state_since = 0;
  TimeNs ready_since = 0;
  TimeNs restart_at = 0;
  TimeNs stop_deadline = 0;
  int restarts = 0;
  double backoff_s = 0;
  std::string last_exit;
  std::string kill_reason;  // set when we killed it ourselves (start timeout)
  bool leaving = false;     // being removed: never restarted
  bool done = false;        // gone: erase
  bool sent_kill = false;
  std::thread drainer;
  std::shared_ptr<std::atomic<bool>> drain_done = std::make_shared<std::atomic<bool>>(false);

  void SetState(WorkerState s, TimeNs now) {
    state = s;
    state_since = now;
  }
};

namespace {

std::string SafeName(const std::string& s) {
  std::string out;
  for (char c : s) {
    out.push_back(absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.' ? c
                                                                                                        : '_');
  }
  return out;
}

bool IsExecutable(const fs::path& p) {
  std::error_code ec;
  return fs::is_regular_file(p, ec) && access(p.c_str(), X_OK) == 0;
}

// The worker writes its ready file once; a file that does not parse yet is "not yet".
bool ReadReadyFile(const std::string& path, int* grpc_port, int* metrics_port) {
  std::ifstream in(path);
  if (!in) return false;
  std::stringstream ss;
  ss << in.rdbuf();
  nlohmann::json j = nlohmann::json::parse(ss.str(), nullptr, false);
  if (j.is_discarded() || !j.is_object()) return false;
  if (!j.contains("grpc_port") || !j["grpc_port"].is_number_integer()) return false;
  *grpc_port = j["grpc_port"].get<int>();
  *metrics_port = j.contains("metrics_port") && j["metrics_port"].is_number_integer()
                      ? j["metrics_port"].get<int>()
                      : 0;
  return *grpc_port > 0;
}

TimeNs Sec(double s) { return static_cast<TimeNs>(s * kNsPerSec); }

}  // namespace

const char* WorkerStateName(WorkerState s) {
  switch (s) {
    case WorkerState::kStarting: return "starting";
    case WorkerState::kReady: return "ready";
    case WorkerState::kDraining: return "draining";
    case WorkerState::kStopping: return "stopping";
    case WorkerState::kBackoff: return "restarting";
  }
  return "unknown";
}

std::vector<std::string> DefaultWorkerCommand(const std::string& worker_binary) {
  return {worker_binary, "--model",     "{model}",      "--model-name", "{model_name}",
          "--port",      "0",           "--metrics-port", "0",          "--worker-id",
          "{worker_id}", "--zone",      "{zone}",       "--ready-file", "{ready_file}"};
}

std::string FindWorkerBinary() {
  std::error_code ec;
  fs::path self = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    fs::path beside = self.parent_path() / "flotilla-worker";
    if (IsExecutable(beside)) return beside.string();
  }
  if (const char* dir = std::getenv("FLOTILLA_BIN_DIR"); dir != nullptr && *dir != '\0') {
    fs::path p = fs::path(dir) / "flotilla-worker";
    if (IsExecutable(p)) return p.string();
  }
  return "flotilla-worker";
}

absl::StatusOr<std::unique_ptr<LocalFleet>> LocalFleet::Create(LocalFleetOptions options,
                                                               std::vector<LocalPoolSpec> pools) {
  if (options.clock == nullptr) options.clock = SystemClock::Get();
  if (options.work_dir.empty()) return absl::InvalidArgumentError("local fleet needs a work_dir");
  std::error_code ec;
  fs::create_directories(options.work_dir, ec);
  if (ec) {
    return absl::InvalidArgumentError(absl::StrCat("cannot create ", options.work_dir, ": ", ec.message()));
  }
  if (options.fleet_file.empty()) options.fleet_file = (fs::path(options.work_dir) / "fleet.txt").string();
  if (options.worker_binary.empty()) options.worker_binary = FindWorkerBinary();
  if (pools.empty()) return absl::InvalidArgumentError("local fleet needs at least one pool");
  for (size_t i = 0; i < pools.size(); ++i) {
    const LocalPoolSpec& p = pools[i];
    if (p.model_name.empty()) return absl::InvalidArgumentError("pool without model_name");
    for (size_t j = 0; j < i; ++j) {
      if (pools[j].model_name == p.model_name) {
        return absl::InvalidArgumentError(absl::StrCat("pool '", p.model_name, "' given twice"));
      }
    }
    for (char c : p.model_name + p.zone) {
      if (absl::ascii_isspace(static_cast<unsigned char>(c))) {
        return absl::InvalidArgumentError("model names and zones cannot contain whitespace");
      }
    }
  }
  std::unique_ptr<LocalFleet> fleet(new LocalFleet(std::move(options), std::move(pools)));
  {
    std::lock_guard<std::mutex> lock(fleet->mu_);
    fleet->WriteFleetFileLocked();
  }
  fleet->supervisor_ = std::thread([f = fleet.get()] { f->SupervisorLoop(); });
  return fleet;
}

LocalFleet::LocalFleet(LocalFleetOptions options, std::vector<LocalPoolSpec> pools)
    : options_(std::move(options)), pools_(std::move(pools)) {
  for (const LocalPoolSpec& p : pools_) targets_[p.model_name] = 0;
}

LocalFleet::~LocalFleet() { Shutdown(); }

const LocalPoolSpec* LocalFleet::PoolLocked(const std::string& pool) const {
  for (const LocalPoolSpec& p : pools_) {
    if (p.model_name == pool) return &p;
  }
  return nullptr;
}

absl::StatusOr<ReplicaState> LocalFleet::GetReplicas(const std::string& pool) {
  std::lock_guard<std::mutex> lock(mu_);
  if (PoolLocked(pool) == nullptr) return absl::NotFoundError(absl::StrCat("no local pool '", pool, "'"));
  ReplicaState s;
  s.desired = targets_[pool];
  for (const auto& w : workers_) {
    if (w->pool != pool || w->leaving) continue;
    if (w->state == WorkerState::kReady) {
      ++s.ready;
    } else {
      ++s.starting;  // starting, or waiting to be restarted
    }
  }
  return s;
}

absl::Status LocalFleet::SetReplicas(const std::string& pool, int replicas) {
  if (replicas < 0) return absl::InvalidArgumentError("replicas must be >= 0");
  std::lock_guard<std::mutex> lock(mu_);
  if (PoolLocked(pool) == nullptr) return absl::NotFoundError(absl::StrCat("no local pool '", pool, "'"));
  if (shutting_down_) return absl::FailedPreconditionError("local fleet is shutting down");
  targets_[pool] = replicas;
  cv_.notify_all();
  return absl::OkStatus();
}

std::vector<std::string> LocalFleet::Pools() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<std::string> out;
  for (const LocalPoolSpec& p : pools_) out.push_back(p.model_name);
  return out;
}

std::vector<WorkerStatus> LocalFleet::Workers() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<WorkerStatus> out;
  for (const auto& w : workers_) {
    WorkerStatus s;
    s.id = w->id;
    s.pool = w->pool;
    s.state = w->state;
    s.pid = w->proc ? w->proc->pid() : 0;
    s.grpc_port = w->grpc_port;
    s.metrics_port = w->metrics_port;
    s.restarts = w->restarts;
    s.last_exit = w->last_exit;
    s.log_file = w->log_file;
    out.push_back(std::move(s));
  }
  return out;
}

absl::Status LocalFleet::DrainWorker(const std::string& worker_id, bool replace) {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& w : workers_) {
    if (w->id != worker_id) continue;
    if (w->leaving) return absl::OkStatus();
    if (!replace) targets_[w->pool] = std::max(0, targets_[w->pool] - 1);
    BeginRemovalLocked(*w);
    cv_.notify_all();
    return absl::OkStatus();
  }
  return absl::NotFoundError(absl::StrCat("no worker '", worker_id, "'"));
}

bool LocalFleet::WaitForSteady(const std::string& pool, int ready, double timeout_s) {
  std::unique_lock<std::mutex> lock(mu_);
  return changed_.wait_for(lock, std::chrono::duration<double>(timeout_s), [&] {
    int n_ready = 0;
    for (const auto& w : workers_) {
      if (w->pool != pool) continue;
      if (w->state != WorkerState::kReady || w->leaving) return false;
      ++n_ready;
    }
    return n_ready == ready;
  });
}

void LocalFleet::Shutdown() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopped_) return;
    stopped_ = true;
    shutting_down_ = true;
    for (auto& [pool, target] : targets_) target = 0;
    cv_.notify_all();
  }
  if (supervisor_.joinable()) supervisor_.join();
}

void LocalFleet::SupervisorLoop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    ReconcileLocked();
    if (shutting_down_ && workers_.empty()) break;
    cv_.wait_for(lock, std::chrono::duration<double>(options_.poll_interval_s));
  }
  WriteFleetFileLocked();
  changed_.notify_all();
}

void LocalFleet::StartProcessLocked(Worker& w) {
  const LocalPoolSpec* pool = PoolLocked(w.pool);
  std::vector<std::string> argv = pool->command.empty() ? DefaultWorkerCommand(options_.worker_binary)
                                                        : pool->command;
  for (std::string& a : argv) {
    a = absl::StrReplaceAll(a, {{"{model}", pool->model_path},
                                {"{model_name}", pool->model_name},
                                {"{worker_id}", w.id},
                                {"{ready_file}", w.ready_file},
                                {"{zone}", pool->zone}});
  }
  argv.insert(argv.end(), pool->extra_args.begin(), pool->extra_args.end());
  std::error_code ec;
  fs::remove(w.ready_file, ec);
  w.grpc_port = 0;
  w.metrics_port = 0;
  w.kill_reason.clear();
  w.sent_kill = false;
  absl::StatusOr<ChildProcess> child = ChildProcess::Start({argv, pool->env, w.log_file});
  const TimeNs now = Now();
  if (!child.ok()) {
    w.last_exit = std::string(child.status().message());
    w.backoff_s = w.backoff_s == 0 ? options_.restart_backoff_s
                                   : std::min(2 * w.backoff_s, options_.max_restart_backoff_s);
    w.restart_at = now + Sec(w.backoff_s);
    w.SetState(WorkerState::kBackoff, now);
    spdlog::error("worker {} could not start: {}; retrying in {:.1f} s", w.id, w.last_exit, w.backoff_s);
    return;
  }
  w.proc.emplace(std::move(*child));
  w.SetState(WorkerState::kStarting, now);
  spdlog::info("worker {} starting (pid {}, model {}, log {})", w.id, w.proc->pid(), pool->model_name,
               w.log_file);
}

void LocalFleet::BeginRemovalLocked(Worker& w) {
  w.leaving = true;
  const TimeNs now = Now();
  if (!w.proc) {  // waiting to be restarted: nothing runs
    w.done = true;
    return;
  }
  if (w.state != WorkerState::kReady) {
    // Starting: it has no traffic, so no drain. SIGTERM lets it exit cleanly.
    (void)w.proc->Signal(SIGTERM);
    w.SetState(WorkerState::kStopping, now);
    w.stop_deadline = now + Sec(options_.stop_timeout_s);
    return;
  }
  w.SetState(WorkerState::kDraining, now);
  WriteFleetFileLocked();  // out of the gateways' view before the drain starts
  const std::string address = absl::StrCat(options_.host, ":", w.grpc_port);
  spdlog::info("worker {} draining ({})", w.id, address);
  w.drainer = std::thread([address, id = w.id, done = w.drain_done, grace = options_.drain_grace_s,
                           timeout = options_.drain_timeout_s] {
    std::this_thread::sleep_for(std::chrono::duration<double>(grace));
    absl::StatusOr<int> left = DrainWorkerRpc(address, /*wait=*/true, timeout);
    if (left.ok()) {
      spdlog::info("worker {} drained ({} in flight at return)", id, *left);
    } else {
      spdlog::warn("worker {} drain: {}; stopping it anyway", id, left.status().ToString());
    }
    done->store(true);
  });
}

void LocalFleet::ReapLocked(Worker& w) {
  const TimeNs now = Now();
  if (w.proc) {
    ExitInfo exit = w.proc->Poll();
    if (exit.exited) {
      w.last_exit = w.kill_reason.empty() ? exit.description : absl::StrCat(w.kill_reason, ", ", exit.description);
      w.proc.reset();
      if (w.leaving) {
        spdlog::info("worker {} stopped ({})", w.id, w.last_exit);
        w.done = true;
        return;
      }
      // It ended on its own: restart it, backing off if it keeps failing. A worker that had
      // served for a while starts its back-off afresh.
      if (w.state == WorkerState::kReady && now - w.ready_since > Sec(60)) w.backoff_s = 0;
      w.backoff_s = w.backoff_s == 0 ? options_.restart_backoff_s
                                     : std::min(2 * w.backoff_s, options_.max_restart_backoff_s);
      w.restart_at = now + Sec(w.backoff_s);
      w.SetState(WorkerState::kBackoff, now);
      spdlog::warn("worker {} exited unexpectedly ({}); restarting in {:.1f} s (see {})", w.id, w.last_exit,
                   w.backoff_s, w.log_file);
      return;
    }
  }
  switch (w.state) {
    case WorkerState::kStarting:
      if (ReadReadyFile(w.ready_file, &w.grpc_port, &w.metrics_port)) {
        spdlog::info("worker {} ready: grpc {}:{} metrics {}:{} ({:.1f} s to start)", w.id, options_.host,
                     w.grpc_port, options_.host, w.metrics_port, NsToSec(now - w.state_since));
        w.SetState(WorkerState::kReady, now);
        w.ready_since = now;
      } else if (!w.sent_kill && now - w.state_since > Sec(options_.start_timeout_s)) {
        w.kill_reason = absl::StrCat("not ready after ", options_.start_timeout_s, " s");
        spdlog::warn("worker {} {}: killing it", w.id, w.kill_reason);
        (void)w.proc->Signal(SIGKILL);
        w.sent_kill = true;
      }
      break;
    case WorkerState::kDraining:
      if (w.drain_done->load()) {
        (void)w.proc->Signal(SIGTERM);
        w.SetState(WorkerState::kStopping, now);
        w.stop_deadline = now + Sec(options_.stop_timeout_s);
      }
      break;
    case WorkerState::kStopping:
      if (!w.sent_kill && now > w.stop_deadline) {
        spdlog::warn("worker {} still running {} s after SIGTERM: SIGKILL", w.id, options_.stop_timeout_s);
        (void)w.proc->Signal(SIGKILL);
        w.sent_kill = true;
      }
      break;
    case WorkerState::kBackoff:
      if (!w.leaving && now >= w.restart_at) {
        ++w.restarts;
        StartProcessLocked(w);
      }
      break;
    case WorkerState::kReady:
      break;
  }
}

void LocalFleet::ReconcileLocked() {
  for (auto& w : workers_) ReapLocked(*w);
  for (auto it = workers_.begin(); it != workers_.end();) {
    Worker& w = **it;
    if (w.done) {
      if (w.drainer.joinable()) w.drainer.join();  // the RPC has returned: done is set after it
      it = workers_.erase(it);
    } else {
      ++it;
    }
  }
  for (const LocalPoolSpec& pool : pools_) {
    const int target = targets_[pool.model_name];
    std::vector<Worker*> active;
    for (auto& w : workers_) {
      if (w->pool == pool.model_name && !w->leaving) active.push_back(w.get());
    }
    for (int n = static_cast<int>(active.size()); n < target; ++n) {
      auto w = std::make_unique<Worker>();
      w->pool = pool.model_name;
      w->index = ++next_index_[pool.model_name];
      w->id = absl::StrCat(SafeName(pool.model_name), "-", w->index);
      w->ready_file = (fs::path(options_.work_dir) / (w->id + ".ready.json")).string();
      w->log_file = (fs::path(options_.work_dir) / (w->id + ".log")).string();
      StartProcessLocked(*w);
      workers_.push_back(std::move(w));
    }
    if (static_cast<int>(active.size()) > target) {
      // Cheapest to lose first: not running (restarting), then not yet serving, then newest.
      auto rank = [](const Worker* w) {
        return w->state == WorkerState::kBackoff ? 0 : w->state == WorkerState::kStarting ? 1 : 2;
      };
      std::sort(active.begin(), active.end(), [&](const Worker* a, const Worker* b) {
        if (rank(a) != rank(b)) return rank(a) < rank(b);
        return a->index > b->index;
      });
      for (size_t i = 0; i < active.size() - static_cast<size_t>(target); ++i) {
        spdlog::info("worker {} leaving ({} -> {} replicas)", active[i]->id, active.size(), target);
        BeginRemovalLocked(*active[i]);
      }
    }
  }
  WriteFleetFileLocked();
  changed_.notify_all();
}

void LocalFleet::WriteFleetFileLocked() {
  std::vector<FleetEntry> entries;
  for (const auto& w : workers_) {
    if (w->state != WorkerState::kReady || w->leaving) continue;
    FleetEntry e;
    e.address = absl::StrCat(options_.host, ":", w->grpc_port);
    e.model = w->pool;
    e.zone = PoolLocked(w->pool)->zone;
    e.id = w->id;
    if (w->metrics_port > 0) e.metrics_address = absl::StrCat(options_.host, ":", w->metrics_port);
    e.pid = w->proc ? w->proc->pid() : 0;
    entries.push_back(std::move(e));
  }
  std::sort(entries.begin(), entries.end(),
            [](const FleetEntry& a, const FleetEntry& b) { return a.id < b.id; });
  std::string text = FormatFleetFile(entries);
  if (text == last_fleet_text_) return;
  if (absl::Status st = WriteFleetFile(options_.fleet_file, entries); !st.ok()) {
    spdlog::error("fleet file: {}", st.ToString());
    return;
  }
  if (!options_.prometheus_sd_file.empty()) {
    if (absl::Status st = WriteFileAtomically(options_.prometheus_sd_file, FormatPrometheusSd(entries));
        !st.ok()) {
      spdlog::error("prometheus sd file: {}", st.ToString());
    }
  }
  last_fleet_text_ = std::move(text);
}

}  // namespace flotilla::autoscaler
