// The real flotilla-worker binary on a free port with stories260K, driven over gRPC and HTTP.
#include <grpcpp/grpcpp.h>
#include "grpc/health/v1/health.grpc.pb.h"
#include <httplib.h>

#include <atomic>
#include <fstream>
#include <functional>
#include <regex>
#include <thread>

#include "flotilla/worker/v1/worker.grpc.pb.h"
#include "grpcpp/support/status.h"
#include "gtest/gtest.h"
#include "tests/common/subprocess.h"
#include "tests/common/temp_dir.h"
#include "tests/common/test_models.h"
#include "tests/worker/eos_model.h"

namespace flotilla::worker {
namespace {

namespace wv1 = flotilla::worker::v1;
using testing::Subprocess;
using testing::TempDir;

class Worker {
 public:
  explicit Worker(std::vector<std::string> extra, const std::string& model = "stories260K-f32.gguf") {
    std::vector<std::string> argv = {testing::BinDir() + "/flotilla-worker", "--model", model, "--ctx-size", "512",
                                     "--ready-file", dir_.File("ready.json"), "--threads", "2"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    EXPECT_TRUE(proc_.Start(argv, dir_.File("worker.log")));
    ready_ = proc_.WaitReady(dir_.File("ready.json"));
    EXPECT_FALSE(ready_.is_null()) << proc_.Log();
    if (ready_.is_null()) {
      // Keep the fixture usable so a failed start is reported as failures, not a crash.
      address_ = "127.0.0.1:1";
      channel_ = grpc::CreateChannel(address_, grpc::InsecureChannelCredentials());
      stub_ = wv1::Worker::NewStub(channel_);
      ready_ = nlohmann::json{{"grpc_port", 1}, {"metrics_port", 1}};
      return;
    }
    address_ = "127.0.0.1:" + std::to_string(ready_["grpc_port"].get<int>());
    channel_ = grpc::CreateChannel(address_, grpc::InsecureChannelCredentials());
    stub_ = wv1::Worker::NewStub(channel_);
  }
  ~Worker() { proc_.Stop(SIGKILL); }

  wv1::Worker::Stub& stub() { return *stub_; }
  std::shared_ptr<grpc::Channel> channel() { return channel_; }
  Subprocess& proc() { return proc_; }

  std::string Metrics() {
    httplib::Client cli("127.0.0.1", ready_["metrics_port"].get<int>());
    auto res = cli.Get("/metrics");
    return res && res->status == 200 ? res->body : "";
  }
  // Sum of a metric's samples whose labels contain `label_filter`.
  double Metric(const std::string& name, const std::string& label_filter = "") {
    return Sum(Metrics(), name, label_filter);
  }
  // The same, over one scrape's text.
  static double Sum(const std::string& text, const std::string& name, const std::string& label_filter = "") {
    double sum = 0;
    std::istringstream in(text);
    std::string line;
    while (std::getline(in, line)) {
      if (line.rfind(name, 0) != 0 || line.size() <= name.size()) continue;
      const char next = line[name.size()];
      if (next != ' ' && next != '{') continue;
      if (!label_filter.empty() && line.find(label_filter) == std::string::npos) continue;
      sum += std::stod(line.substr(line.rfind(' ') + 1));
    }
    return sum;
  }
  wv1::LoadReport Load() {
    grpc::ClientContext ctx;
    wv1::LoadReport r;
    EXPECT_TRUE(stub_->GetLoad(&ctx, {}, &r).ok());
    return r;
  }
  bool WaitKvFree() {
    for (int i = 0; i < 500; ++i) {
      const auto r = Load();
      if (r.kv_usage() == 0 && r.free_blocks() == r.total_blocks() && r.running() == 0 && r.waiting() == 0) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return false;
  }

 private:
  TempDir dir_;
  Subprocess proc_;
  nlohmann::json ready_;
  std::string address_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<wv1::Worker::Stub> stub_;
};

struct Result {
  grpc::Status status;
  std::vector<int32_t> ids;
  std::string text;
  wv1::GenerateResponse last;
};

wv1::GenerateRequest Greedy(const std::string& prompt, int n) {
  wv1::GenerateRequest r;
  r.set_prompt(prompt);
  r.set_max_tokens(n);
  r.mutable_sampling()->set_temperature(0);
  return r;
}

Result Generate(wv1::Worker::Stub& stub, const wv1::GenerateRequest& req, std::chrono::milliseconds deadline = std::chrono::milliseconds(0)) {
  grpc::ClientContext ctx;
  if (deadline.count() > 0) ctx.set_deadline(std::chrono::system_clock::now() + deadline);
  auto reader = stub.Generate(&ctx, req);
  Result r;
  wv1::GenerateResponse msg;
  while (reader->Read(&msg)) {
    r.ids.insert(r.ids.end(), msg.token_ids().begin(), msg.token_ids().end());
    r.text += msg.text();
    r.last = msg;
  }
  r.status = reader->Finish();
  return r;
}

// Runs n copies of req at once and scrapes /metrics while they run, until `seen` holds for a
// scrape or every stream has ended.
struct Scraped {
  bool seen = false;
  std::string text;  // the last scrape
  double max_running = 0;
  std::vector<Result> results;
};
Scraped RunWhileScraping(Worker& w, const wv1::GenerateRequest& req, int n, const std::function<bool(const std::string&)>& seen) {
  Scraped s;
  s.results.resize(n);
  std::atomic<int> done{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < n; ++i) {
    threads.emplace_back([&, i] {
      s.results[i] = Generate(w.stub(), req);
      done.fetch_add(1);
    });
  }
  while (!s.seen && done.load() < n) {
    s.text = w.Metrics();
    s.max_running = std::max(s.max_running, Worker::Sum(s.text, "flotilla_requests_running"));
    s.seen = seen(s.text);
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  for (auto& t : threads) t.join();
  return s;
}

// Polls /metrics until the running, waiting and KV-usage gauges are all 0; returns the last scrape
// when they never are.
std::string WaitGaugesIdle(Worker& w) {
  std::string text;
  for (int i = 0; i < 500; ++i) {
    text = w.Metrics();
    if (!text.empty() && Worker::Sum(text, "flotilla_requests_running") == 0 &&
        Worker::Sum(text, "flotilla_requests_waiting") == 0 && Worker::Sum(text, "flotilla_kv_cache_usage_ratio") == 0) {
      return "";
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return "gauges not idle:\n" + text;
}

class WorkerIntegration : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { worker_ = new Worker({"--max-num-seqs", "32"}); }
  static void TearDownTestSuite() { delete worker_; }
  static Worker* worker_;
};
Worker* WorkerIntegration::worker_ = nullptr;

TEST_F(WorkerIntegration, SixteenConcurrentGreedyRequestsEqualTheGolden) {
  const auto golden = testing::LoadGolden("stories260K-f32.json");
  std::vector<Result> results(16);
  std::vector<std::thread> threads;
  for (int i = 0; i < 16; ++i) {
    threads.emplace_back([&, i] { results[i] = Generate(worker_->stub(), Greedy(golden.prompt, 128)); });
  }
  for (auto& t : threads) t.join();
  for (const auto& r : results) {
    ASSERT_TRUE(r.status.ok()) << r.status.error_message();
    EXPECT_EQ(r.ids, golden.generated_ids);
    EXPECT_EQ(r.text, golden.text);
    EXPECT_EQ(r.last.finish_reason(), flotilla::v1::FINISH_REASON_LENGTH);
    EXPECT_EQ(r.last.usage().prompt_tokens(), 5u);
    EXPECT_EQ(r.last.usage().completion_tokens(), 128u);
  }
  EXPECT_TRUE(worker_->WaitKvFree());
}

// A reader that falls behind may get merged messages (the worker folds tokens into a message
// still waiting behind an in-flight write); ids, text and logprobs must be the same either way.
TEST_F(WorkerIntegration, SlowReaderGetsTheSameContent) {
  const auto golden = testing::LoadGolden("stories260K-f32.json");
  wv1::GenerateRequest req = Greedy(golden.prompt, 128);
  req.mutable_sampling()->set_logprobs(2);
  grpc::ClientContext ctx;
  auto reader = worker_->stub().Generate(&ctx, req);
  wv1::GenerateResponse msg;
  std::vector<int32_t> ids;
  std::string text;
  int messages = 0, logprobs = 0;
  while (reader->Read(&msg)) {
    if (messages++ < 10) std::this_thread::sleep_for(std::chrono::milliseconds(5));  // fall behind
    ids.insert(ids.end(), msg.token_ids().begin(), msg.token_ids().end());
    text += msg.text();
    logprobs += msg.logprobs_size();
    if (msg.finish_reason() != flotilla::v1::FINISH_REASON_UNSPECIFIED) {
      EXPECT_EQ(msg.usage().completion_tokens(), 128u);
    }
  }
  ASSERT_TRUE(reader->Finish().ok());
  EXPECT_EQ(ids, golden.generated_ids);
  EXPECT_EQ(text, golden.text);
  EXPECT_EQ(logprobs, 128);
  EXPECT_LE(messages, 128);
}

TEST_F(WorkerIntegration, CancelledRequestReturnsItsBlocks) {
  grpc::ClientContext ctx;
  auto reader = worker_->stub().Generate(&ctx, Greedy("Once upon a time", 500));
  wv1::GenerateResponse msg;
  int got = 0;
  while (got < 5 && reader->Read(&msg)) got += msg.token_ids_size();
  EXPECT_GT(worker_->Load().kv_usage(), 0.0);
  ctx.TryCancel();
  while (reader->Read(&msg)) {
  }
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
  EXPECT_TRUE(worker_->WaitKvFree()) << "KV usage did not return to 0 after cancel";
}

TEST_F(WorkerIntegration, ExpiredDeadlineEndsWithDeadlineExceededAndFreesKv) {
  // 500 tokens take the tiny model tens of milliseconds; 3 ms ends the request in the batch.
  wv1::GenerateRequest req = Greedy("Once upon a time", 500);
  req.set_ignore_eos(true);
  const Result r = Generate(worker_->stub(), req, std::chrono::milliseconds(3));
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_LT(r.ids.size(), 500u);
  EXPECT_TRUE(worker_->WaitKvFree());
}

TEST_F(WorkerIntegration, RepeatedPromptHitsThePrefixCache) {
  const std::string prompt =
      "Once upon a time there was a little girl named Lily. She loved to play outside in the park with her "
      "friends and her dog. One day, she saw a big red ball.";
  const double hits0 = worker_->Metric("flotilla_prefix_cache_hits_total");
  const double queries0 = worker_->Metric("flotilla_prefix_cache_queries_total");
  const Result a = Generate(worker_->stub(), Greedy(prompt, 30));
  const Result b = Generate(worker_->stub(), Greedy(prompt, 30));
  ASSERT_TRUE(a.status.ok() && b.status.ok());
  EXPECT_EQ(a.ids, b.ids) << "a prefix-cache hit changed the output";
  EXPECT_EQ(a.last.usage().cached_tokens(), 0u);
  EXPECT_GE(b.last.usage().cached_tokens(), 16u);
  EXPECT_GT(worker_->Metric("flotilla_prefix_cache_hits_total"), hits0);
  EXPECT_GT(worker_->Metric("flotilla_prefix_cache_queries_total"), queries0);
}

TEST_F(WorkerIntegration, MetricsMoveWithTraffic) {
  const double gen0 = worker_->Metric("flotilla_generation_tokens_total");
  const double len0 = worker_->Metric("flotilla_request_success_total", "finished_reason=\"length\"");
  const double ttft0 = worker_->Metric("flotilla_time_to_first_token_seconds_count");
  ASSERT_TRUE(Generate(worker_->stub(), Greedy("Once upon a time", 10)).status.ok());
  EXPECT_EQ(worker_->Metric("flotilla_generation_tokens_total"), gen0 + 10);
  EXPECT_EQ(worker_->Metric("flotilla_request_success_total", "finished_reason=\"length\""), len0 + 1);
  EXPECT_EQ(worker_->Metric("flotilla_time_to_first_token_seconds_count"), ttft0 + 1);
  const std::string text = worker_->Metrics();
  for (const char* m : {"flotilla_requests_running", "flotilla_requests_waiting", "flotilla_kv_cache_usage_ratio",
                        "flotilla_inter_token_latency_seconds_bucket", "flotilla_e2e_request_latency_seconds_sum",
                        "flotilla_request_queue_time_seconds_count", "flotilla_iteration_tokens_bucket",
                        "flotilla_prompt_tokens_total", "flotilla_preemptions_total"}) {
    EXPECT_NE(text.find(m), std::string::npos) << m;
  }
  EXPECT_NE(text.find("model=\"stories260K-f32\""), std::string::npos);
}

TEST_F(WorkerIntegration, GaugesRiseWhileRequestsRunAndReturnToZero) {
  wv1::GenerateRequest req = Greedy("Once upon a time", 300);
  req.set_ignore_eos(true);
  const Scraped s = RunWhileScraping(*worker_, req, 16, [](const std::string& text) {
    return Worker::Sum(text, "flotilla_requests_running") > 0 && Worker::Sum(text, "flotilla_kv_cache_usage_ratio") > 0;
  });
  EXPECT_TRUE(s.seen) << "no scrape while 16 streams ran showed running > 0 and KV usage > 0:\n" << s.text;
  EXPECT_LE(s.max_running, 16);
  EXPECT_LE(Worker::Sum(s.text, "flotilla_kv_cache_usage_ratio"), 1.0);
  for (const auto& r : s.results) {
    ASSERT_TRUE(r.status.ok()) << r.status.error_message();
    EXPECT_EQ(r.ids.size(), 300u);
  }
  EXPECT_EQ(WaitGaugesIdle(*worker_), "");
}

TEST_F(WorkerIntegration, StopSequenceEndsWithReasonStopAndWithholdsTheStopText) {
  const auto golden = testing::LoadGolden("stories260K-f32.json");
  // Several tokens long; the other stop string comes later in the text, so this one ends the stream.
  const std::string stop = "play outside";
  const size_t at = golden.text.find(stop);
  ASSERT_NE(at, std::string::npos);
  ASSERT_NE(golden.text.find("red ball"), std::string::npos);
  ASSERT_GT(golden.text.find("red ball"), at);
  const double stops0 = worker_->Metric("flotilla_request_success_total", "finished_reason=\"stop\"");
  wv1::GenerateRequest req = Greedy(golden.prompt, 128);
  req.add_stop("red ball");
  req.add_stop(stop);
  const Result r = Generate(worker_->stub(), req);
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  EXPECT_EQ(r.last.finish_reason(), flotilla::v1::FINISH_REASON_STOP);
  EXPECT_EQ(r.text, golden.text.substr(0, at));
  // The ids are the golden's, cut where the stop string matched.
  ASSERT_LT(r.ids.size(), golden.generated_ids.size());
  EXPECT_EQ(r.ids, std::vector<int32_t>(golden.generated_ids.begin(), golden.generated_ids.begin() + r.ids.size()));
  EXPECT_EQ(r.last.usage().completion_tokens(), r.ids.size());
  EXPECT_EQ(worker_->Metric("flotilla_request_success_total", "finished_reason=\"stop\""), stops0 + 1);
}

TEST_F(WorkerIntegration, BadRequestsAreInvalidArgumentWithAMessage) {
  auto expect_invalid = [&](wv1::GenerateRequest req, const std::string& needle) {
    const Result r = Generate(worker_->stub(), req);
    EXPECT_EQ(r.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << needle;
    EXPECT_NE(r.status.error_message().find(needle), std::string::npos) << r.status.error_message();
  };
  expect_invalid(Greedy("", 10), "empty");
  expect_invalid(Greedy(std::string(4000, 'z'), 10), "no room");
  expect_invalid(Greedy("hi", 100000), "exceeds the context");
  wv1::GenerateRequest req = Greedy("hi", 10);
  req.mutable_sampling()->set_top_p(1.5f);
  expect_invalid(req, "top_p");
  req = Greedy("hi", 10);
  req.add_prompt_ids(99999);
  expect_invalid(req, "vocabulary");
}

TEST_F(WorkerIntegration, InfoHealthAndWatchLoad) {
  grpc::ClientContext ctx;
  wv1::InfoResponse info;
  ASSERT_TRUE(worker_->stub().Info(&ctx, {}, &info).ok());
  EXPECT_EQ(info.model(), "stories260K-f32");
  EXPECT_EQ(info.context_length(), 512u);
  EXPECT_EQ(info.quantization(), "F32");
  EXPECT_EQ(info.block_size(), 16u);
  auto health = grpc::health::v1::Health::NewStub(worker_->channel());
  grpc::ClientContext hctx;
  grpc::health::v1::HealthCheckRequest hreq;
  grpc::health::v1::HealthCheckResponse hresp;
  ASSERT_TRUE(health->Check(&hctx, hreq, &hresp).ok());
  EXPECT_EQ(hresp.status(), grpc::health::v1::HealthCheckResponse::SERVING);
  grpc::ClientContext wctx;
  wv1::WatchLoadRequest wreq;
  wreq.set_interval_ms(20);
  auto reader = worker_->stub().WatchLoad(&wctx, wreq);
  wv1::LoadReport rep;
  int n = 0;
  while (n < 3 && reader->Read(&rep)) ++n;
  EXPECT_EQ(n, 3);
  EXPECT_EQ(rep.model(), "stories260K-f32");
  EXPECT_GT(rep.total_blocks(), 0u);
  wctx.TryCancel();
  while (reader->Read(&rep)) {
  }
  reader->Finish();
}

TEST(WorkerProcess, TinyKvBudgetForcesPreemptionsAndAllFinishCorrectly) {
  const auto golden = testing::LoadGolden("stories260K-f32.json");
  Worker w({"--num-kv-blocks", "12", "--block-size", "16"});
  std::vector<Result> results(4);
  std::vector<std::thread> threads;
  for (int i = 0; i < 4; ++i) threads.emplace_back([&, i] { results[i] = Generate(w.stub(), Greedy(golden.prompt, 128)); });
  for (auto& t : threads) t.join();
  for (const auto& r : results) {
    ASSERT_TRUE(r.status.ok()) << r.status.error_message();
    EXPECT_EQ(r.ids, golden.generated_ids);
  }
  EXPECT_GT(w.Metric("flotilla_preemptions_total"), 0);
  EXPECT_TRUE(w.WaitKvFree());
}

TEST(WorkerProcess, DeadlineExpiresWhileQueued) {
  // One sequence slot, held by a long request: the second request waits in the queue and its
  // deadline passes there; it must end with DEADLINE_EXCEEDED without ever running.
  Worker w({"--max-num-seqs", "1"});
  wv1::GenerateRequest longreq = Greedy("Once upon a time", 500);
  longreq.set_ignore_eos(true);
  grpc::ClientContext ctx;
  auto reader = w.stub().Generate(&ctx, longreq);
  wv1::GenerateResponse msg;
  ASSERT_TRUE(reader->Read(&msg));
  const Result r = Generate(w.stub(), Greedy("The cat", 10), std::chrono::milliseconds(2));
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_TRUE(r.ids.empty());
  while (reader->Read(&msg)) {
  }
  EXPECT_TRUE(reader->Finish().ok());
  EXPECT_TRUE(w.WaitKvFree());
}

TEST(WorkerProcess, FullQueueIsResourceExhausted) {
  // One sequence slot and one queue place. 500 tokens take the tiny model only tens of
  // milliseconds, too short to count on a slot staying taken while requests go one by one (that
  // version of this test failed now and then); of a burst of 8 sent at once some must be refused.
  Worker w({"--max-num-seqs", "1", "--max-waiting", "1"});
  wv1::GenerateRequest req = Greedy("Once upon a time", 500);
  req.set_ignore_eos(true);
  constexpr int kBurst = 8;
  std::vector<Result> burst(kBurst);
  std::atomic<int> done{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < kBurst; ++i) {
    threads.emplace_back([&, i] {
      burst[i] = Generate(w.stub(), req);
      done.fetch_add(1);
    });
  }
  int max_running = 0, max_waiting = 0;
  while (done.load() < kBurst) {
    const wv1::LoadReport load = w.Load();
    max_running = std::max(max_running, static_cast<int>(load.running()));
    max_waiting = std::max(max_waiting, static_cast<int>(load.waiting()));
  }
  for (auto& t : threads) t.join();
  int refused = 0;
  for (const Result& r : burst) {
    if (r.status.ok()) continue;
    ++refused;
    EXPECT_EQ(r.status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << r.status.error_message();
  }
  EXPECT_GE(refused, 1);
  EXPECT_LT(refused, kBurst);
  EXPECT_LE(max_running, 1);
  EXPECT_LE(max_waiting, 1);
  EXPECT_TRUE(w.WaitKvFree());
}

TEST(WorkerProcess, DrainStopsAdmittingAndSigtermExitsCleanly) {
  Worker w({});
  grpc::ClientContext gctx;
  wv1::GenerateRequest req = Greedy("Once upon a time", 60);
  auto reader = w.stub().Generate(&gctx, req);
  wv1::GenerateResponse msg;
  ASSERT_TRUE(reader->Read(&msg));
  grpc::ClientContext dctx;
  wv1::DrainRequest dreq;
  dreq.set_wait(true);
  wv1::DrainResponse dresp;
  ASSERT_TRUE(w.stub().Drain(&dctx, dreq, &dresp).ok());  // returns once the stream above is done
  EXPECT_EQ(dresp.in_flight(), 0u);
  int n = 0;
  while (reader->Read(&msg)) n++;
  EXPECT_TRUE(reader->Finish().ok()) << "an in-flight request must finish during a drain";
  auto health = grpc::health::v1::Health::NewStub(w.channel());
  grpc::ClientContext hctx;
  grpc::health::v1::HealthCheckResponse hresp;
  ASSERT_TRUE(health->Check(&hctx, {}, &hresp).ok());
  EXPECT_EQ(hresp.status(), grpc::health::v1::HealthCheckResponse::NOT_SERVING);
  EXPECT_EQ(Generate(w.stub(), Greedy("hi", 5)).status.error_code(), grpc::StatusCode::UNAVAILABLE);
  const int status = w.proc().Stop(SIGTERM);
  ASSERT_TRUE(WIFEXITED(status)) << w.proc().Log();
  EXPECT_EQ(WEXITSTATUS(status), 0);
}

TEST(WorkerProcess, EosEndsTheStreamWithFinishReasonEos) {
  TempDir dir;
  const std::string file = testing::WriteStoryEndIsEosModel(dir);
  ASSERT_FALSE(file.empty());
  Worker w({}, file);
  grpc::ClientContext ictx;
  wv1::InfoResponse info;
  ASSERT_TRUE(w.stub().Info(&ictx, {}, &info).ok());
  ASSERT_EQ(info.eos_token_id(), testing::kStoryEndId);
  const double stops0 = w.Metric("flotilla_request_success_total", "finished_reason=\"stop\"");
  const Result r = Generate(w.stub(), Greedy(testing::kEosPrompt, 400));
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  EXPECT_EQ(r.last.finish_reason(), flotilla::v1::FINISH_REASON_EOS);
  ASSERT_EQ(r.ids.size(), static_cast<size_t>(testing::kEosAfterTokens));
  EXPECT_EQ(r.ids.back(), info.eos_token_id());
  EXPECT_EQ(std::count(r.ids.begin(), r.ids.end(), info.eos_token_id()), 1) << "a token id before the end is EOS";
  EXPECT_EQ(r.last.usage().completion_tokens(), r.ids.size());
  EXPECT_EQ(w.Metric("flotilla_request_success_total", "finished_reason=\"stop\""), stops0 + 1);
  // With ignore_eos the stream goes on past the EOS, with the same tokens before it.
  wv1::GenerateRequest past = Greedy(testing::kEosPrompt, 400);
  past.set_ignore_eos(true);
  const Result p = Generate(w.stub(), past);
  ASSERT_TRUE(p.status.ok()) << p.status.error_message();
  EXPECT_EQ(p.last.finish_reason(), flotilla::v1::FINISH_REASON_LENGTH);
  ASSERT_EQ(p.ids.size(), 400u);
  EXPECT_EQ(std::vector<int32_t>(p.ids.begin(), p.ids.begin() + testing::kEosAfterTokens), r.ids);
  EXPECT_EQ(p.text.rfind(r.text, 0), 0u) << "the EOS-ended text is not a prefix of the longer one";
}

TEST(WorkerProcess, RequestsBeyondMaxNumSeqsShowInTheWaitingGauge) {
  Worker w({"--max-num-seqs", "2"});
  wv1::GenerateRequest req = Greedy("Once upon a time", 300);
  req.set_ignore_eos(true);
  const Scraped s = RunWhileScraping(w, req, 8, [](const std::string& text) {
    return Worker::Sum(text, "flotilla_requests_waiting") > 0;
  });
  EXPECT_TRUE(s.seen) << "8 requests on 2 sequence slots never showed waiting > 0:\n" << s.text;
  EXPECT_LE(s.max_running, 2);
  for (const auto& r : s.results) {
    ASSERT_TRUE(r.status.ok()) << r.status.error_message();
    EXPECT_EQ(r.ids.size(), 300u);
  }
  EXPECT_EQ(WaitGaugesIdle(w), "");
}

// Waits for a process to exit by itself; returns its wait status, or -1 (and kills it) after the timeout.
int WaitExit(Subprocess& p, std::chrono::seconds timeout) {
  const auto until = std::chrono::steady_clock::now() + timeout;
  while (p.Running()) {
    if (std::chrono::steady_clock::now() > until) {
      p.Kill();
      return -1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return p.Stop();
}

// --kv-cache-type q8_0: a model whose head size is a multiple of 32 (a synthetic one, head size
// 64, written by `flotilla synth`) is served from the 8-bit cache; stories260K (head size 8) and
// the cuda backend are refused at start with messages that say why.
TEST(WorkerProcess, Q8KvCacheServesWhereTheHeadSizeAllowsAndIsRefusedElsewhere) {
  TempDir dir;
  const std::string model = dir.File("synth.gguf");
  {
    Subprocess synth;
    ASSERT_TRUE(synth.Start({testing::BinDir() + "/flotilla", "synth", "--shape", "256,2,4,2,512,300", "--type", "q8_0", "-o",
                             model},
                            dir.File("synth.log")));
    const int status = WaitExit(synth, std::chrono::seconds(60));
    ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << synth.Log();
  }
  {
    Worker w({"--kv-cache-type", "q8_0"}, model);
    const Result r = Generate(w.stub(), Greedy("Once upon a time", 8));
    ASSERT_TRUE(r.status.ok()) << r.status.error_message() << w.proc().Log();
    EXPECT_EQ(r.ids.size(), 8u);
    EXPECT_NE(w.proc().Log().find("q8_0 KV"), std::string::npos) << w.proc().Log();
  }
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"--model", "stories260K-f32.gguf"}, "multiple of 32"},
      {{"--model", model, "--backend", "cuda"}, "cpu backend"},
  };
  for (const auto& [args, why] : cases) {
    std::vector<std::string> argv = {testing::BinDir() + "/flotilla-worker", "--kv-cache-type", "q8_0", "--threads", "2",
                                     "--ready-file", dir.File("ready.json")};
    argv.insert(argv.end(), args.begin(), args.end());
    Subprocess p;
    ASSERT_TRUE(p.Start(argv, dir.File("refused.log")));
    if (!p.WaitReady(dir.File("ready.json")).is_null()) {
      ADD_FAILURE() << "the worker served: " << p.Log();
      continue;
    }
    const int status = WaitExit(p, std::chrono::seconds(30));
    ASSERT_TRUE(WIFEXITED(status)) << p.Log();
    EXPECT_NE(WEXITSTATUS(status), 0) << p.Log();
    EXPECT_NE(p.Log().find(why), std::string::npos) << "expected '" << why << "' in:\n" << p.Log();
  }
}

TEST(WorkerProcess, ConfigFileSetsTheServedOptionsAndFlagsWin) {
  TempDir dir;
  testing::WriteBytes(dir.File("worker.toml"),
                      "# flotilla-worker settings\n"
                      "model-name = \"tiny-story\"\n"
                      "max-num-seqs = 7\n"
                      "num-kv-blocks = 100\n"
                      "ctx-size = 256\n");  // --ctx-size 512 on the command line wins
  Worker w({"--config", dir.File("worker.toml")});
  grpc::ClientContext ctx;
  wv1::InfoResponse info;
  ASSERT_TRUE(w.stub().Info(&ctx, {}, &info).ok());
  EXPECT_EQ(info.model(), "tiny-story");
  EXPECT_EQ(info.max_num_seqs(), 7u);
  EXPECT_EQ(info.num_kv_blocks(), 100u);
  EXPECT_EQ(info.context_length(), 512u);
  EXPECT_NE(w.Metrics().find("flotilla_requests_running{model=\"tiny-story\"}"), std::string::npos) << w.Metrics();
  EXPECT_TRUE(Generate(w.stub(), Greedy("Once upon a time", 5)).status.ok());
}

TEST(WorkerProcess, BadConfigFileExitsNonZeroNamingTheKey) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"max-num-sequences = 7\n", "max-num-sequences"},  // unknown key
      {"max-num-seqs = \"many\"\n", "max-num-seqs"},     // not a number
      {"block-size = 2.5\n", "block-size"},               // not an integer
      {"backend = 7\n", "backend"},                       // not one of the choices
  };
  for (const auto& [toml, key] : cases) {
    TempDir dir;
    testing::WriteBytes(dir.File("worker.toml"), toml);
    Subprocess p;
    ASSERT_TRUE(p.Start({testing::BinDir() + "/flotilla-worker", "--model", "stories260K-f32.gguf", "--threads", "2",
                         "--config", dir.File("worker.toml"), "--ready-file", dir.File("ready.json")},
                        dir.File("worker.log")));
    if (!p.WaitReady(dir.File("ready.json")).is_null()) {
      ADD_FAILURE() << "the worker served with config " << toml << p.Log();
      continue;  // p's destructor kills it
    }
    const int status = WaitExit(p, std::chrono::seconds(30));
    ASSERT_TRUE(WIFEXITED(status)) << toml << p.Log();
    EXPECT_NE(WEXITSTATUS(status), 0) << toml;
    EXPECT_NE(p.Log().find(key), std::string::npos) << "config " << toml << "gave:\n" << p.Log();
  }
}

TEST(WorkerProcess, JsonLogFormatWritesOneJsonObjectPerLine) {
  Worker w({"--log-format", "json", "--log-level", "debug"});
  ASSERT_TRUE(Generate(w.stub(), Greedy("Once upon a time", 5)).status.ok());
  const int status = w.proc().Stop(SIGTERM);  // drain and shutdown log lines too
  ASSERT_TRUE(WIFEXITED(status)) << w.proc().Log();
  std::istringstream in(w.proc().Log());
  std::string line;
  int lines = 0;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    ++lines;
    const auto j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    ASSERT_TRUE(j.is_object()) << "not a JSON object: " << line;
    EXPECT_TRUE(j.contains("ts") && j.contains("level") && j.contains("msg")) << line;
    EXPECT_EQ(j.value("component", ""), "worker") << line;
  }
  EXPECT_GE(lines, 2) << w.proc().Log();
}

// A message that quotes operator input (here a model path with a double quote and a backslash)
// must still be one JSON object.
TEST(WorkerProcess, JsonLogLineQuotingInputStaysJson) {
  TempDir dir;
  Subprocess p;
  ASSERT_TRUE(p.Start({testing::BinDir() + "/flotilla-worker", "--model", dir.File("no\"such\\model.gguf"), "--log-format",
                       "json"},
                      dir.File("worker.log")));
  const int status = WaitExit(p, std::chrono::seconds(30));
  ASSERT_TRUE(WIFEXITED(status)) << p.Log();
  EXPECT_NE(WEXITSTATUS(status), 0);
  std::istringstream in(p.Log());
  std::string line;
  int errors = 0;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    const auto j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    ASSERT_TRUE(j.is_object()) << "not a JSON object: " << line;
    if (j.value("level", "") == "error") {
      ++errors;
      EXPECT_NE(j.value("msg", "").find("no\"such\\model.gguf"), std::string::npos) << line;
    }
  }
  EXPECT_EQ(errors, 1) << p.Log();
}

// Flag combinations checked after parsing are errors with a message, not a silent exit code.
TEST(WorkerProcess, TlsCertWithoutKeyIsAnErrorNamingBoth) {
  TempDir dir;
  {
    std::ofstream(dir.File("cert.pem")) << "not a certificate\n";
  }
  Subprocess p;
  ASSERT_TRUE(p.Start({testing::BinDir() + "/flotilla-worker", "--model", "stories260K-q8_0.gguf", "--tls-cert",
                       dir.File("cert.pem")},
                      dir.File("worker.log")));
  const int status = WaitExit(p, std::chrono::seconds(30));
  ASSERT_TRUE(WIFEXITED(status)) << p.Log();
  EXPECT_EQ(WEXITSTATUS(status), 2) << p.Log();
  EXPECT_NE(p.Log().find("--tls-cert and --tls-key go together"), std::string::npos) << p.Log();
}

}  // namespace
}  // namespace flotilla::worker
