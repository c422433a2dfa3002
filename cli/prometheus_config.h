// The Prometheus configuration `flotilla up --prometheus` generates: workers from the file_sd
// JSON the local fleet keeps current, the gateway and the autoscaler as static targets, and
// Prometheus itself. Pure text generation (tested as such; the integration test runs it in a
// real Prometheus).
#pragma once

#include <string>

namespace flotilla::cli {

struct PrometheusTargets {
  std::string workers_sd_file;    // file_sd JSON written by LocalFleet
  std::string gateway;            // host:port serving /metrics ("" to skip)
  std::string autoscaler;         // host:port serving /metrics ("" to skip)
  std::string self;               // Prometheus's own host:port
  double scrape_interval_s = 5;
};

std::string MakePrometheusConfig(const PrometheusTargets& targets);

}  // namespace flotilla::cli
