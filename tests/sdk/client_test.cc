// The C++ SDK against real processes: flotilla-gateway in front of flotilla-worker(s) running
// stories260K. Streaming (iterator, callback, async), cancel, deadlines, retry before the first
// token, API keys, TLS.
#include <signal.h>

#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <thread>

#include "flotilla/sdk/client.h"
#include "gtest/gtest.h"
#include "tests/common/test_models.h"
#include "tests/sdk/test_fleet.h"

namespace flotilla::sdk {
namespace {

using testing::TempDir;
using testing::TestGateway;
using testing::TestWorker;

flotilla::v1::GenerateRequest Greedy(const std::string& prompt, int max_tokens, bool ignore_eos = false) {
  flotilla::v1::GenerateRequest r;
  r.set_model("stories260K");
  r.set_prompt(prompt);
  r.set_max_tokens(max_tokens);
  r.set_ignore_eos(ignore_eos);
  r.mutable_sampling()->set_temperature(0);
  return r;
}

std::unique_ptr<Client> MakeClient(const std::string& target, RetryPolicy retry = {}) {
  ClientOptions o;
  o.target = target;
  o.retry = retry;
  o.timeout = absl::Seconds(60);  // a hung test fails instead of hanging
  auto c = Client::Create(o);
  EXPECT_TRUE(c.ok()) << c.status();
  return c.ok() ? *std::move(c) : nullptr;
}

// Polls ListModels until the gateway sees `n` healthy workers.
bool WaitHealthy(Client& client, uint32_t n, absl::Duration timeout = absl::Seconds(20)) {
  const absl::Time until = absl::Now() + timeout;
  while (absl::Now() < until) {
    CallOptions call;
    call.timeout = absl::Seconds(2);
    auto models = client.ListModels(call);
    if (models.ok() && !models->empty() && models->front().healthy_workers() == n) return true;
    absl::SleepFor(absl::Milliseconds(50));
  }
  return false;
}

// One gateway and one f32 worker (exact goldens), shared by the suite.
class SdkAgainstFleet : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    worker_ = new TestWorker(dir_->path(), "w1", {"--max-num-seqs", "32"}, "stories260K-f32.gguf");
    testing::WriteWorkersFile(dir_->File("workers.txt"), {worker_->address()});
    gateway_ = new TestGateway(dir_->path(), dir_->File("workers.txt"));
    client_ = MakeClient(gateway_->grpc_address()).release();
    ASSERT_TRUE(WaitHealthy(*client_, 1)) << gateway_->proc().Log();
  }
  static void TearDownTestSuite() {
    delete client_;
    delete gateway_;
    delete worker_;
    delete dir_;
  }
  static TempDir* dir_;
  static TestWorker* worker_;
  static TestGateway* gateway_;
  static Client* client_;
};
TempDir* SdkAgainstFleet::dir_ = nullptr;
TestWorker* SdkAgainstFleet::worker_ = nullptr;
TestGateway* SdkAgainstFleet::gateway_ = nullptr;
Client* SdkAgainstFleet::client_ = nullptr;

TEST_F(SdkAgainstFleet, ListModelsShowsTheModelAndItsWorker) {
  auto models = client_->ListModels();
  ASSERT_TRUE(models.ok()) << models.status();
  ASSERT_EQ(models->size(), 1u);
  EXPECT_EQ(models->front().id(), "stories260K");
  EXPECT_EQ(models->front().context_length(), 512u);
  EXPECT_EQ(models->front().healthy_workers(), 1u);
}

TEST_F(SdkAgainstFleet, OneShotGreedyGenerationEqualsTheGolden) {
  const auto golden = testing::LoadGolden("stories260K-f32.json");
  auto c = client_->Generate(Greedy(golden.prompt, 128));
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->token_ids, golden.generated_ids);
  EXPECT_EQ(c->text, golden.text);
  EXPECT_EQ(c->finish_reason, flotilla::v1::FINISH_REASON_LENGTH);
  EXPECT_EQ(c->usage.prompt_tokens(), 5u);
  EXPECT_EQ(c->usage.completion_tokens(), 128u);
  EXPECT_EQ(c->attempts, 1);
  EXPECT_FALSE(c->request_id.empty());
  EXPECT_GT(c->time_to_first_token_s, 0);
}

