// Unit tests of the gateway's edges: OpenAI request parsing and response shapes, error mapping,
// the JSON config file, and the workers file of file discovery.
#include <gtest/gtest.h>

#include "gateway/config.h"
#include "gateway/discovery.h"
#include "gateway/errors.h"
#include "gateway/openai_api.h"
#include "nlohmann/json.hpp"

namespace flotilla::gateway {
namespace {

using json = nlohmann::json;

TEST(OpenAiApiTest, ParsesCompletionRequest) {
  auto r = ParseCompletionRequest(R"({"model": "m", "prompt": "hi", "max_tokens": 7, "temperature": 0,
      "top_p": 0.5, "top_k": 4, "stop": ["a", "b"], "seed": 3, "stream": true,
      "stream_options": {"include_usage": true}, "logprobs": 2, "user": "ignored", "n": 1})");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->input.model, "m");
  EXPECT_EQ(r->input.prompt, "hi");
  EXPECT_EQ(*r->input.max_tokens, 7u);
  EXPECT_EQ(r->input.sampling.temperature(), 0);
  EXPECT_FLOAT_EQ(r->input.sampling.top_p(), 0.5f);
  EXPECT_EQ(r->input.sampling.top_k(), 4);
  EXPECT_EQ(r->input.sampling.seed(), 3u);
  EXPECT_EQ(r->input.stop, (std::vector<std::string>{"a", "b"}));
  EXPECT_TRUE(r->stream);
  EXPECT_TRUE(r->include_usage);
  EXPECT_TRUE(r->want_logprobs);
  EXPECT_EQ(r->top_logprobs, 2u);
  EXPECT_FALSE(r->input.chat);
}

TEST(OpenAiApiTest, PromptForms) {
  EXPECT_EQ(ParseCompletionRequest(R"({"model": "m", "prompt": ["one"]})")->input.prompt, "one");
  EXPECT_EQ(ParseCompletionRequest(R"({"model": "m", "prompt": [1, 2, 3]})")->input.prompt_ids,
            (std::vector<int32_t>{1, 2, 3}));
  EXPECT_EQ(ParseCompletionRequest(R"({"model": "m", "prompt": [[5, 6]]})")->input.prompt_ids,
            (std::vector<int32_t>{5, 6}));
  EXPECT_FALSE(ParseCompletionRequest(R"({"model": "m", "prompt": ["a", "b"]})").ok());
  EXPECT_FALSE(ParseCompletionRequest(R"({"model": "m", "prompt": 5})").ok());
  EXPECT_FALSE(ParseCompletionRequest(R"({"model": "m"})").ok());
}

TEST(OpenAiApiTest, RejectsWhatItCannotHonour) {
  const char* bad[] = {
      R"(not json)",
      R"([1, 2])",
      R"({"prompt": "x"})",
      R"({"model": "m", "prompt": "x", "n": 2})",
      R"({"model": "m", "prompt": "x", "echo": true})",
      R"({"model": "m", "prompt": "x", "max_tokens": 0})",
      R"({"model": "m", "prompt": "x", "max_tokens": 1.5})",
      R"({"model": "m", "prompt": "x", "temperature": "warm"})",
      R"({"model": "m", "prompt": "x", "logit_bias": {"5": 10}})",
      R"({"model": "m", "prompt": "x", "stop": [1]})",
      R"({"model": "m", "prompt": "x", "logprobs": 21})",
  };
  for (const char* body : bad) {
    auto r = ParseCompletionRequest(body);
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << body;
  }
}

TEST(OpenAiApiTest, ParsesChatRequest) {
  auto r = ParseChatRequest(R"({"model": "m", "messages": [
      {"role": "developer", "content": "be nice"},
      {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
      {"role": "assistant", "content": null},
      {"role": "user", "content": "c"}],
      "max_completion_tokens": 9, "logprobs": true, "top_logprobs": 0})");
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->input.messages.size(), 4u);
  EXPECT_EQ(r->input.messages[0].role, "system");
  EXPECT_EQ(r->input.messages[1].content, "ab");
  EXPECT_EQ(*r->input.max_tokens, 9u);
  EXPECT_TRUE(r->want_logprobs);
  EXPECT_EQ(r->input.sampling.logprobs(), 1u);  // the chosen token's logprob needs at least one
  EXPECT_FALSE(ParseChatRequest(R"({"model": "m", "messages": []})").ok());
  EXPECT_FALSE(ParseChatRequest(R"({"model": "m", "messages": [{"content": "x"}]})").ok());
  EXPECT_FALSE(ParseChatRequest(R"({"model": "m", "messages": [{"role": "user", "content": "x"}], "tools": []})").ok());
  EXPECT_FALSE(ParseChatRequest(R"({"model": "m", "messages": [{"role": "user", "content": "x"}], "top_logprobs": 2})").ok());
}

