// The Prometheus text-format parser on the shapes prometheus-cpp, vLLM and Prometheus write.
#include "autoscaler/metrics_text.h"

#include <gtest/gtest.h>

#include <cmath>

namespace flotilla::autoscaler {
namespace {

constexpr char kWorkerPage[] = R"(# HELP flotilla_requests_running Requests in the running batch
# TYPE flotilla_requests_running gauge
flotilla_requests_running{model="stories260K"} 3
# HELP flotilla_requests_waiting Requests waiting
# TYPE flotilla_requests_waiting gauge
flotilla_requests_waiting{model="stories260K"} 7
# TYPE flotilla_kv_cache_usage_ratio gauge
flotilla_kv_cache_usage_ratio{model="stories260K"} 0.4375
# TYPE flotilla_time_to_first_token_seconds histogram
flotilla_time_to_first_token_seconds_bucket{model="stories260K",le="0.01"} 2
flotilla_time_to_first_token_seconds_bucket{model="stories260K",le="0.1"} 5
flotilla_time_to_first_token_seconds_bucket{model="stories260K",le="+Inf"} 6
flotilla_time_to_first_token_seconds_sum{model="stories260K"} 0.9
flotilla_time_to_first_token_seconds_count{model="stories260K"} 6
# TYPE flotilla_generation_tokens_total counter
flotilla_generation_tokens_total{model="stories260K"} 1.5e+03
)";

TEST(MetricsTextTest, ParsesAWorkerPage) {
  absl::StatusOr<MetricsText> m = ParseMetricsText(kWorkerPage);
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->samples.size(), 9u);
  EXPECT_EQ(m->TypeOf("flotilla_requests_running"), MetricType::kGauge);
  EXPECT_EQ(m->TypeOf("flotilla_time_to_first_token_seconds"), MetricType::kHistogram);
  EXPECT_EQ(m->TypeOf("flotilla_generation_tokens_total"), MetricType::kCounter);
  EXPECT_EQ(m->TypeOf("nope"), MetricType::kUntyped);
  int found = 0;
  EXPECT_DOUBLE_EQ(m->Sum("flotilla_requests_waiting", {{"model", "stories260K"}}, &found), 7);
  EXPECT_EQ(found, 1);
  EXPECT_DOUBLE_EQ(m->Sum("flotilla_kv_cache_usage_ratio", {}), 0.4375);
  EXPECT_DOUBLE_EQ(m->Sum("flotilla_generation_tokens_total", {}), 1500);
  EXPECT_DOUBLE_EQ(m->Sum("flotilla_requests_waiting", {{"model", "other"}}, &found), 0);
  EXPECT_EQ(found, 0) << "absent, not zero";
  const Sample& bucket = m->samples[3];
  EXPECT_EQ(bucket.name, "flotilla_time_to_first_token_seconds_bucket");
  ASSERT_NE(bucket.Label("le"), nullptr);
  EXPECT_EQ(*bucket.Label("le"), "0.01");
  EXPECT_EQ(bucket.Label("zone"), nullptr);
}

TEST(MetricsTextTest, EscapesSpecialValuesTimestampsAndSpacing) {
  const char* text =
      "a{path=\"C:\\\\dir\",msg=\"say \\\"hi\\\"\\nthere\"} 1\n"
      "b NaN\n"
      "c +Inf 1700000000000\n"
      "d{} -Inf\n"
      "  e{x = \"1\" , y=\"2\",} 4.5e-3  \r\n"
      "\n"
      "# a free comment\n"
      "f:recorded_rule 2\n";
  absl::StatusOr<MetricsText> m = ParseMetricsText(text);
  ASSERT_TRUE(m.ok()) << m.status();
  ASSERT_EQ(m->samples.size(), 6u);
  EXPECT_EQ(*m->samples[0].Label("path"), "C:\\dir");
  EXPECT_EQ(*m->samples[0].Label("msg"), "say \"hi\"\nthere");
  EXPECT_TRUE(std::isnan(m->samples[1].value));
  EXPECT_TRUE(std::isinf(m->samples[2].value) && m->samples[2].value > 0);
  ASSERT_TRUE(m->samples[2].timestamp_ms.has_value());
  EXPECT_EQ(*m->samples[2].timestamp_ms, 1700000000000);
  EXPECT_TRUE(std::isinf(m->samples[3].value) && m->samples[3].value < 0);
  EXPECT_TRUE(m->samples[3].labels.empty());
  EXPECT_DOUBLE_EQ(m->samples[4].value, 0.0045);
  EXPECT_EQ(*m->samples[4].Label("y"), "2");
  EXPECT_TRUE(m->samples[4].Matches({{"x", "1"}, {"y", "2"}}));
  EXPECT_FALSE(m->samples[4].Matches({{"x", "2"}}));
  EXPECT_EQ(m->samples[5].name, "f:recorded_rule");
}

TEST(MetricsTextTest, SumsOverSeveralSeries) {
  const char* text =
      "flotilla_requests_running{model=\"a\",worker=\"1\"} 2\n"
      "flotilla_requests_running{model=\"a\",worker=\"2\"} 3\n"
      "flotilla_requests_running{model=\"b\",worker=\"3\"} 10\n";
  absl::StatusOr<MetricsText> m = ParseMetricsText(text);
  ASSERT_TRUE(m.ok()) << m.status();
  int found = 0;
  EXPECT_DOUBLE_EQ(m->Sum("flotilla_requests_running", {{"model", "a"}}, &found), 5);
  EXPECT_EQ(found, 2);
  EXPECT_DOUBLE_EQ(m->Sum("flotilla_requests_running", {}), 15);
}

TEST(MetricsTextTest, RejectsMalformedLines) {
  for (const char* bad : {
           "1abc 3\n",                 // name starts with a digit
           "a{b=1} 3\n",               // unquoted label value
           "a{b=\"1\" 3\n",            // unclosed braces
           "a{b=\"1} 3\n",             // unclosed quote
           "a\n",                      // no value
           "a 1 2 3\n",                // too many fields
           "a x\n",                    // not a number
           "a 1 12.5\n",               // timestamp not an integer
       }) {
    absl::StatusOr<MetricsText> m = ParseMetricsText(bad);
    EXPECT_FALSE(m.ok()) << "accepted: " << bad;
    if (!m.ok()) {
      EXPECT_NE(m.status().message().find("line 1"), std::string::npos);
    }
  }
  absl::StatusOr<MetricsText> m = ParseMetricsText("ok 1\nbad{\n");
  ASSERT_FALSE(m.ok());
  EXPECT_NE(m.status().message().find("line 2"), std::string::npos) << m.status();
}

TEST(MetricsTextTest, ParsesSelectors) {
  absl::StatusOr<MetricSelector> s = ParseMetricSelector("flotilla_gateway_shed_total{reason=\"no_workers\"}");
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->name, "flotilla_gateway_shed_total");
  EXPECT_EQ(s->labels, (LabelPairs{{"reason", "no_workers"}}));
  s = ParseMetricSelector(" plain_name ");
  ASSERT_TRUE(s.ok());
  EXPECT_TRUE(s->labels.empty());
  EXPECT_FALSE(ParseMetricSelector("bad{x=1}").ok());
  EXPECT_FALSE(ParseMetricSelector("a b").ok());
}

TEST(MetricsTextTest, EmptyPageIsEmpty) {
  absl::StatusOr<MetricsText> m = ParseMetricsText("");
  ASSERT_TRUE(m.ok());
  EXPECT_TRUE(m->samples.empty());
}

}  // namespace
}  // namespace flotilla::autoscaler
