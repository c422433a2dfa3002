// Cumulative histogram buckets as Prometheus exposes them (`<family>_bucket{le="..."}`), and
// the quantile estimate PromQL's histogram_quantile() makes from them, so that a p95 read by
// scraping /metrics directly equals the one a PromQL rule would compute. Pure functions.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "autoscaler/metrics_text.h"

namespace flotilla::autoscaler {

struct Bucket {
  double le = 0;     // upper bound; +Inf for the last bucket
  double count = 0;  // cumulative: observations <= le
};

// Sorted by le ascending.
using Buckets = std::vector<Bucket>;

// The `family`_bucket series matching `match`, summed per le (several series of one family
// with the same le, e.g. two label sets, add up). Empty when there are none.
Buckets ExtractBuckets(const MetricsText& metrics, const std::string& family,
                       const LabelPairs& match);

// Per-bucket increase from `before` to `after`. A bucket that went down means the process
// restarted (its counters reset), so its whole current value is the increase, as PromQL's
// rate() treats a counter reset. Buckets only in `after` count from zero.
Buckets BucketIncrease(const Buckets& before, const Buckets& after);

// Adds `b` into `a` per le (for summing increases over replicas).
void AddBuckets(Buckets& a, const Buckets& b);

// The q-quantile (0..1) by linear interpolation inside the bucket that holds it, exactly as
// histogram_quantile() does: a quantile in the +Inf bucket is the highest finite bound. None
// when the histogram holds no observations or lacks its +Inf bucket.
std::optional<double> HistogramQuantile(double q, const Buckets& buckets);

}  // namespace flotilla::autoscaler
