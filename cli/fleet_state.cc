#include "cli/fleet_state.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"

namespace flotilla::cli {

using Json = nlohmann::json;

std::string DefaultStateDir() {
  if (const char* d = std::getenv("FLOTILLA_STATE_DIR"); d != nullptr && *d != '\0') return d;
  if (const char* d = std::getenv("XDG_RUNTIME_DIR"); d != nullptr && *d != '\0') return absl::StrCat(d, "/flotilla");
  return absl::StrCat("/tmp/flotilla-", getuid());
}

std::string StateFilePath(const std::string& dir) { return (dir.empty() ? DefaultStateDir() : dir) + "/up.json"; }

std::string FleetStateToJson(const FleetState& s) {
  Json j = {{"pid", s.pid},
            {"started_at", s.started_at},
            {"gateway_grpc", s.gateway_grpc},
            {"gateway_http", s.gateway_http},
            {"control_url", s.control_url},
            {"control_token", s.control_token},
            {"prometheus_url", s.prometheus_url},
            {"autoscaler_metrics_url", s.autoscaler_metrics_url},
            {"fleet_file", s.fleet_file},
            {"work_dir", s.work_dir},
            {"models", s.models}};
  return j.dump(2) + "\n";
}

absl::StatusOr<FleetState> FleetStateFromJson(const std::string& text) {
  Json j = Json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return absl::InvalidArgumentError("state file is not a JSON object");
  FleetState s;
  auto str = [&](const char* key, std::string* out) {
    if (j.contains(key) && j[key].is_string()) *out = j[key].get<std::string>();
  };
  if (j.contains("pid") && j["pid"].is_number_integer()) s.pid = j["pid"].get<int>();
  str("started_at", &s.started_at);
  str("gateway_grpc", &s.gateway_grpc);
  str("gateway_http", &s.gateway_http);
  str("control_url", &s.control_url);
  str("control_token", &s.control_token);
  str("prometheus_url", &s.prometheus_url);
  str("autoscaler_metrics_url", &s.autoscaler_metrics_url);
  str("fleet_file", &s.fleet_file);
  str("work_dir", &s.work_dir);
  if (j.contains("models") && j["models"].is_array()) {
    for (const Json& m : j["models"]) {
      if (m.is_string()) s.models.push_back(m.get<std::string>());
    }
  }
  if (s.pid <= 0 || s.control_url.empty()) return absl::InvalidArgumentError("state file lacks pid or control_url");
  return s;
}

absl::Status WriteFleetState(const std::string& path, const FleetState& state) {
  const std::filesystem::path p(path);
  std::error_code ec;
  std::filesystem::create_directories(p.parent_path(), ec);
  if (ec) return absl::InternalError(absl::StrCat("cannot create ", p.parent_path().string(), ": ", ec.message()));
  ::chmod(p.parent_path().c_str(), 0700);
  const std::string tmp = absl::StrCat(path, ".tmp.", getpid());
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return absl::InternalError(absl::StrCat("cannot write ", tmp, ": ", std::strerror(errno)));
  const std::string text = FleetStateToJson(state);
  const bool wrote = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
  ::close(fd);
  if (!wrote || ::rename(tmp.c_str(), path.c_str()) != 0) {
    ::unlink(tmp.c_str());
    return absl::InternalError(absl::StrCat("cannot write ", path, ": ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

absl::StatusOr<FleetState> ReadFleetState(const std::string& path) {
  std::ifstream in(path);
  if (!in) {
    return absl::NotFoundError(absl::StrCat("no running `flotilla up` (", path, " not found); start one with `flotilla up`"));
  }
  std::stringstream ss;
  ss << in.rdbuf();
  absl::StatusOr<FleetState> s = FleetStateFromJson(ss.str());
  if (!s.ok()) return absl::Status(s.status().code(), absl::StrCat(path, ": ", s.status().message()));
  if (::kill(s->pid, 0) != 0 && errno == ESRCH) {
    return absl::FailedPreconditionError(
        absl::StrCat(path, " is stale: `flotilla up` (pid ", s->pid, ") is gone; remove the file or start a new one"));
  }
  return s;
}

}  // namespace flotilla::cli