TEST(OpenAiApiTest, ResponseShapes) {
  ResponseMeta meta{"chatcmpl-1", 1700000000, "m", true, false, 0};
  worker::v1::GenerateResponse a, b;
  a.set_text("Hel");
  a.add_token_ids(1);
  b.set_text("lo");
  b.add_token_ids(2);
  b.set_finish_reason(flotilla::v1::FINISH_REASON_EOS);
  b.mutable_usage()->set_prompt_tokens(4);
  b.mutable_usage()->set_completion_tokens(2);
  b.mutable_usage()->set_cached_tokens(3);
  Accumulated acc;
  acc.Add(a);
  acc.Add(b);
  json chat = json::parse(ChatResponseJson(meta, acc));
  EXPECT_EQ(chat["object"], "chat.completion");
  EXPECT_EQ(chat["choices"][0]["message"]["content"], "Hello");
  EXPECT_EQ(chat["choices"][0]["finish_reason"], "stop");
  EXPECT_EQ(chat["usage"]["total_tokens"], 6);
  EXPECT_EQ(chat["usage"]["prompt_tokens_details"]["cached_tokens"], 3);
  std::string first = StreamChunkEvent(meta, a, true);
  ASSERT_EQ(first.rfind("data: ", 0), 0u);
  ASSERT_EQ(first.substr(first.size() - 2), "\n\n");
  json ev = json::parse(first.substr(6));
  EXPECT_EQ(ev["object"], "chat.completion.chunk");
  EXPECT_EQ(ev["choices"][0]["delta"]["role"], "assistant");
  EXPECT_EQ(ev["choices"][0]["delta"]["content"], "Hel");
  EXPECT_TRUE(ev["choices"][0]["finish_reason"].is_null());
  meta.chat = false;
  json comp = json::parse(CompletionResponseJson(meta, acc));
  EXPECT_EQ(comp["object"], "text_completion");
  EXPECT_EQ(comp["choices"][0]["text"], "Hello");
  json usage = json::parse(StreamUsageEvent(meta, acc.usage).substr(6));
  EXPECT_TRUE(usage["choices"].empty());
  EXPECT_EQ(usage["usage"]["completion_tokens"], 2);
}

TEST(OpenAiApiTest, InvalidUtf8FromAModelDoesNotThrow) {
  ResponseMeta meta{"cmpl-1", 1, "m", false, false, 0};
  worker::v1::GenerateResponse c;
  c.set_text(std::string("\xff\xfe", 2));
  EXPECT_NO_THROW(StreamChunkEvent(meta, c, true));
}

TEST(OpenAiApiTest, ErrorsHaveOpenAiShapeStatusAndRetryAfter) {
  HttpError e = ErrorResponse(Overloaded("busy", 2500));
  EXPECT_EQ(e.status, 429);
  json j = json::parse(e.body);
  EXPECT_EQ(j["error"]["message"], "busy");
  EXPECT_EQ(j["error"]["code"], "overloaded");
  ASSERT_EQ(e.headers.size(), 2u);
  EXPECT_EQ(e.headers[0], (std::pair<std::string, std::string>{"Retry-After", "3"}));
  EXPECT_EQ(ErrorResponse(absl::UnauthenticatedError("x")).status, 401);
  EXPECT_EQ(json::parse(ErrorResponse(absl::NotFoundError("x")).body)["error"]["code"], "model_not_found");
  EXPECT_EQ(ErrorResponse(absl::UnavailableError("x")).status, 503);
  EXPECT_EQ(json::parse(ErrorResponse(RateLimited("rate_limit_tokens", "t", 10)).body)["error"]["type"], "tokens");
}

