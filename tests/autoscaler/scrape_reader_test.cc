// ScrapeReader against real HTTP servers serving Prometheus text pages on free ports.
#include "autoscaler/scrape_reader.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <mutex>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "autoscaler/fleet_file.h"
#include "common/clock.h"
#include "tests/autoscaler/test_http_server.h"

namespace flotilla::autoscaler {
namespace {

using testing::TestHttpServer;

// A /metrics endpoint whose page the test sets.
class Page {
 public:
  Page() {
    server_.server().Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
      std::lock_guard<std::mutex> lock(mu_);
      res.set_content(text_, "text/plain; version=0.0.4");
    });
    port_ = server_.Start();
  }
  void Set(std::string text) {
    std::lock_guard<std::mutex> lock(mu_);
    text_ = std::move(text);
  }
  std::string Url() const { return server_.Url("/metrics"); }
  std::string HostPort() const { return absl::StrCat("127.0.0.1:", port_); }
  TestHttpServer& server() { return server_; }

 private:
  TestHttpServer server_;
  int port_ = 0;
  std::mutex mu_;
  std::string text_;
};

// A worker page as prometheus-cpp writes it; ttft buckets le=0.1,0.5,1,+Inf cumulative.
std::string WorkerPage(const std::string& model, double running, double waiting, double kv,
                       std::array<int, 4> ttft) {
  return absl::StrFormat(
      "# TYPE flotilla_requests_running gauge\nflotilla_requests_running{model=\"%s\"} %g\n"
      "# TYPE flotilla_requests_waiting gauge\nflotilla_requests_waiting{model=\"%s\"} %g\n"
      "# TYPE flotilla_kv_cache_usage_ratio gauge\nflotilla_kv_cache_usage_ratio{model=\"%s\"} %g\n"
      "# TYPE flotilla_time_to_first_token_seconds histogram\n"
      "flotilla_time_to_first_token_seconds_count{model=\"%s\"} %d\n"
      "flotilla_time_to_first_token_seconds_sum{model=\"%s\"} 1\n"
      "flotilla_time_to_first_token_seconds_bucket{model=\"%s\",le=\"0.1\"} %d\n"
      "flotilla_time_to_first_token_seconds_bucket{model=\"%s\",le=\"0.5\"} %d\n"
      "flotilla_time_to_first_token_seconds_bucket{model=\"%s\",le=\"1\"} %d\n"
      "flotilla_time_to_first_token_seconds_bucket{model=\"%s\",le=\"+Inf\"} %d\n",
      model, running, model, waiting, model, kv, model, ttft[3], model, model, ttft[0], model, ttft[1], model,
      ttft[2], model, ttft[3]);
}

class ScrapeReaderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = ::testing::TempDir() + "/scrape_reader_test_" + std::to_string(getpid());
    std::filesystem::create_directories(dir_);
    fleet_file_ = dir_ + "/fleet.txt";
    ASSERT_TRUE(WriteFleetFile(fleet_file_, {{"127.0.0.1:1001", "m", "local", "m-1", w1_.HostPort(), 0},
                                             {"127.0.0.1:1002", "m", "local", "m-2", w2_.HostPort(), 0},
                                             {"127.0.0.1:1003", "other", "local", "o-1", other_.HostPort(), 0}})
                    .ok());
    ScrapeReaderOptions o;
    o.workers = FleetFileTargets(fleet_file_);
    o.activation_urls = {gateway_.Url()};
    o.window_s = 30;
    o.clock = &clock_;
    reader_ = std::make_unique<ScrapeReader>(std::move(o));
    other_.Set(WorkerPage("other", 100, 100, 1, {0, 0, 0, 0}));
    gateway_.Set("# TYPE flotilla_gateway_queue_depth gauge\n");
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  FakeClock clock_;
  Page w1_, w2_, other_, gateway_;
  std::string dir_, fleet_file_;
  std::unique_ptr<ScrapeReader> reader_;
};

