// `flotilla bench`'s measurements: percentiles, goodput, token timing, SSE parsing, the report.
#include "cli/bench/progress.h"
#include "cli/bench/sender.h"
#include "cli/bench/stats.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace flotilla::cli::bench {
namespace {

TEST(Percentiles, InterpolateLikeNumpy) {
  std::vector<double> v = {1, 2, 3, 4};
  EXPECT_DOUBLE_EQ(Percentile(v, 0.5), 2.5);
  EXPECT_DOUBLE_EQ(Percentile(v, 0.0), 1);
  EXPECT_DOUBLE_EQ(Percentile(v, 1.0), 4);
  EXPECT_DOUBLE_EQ(Percentile(v, 0.9), 3.7);
  const Percentiles p = Summarize({5, 1, 3});
  EXPECT_EQ(p.n, 3u);
  EXPECT_DOUBLE_EQ(p.mean, 3);
  EXPECT_DOUBLE_EQ(p.p50, 3);
  EXPECT_DOUBLE_EQ(p.max, 5);
  EXPECT_EQ(Summarize({}).n, 0u);
}

RequestRecord Done(double start, double ttft, double e2e, int tokens) {
  RequestRecord r;
  r.ok = true;
  r.start_s = start;
  r.ttft_s = ttft;
  r.e2e_s = e2e;
  r.output_tokens = tokens;
  r.prompt_tokens = 10;
  for (int i = 1; i < tokens; ++i) r.itl_s.push_back((e2e - ttft) / (tokens - 1));
  return r;
}

TEST(Report, ThroughputLatencyAndGoodput) {
  std::vector<RequestRecord> rs = {Done(0, 0.010, 0.110, 11), Done(0.5, 0.050, 1.500, 11), Done(1.0, 0.020, 1.000, 11)};
  RequestRecord failed;
  failed.start_s = 1.2;
  failed.e2e_s = 0.1;
  failed.error = "UNAVAILABLE";
  rs.push_back(failed);
  Slo slo;
  slo.ttft_ms = 30;  // the second request misses it
  const BenchReport r = BuildReport(rs, slo);
  EXPECT_EQ(r.sent, 4u);
  EXPECT_EQ(r.completed, 3u);
  EXPECT_EQ(r.failed, 1u);
  EXPECT_EQ(r.errors.at("UNAVAILABLE"), 1u);
  EXPECT_DOUBLE_EQ(r.duration_s, 2.0);  // 0 to 2.0 (the third ends at 1.0 + 1.0)
  EXPECT_DOUBLE_EQ(r.request_throughput, 1.5);
  EXPECT_DOUBLE_EQ(r.output_throughput, 33.0 / 2);
  EXPECT_DOUBLE_EQ(r.goodput, 1.0);  // two of three met the TTFT SLO, over 2 s
  EXPECT_DOUBLE_EQ(r.slo_attainment, 0.5);
  EXPECT_DOUBLE_EQ(r.ttft_ms.p50, 20);
  EXPECT_NEAR(r.tpot_ms.max, (1.5 - 0.05) / 10 * 1e3, 1e-9);
  EXPECT_EQ(r.itl_ms.n, 30u);
  const auto j = nlohmann::json::parse(ReportToJson(r));
  EXPECT_EQ(j["requests"]["completed"], 3);
  EXPECT_EQ(j["errors"]["UNAVAILABLE"], 1);
  EXPECT_DOUBLE_EQ(j["goodput"].get<double>(), 1.0);
  EXPECT_NE(ReportToText(r).find("goodput"), std::string::npos);
}

TEST(Slo, EveryGivenTargetMustHold) {
  const RequestRecord r = Done(0, 0.1, 1.1, 11);  // tpot 100 ms, e2e 1100 ms
  EXPECT_TRUE(MeetsSlo(r, {}));
  EXPECT_TRUE(MeetsSlo(r, {.ttft_ms = 100, .tpot_ms = 100, .e2e_ms = 1100}));
  EXPECT_FALSE(MeetsSlo(r, {.ttft_ms = 99}));
  EXPECT_FALSE(MeetsSlo(r, {.tpot_ms = 99}));
  EXPECT_FALSE(MeetsSlo(r, {.e2e_ms = 1099}));
  RequestRecord failed = r;
  failed.ok = false;
  EXPECT_FALSE(MeetsSlo(failed, {}));
}

TEST(Timing, ChunksSplitTheirGapEvenly) {
  RequestRecord r;
  const SteadyTime t0{};
  SteadyTime last = t0;
  RecordTokens(&r, t0, &last, t0 + std::chrono::milliseconds(40), 2);  // first chunk: 2 tokens
  EXPECT_DOUBLE_EQ(r.ttft_s, 0.040);
  EXPECT_TRUE(r.itl_s.empty()) << "tokens of the first chunk are covered by the TTFT";
  RecordTokens(&r, t0, &last, t0 + std::chrono::milliseconds(70), 3);  // 30 ms for 3 tokens
  ASSERT_EQ(r.itl_s.size(), 3u);
  EXPECT_NEAR(r.itl_s[2], 0.010, 1e-12);
  EXPECT_EQ(r.output_tokens, 5);
  RecordTokens(&r, t0, &last, t0 + std::chrono::milliseconds(90), 0);  // no tokens: nothing
  EXPECT_EQ(r.output_tokens, 5);
}

TEST(Sse, ParsesEventsAcrossArbitrarySplits) {
  const std::string body =
      "data: {\"a\":1}\n\n: comment\n\ndata: {\"b\":2}\r\n\r\ndata: line1\ndata: line2\n\ndata: [DONE]\n\n";
  for (size_t split = 1; split < body.size(); split += 3) {
    SseParser p;
    std::vector<std::string> got;
    for (size_t i = 0; i < body.size(); i += split) {
      for (auto& e : p.Feed(body.data() + i, std::min(split, body.size() - i))) got.push_back(e.data);
    }
    ASSERT_EQ(got, (std::vector<std::string>{"{\"a\":1}", "{\"b\":2}", "line1\nline2", "[DONE]"})) << split;
  }
}

TEST(Progress, RendersTimeAndCounts) {
  const std::string s = ProgressBar::Render(5, 10, 0, 50, 40, 1, 1000, false, 10);
  EXPECT_NE(s.find("[#####.....]"), std::string::npos) << s;
  EXPECT_NE(s.find("50%"), std::string::npos);
  EXPECT_NE(s.find("in flight 10"), std::string::npos);
  EXPECT_NE(s.find("200 tok/s"), std::string::npos);
  const std::string done = ProgressBar::Render(12, 10, 0, 50, 50, 0, 1000, true, 10);
  EXPECT_NE(done.find("[##########] 100%"), std::string::npos) << done;
}

}  // namespace
}  // namespace flotilla::cli::bench
