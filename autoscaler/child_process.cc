#include "autoscaler/child_process.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <map>
#include <utility>

#include "absl/strings/str_cat.h"

extern char** environ;

namespace flotilla::autoscaler {
namespace {

// Closes every descriptor from `from` up, except `keep`. Async-signal-safe (runs after fork).
void CloseFrom(int from, int keep) {
#ifdef SYS_close_range
  if (keep > from) syscall(SYS_close_range, from, keep - 1, 0);
  if (syscall(SYS_close_range, keep + 1, ~0U, 0) == 0) return;
#endif
  for (int fd = from; fd < 4096; ++fd) {
    if (fd != keep) close(fd);
  }
}

}  // namespace

absl::StatusOr<ChildProcess> ChildProcess::Start(const ProcessSpec& spec) {
  if (spec.argv.empty()) return absl::InvalidArgumentError("empty command");
  // Everything the child needs is built before fork: after it only async-signal-safe calls.
  std::vector<char*> argv;
  for (const std::string& a : spec.argv) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  std::map<std::string, std::string> env_map;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    std::string kv(*e);
    size_t eq = kv.find('=');
    env_map[kv.substr(0, eq)] = kv;
  }
  for (const std::string& kv : spec.env) env_map[kv.substr(0, kv.find('='))] = kv;
  std::vector<std::string> env_strings;
  for (auto& [k, kv] : env_map) env_strings.push_back(kv);
  std::vector<char*> envp;
  for (std::string& kv : env_strings) envp.push_back(kv.data());
  envp.push_back(nullptr);

  int log_fd = -1;
  if (!spec.log_file.empty()) {
    log_fd = ::open(spec.log_file.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (log_fd < 0) {
      return absl::InternalError(absl::StrCat("cannot open ", spec.log_file, ": ", std::strerror(errno)));
    }
  }
  int err_pipe[2];
  if (pipe2(err_pipe, O_CLOEXEC) != 0) {
    if (log_fd >= 0) close(log_fd);
    return absl::InternalError(absl::StrCat("pipe: ", std::strerror(errno)));
  }
  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid < 0) {
    const int err = errno;
    close(err_pipe[0]);
    close(err_pipe[1]);
    if (log_fd >= 0) close(log_fd);
    return absl::ResourceExhaustedError(absl::StrCat("fork: ", std::strerror(err)));
  }
  if (pid == 0) {
    setpgid(0, 0);
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != parent) _exit(127);  // the parent died before prctl took effect
    // Signals the parent ignores or blocks must not leak into the worker.
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    signal(SIGPIPE, SIG_DFL);
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    if (log_fd >= 0) {
      dup2(log_fd, STDOUT_FILENO);
      dup2(log_fd, STDERR_FILENO);
    }
    int devnull = open("/dev/null", O_RDONLY);
    if (devnull >= 0) dup2(devnull, STDIN_FILENO);
    // Listening sockets and files the parent opened without O_CLOEXEC stay with the parent.
    CloseFrom(3, err_pipe[1]);
    execvpe(argv[0], argv.data(), envp.data());
    int err = errno;
    ssize_t ignored = write(err_pipe[1], &err, sizeof(err));
    (void)ignored;
    _exit(127);
  }
  close(err_pipe[1]);
  if (log_fd >= 0) close(log_fd);
  int child_errno = 0;
  ssize_t n;
  do {
    n = read(err_pipe[0], &child_errno, sizeof(child_errno));
  } while (n < 0 && errno == EINTR);
  close(err_pipe[0]);
  if (n == static_cast<ssize_t>(sizeof(child_errno))) {
    int status = 0;
    waitpid(pid, &status, 0);
    return absl::FailedPreconditionError(
        absl::StrCat("cannot run ", spec.argv[0], ": ", std::strerror(child_errno)));
  }
  return ChildProcess(pid);
}

ChildProcess::ChildProcess(ChildProcess&& other) noexcept
    : pid_(std::exchange(other.pid_, -1)), exit_(std::move(other.exit_)) {}

ChildProcess& ChildProcess::operator=(ChildProcess&& other) noexcept {
  pid_ = std::exchange(other.pid_, -1);
  exit_ = std::move(other.exit_);
  return *this;
}

ExitInfo ChildProcess::Poll() {
  if (exit_.exited || pid_ <= 0) return exit_;
  int status = 0;
  pid_t r = waitpid(pid_, &status, WNOHANG);
  if (r == pid_) {
    exit_.exited = true;
    if (WIFEXITED(status)) {
      exit_.code = WEXITSTATUS(status);
      exit_.description = absl::StrCat("exit ", exit_.code);
    } else if (WIFSIGNALED(status)) {
      const int sig = WTERMSIG(status);
      exit_.code = 128 + sig;
      exit_.description = absl::StrCat("killed by signal ", sig, " (", strsignal(sig), ")");
    }
  } else if (r < 0 && errno == ECHILD) {
    exit_.exited = true;  // reaped elsewhere; nothing more to learn
    exit_.code = -1;
    exit_.description = "reaped elsewhere";
  }
  return exit_;
}

absl::Status ChildProcess::Signal(int sig) {
  if (pid_ <= 0 || exit_.exited) return absl::OkStatus();
  if (kill(pid_, sig) != 0 && errno != ESRCH) {
    return absl::InternalError(absl::StrCat("kill(", pid_, ", ", sig, "): ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

}  // namespace flotilla::autoscaler
