// The CLI's files and formats: the `up` state file, the control snapshot, the generated
// Prometheus configuration (checked by Python's YAML parser), tables.
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>

#include "cli/control_api.h"
#include "cli/fleet_state.h"
#include "cli/prometheus_config.h"
#include "cli/table.h"
#include "gtest/gtest.h"
#include "tests/common/temp_dir.h"

namespace flotilla::cli {
namespace {

using testing::TempDir;

FleetState Sample() {
  FleetState s;
  s.pid = getpid();
  s.gateway_grpc = "127.0.0.1:50051";
  s.gateway_http = "127.0.0.1:8080";
  s.control_url = "http://127.0.0.1:4000";
  s.control_token = "secret";
  s.fleet_file = "/tmp/x/fleet.txt";
  s.models = {"stories260K"};
  return s;
}

TEST(FleetState, RoundTripsAndIsPrivate) {
  TempDir dir;
  const std::string path = StateFilePath(dir.path() + "/state");
  ASSERT_TRUE(WriteFleetState(path, Sample()).ok());
  struct stat st;
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600) << "the file holds the control token";
  auto back = ReadFleetState(path);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->gateway_grpc, "127.0.0.1:50051");
  EXPECT_EQ(back->control_token, "secret");
  EXPECT_EQ(back->models, std::vector<std::string>{"stories260K"});
}

TEST(FleetState, MissingAndStaleFilesAreReportedAsSuch) {
  TempDir dir;
  EXPECT_EQ(ReadFleetState(dir.File("nope.json")).status().code(), absl::StatusCode::kNotFound);
  FleetState dead = Sample();
  dead.pid = 0x7ffffff0;  // no such process
  ASSERT_TRUE(WriteFleetState(dir.File("up.json"), dead).ok());
  EXPECT_EQ(ReadFleetState(dir.File("up.json")).status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_FALSE(FleetStateFromJson("{}").ok());
  EXPECT_FALSE(FleetStateFromJson("not json").ok());
}

TEST(FleetState, DefaultDirFollowsTheEnvironment) {
  setenv("FLOTILLA_STATE_DIR", "/tmp/somewhere", 1);
  EXPECT_EQ(DefaultStateDir(), "/tmp/somewhere");
  EXPECT_EQ(StateFilePath(""), "/tmp/somewhere/up.json");
  unsetenv("FLOTILLA_STATE_DIR");
  EXPECT_FALSE(DefaultStateDir().empty());
}

TEST(ControlSnapshot, RoundTrips) {
  ControlSnapshot s;
  s.autoscaler = true;
  s.pools.push_back({"m", 3, 2, 1});
  s.workers.push_back({"m-1", "m", "ready", 42, 5000, 5001, 1, "exit 0"});
  auto back = ControlSnapshotFromJson(ControlSnapshotToJson(s));
  ASSERT_TRUE(back.ok());
  EXPECT_TRUE(back->autoscaler);
  ASSERT_EQ(back->pools.size(), 1u);
  EXPECT_EQ(back->pools[0].desired, 3);
  EXPECT_EQ(back->pools[0].starting, 1);
  ASSERT_EQ(back->workers.size(), 1u);
  EXPECT_EQ(back->workers[0].id, "m-1");
  EXPECT_EQ(back->workers[0].grpc_port, 5000);
  EXPECT_EQ(back->workers[0].restarts, 1);
  EXPECT_EQ(back->workers[0].last_exit, "exit 0");
}

TEST(PrometheusConfig, IsValidYamlWithEveryJob) {
  TempDir dir;
  PrometheusTargets t;
  t.workers_sd_file = dir.File("workers sd.json");  // a space, to check quoting
  t.gateway = "127.0.0.1:8080";
  t.autoscaler = "127.0.0.1:4000";
  t.self = "127.0.0.1:9090";
  t.scrape_interval_s = 0.5;
  const std::string yaml = MakePrometheusConfig(t);
  EXPECT_NE(yaml.find("scrape_interval: 500ms"), std::string::npos) << yaml;
  testing::WriteBytes(dir.File("p.yml"), yaml);
  // Debian's python3 has PyYAML; the check is structural, Prometheus itself runs the real one
  // in the fleet integration test.
  const std::string check = "/usr/bin/python3 -c \"import yaml,sys; c=yaml.safe_load(open(sys.argv[1])); "
                            "jobs={j['job_name']:j for j in c['scrape_configs']}; "
                            "assert set(jobs)=={'flotilla-worker','flotilla-gateway','flotilla-autoscaler','prometheus'}; "
                            "assert jobs['flotilla-worker']['file_sd_configs'][0]['files'][0].endswith('workers sd.json'); "
                            "assert jobs['flotilla-gateway']['static_configs'][0]['targets']==['127.0.0.1:8080']\" " +
                            dir.File("p.yml");
  EXPECT_EQ(std::system(check.c_str()), 0) << yaml;
}

TEST(Table, PadsColumns) {
  Table t({"A", "LONGER"});
  t.AddRow({"xyz", "1"});
  t.AddRow({"q"});
  EXPECT_EQ(t.Render(), "A    LONGER\nxyz  1\nq\n");
}

}  // namespace
}  // namespace flotilla::cli
