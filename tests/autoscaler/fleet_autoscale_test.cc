// The autoscaler end to end on one machine, with nothing faked: real flotilla-worker processes
// (LocalFleet), a real Prometheus scraping them through the fleet's file_sd list, the PromQL
// reader, the policy and the control loop. Load from clients that pick workers from the fleet
// file makes the pool grow from 1 to 3; when the load drops it shrinks back to 1 after the
// stabilisation window, draining first, while requests keep flowing and none fails.
#include <gtest/gtest.h>
#include <signal.h>

#include <algorithm>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "autoscaler/child_process.h"
#include "autoscaler/controller.h"
#include "autoscaler/local_fleet.h"
#include "autoscaler/promql_reader.h"
#include "tests/autoscaler/test_util.h"
#include "tests/autoscaler/worker_client.h"

namespace flotilla::autoscaler {
namespace {

using testing::FleetLoad;
using testing::FreePort;
using testing::PollUntil;
using testing::TempDir;

constexpr char kPrometheus[] = "/usr/bin/prometheus";

TEST(FleetAutoscaleTest, GrowsUnderLoadAndShrinksWithoutFailingRequests) {
  const std::string model = testing::TestModelPath();
  const std::string binary = testing::TestWorkerBinary();
  if (model.empty()) GTEST_SKIP() << "stories260K-q8_0.gguf not found";
  if (binary.empty()) GTEST_SKIP() << "flotilla-worker not built in this build folder";
  if (access(kPrometheus, X_OK) != 0) GTEST_SKIP() << "Debian's prometheus is not installed";
  TempDir dir("fleet_autoscale_test");

  // The fleet, publishing its workers for Prometheus.
  LocalFleetOptions fo;
  fo.work_dir = dir.File("fleet");
  fo.prometheus_sd_file = dir.File("workers.json");
  fo.worker_binary = binary;
  fo.drain_grace_s = 1;
  LocalPoolSpec pool;
  pool.model_name = "stories";
  pool.model_path = model;
  pool.extra_args = {"--threads", "1"};
  absl::StatusOr<std::unique_ptr<LocalFleet>> fleet = LocalFleet::Create(fo, {pool});
  ASSERT_TRUE(fleet.ok()) << fleet.status();
  ASSERT_TRUE((*fleet)->SetReplicas("stories", 1).ok());
  ASSERT_TRUE((*fleet)->WaitForSteady("stories", 1, 60));

  // Prometheus, scraping every second whatever the fleet lists.
  const int prom_port = FreePort();
  std::ofstream(dir.File("prometheus.yml")) << absl::StrFormat(
      "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
      "scrape_configs:\n  - job_name: flotilla-worker\n    file_sd_configs:\n"
      "      - files: ['%s']\n        refresh_interval: 1s\n",
      fo.prometheus_sd_file);
  absl::StatusOr<ChildProcess> prom = ChildProcess::Start(
      {{kPrometheus, "--config.file=" + dir.File("prometheus.yml"), "--storage.tsdb.path=" + dir.File("tsdb"),
        absl::StrCat("--web.listen-address=127.0.0.1:", prom_port), "--log.level=warn"},
       {},
       dir.File("prometheus.log")});
  ASSERT_TRUE(prom.ok()) << prom.status();
  struct Reaper {
    ChildProcess& p;
    ~Reaper() {
      (void)p.Signal(SIGTERM);
      if (!PollUntil([&] { return p.Poll().exited; }, 10)) (void)p.Signal(SIGKILL);
      PollUntil([&] { return p.Poll().exited; }, 5);
    }
  } reaper{*prom};

  PromqlReaderOptions ro;
  ro.url = absl::StrCat("http://127.0.0.1:", prom_port);
  ro.extra_selector = "job=\"flotilla-worker\"";
  ro.window_s = 10;
  ro.clock = SystemClock::Get();
  PromqlReader reader(ro);
  ASSERT_TRUE(PollUntil([&] {
    absl::StatusOr<QueryValue> up = reader.Query("sum(up{job=\"flotilla-worker\"})");
    return up.ok() && up->value.value_or(0) == 1;
  }, 60, 250)) << "Prometheus never scraped the worker; see " << dir.File("prometheus.log");

  // The policy: two requests in flight per replica, quick windows so the test is short.
  PolicyConfig pc;
  pc.pool = "stories";
  pc.min_replicas = 1;
  pc.max_replicas = 3;
  pc.target_waiting_per_replica = 0;
  pc.target_kv_usage = 0;
  pc.target_inflight_per_replica = 2;
  pc.startup_time_s = 10;
  pc.scale_down.stabilization_window_s = 12;
  pc.scale_down.cooldown_s = 0;
  pc.max_metric_age_s = 30;
  ASSERT_TRUE(pc.Validate().ok());
  Controller controller({pc}, &reader, fleet->get(), SystemClock::Get(), nullptr);

  std::vector<Decision> decisions;
  auto tick_until = [&](const std::function<bool()>& done, double timeout_s) {
    return PollUntil([&] {
      for (Decision& d : controller.Tick()) decisions.push_back(std::move(d));
      return done();
    }, timeout_s, 500);
  };
  auto replicas = [&] { return (*fleet)->GetReplicas("stories")->desired; };
  auto ready = [&] { return (*fleet)->GetReplicas("stories")->ready; };

  // Six clients back to back: about six requests in flight => 3 replicas.
  FleetLoad load((*fleet)->fleet_file(), 120);
  load.SetThreads(6);
  ASSERT_TRUE(tick_until([&] { return replicas() == 3; }, 60)) << "never scaled up";
  ASSERT_TRUE(tick_until([&] { return ready() == 3; }, 60));
  // Prometheus picks the new workers up; decisions are steady at 3 while the load lasts.
  ASSERT_TRUE(tick_until([&] { return !decisions.empty() && decisions.back().metrics_ok &&
                                      decisions.back().inputs.reporting == 3; }, 60));
  for (int i = 0; i < 6; ++i) tick_until([] { return false; }, 0.5);
  EXPECT_EQ(replicas(), 3);

  // The load drops to one client: after the 12 s window the pool drains back to one replica
  // while that client keeps sending.
  load.SetThreads(1);
  const int ok_before = load.ok();
  ASSERT_TRUE(tick_until([&] { return replicas() == 1; }, 60)) << "never scaled down";
  ASSERT_TRUE((*fleet)->WaitForSteady("stories", 1, 60));
  ASSERT_TRUE(PollUntil([&] { return load.ok() > ok_before + 20; }, 30));
  load.SetThreads(0);
  EXPECT_EQ(load.failed(), 0) << (load.failures().empty() ? "" : load.failures()[0]);

  // Sizes went up to 3, then only down (in one step or, when the window still held a
  // recommendation of 2, in two): never back up, i.e. no flapping.
  std::vector<int> sizes = {1};
  for (const Decision& d : decisions) {
    if (d.target != sizes.back()) sizes.push_back(d.target);
  }
  int turns = 0;
  for (size_t i = 2; i < sizes.size(); ++i) {
    turns += (sizes[i] > sizes[i - 1]) != (sizes[i - 1] > sizes[i - 2]);
  }
  EXPECT_EQ(turns, 1) << "sizes went " << absl::StrJoin(sizes, " -> ");
  EXPECT_EQ(*std::max_element(sizes.begin(), sizes.end()), 3);
  EXPECT_EQ(sizes.back(), 1);
  int holds = 0;
  for (const Decision& d : decisions) holds += d.action == Action::kHold;
  // Holding while Prometheus had not yet seen the new workers is expected and logged.
  std::string log;
  for (const Decision& d : decisions) absl::StrAppend(&log, d.ToLogLine(), "\n");
  RecordProperty("decisions", static_cast<int>(decisions.size()));
  RecordProperty("holds", holds);
  if (HasFailure()) ADD_FAILURE() << "decisions:\n" << log;
  (*fleet)->Shutdown();
}

}  // namespace
}  // namespace flotilla::autoscaler
