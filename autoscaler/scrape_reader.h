// Reads pool signals by scraping every worker's /metrics (and the gateways' for activation)
// directly: no Prometheus needed. p95 TTFT comes from the increase of the TTFT histogram's
// buckets between the oldest scrape inside the window and now, per worker (so a restarted
// worker's reset counters are handled), summed over the pool.
// Not thread-safe: one controller thread calls Read.
#pragma once

#include <deque>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "autoscaler/histogram.h"
#include "autoscaler/metrics_reader.h"
#include "common/clock.h"

namespace flotilla::autoscaler {

struct ScrapeTarget {
  std::string pool;  // model name
  std::string url;   // http://host:port/metrics
};

// The workers to scrape, asked afresh on every Read (fleets change).
using TargetSource = std::function<absl::StatusOr<std::vector<ScrapeTarget>>()>;

// Workers listed in a fleet file (entries with metrics=host:port).
TargetSource FleetFileTargets(std::string path);
// A fixed list.
TargetSource StaticTargets(std::vector<ScrapeTarget> targets);

struct ScrapeReaderOptions {
  MetricNames names;
  TargetSource workers;
  std::vector<std::string> activation_urls;  // gateway /metrics URLs; empty: no activation
  double window_s = 60;                      // TTFT and counter increases are over this
  double timeout_s = 2;
  const Clock* clock = nullptr;
};

class ScrapeReader final : public MetricsReader {
 public:
  explicit ScrapeReader(ScrapeReaderOptions options);
  absl::StatusOr<PoolSignals> Read(const std::string& pool) override;

 private:
  template <typename T>
  struct Snapshot {
    TimeNs at;
    T value;
  };
  // Keeps `value` for `key` and returns the oldest snapshot still inside the window (the one
  // the increase is measured from), or nullptr when this is the first.
  template <typename T>
  const Snapshot<T>* Remember(std::map<std::string, std::deque<Snapshot<T>>>& history,
                              const std::string& key, TimeNs now, T value);

  absl::Status ReadActivation(const std::string& pool, TimeNs now, PoolSignals* out);

  ScrapeReaderOptions options_;
  std::map<std::string, std::deque<Snapshot<Buckets>>> ttft_history_;  // by url|pool
  std::map<std::string, std::deque<Snapshot<double>>> counter_history_;  // by url|pool|metric
  absl::flat_hash_set<std::string> seen_activation_urls_;
};

}  // namespace flotilla::autoscaler
