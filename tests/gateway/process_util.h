// Helpers for gateway integration tests: free ports, child processes, temp dirs, polling.
// Child processes are started with posix_spawn, get their own process group, and are killed
// (SIGTERM, then SIGKILL) when the Subprocess object dies, so a failing test leaves nothing behind.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace flotilla::gateway::testing {

// A TCP port that was free a moment ago (bound to port 0 on 127.0.0.1, then released).
int FreePort();

// Polls `cond` every 20 ms until true or `timeout` passes.
bool WaitFor(const std::function<bool()>& cond, std::chrono::milliseconds timeout);

std::string MakeTempDir(const std::string& prefix);
void RemoveTree(const std::string& path);
std::string ReadFileOr(const std::string& path, const std::string& fallback = "");
void WriteFileAtomic(const std::string& path, const std::string& text);

// Directory of built binaries (FLOTILLA_BIN_DIR set by ctest, else build-gw/bin).
std::string BinDir();
std::string SourceDir();
// Whether an executable exists (absolute path or on PATH).
bool HaveExecutable(const std::string& name);

class Subprocess {
 public:
  Subprocess() = default;
  Subprocess(const Subprocess&) = delete;
  Subprocess& operator=(const Subprocess&) = delete;
  Subprocess(Subprocess&& o) noexcept;
  Subprocess& operator=(Subprocess&& o) noexcept;
  ~Subprocess();

  // Starts argv[0] (searched on PATH) with stdout+stderr to `log_path` ("" = inherit).
  bool Start(const std::vector<std::string>& argv, const std::string& log_path,
             const std::map<std::string, std::string>& extra_env = {});
  pid_t pid() const { return pid_; }
  bool Running();
  // Sends `sig` to the process.
  void Signal(int sig);
  // Waits for exit; returns the exit status as from waitpid, or nullopt on timeout.
  std::optional<int> Wait(std::chrono::milliseconds timeout);
  // SIGTERM, wait up to `grace`, then SIGKILL.
  void Stop(std::chrono::milliseconds grace = std::chrono::milliseconds(3000));
  void Kill();  // SIGKILL now, reap

 private:
  pid_t pid_ = -1;
  bool reaped_ = true;
};

// Runs a command to completion, capturing stdout+stderr. Returns the exit code (-1 on spawn
// failure, -2 on timeout).
int RunCommand(const std::vector<std::string>& argv, std::string* output,
               std::chrono::milliseconds timeout, const std::map<std::string, std::string>& extra_env = {},
               const std::string& cwd = "");

}  // namespace flotilla::gateway::testing