TEST(ConfigTest, FileValuesAndValidation) {
  GatewayConfig c;
  ASSERT_TRUE(ApplyConfigJson(R"({
      "grpc_port": 9000, "http_port": 8000, "workers": ["10.0.0.1:7000"],
      "auth": {"api_keys_file": "/etc/keys.json", "reload_interval_ms": 500},
      "rate_limit": {"backend": "redis", "redis": {"host": "r", "port": 6380}},
      "admission": {"queue_size": 7, "queue_timeout_ms": 1500},
      "routing": {"policy": "prefix_affinity", "load_factor": 1.5, "locality": false, "queue_depth": 3},
      "failover": {"max_attempts": 2, "failures_to_eject": 5},
      "response_cache": {"enabled": true, "max_bytes": 1000, "ttl_ms": 2000},
      "chat_templates": {"m": "chatml"},
      "log": {"format": "json", "prompts": false}})",
                              &c)
                  .ok());
  EXPECT_EQ(c.grpc_port, 9000);
  EXPECT_EQ(c.redis.port, 6380);
  EXPECT_EQ(c.dispatch.admission.queue_size, 7u);
  EXPECT_EQ(c.dispatch.admission.queue_timeout, 1500 * kNsPerMs);
  ASSERT_TRUE(std::holds_alternative<PrefixAffinity>(c.dispatch.router.policy));
  EXPECT_EQ(std::get<PrefixAffinity>(c.dispatch.router.policy).load_factor, 1.5);
  EXPECT_FALSE(c.dispatch.router.locality);
  EXPECT_EQ(c.worker.breaker.failures_to_open, 5u);
  EXPECT_TRUE(c.response_cache);
  EXPECT_EQ(c.cache.ttl, 2 * kNsPerSec);
  EXPECT_EQ(c.chat_templates["m"], "chatml");
  EXPECT_TRUE(ValidateConfig(c).ok()) << ValidateConfig(c);

  GatewayConfig d;
  EXPECT_FALSE(ApplyConfigJson(R"({"grpc_prot": 1})", &d).ok());  // typo: unknown key
  EXPECT_FALSE(ApplyConfigJson(R"({"routing": {"policy": "random"}})", &d).ok());
  EXPECT_FALSE(ApplyConfigJson(R"({"auth": {"no_auth": "yes"}})", &d).ok());
  EXPECT_FALSE(ApplyConfigJson(R"({"chat_templates": {"m": "alpaca"}})", &d).ok());
  GatewayConfig e;
  e.workers = {"w:1"};
  EXPECT_FALSE(ValidateConfig(e).ok());  // neither keys nor --no-auth
  e.no_auth = true;
  EXPECT_TRUE(ValidateConfig(e).ok());
  e.workers = {};
  EXPECT_FALSE(ValidateConfig(e).ok());  // no discovery source
  e.workers = {"not-an-address"};
  EXPECT_FALSE(ValidateConfig(e).ok());
  e.workers = {"w:1"};
  e.tls_cert_file = "cert.pem";
  EXPECT_FALSE(ValidateConfig(e).ok());  // key missing
}

TEST(DiscoveryTest, WorkersFileFormats) {
  auto plain = ParseWorkersFile("# comment\n10.0.0.2:7000\n\n10.0.0.1:7000\n10.0.0.1:7000\n");
  ASSERT_TRUE(plain.ok());
  EXPECT_EQ(*plain, (std::vector<std::string>{"10.0.0.1:7000", "10.0.0.2:7000"}));
  // The local fleet's file: address, model, zone, extras.
  auto fleet = ParseWorkersFile("# flotilla fleet v1\n127.0.0.1:4000 stories local id=w1 metrics=127.0.0.1:4001\n");
  ASSERT_TRUE(fleet.ok());
  EXPECT_EQ(*fleet, (std::vector<std::string>{"127.0.0.1:4000"}));
  EXPECT_EQ(*ParseWorkersFile(R"({"workers": ["a:1", {"address": "b:2"}]})"), (std::vector<std::string>{"a:1", "b:2"}));
  EXPECT_EQ(*ParseWorkersFile(R"([{"address": "[::1]:5"}])"), (std::vector<std::string>{"[::1]:5"}));
  EXPECT_FALSE(ParseWorkersFile("no-port\n").ok());
  EXPECT_FALSE(ParseWorkersFile(R"({"workers": [1]})").ok());
}

TEST(DiscoveryTest, StaticAndDns) {
  auto s = StaticDiscovery({"a:1"});
  EXPECT_EQ(*s->Resolve(), (std::vector<std::string>{"a:1"}));
  auto dns = DnsDiscovery("localhost:4321");
  auto r = dns->Resolve();
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_NE(std::find(r->begin(), r->end(), "127.0.0.1:4321"), r->end());
  EXPECT_FALSE(DnsDiscovery("no-port")->Resolve().ok());
  EXPECT_FALSE(DnsDiscovery("name.invalid:1")->Resolve().ok());
}

}  // namespace
}  // namespace flotilla::gateway
