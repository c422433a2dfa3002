// Worker discovery: where the workers are. Three sources, any combination:
//   static  - a fixed list of host:port
//   dns     - a name re-resolved periodically (a Kubernetes headless Service resolves to one A
//             record per ready pod); every address gets the configured port
//   file    - a file re-read when it changes (the local fleet writes it): one worker per line,
//             "host:port [anything...]" (the fleet file of autoscaler/fleet_file.h; # comments),
//             or JSON {"workers": ["host:port", ...]} / [{"address": "host:port"}]
// Each source yields a full list; the fleet diffs it against what it has.
// Thread-safety: Resolve() may block (DNS); call it from one thread at a time.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace flotilla::gateway {

class Discovery {
 public:
  virtual ~Discovery() = default;
  // A name for logs and for the fleet's per-source bookkeeping.
  virtual std::string name() const = 0;
  // The current list of "host:port". An error keeps the previous list in force.
  virtual absl::StatusOr<std::vector<std::string>> Resolve() = 0;
};

std::unique_ptr<Discovery> StaticDiscovery(std::vector<std::string> addresses);
// `target` is "name:port".
std::unique_ptr<Discovery> DnsDiscovery(std::string target);
std::unique_ptr<Discovery> FileDiscovery(std::string path);

// Parses a workers file's text (exposed for tests).
absl::StatusOr<std::vector<std::string>> ParseWorkersFile(absl::string_view text);
// Splits "host:port" / "[v6]:port"; INVALID_ARGUMENT when malformed.
absl::Status ValidateAddress(absl::string_view address);

}  // namespace flotilla::gateway
