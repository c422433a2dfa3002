// What `flotilla status` shows, gathered from the live components: the worker list (from a
// running `up`'s control endpoint, or from a fleet file), each worker's load (its GetLoad RPC),
// the gateway's figures (its /metrics) and the autoscaler's (the control endpoint's /metrics).
// Unreachable parts are reported in `problems`, never fatal: status is what one runs when
// something is wrong.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "cli/fleet_state.h"

namespace flotilla::cli {

struct WorkerView {
  std::string id;
  std::string model;
  std::string zone;
  std::string address;  // host:port (gRPC)
  std::string state;    // starting, ready, draining, stopping, backoff (from up), or from the load report
  int pid = 0;
  int restarts = 0;
  std::string last_exit;
  bool load_ok = false;  // the load figures below were read
  int running = 0;
  int waiting = 0;
  double kv_usage = 0;   // 0..1
  double tokens_per_second = 0;
  double prefix_cache_hit_rate = 0;
};

struct GatewayView {
  bool ok = false;
  double requests_ok = 0;
  double requests_failed = 0;
  double open_streams = 0;
  double queue_depth = 0;
  double shed = 0;
  double rate_limited = 0;
  double retries = 0;
  double completion_tokens = 0;
  std::map<std::string, double> healthy_workers;  // by model
};

struct PoolView {
  std::string model;
  int desired = 0;
  int ready = 0;
  int starting = 0;
  std::optional<int> autoscaler_desired;  // the autoscaler's last target, when it runs
};

struct FleetView {
  std::string gateway_grpc;
  std::string gateway_http;
  std::string prometheus_url;
  bool autoscaler = false;
  std::vector<PoolView> pools;
  std::vector<WorkerView> workers;
  GatewayView gateway;
  std::vector<std::string> problems;
};

// From a running `flotilla up`.
FleetView GatherFromUp(const FleetState& state);
// From a fleet file (no `up`): workers only, plus the gateway when gateway_http is given.
FleetView GatherFromFleetFile(const std::string& fleet_file, const std::string& gateway_http);

std::string FleetViewToText(const FleetView& view);
std::string FleetViewToJson(const FleetView& view);

}  // namespace flotilla::cli
