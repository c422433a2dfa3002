// End-to-end tests of flotilla-gateway with real flotilla-worker processes on stories260K-q8_0:
// HTTP and gRPC basics, auth and key reload, shared Redis rate limits across two gateways, the
// response cache, file discovery and locality, and TLS/mTLS. (Failures, disconnects, affinity and
// overload are in gateway_resilience_test.cc.)
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <grpcpp/grpcpp.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <map>
#include <set>
#include <sstream>
#include <thread>

#include "flotilla/v1/inference.grpc.pb.h"
#include "flotilla/worker/v1/worker.grpc.pb.h"
#include "nlohmann/json.hpp"
#include "tests/gateway/e2e_env.h"
#include "tests/gateway/e2e_helpers.h"

namespace flotilla::gateway::testing {
namespace {

using namespace std::chrono_literals;
using json = nlohmann::json;

// Sends one greedy request and reads the stream to its end: the final status.
grpc::Status GenerateToEnd(flotilla::v1::Inference::Stub* stub, grpc::ClientContext* ctx, const std::string& prompt,
                           const std::string& model = kModel) {
  flotilla::v1::GenerateRequest req;
  req.set_model(model);
  req.set_prompt(prompt);
  auto reader = stub->Generate(ctx, req);
  flotilla::v1::GenerateResponse msg;
  while (reader->Read(&msg)) {
  }
  return reader->Finish();
}

class GatewayE2eTest : public ::testing::Test {
 protected:
  void TearDown() override {
    if (HasFailure()) std::cerr << env_.Logs();
  }
  E2eEnv env_;
};

TEST_F(GatewayE2eTest, HttpAndGrpcBasics) {
  auto w = env_.StartWorker();
  ASSERT_TRUE(w);
  auto g = env_.StartGateway({"--no-auth", "--workers", w->address});
  ASSERT_TRUE(g);
  ASSERT_TRUE(WaitHealthy(*g, 1));
  EXPECT_EQ(HttpGet(g->http(), "/health").status, 200);
  EXPECT_EQ(HttpGet(g->http(), "/ready").status, 200);

  auto r = HttpPost(g->http(), "/v1/completions", Completion("Once upon a time", 20).dump());
  ASSERT_EQ(r.status, 200) << r.body;
  json j = json::parse(r.body);
  const std::string http_text = j["choices"][0]["text"];
  EXPECT_FALSE(http_text.empty());
  EXPECT_EQ(j["usage"]["completion_tokens"], 20);
  EXPECT_EQ(j["usage"]["prompt_tokens"], 5);  // BOS + "Once upon a time" (MODELS.md)
  EXPECT_EQ(j["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(r.Header("x-flotilla-worker"), w->address);

  // The same request over gRPC gives the same greedy text, streamed.
  auto stub = GatewayStub(*g);
  grpc::ClientContext ctx;
  flotilla::v1::GenerateRequest req;
  req.set_model(kModel);
  req.set_prompt("Once upon a time");
  req.set_max_tokens(20);
  req.mutable_sampling()->set_temperature(0);
  auto reader = stub->Generate(&ctx, req);
  flotilla::v1::GenerateResponse msg;
  std::string grpc_text;
  int messages = 0;
  flotilla::v1::Usage usage;
  double ttft = 0;
  while (reader->Read(&msg)) {
    ++messages;
    grpc_text += msg.text();
    if (msg.time_to_first_token_s() > 0) ttft = msg.time_to_first_token_s();
    if (msg.finish_reason() != flotilla::v1::FINISH_REASON_UNSPECIFIED) usage = msg.usage();
  }
  ASSERT_TRUE(reader->Finish().ok());
  EXPECT_EQ(grpc_text, http_text);
  EXPECT_GT(messages, 1);
  EXPECT_GT(ttft, 0);
  EXPECT_EQ(usage.completion_tokens(), 20u);

  // Errors in OpenAI's shape with the right statuses.
  auto unknown = HttpPost(g->http(), "/v1/completions", json{{"model", "nope"}, {"prompt", "x"}}.dump());
  EXPECT_EQ(unknown.status, 404);
  EXPECT_EQ(json::parse(unknown.body)["error"]["code"], "model_not_found");
  auto bad = HttpPost(g->http(), "/v1/completions", R"({"model": "stories260K-q8_0", "prompt": "x", "temperature": "hot"})");
  EXPECT_EQ(bad.status, 400);
  EXPECT_EQ(json::parse(bad.body)["error"]["type"], "invalid_request_error");
  auto too_long = HttpPost(g->http(), "/v1/completions", Completion("Once upon a time", 600).dump());
  EXPECT_EQ(too_long.status, 400) << too_long.body;
  EXPECT_EQ(HttpPost(g->http(), "/v1/nothing", "{}").status, 404);
  EXPECT_EQ(HttpGet(g->http(), "/v1/completions").status, 405);

  auto models = json::parse(HttpGet(g->http(), "/v1/models").body);
  ASSERT_EQ(models["data"].size(), 1u);
  EXPECT_EQ(models["data"][0]["id"], kModel);

  // Metrics count requests by code.
  auto metrics = HttpGet(g->http(), "/metrics").body;
  EXPECT_GE(MetricValue(metrics, "flotilla_gateway_requests_total", {{"code", "OK"}, {"model", kModel}}), 2);
  EXPECT_GE(MetricValue(metrics, "flotilla_gateway_requests_total", {{"code", "NOT_FOUND"}}), 1);
}

TEST_F(GatewayE2eTest, AuthKeysAndReloadWithoutRestart) {
  auto w = env_.StartWorker();
  ASSERT_TRUE(w);
  json acme = {{"name", "acme"}, {"max_tokens_per_request", 32}};
  json other = {{"name", "other"}, {"allowed_models", {"some-other-model"}}};
  std::string keys = env_.WriteKeyFile({acme, other}, {{"key-acme-1", "acme"}, {"key-other", "other"}});
  auto g = env_.StartGateway({"--api-keys", keys, "--workers", w->address});
  ASSERT_TRUE(g);
  ASSERT_TRUE(WaitHealthy(*g, 1));
  const std::string body = Completion("Once upon a time", 8).dump();

  auto none = HttpPost(g->http(), "/v1/completions", body);
  EXPECT_EQ(none.status, 401);
  EXPECT_EQ(json::parse(none.body)["error"]["code"], "invalid_api_key");
  EXPECT_EQ(HttpPost(g->http(), "/v1/completions", body, "wrong").status, 401);
  EXPECT_EQ(HttpPost(g->http(), "/v1/completions", body, "key-acme-1").status, 200);
  // A tenant that may not use the model sees it as absent.
  EXPECT_EQ(HttpPost(g->http(), "/v1/completions", body, "key-other").status, 404);
  EXPECT_EQ(json::parse(HttpGet(g->http(), "/v1/models", "key-other").body)["data"].size(), 0u);
  // Per-tenant max tokens.
  EXPECT_EQ(HttpPost(g->http(), "/v1/completions", Completion("Once", 64).dump(), "key-acme-1").status, 400);

  // gRPC: UNAUTHENTICATED without a key.
  auto stub = GatewayStub(*g);
  {
    grpc::ClientContext ctx;
    flotilla::v1::ListModelsResponse resp;
    EXPECT_EQ(stub->ListModels(&ctx, {}, &resp).error_code(), grpc::StatusCode::UNAUTHENTICATED);
  }
  {
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", "Bearer key-acme-1");
    flotilla::v1::ListModelsResponse resp;
    ASSERT_TRUE(stub->ListModels(&ctx, {}, &resp).ok());
    ASSERT_EQ(resp.models_size(), 1);
    EXPECT_EQ(resp.models(0).healthy_workers(), 1u);
  }

  // Rotate: key-acme-1 revoked, key-acme-2 added, without restarting the gateway.
  env_.WriteKeyFile({acme, other}, {{"key-acme-2", "acme"}});
  EXPECT_TRUE(WaitFor([&] { return HttpPost(g->http(), "/v1/completions", body, "key-acme-2").status == 200; }, 10s));
  EXPECT_EQ(HttpPost(g->http(), "/v1/completions", body, "key-acme-1").status, 401);
  // A broken file keeps the keys in force.
  WriteFileAtomic(keys, "{ not json");
  std::this_thread::sleep_for(2500ms);  // one reload period: nothing to poll for, the point is that nothing changes
  EXPECT_EQ(HttpPost(g->http(), "/v1/completions", body, "key-acme-2").status, 200);
  EXPECT_NE(env_.Logs().find("not reloaded"), std::string::npos);
}

TEST_F(GatewayE2eTest, TwoGatewaysShareOneRedisLimit) {
  const int redis = env_.StartRedis();
  ASSERT_GT(redis, 0);
  auto w = env_.StartWorker();
  ASSERT_TRUE(w);
  // 0.05 requests/s refills one request in 20 s: nothing refills during the test.
  json limited = {{"name", "limited"}, {"requests_per_second", 0.05}, {"request_burst", 5}};
  json tokens = {{"name", "tokens"}, {"tokens_per_minute", 3}, {"token_burst", 40}};
  std::string keys = env_.WriteKeyFile({limited, tokens}, {{"k-limited", "limited"}, {"k-tokens", "tokens"}});
  const std::string redis_flag = "127.0.0.1:" + std::to_string(redis);
  auto g1 = env_.StartGateway({"--api-keys", keys, "--workers", w->address, "--redis", redis_flag});
  auto g2 = env_.StartGateway({"--api-keys", keys, "--workers", w->address, "--redis", redis_flag});
  ASSERT_TRUE(g1 && g2);
  ASSERT_TRUE(WaitHealthy(*g1, 1) && WaitHealthy(*g2, 1));
  const std::string body = Completion("Once upon a time", 4).dump();
  int ok = 0, limited_count = 0;
  std::string retry_after;
  for (int i = 0; i < 10; ++i) {
    auto r = HttpPost((i % 2 ? g1 : g2)->http(), "/v1/completions", body, "k-limited");
    if (r.status == 200) ++ok;
    if (r.status == 429) {
      ++limited_count;
      retry_after = r.Header("Retry-After");
      EXPECT_EQ(json::parse(r.body)["error"]["code"], "rate_limit_exceeded");
    }
  }
  EXPECT_EQ(ok, 5);  // one bucket for both gateways, not one each
  EXPECT_EQ(limited_count, 5);
  ASSERT_FALSE(retry_after.empty());
  EXPECT_GE(std::stoi(retry_after), 1);
  EXPECT_LE(std::stoi(retry_after), 20);

  // gRPC gets RESOURCE_EXHAUSTED with retry info.
  auto stub = GatewayStub(*g1);
  grpc::ClientContext ctx;
  ctx.AddMetadata("authorization", "Bearer k-limited");
  grpc::Status st = GenerateToEnd(stub.get(), &ctx, "Once");
  EXPECT_EQ(st.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_FALSE(st.error_details().empty());  // google.rpc.Status with RetryInfo
  EXPECT_TRUE(ctx.GetServerTrailingMetadata().count("retry-after-ms"));

  // Tokens per minute: prompt tokens at admission, completion tokens reconciled after. The
  // bucket holds 40: a 5-token prompt with 30 completion tokens leaves 5, so a second request
  // (5 prompt tokens) passes on the other gateway and drains it to 0... and a third is refused.
  auto t1 = HttpPost(g1->http(), "/v1/completions", Completion("Once upon a time", 30).dump(), "k-tokens");
  EXPECT_EQ(t1.status, 200) << t1.body;
  auto t2 = HttpPost(g2->http(), "/v1/completions", Completion("Once upon a time", 1).dump(), "k-tokens");
  EXPECT_EQ(t2.status, 200) << t2.body;
  auto t3 = HttpPost(g1->http(), "/v1/completions", Completion("Once upon a time", 1).dump(), "k-tokens");
  EXPECT_EQ(t3.status, 429) << t3.body;
  EXPECT_EQ(json::parse(t3.body)["error"]["type"], "tokens");
  auto metrics = HttpGet(g1->http(), "/metrics").body;
  EXPECT_GE(MetricValue(metrics, "flotilla_gateway_rate_limited_total", {{"tenant", "limited"}}), 1);
  EXPECT_EQ(MetricValue(metrics, "flotilla_gateway_rate_limiter_fallbacks"), 0);
}

TEST_F(GatewayE2eTest, ResponseCacheServesDeterministicRepeats) {
  auto w = env_.StartWorker();
  ASSERT_TRUE(w);
  auto g = env_.StartGateway({"--no-auth", "--workers", w->address, "--response-cache"});
  ASSERT_TRUE(g);
  ASSERT_TRUE(WaitHealthy(*g, 1));
  const std::string body = Completion("Once upon a time", 24).dump();
  auto first = HttpPost(g->http(), "/v1/completions", body);
  auto second = HttpPost(g->http(), "/v1/completions", body);
  ASSERT_EQ(first.status, 200);
  ASSERT_EQ(second.status, 200);
  EXPECT_TRUE(first.Header("x-flotilla-cache").empty());
  EXPECT_EQ(second.Header("x-flotilla-cache"), "hit");
  json a = json::parse(first.body), b = json::parse(second.body);
  EXPECT_EQ(a["choices"][0]["text"], b["choices"][0]["text"]);
  EXPECT_EQ(b["usage"]["completion_tokens"], 24);
  EXPECT_EQ(b["usage"]["prompt_tokens_details"]["cached_tokens"], b["usage"]["prompt_tokens"]);
  // Sampled requests are never cached; a different parameter is a different entry.
  json sampled = Completion("Once upon a time", 24, false);
  HttpPost(g->http(), "/v1/completions", sampled.dump());
  EXPECT_TRUE(HttpPost(g->http(), "/v1/completions", sampled.dump()).Header("x-flotilla-cache").empty());
  EXPECT_TRUE(HttpPost(g->http(), "/v1/completions", Completion("Once upon a time", 23).dump()).Header("x-flotilla-cache").empty());
  auto metrics = HttpGet(g->http(), "/metrics").body;
  EXPECT_EQ(MetricValue(metrics, "flotilla_gateway_response_cache_lookups_total", {{"result", "hit"}}), 1);
}

TEST_F(GatewayE2eTest, FileDiscoveryAddsAndRemovesWorkers) {
  auto w1 = env_.StartWorker({"--zone", "z1"});
  auto w2 = env_.StartWorker({"--zone", "z2"});
  ASSERT_TRUE(w1 && w2);
  const std::string file = env_.dir() + "/fleet.txt";
  // The local fleet's format: host:port model zone key=value...
  WriteFileAtomic(file, "# flotilla fleet v1\n" + w1->address + " " + kModel + " z1 id=w1\n");
  auto g = env_.StartGateway({"--no-auth", "--workers-file", file});
  ASSERT_TRUE(g);
  ASSERT_TRUE(WaitHealthy(*g, 1));
  WriteFileAtomic(file, w1->address + " " + kModel + " z1\n" + w2->address + " " + kModel + " z2\n");
  ASSERT_TRUE(WaitHealthy(*g, 2));
  // Locality: a caller in z2 lands on the z2 worker.
  for (int i = 0; i < 4; ++i) {
    auto r = HttpPost(g->http(), "/v1/completions", Completion("Once", 2).dump(), "", {{"x-flotilla-zone", "z2"}});
    EXPECT_EQ(r.Header("x-flotilla-worker"), w2->address);
  }
  WriteFileAtomic(file, w2->address + " " + kModel + " z2\n");
  ASSERT_TRUE(WaitHealthy(*g, 1));
  auto r = HttpPost(g->http(), "/v1/completions", Completion("Once", 2).dump(), "", {{"x-flotilla-zone", "z1"}});
  EXPECT_EQ(r.Header("x-flotilla-worker"), w2->address);  // z1 is gone: spill over
}

// A model whose workers are all gone (a pool scaled to zero, or a worker being replaced) is not a
// 404: a request for it waits in the gateway for a worker to become ready (served when one does;
// refused with a retryable 503 when none does within --activation-timeout-ms), and the wait is
// visible as queue depth under the model's name, the autoscaler's activation signal. A model
// configured with --serve-model but never seen has no tokenizer here yet: it is refused at once
// with 503 and counted as shed demand. Only a model nobody serves is a 404.
TEST_F(GatewayE2eTest, ModelWithoutReadyWorkersWaitsForOneOrIsRetryable) {
  auto w = env_.StartWorker();
  ASSERT_TRUE(w);
  const std::string file = env_.dir() + "/fleet.txt";
  WriteFileAtomic(file, w->address + " " + kModel + " local\n");
  auto g = env_.StartGateway(
      {"--no-auth", "--workers-file", file, "--serve-model", "sleeping", "--activation-timeout-ms", "1500"});
  ASSERT_TRUE(g);
  ASSERT_TRUE(WaitHealthy(*g, 1));
  const std::string body = Completion("Once upon a time", 4).dump();
  ASSERT_EQ(HttpPost(g->http(), "/v1/completions", body).status, 200);

  WriteFileAtomic(file, "# flotilla fleet v1\n");  // the pool scaled to zero
  ASSERT_TRUE(WaitFor([&] { return HttpGet(g->http(), "/ready").status == 503; }, 20s));  // nothing to route to
  EXPECT_EQ(HttpGet(g->http(), "/health").status, 200);  // but the process is alive

  // No worker comes back in time: a retryable 503 after the activation timeout.
  const auto t0 = std::chrono::steady_clock::now();
  HttpResult gone = HttpPost(g->http(), "/v1/completions", body);
  const double waited_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_EQ(gone.status, 503) << gone.body;
  EXPECT_FALSE(gone.Header("Retry-After").empty());
  EXPECT_NE(gone.body.find("became ready"), std::string::npos) << gone.body;
  EXPECT_GE(waited_s, 1.3);

  // A worker comes back while a request waits: that request is served.
  HttpResult held;
  std::thread waiter([&] { held = HttpPost(g->http(), "/v1/completions", body); });
  EXPECT_TRUE(WaitFor([&] {
    return MetricValue(HttpGet(g->http(), "/metrics").body, "flotilla_gateway_queue_depth", {{"model", kModel}}) == 1;
  }, 5s));
  WriteFileAtomic(file, w->address + " " + kModel + " local\n");
  waiter.join();
  EXPECT_EQ(held.status, 200) << held.body;
  EXPECT_EQ(HttpGet(g->http(), "/ready").status, 200);

  // Configured but never seen: refused at once, over HTTP and gRPC (UNAVAILABLE + retry hint,
  // which the SDK retries).
  auto sleeping = HttpPost(g->http(), "/v1/completions", json{{"model", "sleeping"}, {"prompt", "x"}}.dump());
  EXPECT_EQ(sleeping.status, 503) << sleeping.body;
  EXPECT_FALSE(sleeping.Header("Retry-After").empty());
  EXPECT_EQ(HttpPost(g->http(), "/v1/completions", json{{"model", "nope"}, {"prompt", "x"}}.dump()).status, 404);
  auto stub = GatewayStub(*g);
  grpc::ClientContext ctx;
  grpc::Status st = GenerateToEnd(stub.get(), &ctx, "Once", "sleeping");
  EXPECT_EQ(st.error_code(), grpc::StatusCode::UNAVAILABLE) << st.error_message();
  EXPECT_TRUE(ctx.GetServerTrailingMetadata().count("retry-after-ms"));

  // Both stay listed, and the demand is counted under their names (not "unknown").
  auto models = json::parse(HttpGet(g->http(), "/v1/models").body);
  std::set<std::string> ids;
  for (const auto& m : models["data"]) ids.insert(m["id"].get<std::string>());
  EXPECT_EQ(ids, (std::set<std::string>{kModel, "sleeping"}));
  const std::string metrics = HttpGet(g->http(), "/metrics").body;
  EXPECT_GE(MetricValue(metrics, "flotilla_gateway_shed_total", {{"model", kModel}, {"reason", "no_workers"}}), 1);
  EXPECT_GE(MetricValue(metrics, "flotilla_gateway_shed_total", {{"model", "sleeping"}, {"reason", "no_workers"}}), 2);
  EXPECT_EQ(MetricValue(metrics, "flotilla_gateway_shed_total", {{"model", "nope"}}), 0);
}

// A tenant's max_concurrent caps its open requests on a gateway: one more is refused with 429
// (rate_limit_exceeded naming the open requests, Retry-After) while the first streams, and accepted once it ends.
TEST_F(GatewayE2eTest, TenantConcurrencyLimitRefusesTheExtraRequest) {
  auto w = env_.StartWorker({"--ctx-size", "4096"});
  ASSERT_TRUE(w);
  json solo = {{"name", "solo"}, {"max_concurrent", 1}};
  std::string keys = env_.WriteKeyFile({solo}, {{"k-solo", "solo"}});
  auto g = env_.StartGateway({"--api-keys", keys, "--workers", w->address});
  ASSERT_TRUE(g);
  ASSERT_TRUE(WaitHealthy(*g, 1));
  // 4000 tokens take seconds here: the stream is open while the second request arrives.
  auto stub = GatewayStub(*g);
  grpc::ClientContext ctx;
  ctx.AddMetadata("authorization", "Bearer k-solo");
  auto reader = stub->Generate(&ctx, LongRequest());
  flotilla::v1::GenerateResponse msg;
  ASSERT_TRUE(reader->Read(&msg));
  auto second = HttpPost(g->http(), "/v1/completions", Completion("Once", 2).dump(), "k-solo");
  EXPECT_EQ(second.status, 429) << second.body;
  EXPECT_EQ(json::parse(second.body)["error"]["code"], "rate_limit_exceeded");  // OpenAI's code
  EXPECT_NE(second.body.find("already has 1 requests open"), std::string::npos) << second.body;
  EXPECT_FALSE(second.Header("Retry-After").empty());
  ctx.TryCancel();
  reader->Finish();
  // The slot is back once the gateway has closed the first request.
  EXPECT_TRUE(WaitFor([&] {
    return HttpPost(g->http(), "/v1/completions", Completion("Once", 2).dump(), "k-solo").status == 200;
  }, 10s));
  EXPECT_GE(MetricValue(HttpGet(g->http(), "/metrics").body, "flotilla_gateway_rate_limited_total",
                        {{"tenant", "solo"}, {"limit", "concurrency"}}),
            1);
}

// The gateway started from a JSON config file takes its values from it; a typo in a key stops it
// with a message naming the key instead of being ignored.
TEST_F(GatewayE2eTest, ConfigFileIsAppliedAndUnknownKeysAreErrors) {
  auto w = env_.StartWorker();
  ASSERT_TRUE(w);
  const std::string good = env_.dir() + "/gateway.json";
  WriteFileAtomic(good, json{{"workers", {w->address}},
                             {"auth", {{"no_auth", true}}},
                             {"default_max_tokens", 7},
                             {"models", {"sleeping"}}}
                            .dump());
  auto g = env_.StartGateway({"--config", good});
  ASSERT_TRUE(g);
  ASSERT_TRUE(WaitHealthy(*g, 1));
  auto r = HttpPost(g->http(), "/v1/completions", json{{"model", kModel}, {"prompt", "Once"}, {"temperature", 0}}.dump());
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(json::parse(r.body)["usage"]["completion_tokens"], 7);  // default_max_tokens from the file
  EXPECT_EQ(HttpPost(g->http(), "/v1/completions", json{{"model", "sleeping"}, {"prompt", "x"}}.dump()).status, 503);

  const std::string bad = env_.dir() + "/bad.json";
  WriteFileAtomic(bad, json{{"wokers", {w->address}}}.dump());
  std::string out;
  const int code = RunCommand({BinDir() + "/flotilla-gateway", "--config", bad, "--grpc-port", "0", "--http-port", "0"},
                              &out, 10s);
  EXPECT_GT(code, 0) << out;  // exited with an error (not a timeout, not a signal)
  EXPECT_NE(out.find("wokers"), std::string::npos) << out;
}

TEST_F(GatewayE2eTest, DnsDiscoveryAndChatTemplatesFromWorkers) {
  auto plain = env_.StartWorker({"--model-name", "story-plain"});
  auto chatml = env_.StartWorker({"--model-name", "story-chatml", "--chat-template", "chatml"});
  ASSERT_TRUE(plain && chatml);
  // "localhost" resolves to 127.0.0.1 (and maybe ::1, which nothing listens on: never healthy).
  auto g = env_.StartGateway({"--no-auth", "--workers-dns", "localhost:" + std::to_string(plain->grpc_port),
                              "--workers", chatml->address});
  ASSERT_TRUE(g);
  auto models_up = [&](const GatewayProcess& gw) {
    return WaitFor([&] {
      auto m = json::parse(HttpGet(gw.http(), "/v1/models").body);
      int healthy = 0;
      for (const auto& x : m["data"]) healthy += x["healthy_workers"].get<int>();
      return m["data"].size() == 2 && healthy == 2;
    }, 20s);
  };
  ASSERT_TRUE(models_up(*g));
  auto chat = [&](const GatewayProcess& gw, const std::string& model) {
    json body = {{"model", model}, {"max_tokens", 4}, {"temperature", 0},
                 {"messages", {{{"role", "system"}, {"content", "Be kind."}}, {{"role", "user"}, {"content", "Hello"}}}}};
    auto r = HttpPost(gw.http(), "/v1/chat/completions", body.dump());
    EXPECT_EQ(r.status, 200) << r.body;
    return json::parse(r.body)["usage"]["prompt_tokens"].get<int>();
  };
  const int plain_tokens = chat(*g, "story-plain");
  const int chatml_tokens = chat(*g, "story-chatml");
  // The ChatML markers are not in this vocabulary, so they become text: a longer prompt.
  EXPECT_GT(chatml_tokens, plain_tokens);
  // Configuration beats what the worker says.
  auto g2 = env_.StartGateway({"--no-auth", "--workers", plain->address + "," + chatml->address, "--chat-template",
                               "story-chatml=plain"});
  ASSERT_TRUE(g2);
  ASSERT_TRUE(models_up(*g2));
  EXPECT_EQ(chat(*g2, "story-chatml"), plain_tokens);
}

TEST_F(GatewayE2eTest, JsonLogsCarryNoPromptTextUnlessAsked) {
  auto w = env_.StartWorker();
  ASSERT_TRUE(w);
  auto quiet = env_.StartGateway({"--no-auth", "--workers", w->address, "--log-format", "json"});
  auto loud = env_.StartGateway({"--no-auth", "--workers", w->address, "--log-format", "json", "--log-prompts"});
  ASSERT_TRUE(quiet && loud);
  ASSERT_TRUE(WaitHealthy(*quiet, 1) && WaitHealthy(*loud, 1));
  const std::string secret = "The secret word is platypus";
  for (const auto* g : {quiet.get(), loud.get()}) {
    auto r = HttpPost(g->http(), "/v1/completions", Completion(secret, 4).dump(), "", {{"x-request-id", "id with \"quotes\""}});
    ASSERT_EQ(r.status, 200);
    json chat = {{"model", kModel}, {"max_tokens", 2}, {"messages", {{{"role", "user"}, {"content", secret + " again"}}}}};
    ASSERT_EQ(HttpPost(g->http(), "/v1/chat/completions", chat.dump()).status, 200);
  }
  auto check = [&](const GatewayProcess& g, bool want_prompt) {
    std::string log = ReadFileOr(g.log);
    std::istringstream in(log);
    std::string line;
    int requests = 0;
    while (std::getline(in, line)) {
      json j = json::parse(line, nullptr, false);
      ASSERT_FALSE(j.is_discarded()) << "not JSON: " << line;
      const std::string msg = j["msg"];
      if (msg.rfind("request ", 0) == 0) ++requests;
    }
    EXPECT_EQ(requests, 2);
    EXPECT_EQ(log.find("platypus") != std::string::npos, want_prompt) << log;
  };
  check(*quiet, false);
  check(*loud, true);
}

// Certificates for the TLS test, made with the openssl CLI: a CA, a server cert for 127.0.0.1
// (used by the worker and the gateway), and a client cert for the gateway's mTLS to the worker.
bool MakeCerts(const std::string& dir) {
  std::string out;
  auto run = [&](std::vector<std::string> argv) { return RunCommand(argv, &out, 30s, {}, dir) == 0; };
  const std::string ext = dir + "/san.ext";
  WriteFileAtomic(ext, "subjectAltName=IP:127.0.0.1,DNS:localhost\n");
  return run({"openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=flotilla-test-ca",
              "-keyout", "ca.key", "-out", "ca.pem"}) &&
         run({"openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", "server.key",
              "-out", "server.csr"}) &&
         run({"openssl", "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
              "-days", "2", "-extfile", ext, "-out", "server.pem"}) &&
         run({"openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=gateway", "-keyout", "client.key", "-out",
              "client.csr"}) &&
         run({"openssl", "x509", "-req", "-in", "client.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
              "-days", "2", "-out", "client.pem"});
}

TEST_F(GatewayE2eTest, TlsOnPublicPortsAndMutualTlsToWorkers) {
  const std::string d = env_.dir();
  ASSERT_TRUE(MakeCerts(d));
  auto w = env_.StartWorker({"--tls-cert", d + "/server.pem", "--tls-key", d + "/server.key", "--tls-client-ca",
                             d + "/ca.pem"});
  ASSERT_TRUE(w);
  auto g = env_.StartGateway({"--no-auth", "--workers", w->address, "--tls-cert", d + "/server.pem", "--tls-key",
                              d + "/server.key", "--worker-tls-ca", d + "/ca.pem", "--worker-tls-cert",
                              d + "/client.pem", "--worker-tls-key", d + "/client.key"});
  ASSERT_TRUE(g);
  // HTTPS with curl, verifying the gateway's certificate against the CA.
  std::string out;
  ASSERT_TRUE(WaitFor(
      [&] {
        RunCommand({"curl", "-s", "--cacert", d + "/ca.pem", "https://127.0.0.1:" + std::to_string(g->http_port) + "/ready"},
                   &out, 10s);
        return out.find("\"ready\"") != std::string::npos;
      },
      20s))
      << out;
  ASSERT_EQ(RunCommand({"curl", "-s", "--cacert", d + "/ca.pem", "-d", Completion("Once upon a time", 8).dump(),
                        "https://127.0.0.1:" + std::to_string(g->http_port) + "/v1/completions"},
                       &out, 20s),
            0);
  EXPECT_EQ(json::parse(out)["usage"]["completion_tokens"], 8) << out;
  // Plain HTTP is refused on the TLS port.
  EXPECT_NE(HttpGet(g->http(), "/health").status, 200);
  // gRPC over TLS.
  grpc::SslCredentialsOptions ssl;
  ssl.pem_root_certs = ReadFileOr(d + "/ca.pem");
  auto stub = flotilla::v1::Inference::NewStub(grpc::CreateChannel(g->grpc(), grpc::SslCredentials(ssl)));
  auto o = RunStream(stub.get(), "Once upon a time", 8);
  EXPECT_TRUE(o.status.ok()) << o.status.error_message();
  EXPECT_EQ(o.tokens, 8);
  // The worker refuses a client without a certificate: only the gateway's mTLS gets in.
  auto direct = flotilla::worker::v1::Worker::NewStub(grpc::CreateChannel(w->address, grpc::SslCredentials(ssl)));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + 3s);
  flotilla::worker::v1::LoadReport r;
  EXPECT_FALSE(direct->GetLoad(&ctx, {}, &r).ok());
}

}  // namespace
}  // namespace flotilla::gateway::testing
