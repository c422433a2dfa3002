// The fleet commands against a real `flotilla up` (gateway + 2 stories260K workers): generate,
// models, bench (gRPC and OpenAI HTTP), status, scale, drain under load, crash restart, Ctrl-C.
// The tests share one fleet when run as one binary (in the order written) and get a fresh one
// each under ctest; each starts from 2 ready workers and leaves 2.
#include <signal.h>

#include <chrono>
#include <thread>

#include "gtest/gtest.h"
#include "tests/cli/cli_runner.h"

namespace flotilla::testing {
namespace {

class FleetCommands : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    up_ = new Subprocess();
    ASSERT_TRUE(up_->Start({BinDir() + "/flotilla", "up", "--workers", "2", "--grpc-port", "0", "--http-port", "0",
                            "--state-dir", dir_->File("state"), "--work-dir", dir_->File("work"), "--ready-file",
                            dir_->File("ready.json"), "--drain-timeout", "10"},
                           dir_->File("up.log")));
    state_ = new nlohmann::json(up_->WaitReady(dir_->File("ready.json"), std::chrono::seconds(120)));
    ASSERT_FALSE(state_->is_null()) << up_->Log();
  }
  static void TearDownTestSuite() {
    if (up_ != nullptr) up_->Stop(SIGINT, std::chrono::seconds(60));
    delete up_;
    delete state_;
    delete dir_;
  }

  static CliResult Cli(std::vector<std::string> args) {
    args.push_back("--state-dir");
    args.push_back(dir_->File("state"));
    return RunCli(*dir_, args);
  }
  static nlohmann::json Status() {
    CliResult r = Cli({"status", "--json"});
    EXPECT_EQ(r.code, 0) << r.err;
    return r.Json();
  }
  // Polls `flotilla status` until pred holds (or the timeout passes).
  template <typename Pred>
  static bool WaitStatus(Pred pred, std::chrono::seconds timeout = std::chrono::seconds(60)) {
    const auto until = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < until) {
      nlohmann::json s = Status();
      if (s.is_object() && pred(s)) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
    return false;
  }
  static int ReadyWorkers(const nlohmann::json& s) {
    int n = 0;
    for (const auto& w : s["workers"]) n += w["state"] == "ready";
    return n;
  }

  static TempDir* dir_;
  static Subprocess* up_;
  static nlohmann::json* state_;
};
TempDir* FleetCommands::dir_ = nullptr;
Subprocess* FleetCommands::up_ = nullptr;
nlohmann::json* FleetCommands::state_ = nullptr;

TEST_F(FleetCommands, GenerateStreamsTextAndReportsUsage) {
  CliResult json = Cli({"generate", "Once upon a time", "-n", "32", "--temperature", "0", "--json"});
  ASSERT_EQ(json.code, 0) << json.err;
  nlohmann::json j = json.Json();
  ASSERT_TRUE(j.is_object()) << json.out;
  EXPECT_TRUE(j["ok"].get<bool>());
  EXPECT_EQ(j["model"], "stories260K-q8_0");
  EXPECT_EQ(j["finish_reason"], "length");
  EXPECT_EQ(j["usage"]["completion_tokens"], 32);
  EXPECT_EQ(j["token_ids"].size(), 32u);
  EXPECT_GT(j["time_to_first_token_s"].get<double>(), 0);
  // The streamed text is the same text (greedy is deterministic).
  CliResult plain = Cli({"generate", "Once upon a time", "-n", "32", "--temperature", "0"});
  ASSERT_EQ(plain.code, 0) << plain.err;
  EXPECT_EQ(plain.out, j["text"].get<std::string>() + "\n");
  EXPECT_NE(plain.err.find("32 completion tokens"), std::string::npos) << plain.err;
  // Bad input is the server's INVALID_ARGUMENT, reported with a non-zero exit.
  CliResult bad = Cli({"generate", "Once", "-n", "5", "--model", "no-such-model"});
  EXPECT_NE(bad.code, 0);
  EXPECT_NE(bad.err.find("error"), std::string::npos);
}

TEST_F(FleetCommands, ModelsListsTheServedModel) {
  CliResult r = Cli({"models", "--json"});
  ASSERT_EQ(r.code, 0) << r.err;
  nlohmann::json j = r.Json();
  ASSERT_EQ(j["models"].size(), 1u) << r.out;
  EXPECT_EQ(j["models"][0]["id"], "stories260K-q8_0");
  EXPECT_EQ(j["models"][0]["context_length"], 512);
  EXPECT_EQ(j["models"][0]["healthy_workers"], 2);
}

