#include "cli/local_process.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "autoscaler/http_client.h"

namespace flotilla::cli {

namespace fs = std::filesystem;

std::string FindSiblingBinary(const std::string& name) {
  auto executable = [](const fs::path& p) { return ::access(p.c_str(), X_OK) == 0 && fs::is_regular_file(p); };
  std::error_code ec;
  fs::path self = fs::read_symlink("/proc/self/exe", ec);
  if (!ec && executable(self.parent_path() / name)) return (self.parent_path() / name).string();
  if (const char* dir = std::getenv("FLOTILLA_BIN_DIR"); dir != nullptr && *dir != '\0') {
    if (executable(fs::path(dir) / name)) return (fs::path(dir) / name).string();
  }
  return name;
}

absl::StatusOr<int> PickFreePort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return absl::InternalError("socket() failed");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  int port = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    port = ntohs(addr.sin_port);
  }
  ::close(fd);
  if (port <= 0) return absl::UnavailableError("no free port on 127.0.0.1");
  return port;
}

namespace {
bool Exited(autoscaler::ChildProcess* p, std::string* how) {
  if (p == nullptr) return false;
  autoscaler::ExitInfo e = p->Poll();
  if (e.exited) *how = e.description;
  return e.exited;
}
}  // namespace

absl::Status WaitForHttpOk(const std::string& url, double timeout_s, autoscaler::ChildProcess* process) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
  autoscaler::HttpRequest req;
  req.url = url;
  autoscaler::HttpOptions o;
  o.timeout_s = 2;
  std::string last = "no answer";
  while (std::chrono::steady_clock::now() < until) {
    std::string how;
    if (Exited(process, &how)) return absl::UnavailableError(absl::StrCat("exited (", how, ") before ", url, " was ready"));
    absl::StatusOr<autoscaler::HttpResponse> res = autoscaler::SendHttp(req, o);
    if (res.ok() && res->status == 200) return absl::OkStatus();
    last = res.ok() ? absl::StrCat("HTTP ", res->status) : std::string(res.status().message());
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return absl::DeadlineExceededError(absl::StrCat(url, " not ready after ", timeout_s, " s (", last, ")"));
}

absl::StatusOr<std::string> WaitForReadyFile(const std::string& path, double timeout_s,
                                             autoscaler::ChildProcess* process) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
  while (std::chrono::steady_clock::now() < until) {
    std::string how;
    if (Exited(process, &how)) return absl::UnavailableError(absl::StrCat("exited (", how, ") before it was ready"));
    std::ifstream in(path);
    if (in) {
      std::stringstream ss;
      ss << in.rdbuf();
      // Writers rename into place, but accept only a complete-looking object either way.
      const std::string text = ss.str();
      if (!text.empty() && text.find('}') != std::string::npos) return text;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return absl::DeadlineExceededError(absl::StrCat("no ready file ", path, " after ", timeout_s, " s"));
}

ManagedProcess::~ManagedProcess() { Stop(5); }

absl::Status ManagedProcess::Start() {
  absl::StatusOr<autoscaler::ChildProcess> c = autoscaler::ChildProcess::Start(spec_);
  if (!c.ok()) return c.status();
  child_.emplace(*std::move(c));
  return absl::OkStatus();
}

bool ManagedProcess::Running() {
  if (!child_.has_value()) return false;
  autoscaler::ExitInfo e = child_->Poll();
  if (!e.exited) return true;
  last_exit_ = e.description;
  child_.reset();
  return false;
}

std::string ManagedProcess::Stop(double timeout_s) {
  if (!Running()) return last_exit_;
  (void)child_->Signal(SIGTERM);
  const auto until = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
  while (Running()) {
    if (std::chrono::steady_clock::now() >= until) {
      (void)child_->Signal(SIGKILL);
      while (Running()) std::this_thread::sleep_for(std::chrono::milliseconds(10));
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return last_exit_;
}

}  // namespace flotilla::cli
