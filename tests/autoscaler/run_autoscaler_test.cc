// The whole autoscaler as flotilla-autoscaler runs it (RunAutoscaler): the scrape reader on a
// real HTTP /metrics page, the policy, the Kubernetes backend on the fake API server, and the
// autoscaler's own /metrics on a free port. A burst makes it patch the Deployment up; when the
// worker's metrics disappear it holds and says so in its metrics.
#include "autoscaler/run.h"

#include <gtest/gtest.h>

#include <fstream>
#include <mutex>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "autoscaler/http_client.h"
#include "tests/autoscaler/fake_api_server.h"
#include "tests/autoscaler/test_http_server.h"
#include "tests/autoscaler/test_util.h"

namespace flotilla::autoscaler {
namespace {

using testing::FakeApiServer;
using testing::FreePort;
using testing::PollUntil;
using testing::TempDir;
using testing::TestHttpServer;

std::string Page(double waiting, double running, double kv) {
  return absl::StrFormat(
      "flotilla_requests_running{model=\"stories\"} %g\nflotilla_requests_waiting{model=\"stories\"} %g\n"
      "flotilla_kv_cache_usage_ratio{model=\"stories\"} %g\n",
      running, waiting, kv);
}

std::string Get(const std::string& url) {
  HttpRequest req;
  req.url = url;
  absl::StatusOr<HttpResponse> r = SendHttp(req, {});
  return r.ok() ? r->body : "";
}

TEST(RunAutoscalerTest, BurstPatchesTheDeploymentAndMissingMetricsHold) {
  TempDir dir("run_autoscaler_test");
  std::ofstream(dir.File("token")) << "tok-1\n";
  FakeApiServer api;
  ASSERT_GT(api.port(), 0);
  api.Set(1, 1);

  std::mutex mu;
  std::string page = Page(0, 1, 0.3);
  TestHttpServer worker;
  worker.server().Get("/metrics", [&](const httplib::Request&, httplib::Response& res) {
    std::lock_guard<std::mutex> lock(mu);
    res.set_content(page, "text/plain");
  });
  ASSERT_GT(worker.Start(), 0);
  const int metrics_port = FreePort();

  AutoscalerConfig config;
  config.interval_s = 0.2;
  config.metrics_address = absl::StrCat("127.0.0.1:", metrics_port);
  config.reader.kind = "scrape";
  config.reader.targets = {{"stories", worker.Url("/metrics")}};
  config.backend.kind = "kubernetes";
  config.backend.kubernetes.api_server = absl::StrCat("http://127.0.0.1:", api.port());
  config.backend.kubernetes.token_file = dir.File("token");
  config.backend.kubernetes.namespace_name = "llm";
  config.backend.kubernetes.deployments = {{"stories", "flotilla-worker-stories"}};
  PoolEntry pool;
  pool.policy.pool = "stories";
  pool.policy.min_replicas = 1;
  pool.policy.max_replicas = 4;
  pool.deployment = "flotilla-worker-stories";
  config.pools = {pool};

  StopSignal stop;
  absl::Status result;
  std::thread runner([&] { result = RunAutoscaler(config, &stop); });
  const std::string metrics_url = absl::StrCat("http://127.0.0.1:", metrics_port, "/metrics");

  // Quiet: decisions are steady; nothing is patched.
  ASSERT_TRUE(PollUntil([&] {
    return Get(metrics_url).find("flotilla_autoscaler_decisions_total{action=\"steady\",pool=\"stories\"}") !=
           std::string::npos;
  }, 20));
  for (const auto& r : api.TakeSeen()) EXPECT_NE(r.method, "PATCH");

  // A burst: 20 waiting on one replica. The Deployment is patched to max (4) at once.
  {
    std::lock_guard<std::mutex> lock(mu);
    page = Page(20, 8, 0.95);
  }
  ASSERT_TRUE(PollUntil([&] { return api.replicas() == 4; }, 20)) << "replicas " << api.replicas();
  std::string m;
  ASSERT_TRUE(PollUntil([&] {
    m = Get(metrics_url);
    return m.find("flotilla_autoscaler_replicas{kind=\"desired\",pool=\"stories\"} 4") != std::string::npos;
  }, 10)) << m;
  EXPECT_NE(m.find("flotilla_autoscaler_decisions_total{action=\"scale_up\",pool=\"stories\"} 1"), std::string::npos)
      << m;
  EXPECT_NE(m.find("flotilla_autoscaler_signal{pool=\"stories\",signal=\"waiting\"} 20"), std::string::npos) << m;
  EXPECT_NE(m.find("flotilla_autoscaler_scale_operations_total{pool=\"stories\",result=\"ok\"} 1"), std::string::npos)
      << m;

  // The worker's /metrics goes away while its replica is still ready: the autoscaler holds,
  // patches nothing, and its metrics say the metrics are unavailable.
  api.Set(4, 1);
  worker.Stop();
  ASSERT_TRUE(PollUntil([&] {
    m = Get(metrics_url);
    return m.find("flotilla_autoscaler_metrics_available{pool=\"stories\"} 0") != std::string::npos &&
           m.find("flotilla_autoscaler_decisions_total{action=\"hold\",pool=\"stories\"}") != std::string::npos;
  }, 20)) << m;
  api.TakeSeen();
  std::this_thread::sleep_for(std::chrono::milliseconds(600));  // three more ticks of holding
  for (const auto& r : api.TakeSeen()) EXPECT_NE(r.method, "PATCH") << r.body;
  EXPECT_EQ(api.replicas(), 4);

  stop.Stop();
  runner.join();
  EXPECT_TRUE(result.ok()) << result;
}

TEST(RunAutoscalerTest, StartUpErrorsAreReturned) {
  AutoscalerConfig config;
  config.backend.kind = "kubernetes";
  config.backend.kubernetes.api_server = "http://127.0.0.1:1";
  config.backend.kubernetes.namespace_name = "llm";
  config.reader.targets = {{"stories", "http://127.0.0.1:1/metrics"}};
  PoolEntry pool;
  pool.policy.pool = "stories";
  pool.deployment = "d";
  config.pools = {pool};
  config.metrics_address = "256.0.0.1:99999";
  StopSignal stop;
  absl::Status st = RunAutoscaler(config, &stop);
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.message().find("cannot serve metrics"), std::string::npos) << st;
}

}  // namespace
}  // namespace flotilla::autoscaler
