// Configuration: the JSON format, its validation, and flags layered over a file.
#include "autoscaler/config.h"

#include <gtest/gtest.h>

#include <CLI/CLI.hpp>
#include <fstream>

#include "autoscaler/flags.h"
#include "tests/autoscaler/test_util.h"

namespace flotilla::autoscaler {
namespace {

constexpr char kFull[] = R"({
  // comments are allowed
  "interval_s": 2,
  "metrics_address": "127.0.0.1:9400",
  "reader": {"kind": "promql", "prometheus_url": "http://prom:9090", "extra_selector": "job=\"w\"",
             "window_s": 30, "metric_names": {"running": "vllm:num_requests_running", "model_label": "model_name"}},
  "backend": {"kind": "kubernetes", "api_server": "https://10.0.0.1:443", "namespace": "llm",
              "token_file": "/t", "ca_file": "/c"},
  "pools": [{"model": "stories", "min_replicas": 0, "max_replicas": 6, "target_waiting_per_replica": 3,
             "target_kv_usage": 0.7, "ttft_p95_slo_s": 0.5, "deployment": "worker-stories",
             "scale_down": {"stabilization_window_s": 120, "cooldown_s": 10},
             "scale_up": {"max_pods": 2}, "startup_time_s": 20, "scale_to_zero_after_s": 600}]
})";

TEST(AutoscalerConfigTest, ParsesEveryPart) {
  absl::StatusOr<AutoscalerConfig> c = ParseConfigJson(kFull);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->interval_s, 2);
  EXPECT_EQ(c->metrics_address, "127.0.0.1:9400");
  EXPECT_EQ(c->reader.kind, "promql");
  EXPECT_EQ(c->reader.window_s, 30);
  EXPECT_EQ(c->reader.names.running, "vllm:num_requests_running");
  EXPECT_EQ(c->reader.names.waiting, "flotilla_requests_waiting") << "unset names keep defaults";
  EXPECT_EQ(c->reader.names.model_label, "model_name");
  EXPECT_EQ(c->backend.kind, "kubernetes");
  EXPECT_EQ(c->backend.kubernetes.namespace_name, "llm");
  EXPECT_EQ(c->backend.kubernetes.deployments.at("stories"), "worker-stories");
  ASSERT_EQ(c->pools.size(), 1u);
  const PolicyConfig& p = c->pools[0].policy;
  EXPECT_EQ(p.pool, "stories");
  EXPECT_EQ(p.min_replicas, 0);
  EXPECT_EQ(p.max_replicas, 6);
  EXPECT_EQ(p.ttft_p95_slo_s, 0.5);
  EXPECT_EQ(p.scale_down.stabilization_window_s, 120);
  EXPECT_EQ(p.scale_down.cooldown_s, 10);
  EXPECT_EQ(p.scale_down.period_s, 60) << "unset rule fields keep defaults";
  EXPECT_EQ(p.scale_up.max_pods, 2);
  EXPECT_EQ(p.startup_time_s, 20);
}

TEST(AutoscalerConfigTest, RejectsTyposTypesAndImpossibleSettings) {
  struct Case {
    const char* json;
    const char* message;
  } cases[] = {
      {R"({"pools":[{"model":"m","model_path":"x","max_replica":3}]})", "unknown key(s) max_replica"},
      {R"({"intervl_s":1,"pools":[{"model":"m","model_path":"x"}]})", "unknown key(s) intervl_s"},
      {R"({"pools":[{"model":"m","model_path":"x","min_replicas":"1"}]})", "want an integer"},
      {R"({"pools":[{"model":"m","model_path":"x","min_replicas":5,"max_replicas":2}]})", "min_replicas"},
      {R"({"pools":[{"model":"m"}]})", "needs model_path"},
      {R"({"pools":[]})", "no pools"},
      {R"({"pools":[{"model":"m","model_path":"x"},{"model":"m","model_path":"y"}]})", "configured twice"},
      {R"({"backend":{"kind":"kubernetes"},"reader":{"kind":"promql"},"pools":[{"model":"m"}]})",
       "needs deployment"},
      {R"({"backend":{"kind":"kubernetes"},"pools":[{"model":"m","deployment":"d"}]})",
       "needs reader.targets or reader.fleet_file"},
      {R"({"reader":{"kind":"graphite"},"pools":[{"model":"m","model_path":"x"}]})", "reader.kind"},
      {R"({"pools":[{"model":"m","model_path":"x","min_replicas":0}]})", "activation source"},
      {R"({"pools":[{"model":"m","model_path":"x","scale_down":{"windw":3}}]})", "unknown key(s) windw"},
      {"not json", "not valid JSON"},
  };
  for (const Case& c : cases) {
    absl::StatusOr<AutoscalerConfig> r = ParseConfigJson(c.json);
    ASSERT_FALSE(r.ok()) << c.json;
    EXPECT_NE(r.status().message().find(c.message), std::string::npos) << r.status() << " for " << c.json;
  }
}

TEST(AutoscalerConfigTest, FlagsOverrideTheFileKeyByKey) {
  testing::TempDir dir("config_test");
  std::ofstream(dir.File("a.json")) << R"({"interval_s": 9,
    "reader": {"kind": "scrape", "activation_urls": ["http://gw:8080/metrics"]},
    "pools": [{"model": "stories", "model_path": "/m/stories.gguf", "max_replicas": 2,
               "scale_down": {"stabilization_window_s": 100}}]})";
  CLI::App app;
  AutoscalerFlags flags;
  AddAutoscalerFlags(app, &flags);
  const char* argv[] = {"flotilla-autoscaler", "--config", nullptr, "--interval", "0.5",
                        "--pool", "model=stories,max_replicas=5,scale_down.cooldown_s=7,extra_args=--threads 1",
                        "--pool", "model=7b,model_path=/m/7b.gguf,min_replicas=1",
                        "--scrape-target", "stories=http://127.0.0.1:9/metrics"};
  const std::string cfg = dir.File("a.json");
  argv[2] = cfg.c_str();
  app.parse(static_cast<int>(std::size(argv)), const_cast<char**>(argv));
  absl::StatusOr<AutoscalerConfig> c = ConfigFromFlags(flags);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->interval_s, 0.5);
  ASSERT_EQ(c->pools.size(), 2u);
  const PoolEntry& s = c->pools[0];
  EXPECT_EQ(s.policy.pool, "stories");
  EXPECT_EQ(s.policy.max_replicas, 5);
  EXPECT_EQ(s.policy.scale_down.stabilization_window_s, 100) << "kept from the file";
  EXPECT_EQ(s.policy.scale_down.cooldown_s, 7);
  EXPECT_EQ(s.local.model_path, "/m/stories.gguf");
  EXPECT_EQ(s.local.extra_args, (std::vector<std::string>{"--threads", "1"}));
  EXPECT_EQ(c->pools[1].policy.pool, "7b") << "a model name that looks like a number stays a string";
  ASSERT_EQ(c->reader.targets.size(), 1u);
  EXPECT_EQ(c->reader.targets[0].pool, "stories");
  EXPECT_EQ(c->reader.targets[0].url, "http://127.0.0.1:9/metrics");
  EXPECT_EQ(c->reader.activation_urls.size(), 1u);
}

TEST(AutoscalerConfigTest, BadPoolFlag) {
  AutoscalerFlags flags;
  flags.pools = {"max_replicas=3"};
  EXPECT_FALSE(ConfigFromFlags(flags).ok());
  flags.pools = {"model=m,oops"};
  EXPECT_FALSE(ConfigFromFlags(flags).ok());
}

}  // namespace
}  // namespace flotilla::autoscaler
