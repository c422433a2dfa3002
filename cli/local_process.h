// Helpers for the processes `flotilla up` runs beside the local fleet (the gateway and
// Prometheus; workers are the autoscaler's LocalFleet's): finding a binary, picking a free
// port, waiting for readiness, and stopping politely then firmly.
// Not thread-safe: the `up` main thread owns these processes (their parent-death signal is
// tied to the thread that started them).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "autoscaler/child_process.h"

namespace flotilla::cli {

// `name` beside the running executable, else in $FLOTILLA_BIN_DIR, else `name` (looked up in
// PATH when started).
std::string FindSiblingBinary(const std::string& name);

// A TCP port on 127.0.0.1 that was free a moment ago (bind to port 0, read it, close). For
// programs that cannot report the port they bound (Prometheus); racy by nature, so callers
// retry on a failed start.
absl::StatusOr<int> PickFreePort();

// Polls `url` until it answers HTTP 200 or `timeout_s` passes; fails early if `process` exits.
absl::Status WaitForHttpOk(const std::string& url, double timeout_s, autoscaler::ChildProcess* process);

// Polls for a JSON ready file (as flotilla-worker and flotilla-gateway write) and returns
// its text; fails early if `process` exits.
absl::StatusOr<std::string> WaitForReadyFile(const std::string& path, double timeout_s,
                                             autoscaler::ChildProcess* process);

// A child with a name (for logs) that can be stopped: SIGTERM, wait, then SIGKILL.
class ManagedProcess {
 public:
  ManagedProcess(std::string name, autoscaler::ProcessSpec spec) : name_(std::move(name)), spec_(std::move(spec)) {}
  ~ManagedProcess();  // Stop(5)

  absl::Status Start();
  // True while running; reaps it otherwise (and remembers how it ended).
  bool Running();
  // SIGTERM, then SIGKILL after timeout_s. Returns how it ended ("exit 0", ...).
  std::string Stop(double timeout_s);

  const std::string& name() const { return name_; }
  const autoscaler::ProcessSpec& spec() const { return spec_; }
  autoscaler::ProcessSpec& mutable_spec() { return spec_; }
  autoscaler::ChildProcess* child() { return child_.has_value() ? &*child_ : nullptr; }
  const std::string& last_exit() const { return last_exit_; }
  int restarts() const { return restarts_; }
  void CountRestart() { ++restarts_; }

 private:
  std::string name_;
  autoscaler::ProcessSpec spec_;
  std::optional<autoscaler::ChildProcess> child_;
  std::string last_exit_;
  int restarts_ = 0;
};

}  // namespace flotilla::cli
