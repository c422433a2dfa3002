// The fleet (discovery) file: how a local fleet tells gateways, the scrape reader and
// Prometheus which workers are serving. Written by LocalFleet on every change, read by anyone.
//
// Format (UTF-8 text, one ready worker per line; blank lines and lines starting with '#' are
// comments):
//
//     host:port model zone [key=value ...]
//
//   host:port  the worker's gRPC address (flotilla.worker.v1.Worker)
//   model      the model name clients ask for (the worker's --model-name); no whitespace
//   zone       locality label for routing; "local" on one machine
//   key=value  optional extras; readers ignore keys they do not know. Written today:
//              id=<worker id>  metrics=<host:port of its /metrics>  pid=<process id>
//
// Example:
//     # flotilla fleet v1
//     127.0.0.1:40211 stories260K local id=stories260K-1 metrics=127.0.0.1:40212 pid=81234
//
// Only workers that are ready (their ready file written, i.e. health SERVING) are listed; a
// worker is removed before it is drained. The file is replaced atomically (write to a
// temporary file in the same folder, then rename), so a reader never sees half a file:
// watch it by polling its modification time or with inotify on the folder (rename = IN_MOVED_TO).
//
// For Prometheus the same fleet is also written as a file_sd JSON list (FormatPrometheusSd),
// with target labels flotilla_pool, flotilla_worker_id and flotilla_zone. Not `model`: the
// worker's own `model` label would clash and be renamed exported_model.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace flotilla::autoscaler {

struct FleetEntry {
  std::string address;  // host:port (gRPC)
  std::string model;
  std::string zone = "local";
  std::string id;               // optional
  std::string metrics_address;  // optional host:port of /metrics
  int64_t pid = 0;              // optional, 0 = unknown
};

std::string FormatFleetFile(const std::vector<FleetEntry>& entries);
absl::StatusOr<std::vector<FleetEntry>> ParseFleetFile(absl::string_view text);

absl::StatusOr<std::vector<FleetEntry>> ReadFleetFile(const std::string& path);
absl::Status WriteFleetFile(const std::string& path, const std::vector<FleetEntry>& entries);

// Prometheus file_sd_configs JSON for the entries that have a metrics address.
std::string FormatPrometheusSd(const std::vector<FleetEntry>& entries);

// Writes `contents` to `path` through a temporary file and rename(2).
absl::Status WriteFileAtomically(const std::string& path, absl::string_view contents);

}  // namespace flotilla::autoscaler
