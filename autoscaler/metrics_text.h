// A parser for the Prometheus text exposition format (version 0.0.4), the format every
// Flotilla component serves on /metrics, and the lookups the scrape reader needs.
// Pure functions over strings; thread-compatible.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace flotilla::autoscaler {

enum class MetricType { kUntyped, kCounter, kGauge, kHistogram, kSummary };

using LabelPairs = std::vector<std::pair<std::string, std::string>>;

struct Sample {
  std::string name;    // full sample name, e.g. flotilla_time_to_first_token_seconds_bucket
  LabelPairs labels;   // in the order written
  double value = 0;
  std::optional<int64_t> timestamp_ms;

  // The value of label `name`, or nullptr when the sample has no such label.
  const std::string* Label(absl::string_view name) const;
  // True when every pair of `match` is among the sample's labels.
  bool Matches(const LabelPairs& match) const;
};

struct MetricsText {
  std::vector<Sample> samples;
  // Family name (as in `# TYPE family histogram`) to its declared type.
  absl::flat_hash_map<std::string, MetricType> types;

  MetricType TypeOf(absl::string_view family) const;
  // Sum of the values of samples called `name` that match `match`; *found (when given) is the
  // number of such samples, so callers can tell "zero" from "absent".
  double Sum(absl::string_view name, const LabelPairs& match, int* found = nullptr) const;
};

// A series selector as written in configuration: `name` or `name{label="value",...}`
// (equality matchers only).
struct MetricSelector {
  std::string name;
  LabelPairs labels;
};
absl::StatusOr<MetricSelector> ParseMetricSelector(absl::string_view text);

// Parses a whole exposition. A malformed line fails the whole parse, as it fails a
// Prometheus scrape: figures from a half-understood page are not trustworthy.
absl::StatusOr<MetricsText> ParseMetricsText(absl::string_view text);

}  // namespace flotilla::autoscaler
