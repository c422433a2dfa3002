// Where the policy's inputs come from. Two readers implement this: ScrapeReader (each
// component's /metrics, directly) and PromqlReader (a Prometheus server's query API).
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "autoscaler/signals.h"

namespace flotilla::autoscaler {

// Names of the series the readers look for. The defaults are the worker's (docs/metrics);
// the same semantics as vLLM's, so a vLLM fleet is read by setting its names here.
struct MetricNames {
  std::string running = "flotilla_requests_running";         // gauge
  std::string waiting = "flotilla_requests_waiting";         // gauge
  std::string kv_usage = "flotilla_kv_cache_usage_ratio";    // gauge, 0..1
  std::string ttft = "flotilla_time_to_first_token_seconds";  // histogram family
  std::string model_label = "model";
  // Demand in front of a pool, exported by the gateway with the same model label; selectors
  // may add equality matchers. A gauge is read as is (requests the gateway holds waiting for a
  // worker); a counter (TYPE counter, or a name ending in _total) as its increase over the
  // window (requests refused because the model had no worker).
  std::vector<std::string> activation = {"flotilla_gateway_queue_depth",
                                         "flotilla_gateway_shed_total{reason=\"no_workers\"}"};
};

class MetricsReader {
 public:
  virtual ~MetricsReader() = default;
  // The signals of one pool (workers whose model label equals `pool`). An error means "cannot
  // tell" (server down, target missing, malformed page) and makes the policy hold; a pool
  // with no replicas is not an error (reporting = 0). Called from one thread.
  virtual absl::StatusOr<PoolSignals> Read(const std::string& pool) = 0;
};

}  // namespace flotilla::autoscaler
