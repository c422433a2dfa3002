// Histogram buckets: extraction, increases across counter resets, and quantiles that agree
// with PromQL's histogram_quantile().
#include "autoscaler/histogram.h"

#include <gtest/gtest.h>

#include <limits>

namespace flotilla::autoscaler {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

TEST(AutoscalerHistogramTest, ExtractsAndSumsBucketsPerLe) {
  const char* text =
      "ttft_bucket{model=\"a\",w=\"1\",le=\"0.1\"} 1\n"
      "ttft_bucket{model=\"a\",w=\"1\",le=\"1\"} 3\n"
      "ttft_bucket{model=\"a\",w=\"1\",le=\"+Inf\"} 4\n"
      "ttft_bucket{model=\"a\",w=\"2\",le=\"0.1\"} 2\n"
      "ttft_bucket{model=\"a\",w=\"2\",le=\"1\"} 2\n"
      "ttft_bucket{model=\"a\",w=\"2\",le=\"+Inf\"} 2\n"
      "ttft_bucket{model=\"b\",le=\"+Inf\"} 100\n"
      "ttft_sum{model=\"a\"} 3\n";
  absl::StatusOr<MetricsText> m = ParseMetricsText(text);
  ASSERT_TRUE(m.ok()) << m.status();
  Buckets b = ExtractBuckets(*m, "ttft", {{"model", "a"}});
  ASSERT_EQ(b.size(), 3u);
  EXPECT_DOUBLE_EQ(b[0].le, 0.1);
  EXPECT_DOUBLE_EQ(b[0].count, 3);
  EXPECT_DOUBLE_EQ(b[1].count, 5);
  EXPECT_EQ(b[2].le, kInf);
  EXPECT_DOUBLE_EQ(b[2].count, 6);
  EXPECT_TRUE(ExtractBuckets(*m, "ttft", {{"model", "c"}}).empty());
}

TEST(AutoscalerHistogramTest, QuantileMatchesPromql) {
  // Reference values computed by hand with Prometheus's bucketQuantile rules.
  Buckets b = {{0.1, 10}, {0.5, 60}, {1, 90}, {kInf, 100}};
  // rank 0.5*100 = 50 falls in (0.1, 0.5] holding 50: 0.1 + 0.4 * (40/50).
  EXPECT_NEAR(*HistogramQuantile(0.5, b), 0.42, 1e-12);
  // rank 95 is in the +Inf bucket: the highest finite bound.
  EXPECT_DOUBLE_EQ(*HistogramQuantile(0.95, b), 1.0);
  // rank 90 is exactly the top of (0.5, 1].
  EXPECT_DOUBLE_EQ(*HistogramQuantile(0.9, b), 1.0);
  // First bucket interpolates from 0.
  EXPECT_NEAR(*HistogramQuantile(0.05, b), 0.05, 1e-12);
  EXPECT_FALSE(HistogramQuantile(0.95, {{0.1, 0}, {kInf, 0}}).has_value()) << "no observations";
  EXPECT_FALSE(HistogramQuantile(0.95, {{0.1, 3}, {1, 5}}).has_value()) << "no +Inf bucket";
  // Non-monotonic input (counts from racing reads) is made monotonic first.
  Buckets bumpy = {{0.1, 10}, {0.5, 8}, {1, 20}, {kInf, 20}};
  // As {0.1:10, 0.5:10, 1:20}: rank 10 is reached at the top of the first bucket.
  EXPECT_NEAR(*HistogramQuantile(0.5, bumpy), 0.1, 1e-12);
}

TEST(AutoscalerHistogramTest, IncreaseHandlesCounterResets) {
  Buckets before = {{0.1, 10}, {1, 20}, {kInf, 25}};
  Buckets after = {{0.1, 12}, {1, 30}, {kInf, 40}};
  Buckets inc = BucketIncrease(before, after);
  ASSERT_EQ(inc.size(), 3u);
  EXPECT_DOUBLE_EQ(inc[0].count, 2);
  EXPECT_DOUBLE_EQ(inc[1].count, 10);
  EXPECT_DOUBLE_EQ(inc[2].count, 15);
  // The worker restarted: its counters start again from zero.
  Buckets restarted = {{0.1, 1}, {1, 2}, {kInf, 2}};
  inc = BucketIncrease(after, restarted);
  EXPECT_DOUBLE_EQ(inc[0].count, 1);
  EXPECT_DOUBLE_EQ(inc[2].count, 2);
  // A target seen for the first time counts from zero.
  inc = BucketIncrease({}, after);
  EXPECT_DOUBLE_EQ(inc[2].count, 40);
}

TEST(AutoscalerHistogramTest, AddBucketsMergesByLe) {
  Buckets a = {{0.1, 1}, {kInf, 2}};
  AddBuckets(a, {{0.1, 3}, {0.5, 4}, {kInf, 5}});
  ASSERT_EQ(a.size(), 3u);
  EXPECT_DOUBLE_EQ(a[0].count, 4);
  EXPECT_DOUBLE_EQ(a[1].count, 4);
  EXPECT_DOUBLE_EQ(a[2].count, 7);
}

}  // namespace
}  // namespace flotilla::autoscaler