void ExpectSaneBench(const nlohmann::json& j, int output_len) {
  ASSERT_TRUE(j.is_object());
  const size_t sent = j["requests"]["sent"];
  EXPECT_GT(sent, 0u);
  EXPECT_EQ(j["requests"]["completed"], sent);
  EXPECT_EQ(j["requests"]["failed"], 0) << j["errors"].dump();
  EXPECT_EQ(j["total_output_tokens"], sent * output_len);
  EXPECT_DOUBLE_EQ(j["output_tokens"]["mean"].get<double>(), output_len);
  EXPECT_GT(j["prompt_tokens"]["mean"].get<double>(), 8);
  EXPECT_GT(j["ttft_ms"]["p50"].get<double>(), 0);
  EXPECT_GE(j["ttft_ms"]["p99"].get<double>(), j["ttft_ms"]["p50"].get<double>());
  EXPECT_GE(j["e2e_ms"]["p50"].get<double>(), j["ttft_ms"]["p50"].get<double>());
  EXPECT_GT(j["itl_ms"]["n"].get<size_t>(), 0u);
  EXPECT_GT(j["request_throughput"].get<double>(), 0);
  EXPECT_GT(j["output_throughput"].get<double>(), j["request_throughput"].get<double>());
}

TEST_F(FleetCommands, BenchOverGrpcReportsSaneNumbers) {
  CliResult r = Cli({"bench", "--duration", "3", "--concurrency", "4", "--prompt-len", "uniform:8:16", "--output-len",
                     "16", "--slo-ttft-ms", "10000", "--json", "--timeout", "30"});
  ASSERT_EQ(r.code, 0) << r.err;
  nlohmann::json j = r.Json();
  ExpectSaneBench(j, 16);
  EXPECT_EQ(j["scenario"], "concurrency");
  EXPECT_DOUBLE_EQ(j["slo_attainment"].get<double>(), 1.0);
}

TEST_F(FleetCommands, BenchOverOpenAiHttpReportsSaneNumbers) {
  CliResult r = Cli({"bench", "--api", "openai", "--scenario", "rate", "--rate", "20", "--duration", "2",
                     "--prompt-len", "16", "--output-len", "8", "--json", "--timeout", "30"});
  ASSERT_EQ(r.code, 0) << r.err;
  nlohmann::json j = r.Json();
  ExpectSaneBench(j, 8);
  EXPECT_EQ(j["api"], "openai");
  EXPECT_DOUBLE_EQ(j["prompt_tokens"]["mean"].get<double>(), 17);  // 16 words + BOS
}

TEST_F(FleetCommands, StatusShowsEveryWorkerWithItsLoad) {
  ASSERT_EQ(Cli({"generate", "Once upon a time", "-n", "4"}).code, 0);  // so the gateway has figures
  ASSERT_TRUE(WaitStatus([](const nlohmann::json& s) { return ReadyWorkers(s) == 2; }));
  nlohmann::json s = Status();
  EXPECT_TRUE(s["gateway"]["ok"].get<bool>()) << s.dump(2);
  EXPECT_GT(s["gateway"]["requests_ok"].get<double>(), 0);
  ASSERT_EQ(s["pools"].size(), 1u);
  EXPECT_EQ(s["pools"][0]["desired"], 2);
  for (const auto& w : s["workers"]) {
    EXPECT_TRUE(w["load_ok"].get<bool>()) << w.dump();
    EXPECT_EQ(w["model"], "stories260K-q8_0");
    EXPECT_EQ(w["zone"], "local");
    EXPECT_GE(w["kv_usage"].get<double>(), 0);
  }
  CliResult text = Cli({"status"});
  EXPECT_NE(text.out.find("WORKER"), std::string::npos);
  EXPECT_NE(text.out.find("stories260K-q8_0-1"), std::string::npos) << text.out;
}

TEST_F(FleetCommands, ScaleUpAndBack) {
  CliResult up = Cli({"scale", "--replicas", "3", "--wait", "60"});
  ASSERT_EQ(up.code, 0) << up.out << up.err;
  EXPECT_EQ(ReadyWorkers(Status()), 3);
  // The gateway follows the fleet file within its poll interval.
  ASSERT_TRUE(WaitStatus([](const nlohmann::json& s) {
    return s["gateway"]["healthy_workers"].value("stories260K-q8_0", 0.0) == 3;
  }, std::chrono::seconds(20)));
  CliResult down = Cli({"scale", "--replicas", "2", "--wait", "60"});
  ASSERT_EQ(down.code, 0) << down.out << down.err;
  EXPECT_EQ(ReadyWorkers(Status()), 2);
  EXPECT_NE(Cli({"scale", "--model", "nope", "--replicas", "1"}).code, 0);
}