TEST_F(SdkAgainstFleet, IteratorStreamsTheSameTextInSeveralChunks) {
  const auto golden = testing::LoadGolden("stories260K-f32.json");
  std::unique_ptr<GenerationStream> s = client_->StartGenerate(Greedy(golden.prompt, 128));
  flotilla::v1::GenerateResponse chunk;
  std::string text;
  std::vector<int32_t> ids;
  int chunks = 0;
  flotilla::v1::FinishReason finish = flotilla::v1::FINISH_REASON_UNSPECIFIED;
  while (s->Next(&chunk)) {
    ++chunks;
    text += chunk.text();
    ids.insert(ids.end(), chunk.token_ids().begin(), chunk.token_ids().end());
    if (chunk.finish_reason() != flotilla::v1::FINISH_REASON_UNSPECIFIED) finish = chunk.finish_reason();
  }
  ASSERT_TRUE(s->Finish().ok()) << s->Finish();
  EXPECT_GT(chunks, 1) << "tokens should stream, not arrive in one message";
  EXPECT_EQ(ids, golden.generated_ids);
  EXPECT_EQ(text, golden.text);
  EXPECT_EQ(finish, flotilla::v1::FINISH_REASON_LENGTH);
}

TEST_F(SdkAgainstFleet, CallbackCancelEndsTheRequestOnTheWorker) {
  const double cancelled_before = worker_->Metric("flotilla_request_success_total", "\"abort\"");
  int seen = 0;
  absl::Status st = client_->GenerateStream(Greedy("Once upon a time", 500, /*ignore_eos=*/true),
                                            [&](const flotilla::v1::GenerateResponse& chunk) {
                                              seen += chunk.token_ids_size();
                                              return seen < 3;  // stop after a few tokens
                                            });
  EXPECT_TRUE(absl::IsCancelled(st)) << st;
  EXPECT_LT(seen, 500);
  EXPECT_TRUE(worker_->WaitIdle()) << "the worker should free the cancelled request's KV blocks";
  // The worker saw a cancel (vLLM's finished_reason "abort"), not a request that ran to its end.
  for (int i = 0; i < 100 && worker_->Metric("flotilla_request_success_total", "\"abort\"") <= cancelled_before; ++i) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  EXPECT_GT(worker_->Metric("flotilla_request_success_total", "\"abort\""), cancelled_before);
}

TEST_F(SdkAgainstFleet, IteratorCancelFromAnotherThread) {
  std::unique_ptr<GenerationStream> s = client_->StartGenerate(Greedy("Once upon a time", 500, true));
  flotilla::v1::GenerateResponse chunk;
  ASSERT_TRUE(s->Next(&chunk));
  std::thread canceller([&] { s->Cancel(); });
  int tokens = chunk.token_ids_size();
  while (s->Next(&chunk)) tokens += chunk.token_ids_size();
  canceller.join();
  EXPECT_TRUE(absl::IsCancelled(s->Finish())) << s->Finish();
  EXPECT_LT(tokens, 500);
  s->Cancel();  // again: harmless
  EXPECT_TRUE(worker_->WaitIdle());
}

TEST_F(SdkAgainstFleet, AsyncStreamsRunConcurrentlyWithoutAThreadEach) {
  constexpr int kStreams = 32;
  std::mutex mu;
  std::condition_variable cv;
  int done = 0;
  std::vector<std::string> texts(kStreams);
  std::vector<absl::Status> statuses(kStreams);
  for (int i = 0; i < kStreams; ++i) {
    AsyncCallbacks cb;
    cb.on_chunk = [&, i](const flotilla::v1::GenerateResponse& c) { texts[i] += c.text(); };
    cb.on_done = [&, i](const absl::Status& st, int) {
      std::lock_guard<std::mutex> lock(mu);
      statuses[i] = st;
      ++done;
      cv.notify_all();
    };
    client_->GenerateAsync(Greedy("Once upon a time", 64), std::move(cb));
  }
  std::unique_lock<std::mutex> lock(mu);
  ASSERT_TRUE(cv.wait_for(lock, std::chrono::seconds(60), [&] { return done == kStreams; }));
  for (int i = 0; i < kStreams; ++i) {
    EXPECT_TRUE(statuses[i].ok()) << statuses[i];
    EXPECT_EQ(texts[i], texts[0]) << "greedy output must not depend on batching";
  }
  EXPECT_FALSE(texts[0].empty());
}