TEST_F(ScrapeReaderTest, SumsThePoolsWorkersAndTakesP95FromBucketIncreases) {
  w1_.Set(WorkerPage("m", 3, 1, 0.25, {10, 10, 10, 10}));
  w2_.Set(WorkerPage("m", 5, 4, 0.5, {0, 0, 0, 0}));
  absl::StatusOr<PoolSignals> s = reader_->Read("m");
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->reporting, 2);
  EXPECT_DOUBLE_EQ(s->running, 8);
  EXPECT_DOUBLE_EQ(s->waiting, 5);
  EXPECT_DOUBLE_EQ(s->kv_usage_sum, 0.75);
  EXPECT_FALSE(s->ttft_p95_s.has_value()) << "one scrape: no increase to judge yet";
  EXPECT_TRUE(s->activation_known);
  EXPECT_DOUBLE_EQ(s->activation, 0);
  EXPECT_EQ(s->read_at, clock_.Now());

  // 5 s later: w1 served 10 more first tokens, all slow (0.5..1 s); w2 served 10 fast ones.
  // The 10 old fast ones of w1 are not in the window's increase.
  clock_.AdvanceSec(5);
  w1_.Set(WorkerPage("m", 3, 1, 0.25, {10, 10, 20, 20}));
  w2_.Set(WorkerPage("m", 5, 4, 0.5, {10, 10, 10, 10}));
  s = reader_->Read("m");
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_TRUE(s->ttft_p95_s.has_value());
  // Increase: {0.1:10, 0.5:10, 1:20, +Inf:20}; rank 19 in (0.5,1] holding 10: 0.5 + 0.5*9/10.
  EXPECT_NEAR(*s->ttft_p95_s, 0.95, 1e-9);
}

TEST_F(ScrapeReaderTest, WorkerRestartIsACounterResetNotANegativeIncrease) {
  w1_.Set(WorkerPage("m", 0, 0, 0, {50, 50, 50, 50}));
  w2_.Set(WorkerPage("m", 0, 0, 0, {0, 0, 0, 0}));
  ASSERT_TRUE(reader_->Read("m").ok());
  clock_.AdvanceSec(5);
  w1_.Set(WorkerPage("m", 0, 0, 0, {0, 0, 4, 4}));  // restarted, then 4 slow first tokens
  absl::StatusOr<PoolSignals> s = reader_->Read("m");
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_TRUE(s->ttft_p95_s.has_value());
  EXPECT_GT(*s->ttft_p95_s, 0.5);
}

TEST_F(ScrapeReaderTest, AnUnreachableWorkerIsAnErrorNotAZero) {
  w1_.Set(WorkerPage("m", 1, 0, 0.1, {0, 0, 0, 0}));
  w2_.Set(WorkerPage("m", 1, 0, 0.1, {0, 0, 0, 0}));
  ASSERT_TRUE(reader_->Read("m").ok());
  w2_.server().Stop();
  absl::StatusOr<PoolSignals> s = reader_->Read("m");
  ASSERT_FALSE(s.ok());
  EXPECT_TRUE(absl::IsUnavailable(s.status())) << s.status();
  EXPECT_NE(s.status().message().find(w2_.HostPort()), std::string::npos) << s.status();
}

TEST_F(ScrapeReaderTest, APageWithoutThePoolsSeriesIsAnError) {
  w1_.Set(WorkerPage("m", 1, 0, 0.1, {0, 0, 0, 0}));
  w2_.Set("# nothing here yet\n");
  absl::StatusOr<PoolSignals> s = reader_->Read("m");
  ASSERT_FALSE(s.ok());
  EXPECT_TRUE(absl::IsNotFound(s.status())) << s.status();
  w2_.Set("garbage{ 1\n");
  s = reader_->Read("m");
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("line 1"), std::string::npos) << s.status();
}

TEST_F(ScrapeReaderTest, APoolWithNoWorkersReadsAsZeroReplicasWithActivation) {
  absl::StatusOr<PoolSignals> s = reader_->Read("sleeping");
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->reporting, 0);
  EXPECT_TRUE(s->activation_known);
  EXPECT_DOUBLE_EQ(s->activation, 0);
  // The gateway now holds 2 requests for the model, and has refused one since the last read
  // (a counter series that did not exist before: it counts from zero).
  // Shedding for other reasons is not counted by the default selector.
  gateway_.Set(
      "# TYPE flotilla_gateway_queue_depth gauge\n"
      "flotilla_gateway_queue_depth{model=\"sleeping\"} 2\n"
      "# TYPE flotilla_gateway_shed_total counter\n"
      "flotilla_gateway_shed_total{model=\"sleeping\",reason=\"no_workers\"} 1\n"
      "flotilla_gateway_shed_total{model=\"sleeping\",reason=\"overloaded\"} 5\n");
  clock_.AdvanceSec(5);
  s = reader_->Read("sleeping");
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_DOUBLE_EQ(s->activation, 3);
  // Without a reachable gateway the reader says it does not know.
  gateway_.server().Stop();
  s = reader_->Read("sleeping");
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_FALSE(s->activation_known);
}

TEST_F(ScrapeReaderTest, NoFleetFileYetMeansNoWorkers) {
  ScrapeReaderOptions o;
  o.workers = FleetFileTargets(dir_ + "/not-written-yet.txt");
  o.clock = &clock_;
  ScrapeReader reader(std::move(o));
  absl::StatusOr<PoolSignals> s = reader.Read("m");
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->reporting, 0);
  EXPECT_FALSE(s->activation_known);
}

}  // namespace
}  // namespace flotilla::autoscaler
