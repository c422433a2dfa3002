// Reads pool signals from a Prometheus server through its HTTP query API (/api/v1/query):
// the way to run in Kubernetes, where Prometheus already scrapes every pod. Each figure is one
// instant query; the p95 TTFT is histogram_quantile over rate() of the buckets in the window.
// Not thread-safe: one controller thread calls Read.
#pragma once

#include <optional>
#include <string>

#include "autoscaler/metrics_reader.h"
#include "common/clock.h"

namespace flotilla::autoscaler {

struct PromqlReaderOptions {
  std::string url;  // http://prometheus:9090
  MetricNames names;
  // Extra matchers added to every worker selector, e.g. job="flotilla-worker" or
  // namespace="llm" (without braces).
  std::string extra_selector;
  double window_s = 60;  // rate()/increase() range
  double timeout_s = 3;
  const Clock* clock = nullptr;
};

// The instant value of a query: a number, none for an empty result or NaN.
struct QueryValue {
  std::optional<double> value;
  int series = 0;  // how many series the result had
};

class PromqlReader final : public MetricsReader {
 public:
  explicit PromqlReader(PromqlReaderOptions options);
  absl::StatusOr<PoolSignals> Read(const std::string& pool) override;

  // Runs one instant query and sums the result's series. Public for tests and for the CLI's
  // `status` command.
  absl::StatusOr<QueryValue> Query(const std::string& promql) const;

  // The selector for a pool's worker series: {model="pool",<extra>} (pool value escaped).
  std::string Selector(const std::string& pool) const;

 private:
  PromqlReaderOptions options_;
};

// Parses a /api/v1/query response body (vector or scalar result) into a summed value.
absl::StatusOr<QueryValue> ParsePromqlResponse(int http_status, const std::string& body);

}  // namespace flotilla::autoscaler
