// One child process started by fork/exec, in its own process group (so a terminal's Ctrl-C
// reaches only the parent, which then drains its children in order) and with
// PR_SET_PDEATHSIG=SIGTERM (so children drain and exit if the parent dies without doing so).
// Not thread-safe; the parent's death signal is tied to the thread that called Start, so the
// caller starts children from a long-lived thread (LocalFleet's supervisor).
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace flotilla::autoscaler {

struct ProcessSpec {
  std::vector<std::string> argv;  // argv[0] is the program (a path, or a name looked up in PATH)
  std::vector<std::string> env;   // KEY=VALUE added to (or replacing in) the inherited environment
  std::string log_file;           // stdout and stderr appended here; empty: inherited
};

struct ExitInfo {
  bool exited = false;  // false: still running
  int code = 0;         // exit code, or 128+signal when killed by a signal
  std::string description;  // "exit 0", "killed by signal 9 (Killed)"
};

class ChildProcess {
 public:
  // Starts the process. Fails (and leaves nothing running) when fork or exec fails, e.g. the
  // program does not exist: the child reports exec's errno through a close-on-exec pipe.
  static absl::StatusOr<ChildProcess> Start(const ProcessSpec& spec);

  ChildProcess(ChildProcess&& other) noexcept;
  ChildProcess& operator=(ChildProcess&& other) noexcept;
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;
  // Does not kill or reap: owners stop their children explicitly.
  ~ChildProcess() = default;

  pid_t pid() const { return pid_; }
  // Reaps the child if it has exited (non-blocking). Once reaped the result is kept.
  ExitInfo Poll();
  // Sends `sig` to the child (not to its group: a worker handles its own helpers).
  absl::Status Signal(int sig);

 private:
  explicit ChildProcess(pid_t pid) : pid_(pid) {}
  pid_t pid_ = -1;
  ExitInfo exit_;
};

}  // namespace flotilla::autoscaler