TEST_F(SdkAgainstFleet, AsyncCancel) {
  std::mutex mu;
  std::condition_variable cv;
  bool finished = false;
  absl::Status status;
  std::atomic<int> tokens{0};
  std::shared_ptr<AsyncGeneration> handle;
  std::atomic<bool> first{false};
  AsyncCallbacks cb;
  cb.on_chunk = [&](const flotilla::v1::GenerateResponse& c) {
    tokens += c.token_ids_size();
    first = true;
    cv.notify_all();
  };
  cb.on_done = [&](const absl::Status& st, int) {
    std::lock_guard<std::mutex> lock(mu);
    status = st;
    finished = true;
    cv.notify_all();
  };
  handle = client_->GenerateAsync(Greedy("Once upon a time", 500, true), std::move(cb));
  {
    std::unique_lock<std::mutex> lock(mu);
    ASSERT_TRUE(cv.wait_for(lock, std::chrono::seconds(20), [&] { return first.load() || finished; }));
  }
  handle->Cancel();
  std::unique_lock<std::mutex> lock(mu);
  ASSERT_TRUE(cv.wait_for(lock, std::chrono::seconds(20), [&] { return finished; }));
  EXPECT_TRUE(absl::IsCancelled(status)) << status;
  EXPECT_LT(tokens.load(), 500);
}

// The gateway may refuse at admission (it estimates the first token cannot come in time) or end
// the stream when the deadline passes; either way the caller sees DEADLINE_EXCEEDED, not a retry.
// A generation that takes seconds (4000 tokens at a 4096 context) with a 100 ms deadline: ends
// with DEADLINE_EXCEEDED at once and does not keep running on the worker. (With a 512 context
// the whole generation fits in a few tens of milliseconds and may beat any sane deadline.)
TEST(SdkDeadline, DeadlineEndsALongGeneration) {
  TempDir dir;
  TestWorker worker(dir.path(), "long", {"--ctx-size", "4096"});
  ASSERT_TRUE(worker.ok());
  testing::WriteWorkersFile(dir.File("workers.txt"), {worker.address()});
  TestGateway gateway(dir.path(), dir.File("workers.txt"));
  auto client = MakeClient(gateway.grpc_address());
  ASSERT_TRUE(WaitHealthy(*client, 1)) << gateway.proc().Log();
  CallOptions call;
  call.timeout = absl::Milliseconds(100);
  const absl::Time start = absl::Now();
  auto c = client->Generate(Greedy("Once upon a time", 4000, true), call);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), absl::StatusCode::kDeadlineExceeded) << c.status();
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
  EXPECT_TRUE(worker.WaitIdle()) << "an expired request must not keep running on the worker";
}

TEST(SdkRetry, NothingListeningFailsAfterBoundedAttempts) {
  RetryPolicy retry;
  retry.max_attempts = 3;
  retry.initial_backoff = absl::Milliseconds(100);
  retry.jitter = 0;
  auto client = MakeClient("127.0.0.1:" + std::to_string(testing::ReservePort()), retry);
  const absl::Time start = absl::Now();
  std::unique_ptr<GenerationStream> s = client->StartGenerate(Greedy("Once", 4));
  flotilla::v1::GenerateResponse chunk;
  EXPECT_FALSE(s->Next(&chunk));
  EXPECT_EQ(s->Finish().code(), absl::StatusCode::kUnavailable) << s->Finish();
  EXPECT_EQ(s->attempts(), 3);
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(300));  // 100 + 200 of backoff
}

