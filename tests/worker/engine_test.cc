// The engine in-process with the real model: batching must not change greedy output, the KV
// pool must come back whole after cancels, deadlines and preemptions.
#include "worker/engine.h"

#include <condition_variable>
#include <future>
#include <mutex>

#include "gtest/gtest.h"
#include "model/executor.h"
#include "tests/common/temp_dir.h"
#include "tests/common/test_models.h"
#include "tests/worker/eos_model.h"

namespace flotilla::worker {
namespace {

class Collector final : public RequestSink {
 public:
  void OnEvent(GenerationEvent ev) override {
    std::lock_guard<std::mutex> l(mu_);
    ids_.insert(ids_.end(), ev.token_ids.begin(), ev.token_ids.end());
    text_ += ev.text;
    events_++;
    if (ev.finished) {
      done_ = true;
      last_ = ev;
      cv_.notify_all();
    }
  }
  bool Wait(std::chrono::seconds t = std::chrono::seconds(60)) {
    std::unique_lock<std::mutex> l(mu_);
    return cv_.wait_for(l, t, [&] { return done_; });
  }
  std::vector<int32_t> ids() {
    std::lock_guard<std::mutex> l(mu_);
    return ids_;
  }
  GenerationEvent last() {
    std::lock_guard<std::mutex> l(mu_);
    return last_;
  }
  std::string text() {
    std::lock_guard<std::mutex> l(mu_);
    return text_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<int32_t> ids_;
  std::string text_;
  int events_ = 0;
  bool done_ = false;
  GenerationEvent last_;
};

struct Fixture {
  explicit Fixture(int blocks, int block_size = 16, int max_seqs = 64, const std::string& file = "stories260K-f32.gguf",
                   int threads = 0) {
    model = testing::LoadShared(file);
    tok = std::make_shared<Tokenizer>(model->vocab);
    ExecutorOptions o;
    o.num_kv_blocks = blocks;
    o.block_size = block_size;
    o.max_batch_tokens = 256;
    o.threads = threads;
    auto ex = MakeCpuExecutor(model, o);
    EngineConfig ec;
    ec.max_num_seqs = max_seqs;
    ec.max_tokens_per_step = 256;
    engine = std::make_unique<Engine>(std::move(*ex), tok, ec, SystemClock::Get(), nullptr);
  }
  EngineRequest Greedy(const std::string& prompt, int n) {
    EngineRequest r;
    r.prompt = tok->Encode(prompt, true);
    r.max_tokens = n;
    r.sampling.temperature = 0;
    return r;
  }
  bool WaitKvFree() {
    for (int i = 0; i < 500; ++i) {
      const LoadSnapshot s = engine->load();
      if (s.free_blocks == s.total_blocks && s.running == 0 && s.waiting == 0) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return false;
  }
  std::shared_ptr<const LoadedModel> model;
  std::shared_ptr<Tokenizer> tok;
  std::unique_ptr<Engine> engine;
};

TEST(Engine, SixtyFourConcurrentGreedyRequestsEachEqualTheGolden) {
  const auto golden = testing::LoadGolden("stories260K-f32.json");
  Fixture f(64 * 9);
  std::vector<std::shared_ptr<Collector>> sinks;
  for (int i = 0; i < 64; ++i) {
    auto c = std::make_shared<Collector>();
    // Vary the batch: half the requests carry other prompts and lengths.
    EngineRequest r = i % 2 == 0 ? f.Greedy(golden.prompt, 128) : f.Greedy("The cat sat " + std::to_string(i), 20 + i);
    ASSERT_TRUE(f.engine->Submit(std::move(r), c).ok());
    sinks.push_back(c);
  }
  for (int i = 0; i < 64; ++i) {
    ASSERT_TRUE(sinks[i]->Wait()) << i;
    if (i % 2 == 0) {
      EXPECT_EQ(sinks[i]->ids(), golden.generated_ids) << "request " << i;
      EXPECT_EQ(sinks[i]->text(), golden.text);
      EXPECT_EQ(sinks[i]->last().reason, scheduler::FinishReason::kLength);
      EXPECT_EQ(sinks[i]->last().usage.completion_tokens, 128);
    }
  }
  EXPECT_TRUE(f.WaitKvFree());
}

// Whoever has a request's tokens sees the request in the engine's load report: the report is
// published before a step's tokens go out (a client reading GetLoad right after its first token
// once found the report from before its request was admitted). The sink reads the report as each
// token arrives, on the engine's thread, before the next step could publish another.
TEST(Engine, LoadReportShowsARequestOnceItsTokensArrive) {
  Fixture f(64);
  class LoadAtEachToken final : public RequestSink {
   public:
    explicit LoadAtEachToken(const Engine* e) : e_(e) {}
    void OnEvent(GenerationEvent ev) override {
      if (!ev.finished) {
        const LoadSnapshot s = e_->load();
        std::lock_guard<std::mutex> l(mu_);
        seen_.push_back(s);
        return;
      }
      std::lock_guard<std::mutex> l(mu_);
      done.set_value();
    }
    std::vector<LoadSnapshot> seen() {
      std::lock_guard<std::mutex> l(mu_);
      return seen_;
    }
    std::promise<void> done;  // set at the final event

   private:
    const Engine* e_;
    std::mutex mu_;
    std::vector<LoadSnapshot> seen_;
  };
  auto sink = std::make_shared<LoadAtEachToken>(f.engine.get());
  auto finished = sink->done.get_future();
  ASSERT_TRUE(f.engine->Submit(f.Greedy("Once upon a time", 8), sink).ok());
  ASSERT_EQ(finished.wait_for(std::chrono::seconds(60)), std::future_status::ready);
  const auto seen = sink->seen();
  ASSERT_FALSE(seen.empty());
  for (size_t i = 0; i < seen.size(); ++i) {
    EXPECT_EQ(seen[i].running, 1) << "token event " << i;
    EXPECT_LT(seen[i].free_blocks, seen[i].total_blocks) << "token event " << i;
    EXPECT_GT(seen[i].kv_usage, 0.0) << "token event " << i;
  }
}

TEST(Engine, TinyKvPoolForcesPreemptionAndOutputsStayExact) {
  const auto golden = testing::LoadGolden("stories260K-f32.json");
  // 12 blocks of 16 tokens: one sequence of 133 tokens needs 9, so four cannot run together.
  Fixture f(12);
  std::vector<std::shared_ptr<Collector>> sinks;
  for (int i = 0; i < 4; ++i) {
    auto c = std::make_shared<Collector>();
    ASSERT_TRUE(f.engine->Submit(f.Greedy(golden.prompt, 128), c).ok());
    sinks.push_back(c);
  }
  for (auto& c : sinks) {
    ASSERT_TRUE(c->Wait());
    EXPECT_EQ(c->ids(), golden.generated_ids);
  }
  EXPECT_GT(f.engine->scheduler_stats().preemptions, 0u);
  EXPECT_TRUE(f.WaitKvFree());
}

TEST(Engine, CancelFreesBlocksAndEndsTheStream) {
  Fixture f(256);
  auto c = std::make_shared<Collector>();
  auto id = f.engine->Submit(f.Greedy("Once upon a time", 400), c);
  ASSERT_TRUE(id.ok());
  while (c->ids().size() < 3) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  f.engine->Cancel(*id);
  ASSERT_TRUE(c->Wait());
  EXPECT_EQ(c->last().reason, scheduler::FinishReason::kCancelled);
  EXPECT_EQ(c->last().status.code(), absl::StatusCode::kCancelled);
  EXPECT_LT(c->ids().size(), 400u);
  EXPECT_TRUE(f.WaitKvFree());
}

TEST(Engine, ExpiredDeadlineEndsWithDeadlineExceeded) {
  Fixture f(256);
  auto c = std::make_shared<Collector>();
  EngineRequest r = f.Greedy("Once upon a time", 400);
  r.deadline = SystemClock::Get()->Now() + 5 * kNsPerMs;
  ASSERT_TRUE(f.engine->Submit(std::move(r), c).ok());
  ASSERT_TRUE(c->Wait());
  EXPECT_EQ(c->last().status.code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(c->last().reason, scheduler::FinishReason::kExpired);
  EXPECT_TRUE(f.WaitKvFree());
}

TEST(Engine, StopSequencesAndEos) {
  const auto golden = testing::LoadGolden("stories260K-f32.json");
  Fixture f(256);
  auto c = std::make_shared<Collector>();
  EngineRequest r = f.Greedy(golden.prompt, 128);
  r.stop = {"Lily"};
  ASSERT_TRUE(f.engine->Submit(std::move(r), c).ok());
  ASSERT_TRUE(c->Wait());
  EXPECT_EQ(c->text(), ", there was a little girl named ");
  EXPECT_EQ(c->last().reason, scheduler::FinishReason::kStop);
}

TEST(Engine, EosEndsTheRequestWithReasonEosAndNoTokensPastIt) {
  testing::TempDir dir;
  const std::string file = testing::WriteStoryEndIsEosModel(dir);
  ASSERT_FALSE(file.empty());
  Fixture f(256, 16, 64, file);
  ASSERT_EQ(f.tok->eos_id(), testing::kStoryEndId);
  auto c = std::make_shared<Collector>();
  ASSERT_TRUE(f.engine->Submit(f.Greedy(testing::kEosPrompt, 400), c).ok());
  ASSERT_TRUE(c->Wait());
  const std::vector<int32_t> ids = c->ids();
  EXPECT_EQ(c->last().reason, scheduler::FinishReason::kEos);
  EXPECT_TRUE(c->last().status.ok()) << c->last().status;
  ASSERT_EQ(ids.size(), static_cast<size_t>(testing::kEosAfterTokens));
  EXPECT_EQ(ids.back(), f.tok->eos_id());
  EXPECT_EQ(std::count(ids.begin(), ids.end(), f.tok->eos_id()), 1) << "a token id before the end is EOS";
  EXPECT_EQ(c->last().usage.completion_tokens, testing::kEosAfterTokens);

  // The same request with ignore_eos runs on past that point with the same tokens before it.
  auto past = std::make_shared<Collector>();
  EngineRequest r = f.Greedy(testing::kEosPrompt, 400);
  r.ignore_eos = true;
  ASSERT_TRUE(f.engine->Submit(std::move(r), past).ok());
  ASSERT_TRUE(past->Wait());
  EXPECT_EQ(past->last().reason, scheduler::FinishReason::kLength);
  const std::vector<int32_t> past_ids = past->ids();
  ASSERT_EQ(past_ids.size(), 400u);
  EXPECT_EQ(std::vector<int32_t>(past_ids.begin(), past_ids.begin() + testing::kEosAfterTokens), ids);
  // EOS adds no text: the text is what the tokens before it spell.
  EXPECT_EQ(c->text(), f.tok->Decode(std::vector<int32_t>(ids.begin(), ids.end() - 1)));
  EXPECT_TRUE(f.WaitKvFree());
}

TEST(Engine, RejectsBadRequestsWithReasons) {
  Fixture f(64);
  auto c = std::make_shared<Collector>();
  EngineRequest r;
  EXPECT_EQ(f.engine->Submit(r, c).status().code(), absl::StatusCode::kInvalidArgument);  // empty
  r = f.Greedy("hi", 10);
  r.prompt.push_back(100000);
  EXPECT_EQ(f.engine->Submit(r, c).status().code(), absl::StatusCode::kInvalidArgument);
  r = f.Greedy("hi", 100000);
  EXPECT_EQ(f.engine->Submit(r, c).status().code(), absl::StatusCode::kInvalidArgument);
  r = f.Greedy("hi", 10);
  r.sampling.top_p = 2;
  EXPECT_NE(f.engine->Submit(r, c).status().message().find("top_p"), std::string::npos);
  r = f.Greedy(std::string(3000, 'x'), 10);
  EXPECT_NE(f.engine->Submit(r, c).status().message().find("no room"), std::string::npos);
  r = f.Greedy("hi", 10);
  r.stop = std::vector<std::string>(9, "x");
  EXPECT_EQ(f.engine->Submit(r, c).status().code(), absl::StatusCode::kInvalidArgument);
  f.engine->StartDrain();
  EXPECT_EQ(f.engine->Submit(f.Greedy("hi", 5), c).status().code(), absl::StatusCode::kUnavailable);
}

TEST(Engine, SamePromptSameSeedSameText) {
  Fixture f(256);
  std::string first;
  for (int i = 0; i < 2; ++i) {
    auto c = std::make_shared<Collector>();
    EngineRequest r = f.Greedy("Once upon a time", 60);
    r.sampling.temperature = 0.9f;
    r.sampling.seed = 1234;
    r.sampling.has_seed = true;
    ASSERT_TRUE(f.engine->Submit(std::move(r), c).ok());
    ASSERT_TRUE(c->Wait());
    if (i == 0) first = c->text(); else EXPECT_EQ(c->text(), first);
  }
}

// A step's sequences are sampled on the executor's threads: sixteen concurrent seeded requests,
// each with other sampling settings (some asking for logprobs), give the same tokens on a
// two-thread executor (sampled in parallel) as on a one-thread one (in order). Each sampler owns
// its state, and the forward pass gives the same logits whatever the batch, so any mix-up of
// rows or shared state between samplers shows as a different token.
TEST(Engine, SampledTokensDoNotDependOnTheExecutorThreads) {
  auto run = [](int threads) {
    Fixture f(256, 16, 64, "stories260K-f32.gguf", threads);
    std::vector<std::shared_ptr<Collector>> sinks;
    for (int i = 0; i < 16; ++i) {
      auto c = std::make_shared<Collector>();
      EngineRequest r = f.Greedy(i % 2 ? "Once upon a time" : "The little dog", 40);
      r.sampling.temperature = 0.6f + 0.1f * static_cast<float>(i % 5);
      if (i % 4 == 1) r.sampling.top_p = 0.9f;
      if (i % 4 == 2) r.sampling.top_k = 20;
      if (i % 4 == 3) r.sampling.min_p = 0.05f;
      if (i % 3 == 0) r.sampling.repetition_penalty = 1.1f;
      r.sampling.logprobs = i % 2 ? 3 : 0;
      r.sampling.seed = 1000 + static_cast<uint64_t>(i);
      r.sampling.has_seed = true;
      EXPECT_TRUE(f.engine->Submit(std::move(r), c).ok());
      sinks.push_back(c);
    }
    std::vector<std::pair<std::vector<int32_t>, std::string>> out;
    for (auto& c : sinks) {
      EXPECT_TRUE(c->Wait());
      out.emplace_back(c->ids(), c->text());
    }
    return out;
  };
  const auto one = run(1), two = run(2);
  ASSERT_EQ(one.size(), two.size());
  for (size_t i = 0; i < one.size(); ++i) {
    EXPECT_EQ(two[i].first, one[i].first) << "request " << i;
    EXPECT_EQ(two[i].second, one[i].second) << "request " << i;
    EXPECT_FALSE(one[i].first.empty()) << "request " << i;
  }
}

// An executor whose device "fails" after some steps, as a CUDA error would.
// Fails every forward pass from the fail_at-th on; none runs before `open` is ready, so a test
// can submit all its requests first (the engine thread would otherwise reach the failure, and
// refuse later submissions as unhealthy, whenever the submitting thread was descheduled).
class FailingExecutor final : public Executor {
 public:
  FailingExecutor(std::unique_ptr<Executor> inner, int fail_at, std::shared_future<void> open)
      : inner_(std::move(inner)), fail_at_(fail_at), open_(std::move(open)) {}
  const LlamaConfig& config() const override { return inner_->config(); }
  int num_kv_blocks() const override { return inner_->num_kv_blocks(); }
  int block_size() const override { return inner_->block_size(); }
  int max_batch_tokens() const override { return inner_->max_batch_tokens(); }
  std::string Describe() const override { return "failing " + inner_->Describe(); }
  absl::Status Forward(const ForwardBatch& b, std::span<float> logits) override {
    open_.wait();
    if (++calls_ >= fail_at_) return absl::InternalError("device error 700 (illegal address)");
    return inner_->Forward(b, logits);
  }

 private:
  std::unique_ptr<Executor> inner_;
  int fail_at_;
  std::shared_future<void> open_;
  int calls_ = 0;
};

TEST(Engine, BackendErrorFailsTheRequestsAndMarksTheWorkerUnhealthy) {
  auto model = testing::LoadShared("stories260K-f32.gguf");
  auto tok = std::make_shared<Tokenizer>(model->vocab);
  ExecutorOptions o;
  o.num_kv_blocks = 64;
  auto ex = MakeCpuExecutor(model, o);
  ASSERT_TRUE(ex.ok());
  std::promise<void> open;
  Engine engine(std::make_unique<FailingExecutor>(std::move(*ex), 5, open.get_future().share()), tok, EngineConfig{},
                SystemClock::Get(), nullptr);
  // Opens the executor on every way out (before the engine stops), so a failed assertion
  // cannot leave the engine thread waiting in a forward pass.
  struct Opener {
    std::promise<void>& p;
    bool done = false;
    void Open() {
      if (!done) p.set_value();
      done = true;
    }
    ~Opener() { Open(); }
  } opener{open};
  std::vector<std::shared_ptr<Collector>> sinks;
  for (int i = 0; i < 3; ++i) {
    EngineRequest r;
    r.prompt = tok->Encode("Once upon a time", true);
    r.max_tokens = 50;
    r.sampling.temperature = 0;
    auto c = std::make_shared<Collector>();
    ASSERT_TRUE(engine.Submit(std::move(r), c).ok());
    sinks.push_back(c);
  }
  opener.Open();
  for (auto& c : sinks) {
    ASSERT_TRUE(c->Wait(std::chrono::seconds(10))) << "a request hung after a backend error";
    EXPECT_EQ(c->last().status.code(), absl::StatusCode::kInternal);
    EXPECT_NE(c->last().status.message().find("illegal address"), std::string::npos);
  }
  EXPECT_FALSE(engine.load().healthy);
  EXPECT_EQ(engine.in_flight(), 0);
  EngineRequest r;
  r.prompt = tok->Encode("hi", true);
  EXPECT_EQ(engine.Submit(std::move(r), std::make_shared<Collector>()).status().code(), absl::StatusCode::kUnavailable);
}

}  // namespace
}  // namespace flotilla::worker
