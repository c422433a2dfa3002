// The fleet (discovery) file: format, round trip, tolerance of unknown keys, atomic writes,
// and the Prometheus file_sd rendering.
#include "autoscaler/fleet_file.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

#include <nlohmann/json.hpp>

namespace flotilla::autoscaler {
namespace {

TEST(FleetFileTest, RoundTrip) {
  std::vector<FleetEntry> in(2);
  in[0] = {"127.0.0.1:40211", "stories260K", "local", "stories260K-1", "127.0.0.1:40212", 81234};
  in[1] = {"10.0.0.7:50051", "llama-3-8b", "eu-west-1a", "", "", 0};
  const std::string text = FormatFleetFile(in);
  EXPECT_EQ(text,
            "# flotilla fleet v1: host:port model zone [key=value ...]\n"
            "127.0.0.1:40211 stories260K local id=stories260K-1 metrics=127.0.0.1:40212 pid=81234\n"
            "10.0.0.7:50051 llama-3-8b eu-west-1a\n");
  absl::StatusOr<std::vector<FleetEntry>> out = ParseFleetFile(text);
  ASSERT_TRUE(out.ok()) << out.status();
  ASSERT_EQ(out->size(), 2u);
  EXPECT_EQ((*out)[0].address, "127.0.0.1:40211");
  EXPECT_EQ((*out)[0].model, "stories260K");
  EXPECT_EQ((*out)[0].id, "stories260K-1");
  EXPECT_EQ((*out)[0].metrics_address, "127.0.0.1:40212");
  EXPECT_EQ((*out)[0].pid, 81234);
  EXPECT_EQ((*out)[1].zone, "eu-west-1a");
  EXPECT_TRUE((*out)[1].metrics_address.empty());
}

TEST(FleetFileTest, IgnoresCommentsBlanksAndUnknownKeys) {
  absl::StatusOr<std::vector<FleetEntry>> out = ParseFleetFile(
      "# header\n\n   \n  127.0.0.1:1 m z weight=3 id=a future=thing  \n# trailing\n");
  ASSERT_TRUE(out.ok()) << out.status();
  ASSERT_EQ(out->size(), 1u);
  EXPECT_EQ((*out)[0].id, "a");
}

TEST(FleetFileTest, RejectsMalformedLines) {
  for (const char* bad : {"127.0.0.1:1 m\n", "localhost m z\n", "h:99999 m z\n", "h:1 m z metrics=nope\n",
                          "h:1 m z pid=x\n"}) {
    EXPECT_FALSE(ParseFleetFile(bad).ok()) << bad;
  }
}

TEST(FleetFileTest, WritesAtomicallyAndRefusesUnwritableEntries) {
  const std::string dir = ::testing::TempDir() + "/fleet_file_test_" + std::to_string(getpid());
  std::filesystem::create_directories(dir);
  const std::string path = dir + "/fleet.txt";
  ASSERT_TRUE(WriteFleetFile(path, {{"127.0.0.1:5", "m", "local", "m-1", "127.0.0.1:6", 1}}).ok());
  absl::StatusOr<std::vector<FleetEntry>> back = ReadFleetFile(path);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->size(), 1u);
  EXPECT_FALSE(WriteFleetFile(path, {{"127.0.0.1:5", "bad model", "local"}}).ok());
  // The failed write left the previous file whole, and no temporary files behind.
  back = ReadFleetFile(path);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->size(), 1u);
  int files = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    (void)e;
    ++files;
  }
  EXPECT_EQ(files, 1);
  EXPECT_TRUE(absl::IsNotFound(ReadFleetFile(dir + "/absent").status()));
  std::filesystem::remove_all(dir);
}

TEST(FleetFileTest, PrometheusSdListsMetricsEndpointsWithoutAModelLabel) {
  const std::string sd = FormatPrometheusSd({{"127.0.0.1:5", "m", "local", "m-1", "127.0.0.1:6", 1},
                                             {"127.0.0.1:7", "m", "local", "m-2", "", 2}});
  nlohmann::json j = nlohmann::json::parse(sd);
  ASSERT_TRUE(j.is_array());
  ASSERT_EQ(j.size(), 1u) << "entries without a metrics address are not scrapeable";
  EXPECT_EQ(j[0]["targets"][0], "127.0.0.1:6");
  EXPECT_EQ(j[0]["labels"]["flotilla_pool"], "m");
  EXPECT_EQ(j[0]["labels"]["flotilla_worker_id"], "m-1");
  EXPECT_FALSE(j[0]["labels"].contains("model")) << "would clash with the worker's own model label";
}

}  // namespace
}  // namespace flotilla::autoscaler