TEST(SdkRetry, UnavailableBeforeTheFirstTokenIsRetriedUntilTheGatewayIsUp) {
  TempDir dir;
  TestWorker worker(dir.path(), "w1");
  ASSERT_TRUE(worker.ok());
  testing::WriteWorkersFile(dir.File("workers.txt"), {worker.address()});
  const int port = testing::ReservePort();
  RetryPolicy retry;
  retry.max_attempts = 50;
  retry.initial_backoff = absl::Milliseconds(50);
  retry.max_backoff = absl::Milliseconds(200);
  auto client = MakeClient("127.0.0.1:" + std::to_string(port), retry);
  // The gateway comes up a little after the call starts.
  std::unique_ptr<TestGateway> gateway;
  std::thread starter([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(400));
    gateway = std::make_unique<TestGateway>(dir.path(), dir.File("workers.txt"), std::vector<std::string>{}, port);
  });
  const absl::Time start = absl::Now();
  auto c = client->Generate(Greedy("Once upon a time", 16));
  const absl::Duration took = absl::Now() - start;
  starter.join();
  ASSERT_TRUE(c.ok()) << c.status() << (gateway ? gateway->proc().Log() : "");
  std::fprintf(stderr, "succeeded after %d attempts, %s\n", c->attempts, absl::FormatDuration(took).c_str());
  EXPECT_GT(c->attempts, 1);
  EXPECT_EQ(c->usage.completion_tokens(), 16u);
}

// The asynchronous API retries on gRPC's own threads (an alarm, no thread blocked).
TEST(SdkRetry, AsyncCallsRetryUntilTheGatewayIsUp) {
  TempDir dir;
  TestWorker worker(dir.path(), "w1");
  ASSERT_TRUE(worker.ok());
  testing::WriteWorkersFile(dir.File("workers.txt"), {worker.address()});
  const int port = testing::ReservePort();
  RetryPolicy retry;
  retry.max_attempts = 50;
  retry.initial_backoff = absl::Milliseconds(50);
  retry.max_backoff = absl::Milliseconds(200);
  auto client = MakeClient("127.0.0.1:" + std::to_string(port), retry);
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  absl::Status status;
  int attempts = 0;
  int tokens = 0;
  AsyncCallbacks cb;
  cb.on_chunk = [&](const flotilla::v1::GenerateResponse& c) { tokens += c.token_ids_size(); };
  cb.on_done = [&](const absl::Status& st, int n) {
    std::lock_guard<std::mutex> lock(mu);
    status = st;
    attempts = n;
    done = true;
    cv.notify_all();
  };
  const absl::Time start = absl::Now();
  client->GenerateAsync(Greedy("Once upon a time", 16), std::move(cb));
  std::this_thread::sleep_for(std::chrono::milliseconds(400));
  TestGateway gateway(dir.path(), dir.File("workers.txt"), {}, port);
  ASSERT_TRUE(gateway.ok());
  std::unique_lock<std::mutex> lock(mu);
  ASSERT_TRUE(cv.wait_for(lock, std::chrono::seconds(30), [&] { return done; }));
  EXPECT_TRUE(status.ok()) << status;
  EXPECT_GT(attempts, 1);
  EXPECT_EQ(tokens, 16);
  std::fprintf(stderr, "async: %d attempts, %s\n", attempts, absl::FormatDuration(absl::Now() - start).c_str());
}

// The only worker dies; requests fail before their first token until a new worker registers.
// The SDK's retries carry the caller across the gap without an error.
TEST(SdkRetry, KilledWorkerIsBridgedByRetriesBeforeTheFirstToken) {
  TempDir dir;
  auto first = std::make_unique<TestWorker>(dir.path(), "w1");
  ASSERT_TRUE(first->ok());
  testing::WriteWorkersFile(dir.File("workers.txt"), {first->address()});
  TestGateway gateway(dir.path(), dir.File("workers.txt"));
  ASSERT_TRUE(gateway.ok());
  RetryPolicy retry;
  retry.max_attempts = 100;
  retry.initial_backoff = absl::Milliseconds(50);
  retry.max_backoff = absl::Milliseconds(200);
  auto client = MakeClient(gateway.grpc_address(), retry);
  ASSERT_TRUE(WaitHealthy(*client, 1));
  ASSERT_TRUE(client->Generate(Greedy("Once upon a time", 8)).ok());

  first->proc().Kill();  // SIGKILL: no drain, the connection just breaks
  std::unique_ptr<TestWorker> second;
  std::thread replacer([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(1500));
    second = std::make_unique<TestWorker>(dir.path(), "w2");
    testing::WriteWorkersFile(dir.File("workers.txt"), {second->address()});
  });
  auto c = client->Generate(Greedy("Once upon a time", 16));
  replacer.join();
  ASSERT_TRUE(c.ok()) << c.status() << "\n" << gateway.proc().Log();
  EXPECT_EQ(c->usage.completion_tokens(), 16u);
  std::fprintf(stderr, "attempts across the worker gap: %d\n", c->attempts);
}