TEST_F(FleetCommands, DrainUnderLoadLosesNoRequest) {
  nlohmann::json s = Status();
  ASSERT_EQ(ReadyWorkers(s), 2);
  const std::string victim = s["workers"][1]["id"];
  // Load for the whole drain: every request must finish.
  CliResult bench;
  std::thread load([&] {
    bench = Cli({"bench", "--duration", "4", "--concurrency", "6", "--prompt-len", "uniform:8:32", "--output-len",
                 "64", "--json", "--timeout", "30"});
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(1000));
  CliResult drain = Cli({"drain", victim});
  EXPECT_EQ(drain.code, 0) << drain.err;
  load.join();
  ASSERT_EQ(bench.code, 0) << bench.err;
  nlohmann::json j = bench.Json();
  EXPECT_GT(j["requests"]["completed"].get<size_t>(), 10u);
  EXPECT_EQ(j["requests"]["failed"], 0) << j["errors"].dump();
  ASSERT_TRUE(WaitStatus([&](const nlohmann::json& st) {
    bool gone = true;
    for (const auto& w : st["workers"]) gone = gone && w["id"] != victim;
    return gone && ReadyWorkers(st) == 1 && st["pools"][0]["desired"] == 1;
  })) << Status().dump(2);
  EXPECT_NE(Cli({"drain", "no-such-worker"}).code, 0);
  ASSERT_EQ(Cli({"scale", "--replicas", "2", "--wait", "60"}).code, 0);
}

TEST_F(FleetCommands, CrashedWorkerIsRestarted) {
  nlohmann::json s = Status();
  ASSERT_EQ(ReadyWorkers(s), 2);
  const std::string id = s["workers"][0]["id"];
  const int pid = s["workers"][0]["pid"];
  ASSERT_GT(pid, 0);
  ASSERT_EQ(::kill(pid, SIGKILL), 0);
  ASSERT_TRUE(WaitStatus([&](const nlohmann::json& st) {
    for (const auto& w : st["workers"]) {
      if (w["id"] == id && w["restarts"].get<int>() >= 1 && w["state"] == "ready" && w["pid"] != pid) return true;
    }
    return false;
  })) << Status().dump(2);
  CliResult g = Cli({"generate", "Once upon a time", "-n", "8"});
  EXPECT_EQ(g.code, 0) << g.err;
}

TEST_F(FleetCommands, CtrlCDrainsAndStopsEverything) {
  nlohmann::json s = Status();
  std::vector<int> pids;
  for (const auto& w : s["workers"]) pids.push_back(w["pid"]);
  ASSERT_FALSE(pids.empty());
  const int code = up_->Stop(SIGINT, std::chrono::seconds(60));
  ASSERT_TRUE(WIFEXITED(code)) << up_->Log();
  EXPECT_EQ(WEXITSTATUS(code), 0) << up_->Log();
  for (int pid : pids) EXPECT_NE(::kill(pid, 0), 0) << "worker " << pid << " outlived `flotilla up`";
  EXPECT_NE(up_->Log().find("stopped cleanly"), std::string::npos) << up_->Log();
  // Nothing to find any more.
  CliResult status = Cli({"status"});
  EXPECT_NE(status.code, 0);
  EXPECT_NE(status.err.find("no running `flotilla up`"), std::string::npos) << status.err;
}

}  // namespace
}  // namespace flotilla::testing

namespace flotilla::testing {
namespace {

// `flotilla autoscale` is the autoscaler library's loop with its flags: with the local backend
// it starts the pool's minimum, writes the fleet file, and drains it all on Ctrl-C.
TEST(AutoscaleCommand, RunsTheLoopAndStopsItsWorkersOnSigint) {
  TempDir dir;
  Subprocess as;
  ASSERT_TRUE(as.Start({BinDir() + "/flotilla", "autoscale", "--backend", "local", "--work-dir", dir.File("work"),
                        "--interval", "1", "--worker-binary", BinDir() + "/flotilla-worker", "--pool",
                        "model=tiny,model_path=stories260K-q8_0.gguf,min_replicas=1,max_replicas=2,"
                        "extra_args=--ctx-size 512 --threads 1"},
                       dir.File("autoscale.log")));
  std::string fleet;
  for (int i = 0; i < 300 && fleet.find(" tiny ") == std::string::npos; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    fleet = ReadBytes(dir.File("work/fleet.txt"));
  }
  ASSERT_NE(fleet.find(" tiny "), std::string::npos) << as.Log();
  const int code = as.Stop(SIGINT, std::chrono::seconds(60));
  EXPECT_TRUE(WIFEXITED(code) && WEXITSTATUS(code) == 0) << as.Log();
  EXPECT_EQ(ReadBytes(dir.File("work/fleet.txt")).find(" tiny "), std::string::npos) << "workers left in the fleet file";
}

}  // namespace
}  // namespace flotilla::testing
