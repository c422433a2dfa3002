// LocalFleet with real flotilla-worker processes serving stories260K: start, learn ports from
// the ready file, write the fleet file, drain before stop, restart a crashed worker, back off
// a worker that cannot start, shut down cleanly.
#include "autoscaler/local_fleet.h"

#include <gtest/gtest.h>
#include <signal.h>

#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "autoscaler/http_client.h"
#include "tests/autoscaler/test_util.h"
#include "tests/autoscaler/worker_client.h"

namespace flotilla::autoscaler {
namespace {

using testing::FleetLoad;
using testing::PollUntil;
using testing::TempDir;

std::string Slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

class LocalFleetTest : public ::testing::Test {
 protected:
  void SetUp() override {
    model_ = testing::TestModelPath();
    binary_ = testing::TestWorkerBinary();
    if (model_.empty()) GTEST_SKIP() << "stories260K-q8_0.gguf not found (../shared/models)";
    if (binary_.empty()) GTEST_SKIP() << "flotilla-worker not built in this build folder (target flotilla-worker)";
  }

  std::unique_ptr<LocalFleet> MakeFleet(std::vector<LocalPoolSpec> pools, double drain_grace_s = 0.5) {
    LocalFleetOptions o;
    o.work_dir = dir_.path();
    o.prometheus_sd_file = dir_.File("sd.json");
    o.worker_binary = binary_;
    o.drain_grace_s = drain_grace_s;
    o.start_timeout_s = 30;
    o.restart_backoff_s = 0.2;
    o.max_restart_backoff_s = 1;
    absl::StatusOr<std::unique_ptr<LocalFleet>> f = LocalFleet::Create(o, std::move(pools));
    EXPECT_TRUE(f.ok()) << f.status();
    return f.ok() ? std::move(*f) : nullptr;
  }
  LocalPoolSpec Stories() {
    LocalPoolSpec p;
    p.model_name = "stories";
    p.model_path = model_;
    p.extra_args = {"--threads", "1"};
    return p;
  }
  std::vector<FleetEntry> Fleet(const LocalFleet& f) {
    absl::StatusOr<std::vector<FleetEntry>> e = ReadFleetFile(f.fleet_file());
    return e.ok() ? *e : std::vector<FleetEntry>{};
  }

  TempDir dir_{"local_fleet_test"};
  std::string model_, binary_;
};

TEST_F(LocalFleetTest, StartsWorkersAndPublishesThem) {
  auto fleet = MakeFleet({Stories()});
  ASSERT_NE(fleet, nullptr);
  EXPECT_TRUE(Fleet(*fleet).empty()) << "the file exists, empty, before any worker is ready";
  ASSERT_TRUE(fleet->SetReplicas("stories", 2).ok());
  absl::StatusOr<ReplicaState> s = fleet->GetReplicas("stories");
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->desired, 2);
  ASSERT_TRUE(fleet->WaitForSteady("stories", 2, 60)) << "workers never became ready; logs in " << dir_.path();
  s = fleet->GetReplicas("stories");
  EXPECT_EQ(s->ready, 2);
  EXPECT_EQ(s->starting, 0);

  std::vector<FleetEntry> entries = Fleet(*fleet);
  ASSERT_EQ(entries.size(), 2u);
  for (const FleetEntry& e : entries) {
    EXPECT_EQ(e.model, "stories");
    EXPECT_EQ(e.zone, "local");
    EXPECT_GT(e.pid, 0);
    // Both ports are real: the worker serves gRPC and its metrics there.
    EXPECT_TRUE(testing::GenerateOnce(e.address, 8).ok()) << e.address;
    HttpRequest req;
    req.url = absl::StrCat("http://", e.metrics_address, "/metrics");
    absl::StatusOr<HttpResponse> m = SendHttp(req, {});
    ASSERT_TRUE(m.ok()) << m.status();
    EXPECT_NE(m->body.find("flotilla_requests_running{model=\"stories\"}"), std::string::npos);
  }
  nlohmann::json sd = nlohmann::json::parse(Slurp(dir_.File("sd.json")));
  EXPECT_EQ(sd.size(), 2u);
  std::vector<WorkerStatus> workers = fleet->Workers();
  ASSERT_EQ(workers.size(), 2u);
  EXPECT_EQ(workers[0].id, "stories-1");
  EXPECT_EQ(workers[1].id, "stories-2");
  EXPECT_TRUE(absl::IsNotFound(fleet->SetReplicas("nope", 1)));