TEST(SdkAuth, ApiKeyIsSentAsABearerToken) {
  TempDir dir;
  TestWorker worker(dir.path(), "w1");
  ASSERT_TRUE(worker.ok());
  testing::WriteWorkersFile(dir.File("workers.txt"), {worker.address()});
  // sha256("sdk-test-key")
  testing::WriteBytes(dir.File("keys.json"), R"({"tenants": [{"name": "sdk", "allowed_models": ["*"]}],
    "keys": [{"sha256": "4fab551d57eded4527cebdcb8cbe176f23ebdcf566ddca7f88343fbdb6cbb624", "tenant": "sdk"}]})");
  TestGateway gateway(dir.path(), dir.File("workers.txt"), {"--api-keys", dir.File("keys.json")}, 0, /*no_auth=*/false);
  ASSERT_TRUE(gateway.ok());

  auto call = [&](const std::string& key) {
    ClientOptions o;
    o.target = gateway.grpc_address();
    o.api_key = key;
    o.timeout = absl::Seconds(20);
    auto client = Client::Create(o);
    EXPECT_TRUE(client.ok());
    return (*client)->Generate(Greedy("Once upon a time", 4));
  };
  auto none = call("");
  EXPECT_EQ(none.status().code(), absl::StatusCode::kUnauthenticated) << none.status();
  auto wrong = call("not-the-key");
  EXPECT_EQ(wrong.status().code(), absl::StatusCode::kUnauthenticated) << wrong.status();
  // The gateway may need a moment to see its worker; a right key then works.
  absl::StatusOr<Completion> right = absl::UnavailableError("not tried");
  for (int i = 0; i < 100 && !right.ok(); ++i) {
    right = call("sdk-test-key");
    if (!right.ok()) absl::SleepFor(absl::Milliseconds(50));
  }
  ASSERT_TRUE(right.ok()) << right.status();
  EXPECT_EQ(right->usage.completion_tokens(), 4u);
}

TEST(SdkTls, ConnectsWithTheServersRootCertificate) {
  TempDir dir;
  const std::string cmd = "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=localhost "
                          "-addext subjectAltName=DNS:localhost,IP:127.0.0.1 -keyout " +
                          dir.File("key.pem") + " -out " + dir.File("cert.pem") + " > " + dir.File("openssl.log") +
                          " 2>&1";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << testing::ReadBytes(dir.File("openssl.log"));
  TestWorker worker(dir.path(), "w1");
  ASSERT_TRUE(worker.ok());
  testing::WriteWorkersFile(dir.File("workers.txt"), {worker.address()});
  TestGateway gateway(dir.path(), dir.File("workers.txt"),
                      {"--tls-cert", dir.File("cert.pem"), "--tls-key", dir.File("key.pem")});
  ASSERT_TRUE(gateway.ok());

  ClientOptions o;
  o.target = gateway.grpc_address();
  o.timeout = absl::Seconds(20);
  o.tls.enabled = true;
  o.tls.root_certs_pem = testing::ReadBytes(dir.File("cert.pem"));
  auto tls = Client::Create(o);
  ASSERT_TRUE(tls.ok());
  ASSERT_TRUE(WaitHealthy(**tls, 1));
  auto c = (*tls)->Generate(Greedy("Once upon a time", 4));
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->usage.completion_tokens(), 4u);

  // A plaintext client cannot talk to the TLS port (and is not retried forever).
  o.tls = {};
  o.retry.max_attempts = 2;
  auto plain = Client::Create(o);
  ASSERT_TRUE(plain.ok());
  EXPECT_FALSE((*plain)->ListModels().ok());
}

}  // namespace
}  // namespace flotilla::sdk
