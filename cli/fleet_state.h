// How the other commands find a running `flotilla up`: it writes a small JSON state file with
// its endpoints, and removes it when it stops.
//
//   <state dir>/up.json   (mode 0600: it holds the control token)
//   {"pid": 1234, "started_at": "...", "gateway_grpc": "127.0.0.1:50051",
//    "gateway_http": "127.0.0.1:8080", "control_url": "http://127.0.0.1:40411",
//    "control_token": "<hex>", "prometheus_url": "http://127.0.0.1:9090" (or ""),
//    "fleet_file": "/tmp/.../fleet.txt", "work_dir": "/tmp/...", "models": ["stories260K"]}
//
// The state dir is --state-dir, else $FLOTILLA_STATE_DIR, else $XDG_RUNTIME_DIR/flotilla,
// else /tmp/flotilla-<uid>. A file whose pid is no longer alive is stale (the `up` was
// killed with SIGKILL) and is reported as such instead of being trusted.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace flotilla::cli {

struct FleetState {
  int pid = 0;
  std::string started_at;
  std::string gateway_grpc;     // host:port of flotilla.v1.Inference
  std::string gateway_http;     // host:port of the OpenAI-compatible API, /metrics, /ready
  std::string control_url;      // http://host:port of up's control endpoint
  std::string control_token;    // bearer token the control endpoint requires
  std::string prometheus_url;   // empty without --prometheus
  std::string autoscaler_metrics_url;  // the control endpoint's /metrics (autoscaler figures)
  std::string fleet_file;
  std::string work_dir;
  std::vector<std::string> models;
};

std::string DefaultStateDir();
// `dir` empty: DefaultStateDir().
std::string StateFilePath(const std::string& dir);

std::string FleetStateToJson(const FleetState& state);
absl::StatusOr<FleetState> FleetStateFromJson(const std::string& text);

// Writes atomically with mode 0600, creating the directory (0700) if needed.
absl::Status WriteFleetState(const std::string& path, const FleetState& state);
// NOT_FOUND when there is no file (no `up` running), FAILED_PRECONDITION when it is stale.
absl::StatusOr<FleetState> ReadFleetState(const std::string& path);

}  // namespace flotilla::cli