  fleet->Shutdown();
  EXPECT_TRUE(Fleet(*fleet).empty());
  EXPECT_TRUE(fleet->Workers().empty());
  for (const FleetEntry& e : entries) {
    EXPECT_NE(kill(static_cast<pid_t>(e.pid), 0), 0) << "worker " << e.id << " still running";
  }
}

TEST_F(LocalFleetTest, ScaleDownDrainsWithoutFailingRequests) {
  auto fleet = MakeFleet({Stories()}, /*drain_grace_s=*/1.0);
  ASSERT_NE(fleet, nullptr);
  ASSERT_TRUE(fleet->SetReplicas("stories", 3).ok());
  ASSERT_TRUE(fleet->WaitForSteady("stories", 3, 60));
  // Clients keep sending to whatever the fleet file lists while it shrinks to one.
  FleetLoad load(fleet->fleet_file(), 48);
  load.SetThreads(4);
  ASSERT_TRUE(PollUntil([&] { return load.ok() > 30; }, 30));
  ASSERT_TRUE(fleet->SetReplicas("stories", 1).ok());
  ASSERT_TRUE(fleet->WaitForSteady("stories", 1, 60));
  const int before = load.ok();
  ASSERT_TRUE(PollUntil([&] { return load.ok() > before + 20; }, 30)) << "the remaining worker stopped serving";
  load.SetThreads(0);
  EXPECT_EQ(load.failed(), 0) << (load.failures().empty() ? "" : load.failures()[0]);
  // The newest left; the oldest stays. The leavers were drained, then exited cleanly on SIGTERM.
  std::vector<WorkerStatus> w = fleet->Workers();
  ASSERT_EQ(w.size(), 1u);
  EXPECT_EQ(w[0].id, "stories-1");
  for (const char* id : {"stories-2", "stories-3"}) {
    const std::string log = Slurp(dir_.File(std::string(id) + ".log"));
    EXPECT_NE(log.find("draining"), std::string::npos) << id << " log:\n" << log;
    EXPECT_NE(log.find("stopped"), std::string::npos) << id << " log:\n" << log;
  }
  ASSERT_EQ(Fleet(*fleet).size(), 1u);
}

TEST_F(LocalFleetTest, RestartsACrashedWorker) {
  auto fleet = MakeFleet({Stories()});
  ASSERT_NE(fleet, nullptr);
  ASSERT_TRUE(fleet->SetReplicas("stories", 1).ok());
  ASSERT_TRUE(fleet->WaitForSteady("stories", 1, 60));
  const FleetEntry before = Fleet(*fleet).at(0);
  ASSERT_EQ(kill(static_cast<pid_t>(before.pid), SIGKILL), 0);
  // It is noticed, taken out of the fleet file, restarted under the same id with new ports.
  ASSERT_TRUE(PollUntil([&] {
    std::vector<FleetEntry> now = Fleet(*fleet);
    return now.size() == 1 && now[0].pid != before.pid;
  }, 60));
  std::vector<WorkerStatus> w = fleet->Workers();
  ASSERT_EQ(w.size(), 1u);
  EXPECT_EQ(w[0].id, "stories-1");
  EXPECT_EQ(w[0].restarts, 1);
  EXPECT_NE(w[0].last_exit.find("signal 9"), std::string::npos) << w[0].last_exit;
  EXPECT_TRUE(testing::GenerateOnce(Fleet(*fleet).at(0).address, 8).ok());
}

TEST_F(LocalFleetTest, AWorkerThatCannotStartBacksOffAndCountsAsStarting) {
  LocalPoolSpec broken = Stories();
  broken.model_name = "broken";
  broken.model_path = dir_.File("no-such-model.gguf");
  auto fleet = MakeFleet({Stories(), broken});
  ASSERT_NE(fleet, nullptr);
  ASSERT_TRUE(fleet->SetReplicas("broken", 1).ok());
  ASSERT_TRUE(PollUntil([&] {
    std::vector<WorkerStatus> w = fleet->Workers();
    return w.size() == 1 && w[0].restarts >= 2;
  }, 30));
  absl::StatusOr<ReplicaState> s = fleet->GetReplicas("broken");
  EXPECT_EQ(s->ready, 0);
  EXPECT_EQ(s->starting, 1) << "a restarting worker is capacity on its way, not missing";
  EXPECT_TRUE(Fleet(*fleet).empty());
  EXPECT_NE(fleet->Workers()[0].last_exit.find("exit"), std::string::npos) << fleet->Workers()[0].last_exit;
  ASSERT_TRUE(fleet->SetReplicas("broken", 0).ok());
  ASSERT_TRUE(PollUntil([&] { return fleet->Workers().empty(); }, 30));
}

TEST_F(LocalFleetTest, DrainWorkerWithAndWithoutReplacement) {
  auto fleet = MakeFleet({Stories()});
  ASSERT_NE(fleet, nullptr);
  ASSERT_TRUE(fleet->SetReplicas("stories", 2).ok());
  ASSERT_TRUE(fleet->WaitForSteady("stories", 2, 60));
  ASSERT_TRUE(fleet->DrainWorker("stories-1", /*replace=*/true).ok());
  ASSERT_TRUE(PollUntil([&] {
    std::vector<WorkerStatus> w = fleet->Workers();
    return w.size() == 2 && w[0].id == "stories-2" && w[1].id == "stories-3" &&
           w[1].state == WorkerState::kReady;
  }, 60));
  EXPECT_EQ(fleet->GetReplicas("stories")->desired, 2);
  ASSERT_TRUE(fleet->DrainWorker("stories-2", /*replace=*/false).ok());
  ASSERT_TRUE(fleet->WaitForSteady("stories", 1, 60));
  EXPECT_EQ(fleet->GetReplicas("stories")->desired, 1);
  EXPECT_EQ(fleet->Workers()[0].id, "stories-3");
  EXPECT_TRUE(absl::IsNotFound(fleet->DrainWorker("stories-9", false)));
}

}  // namespace
}  // namespace flotilla::autoscaler
