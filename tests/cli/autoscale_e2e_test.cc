// The autoscaler end to end: `flotilla up --prometheus` runs a real Prometheus scraping the
// fleet, and the autoscaler's loop reads it by PromQL. A `flotilla bench` burst makes the fleet
// grow from 1 to 3 workers; after the burst a trickle of requests continues while the fleet
// shrinks back to 1 by draining, and no request of the whole run fails.
//
// Time scales are shortened by flags (scrape and decision every second, a 10 s scale-down
// window) so the test takes about a minute. Workers take one sequence at a time and the gateway
// lets 16 wait at each, so a burst shows up as waiting requests on the workers (the signal the
// policy scales on) rather than being shed.
#include <httplib.h>
#include <signal.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "gtest/gtest.h"
#include "tests/cli/cli_runner.h"

namespace flotilla::testing {
namespace {

struct Sample {
  double t = 0;
  int desired = 0;
  int ready = 0;
};

// GET url (http://host:port/path) -> body, "" on failure.
std::string HttpGet(const std::string& url) {
  const std::string rest = url.substr(url.find("//") + 2);
  const std::string hostport = rest.substr(0, rest.find('/'));
  const std::string path = rest.substr(hostport.size());
  httplib::Client cli("http://" + hostport);
  cli.set_connection_timeout(2, 0);
  auto res = cli.Get(path.c_str());
  return res && res->status == 200 ? res->body : "";
}

double MetricValue(const std::string& text, const std::string& series_prefix) {
  double sum = 0;
  size_t pos = 0;
  while ((pos = text.find(series_prefix, pos)) != std::string::npos) {
    if (pos == 0 || text[pos - 1] == '\n') {
      const size_t eol = text.find('\n', pos);
      const std::string line = text.substr(pos, eol - pos);
      sum += std::stod(line.substr(line.rfind(' ') + 1));
    }
    pos += series_prefix.size();
  }
  return sum;
}

TEST(AutoscaleEndToEnd, BurstGrowsTheFleetToThreeAndItShrinksBackWithoutFailures) {
  TempDir dir;
  Subprocess up;
  ASSERT_TRUE(up.Start({BinDir() + "/flotilla", "up", "--workers", "1", "--grpc-port", "0", "--http-port", "0",
                        "--prometheus", "--prometheus-port", "0", "--scrape-interval", "1", "--autoscale-interval", "1",
                        "--window", "10", "--min-replicas", "1", "--max-replicas", "3",
                        "--worker-arg=--max-num-seqs=1", "--gateway-arg=--queue-depth=16",
                        "--gateway-arg=--queue-size=1000", "--gateway-arg=--queue-timeout-ms=60000",
                        "--policy", "scale_up.period_s=2", "--policy", "startup_time_s=3", "--policy",
                        "scale_down.stabilization_window_s=10", "--policy", "scale_down.period_s=5", "--policy",
                        "scale_down.cooldown_s=5", "--drain-timeout", "30", "--state-dir", dir.File("state"),
                        "--work-dir", dir.File("work"), "--ready-file", dir.File("ready.json")},
                       dir.File("up.log")));
  nlohmann::json state = up.WaitReady(dir.File("ready.json"), std::chrono::seconds(120));
  ASSERT_FALSE(state.is_null()) << up.Log();
  const std::string prometheus = state["prometheus_url"];
  ASSERT_FALSE(prometheus.empty());

  // Prometheus really scrapes the worker (file_sd targets apply on its ~5 s tick).
  bool scraped = false;
  for (int i = 0; i < 100 && !scraped; ++i) {
    const std::string body = HttpGet(prometheus + "/api/v1/query?query=up%7Bjob%3D%22flotilla-worker%22%7D");
    scraped = body.find("\"value\":[") != std::string::npos && body.find("\"1\"]") != std::string::npos;
    if (!scraped) std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  ASSERT_TRUE(scraped) << "Prometheus never scraped the worker";

  auto cli = [&](std::vector<std::string> args) {
    args.push_back("--state-dir");
    args.push_back(dir.File("state"));
    return RunCli(dir, args);
  };

  // 3 req/s throughout, 45 req/s for 12 s from t=2 s; 448-token outputs keep workers busy (256
  // stopped being enough to need a third worker once attention got faster).
  // The long timeout keeps the gateway's deadline check out of the picture: this test is
  // about scaling and draining.
  const auto start = std::chrono::steady_clock::now();
  auto since = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(); };
  std::atomic<bool> bench_done{false};
  double bench_end = 0;
  CliResult bench;
  std::thread load([&] {
    bench = cli({"bench", "--scenario", "burst", "--rate", "3", "--burst-rate", "45", "--burst-start", "2",
                 "--burst-duration", "12", "--duration", "36", "--prompt-len", "uniform:8:32", "--output-len", "448",
                 "--timeout", "600", "--json"});
    bench_end = since();
    bench_done = true;
  });

  std::vector<Sample> samples;
  double grew_at = -1, shrank_at = -1;
  while (since() < 110) {
    CliResult s = cli({"status", "--json"});
    nlohmann::json j = s.Json();
    if (j.is_object() && j["pools"].is_array() && !j["pools"].empty()) {
      Sample x{since(), j["pools"][0]["desired"].get<int>(), j["pools"][0]["ready"].get<int>()};
      samples.push_back(x);
      if (grew_at < 0 && x.ready == 3) grew_at = x.t;
      if (grew_at >= 0 && shrank_at < 0 && x.ready == 1 && x.desired == 1) shrank_at = x.t;
    }
    if (bench_done && shrank_at >= 0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
  load.join();
  std::string timeline;
  for (const Sample& s : samples) timeline += std::to_string(s.t).substr(0, 5) + ":" + std::to_string(s.ready) + " ";
  std::fprintf(stderr, "ready workers over time: %s\ngrew at %.1f s, shrank at %.1f s, bench ended at %.1f s\n",
               timeline.c_str(), grew_at, shrank_at, bench_end);

  EXPECT_GE(grew_at, 0) << "never reached 3 workers\n" << timeline;
  EXPECT_GE(shrank_at, 0) << "never shrank back to 1\n" << timeline;
  EXPECT_LT(shrank_at, bench_end) << "the scale-down should happen while requests still arrive";
  for (const Sample& s : samples) EXPECT_LE(s.ready, 3) << "max_replicas is 3";

  ASSERT_EQ(bench.code, 0) << bench.err;
  nlohmann::json report = bench.Json();
  ASSERT_TRUE(report.is_object()) << bench.out;
  EXPECT_GT(report["requests"]["completed"].get<size_t>(), 300u);
  EXPECT_EQ(report["requests"]["failed"], 0) << report["errors"].dump();

  // The decisions are exported (and were made on readable metrics).
  const std::string metrics = HttpGet(state["autoscaler_metrics_url"]);
  EXPECT_GE(MetricValue(metrics, "flotilla_autoscaler_decisions_total{action=\"scale_up\""), 1) << metrics;
  EXPECT_GE(MetricValue(metrics, "flotilla_autoscaler_decisions_total{action=\"scale_down\""), 1) << metrics;

  const int code = up.Stop(SIGINT, std::chrono::seconds(60));
  EXPECT_TRUE(WIFEXITED(code) && WEXITSTATUS(code) == 0) << up.Log();
}

// Scale to zero and back: a fleet started at zero replicas serves its first request (the gateway
// refuses it with 503 + Retry-After and counts it as demand, the autoscaler activates the pool on
// that, the SDK retries after the hint), and returns to zero once idle.
TEST(AutoscaleEndToEnd, AFleetAtZeroServesItsFirstRequestAndReturnsToZero) {
  TempDir dir;
  Subprocess up;
  ASSERT_TRUE(up.Start({BinDir() + "/flotilla", "up", "--workers", "0", "--autoscale", "--min-replicas", "0",
                        "--max-replicas", "1", "--grpc-port", "0", "--http-port", "0", "--autoscale-interval", "0.5",
                        "--window", "5", "--policy", "scale_to_zero_after_s=4", "--state-dir", dir.File("state"),
                        "--work-dir", dir.File("work"), "--ready-file", dir.File("ready.json")},
                       dir.File("up.log")));
  nlohmann::json state = up.WaitReady(dir.File("ready.json"), std::chrono::seconds(120));
  ASSERT_FALSE(state.is_null()) << up.Log();
  auto cli = [&](std::vector<std::string> args) {
    args.push_back("--state-dir");
    args.push_back(dir.File("state"));
    return RunCli(dir, args);
  };
  auto ready = [&] {
    nlohmann::json j = cli({"status", "--json"}).Json();
    return j.is_object() && j["pools"].is_array() && !j["pools"].empty() ? j["pools"][0]["ready"].get<int>() : -1;
  };
  ASSERT_EQ(ready(), 0);

  CliResult gen = cli({"generate", "--max-tokens", "8", "--timeout", "60", "--json", "Once upon a time"});
  ASSERT_EQ(gen.code, 0) << gen.err << "\n" << up.Log();
  nlohmann::json out = gen.Json();
  ASSERT_TRUE(out.is_object()) << gen.out;
  EXPECT_EQ(out["usage"]["completion_tokens"], 8) << gen.out;
  EXPECT_EQ(ready(), 1);
  const std::string gateway_metrics = HttpGet("http://" + state["gateway_http"].get<std::string>() + "/metrics");
  EXPECT_GE(MetricValue(gateway_metrics, "flotilla_gateway_shed_total{model=\"stories260K-q8_0\",reason=\"no_workers\""), 1)
      << gateway_metrics;

  // Idle: back to zero after scale_to_zero_after_s.
  bool zero = false;
  for (int i = 0; i < 60 && !zero; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    zero = ready() == 0;
  }
  EXPECT_TRUE(zero) << up.Log();
  const std::string metrics = HttpGet(state["autoscaler_metrics_url"]);
  EXPECT_GE(MetricValue(metrics, "flotilla_autoscaler_decisions_total{action=\"activate\""), 1) << metrics;
  EXPECT_GE(MetricValue(metrics, "flotilla_autoscaler_decisions_total{action=\"to_zero\""), 1) << metrics;
  const int code = up.Stop(SIGINT, std::chrono::seconds(60));
  EXPECT_TRUE(WIFEXITED(code) && WEXITSTATUS(code) == 0) << up.Log();
}

}  // namespace
}  // namespace flotilla::testing
