// PromqlReader against a real Prometheus server (Debian's `prometheus`) started by the test on
// a free port, scraping a small HTTP endpoint the test serves every second.
#include "autoscaler/promql_reader.h"

#include <gtest/gtest.h>
#include <signal.h>

#include <fstream>
#include <mutex>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "autoscaler/child_process.h"
#include "autoscaler/http_client.h"
#include "common/clock.h"
#include "tests/autoscaler/test_http_server.h"
#include "tests/autoscaler/test_util.h"

namespace flotilla::autoscaler {
namespace {

using testing::FreePort;
using testing::PollUntil;
using testing::TempDir;
using testing::TestHttpServer;

constexpr char kPrometheus[] = "/usr/bin/prometheus";

std::string WorkerPage(double running, double waiting, double kv, int fast, int slow) {
  // Two pools on one page, as two workers behind one endpoint would look after relabelling.
  return absl::StrFormat(
      "# TYPE flotilla_requests_running gauge\n"
      "flotilla_requests_running{model=\"m\"} %g\nflotilla_requests_running{model=\"x\"} 99\n"
      "# TYPE flotilla_requests_waiting gauge\n"
      "flotilla_requests_waiting{model=\"m\"} %g\nflotilla_requests_waiting{model=\"x\"} 99\n"
      "# TYPE flotilla_kv_cache_usage_ratio gauge\n"
      "flotilla_kv_cache_usage_ratio{model=\"m\"} %g\nflotilla_kv_cache_usage_ratio{model=\"x\"} 1\n"
      "# TYPE flotilla_time_to_first_token_seconds histogram\n"
      "flotilla_time_to_first_token_seconds_bucket{model=\"m\",le=\"0.1\"} %d\n"
      "flotilla_time_to_first_token_seconds_bucket{model=\"m\",le=\"0.5\"} %d\n"
      "flotilla_time_to_first_token_seconds_bucket{model=\"m\",le=\"+Inf\"} %d\n"
      "flotilla_time_to_first_token_seconds_sum{model=\"m\"} 0\n"
      "flotilla_time_to_first_token_seconds_count{model=\"m\"} %d\n"
      "# TYPE flotilla_gateway_queue_depth gauge\n"
      "flotilla_gateway_queue_depth{model=\"m\"} 2\n",
      running, waiting, kv, fast, fast + slow, fast + slow, fast + slow);
}

class PromqlReaderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (access(kPrometheus, X_OK) != 0) GTEST_SKIP() << "Debian's prometheus is not installed";
    page_text_ = WorkerPage(0, 0, 0, 0, 0);
    target_.server().Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
      std::lock_guard<std::mutex> lock(mu_);
      res.set_content(page_text_, "text/plain; version=0.0.4");
    });
    ASSERT_GT(target_.Start(), 0);
    prom_port_ = FreePort();
    ASSERT_GT(prom_port_, 0);
    const std::string config = dir_.File("prometheus.yml");
    std::ofstream(config) << absl::StrFormat(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        "scrape_configs:\n  - job_name: flotilla\n    static_configs:\n      - targets: ['127.0.0.1:%d']\n",
        target_.port());
    absl::StatusOr<ChildProcess> p = ChildProcess::Start(
        {{kPrometheus, "--config.file=" + config, "--storage.tsdb.path=" + dir_.File("tsdb"),
          absl::StrCat("--web.listen-address=127.0.0.1:", prom_port_), "--log.level=warn"},
         {},
         dir_.File("prometheus.log")});
    ASSERT_TRUE(p.ok()) << p.status();
    prometheus_.emplace(std::move(*p));

    PromqlReaderOptions o;
    o.url = absl::StrCat("http://127.0.0.1:", prom_port_);
    o.extra_selector = "job=\"flotilla\"";
    o.window_s = 10;
    o.clock = &clock_;
    reader_ = std::make_unique<PromqlReader>(std::move(o));
    // Prometheus applies new targets on a ~5 s tick: poll until the first scrape landed.
    ASSERT_TRUE(PollUntil(
        [&] {
          absl::StatusOr<QueryValue> up = reader_->Query("up{job=\"flotilla\"}");
          return up.ok() && up->value.has_value() && *up->value == 1;
        },
        60, 250))
        << "Prometheus never scraped the target; see " << dir_.File("prometheus.log");
  }
  void TearDown() override {
    if (prometheus_) {
      (void)prometheus_->Signal(SIGTERM);
      PollUntil([&] { return prometheus_->Poll().exited; }, 10);
      (void)prometheus_->Signal(SIGKILL);
      PollUntil([&] { return prometheus_->Poll().exited; }, 5);
    }
  }
  void SetPage(std::string text) {
    std::lock_guard<std::mutex> lock(mu_);
    page_text_ = std::move(text);
  }

  TempDir dir_{"promql_reader_test"};
  FakeClock clock_;
  TestHttpServer target_;
  std::mutex mu_;
  std::string page_text_;
  int prom_port_ = 0;
  std::optional<ChildProcess> prometheus_;
  std::unique_ptr<PromqlReader> reader_;
};

