// The control endpoint of a running `flotilla up`: how `status`, `scale` and `drain` act on the
// local fleet that process owns. HTTP/JSON on 127.0.0.1 (a random port, published in the state
// file with a random bearer token; requests without the token get 401, so another local user
// cannot resize the fleet):
//
//   GET  /v1/fleet   {"autoscaler": bool, "pools": [{"model","desired","ready","starting"}],
//                     "workers": [{"id","model","state","pid","grpc_port","metrics_port",
//                                  "restarts","last_exit"}]}
//   POST /v1/scale   {"model": M, "replicas": N}          -> 200 {"ok": true} | 4xx {"error"}
//   POST /v1/drain   {"worker": ID, "replace": bool}      -> 200 {"ok": true} | 4xx {"error"}
//   GET  /metrics    the autoscaler's metrics (no token: Prometheus scrapes it)
//
// This header has the client side and the shared data; control_server.h the server.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "cli/fleet_state.h"

namespace flotilla::cli {

struct ControlWorker {
  std::string id;
  std::string model;
  std::string state;  // starting, ready, draining, stopping, backoff
  int pid = 0;
  int grpc_port = 0;
  int metrics_port = 0;
  int restarts = 0;
  std::string last_exit;
};

struct ControlPool {
  std::string model;
  int desired = 0;
  int ready = 0;
  int starting = 0;
};

struct ControlSnapshot {
  bool autoscaler = false;
  std::vector<ControlPool> pools;
  std::vector<ControlWorker> workers;
};

std::string ControlSnapshotToJson(const ControlSnapshot& s);
absl::StatusOr<ControlSnapshot> ControlSnapshotFromJson(const std::string& text);

// Client calls; errors carry the server's message.
absl::StatusOr<ControlSnapshot> GetFleet(const FleetState& state);
absl::Status ScaleFleet(const FleetState& state, const std::string& model, int replicas);
absl::Status DrainFleetWorker(const FleetState& state, const std::string& worker, bool replace);

}  // namespace flotilla::cli