TEST_F(PromqlReaderTest, ReadsGaugesP95AndStaleness) {
  SetPage(WorkerPage(3, 5, 0.5, 0, 0));
  absl::StatusOr<PoolSignals> s;
  ASSERT_TRUE(PollUntil(
      [&] {
        s = reader_->Read("m");
        return s.ok() && s->running == 3 && s->waiting == 5;
      },
      20, 250))
      << (s.ok() ? "values never arrived" : s.status().ToString());
  EXPECT_EQ(s->reporting, 1) << "the other pool's series must not count";
  EXPECT_DOUBLE_EQ(s->kv_usage_sum, 0.5);
  EXPECT_LT(s->max_sample_age_s, 5);
  EXPECT_TRUE(s->activation_known);
  EXPECT_DOUBLE_EQ(s->activation, 2) << "the gateway's queue for the model";
  EXPECT_FALSE(s->ttft_p95_s.has_value()) << "no first tokens yet";

  // 20 first tokens: 19 fast, 1 slow. p95 by histogram_quantile over rate(): rank 19 of 20 is
  // the top of the first bucket => 0.1 (rate() scales every bucket alike, so the ratio holds).
  SetPage(WorkerPage(3, 5, 0.5, 19, 1));
  ASSERT_TRUE(PollUntil(
      [&] {
        s = reader_->Read("m");
        return s.ok() && s->ttft_p95_s.has_value();
      },
      20, 250));
  EXPECT_NEAR(*s->ttft_p95_s, 0.1, 0.02);

  // The target stops answering: Prometheus marks its series stale and they vanish. The reader
  // reports zero replicas (which the policy, told by the backend that one is ready, holds on).
  target_.Stop();
  ASSERT_TRUE(PollUntil(
      [&] {
        s = reader_->Read("m");
        return s.ok() && s->reporting == 0;
      },
      20, 250))
      << "series never went stale";
}

TEST_F(PromqlReaderTest, PrometheusDownIsAnError) {
  (void)prometheus_->Signal(SIGKILL);
  ASSERT_TRUE(PollUntil([&] { return prometheus_->Poll().exited; }, 10));
  absl::StatusOr<PoolSignals> s = reader_->Read("m");
  ASSERT_FALSE(s.ok());
  EXPECT_TRUE(absl::IsUnavailable(s.status())) << s.status();
}

TEST_F(PromqlReaderTest, BadQueryIsReportedWithPrometheusError) {
  absl::StatusOr<QueryValue> v = reader_->Query("sum(");
  ASSERT_FALSE(v.ok());
  EXPECT_NE(v.status().message().find("bad_data"), std::string::npos) << v.status();
}

}  // namespace
}  // namespace flotilla::autoscaler
