// The engine: one thread owns the scheduler, the executor and every request's decoding state,
// and runs step after step while there is work. Other threads (gRPC handlers, tests) talk to it
// only through Submit/Cancel/Drain and the thread-safe accessors below; results come back
// through each request's sink, called on the engine thread (sinks must not block).
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "common/clock.h"
#include "model/executor.h"
#include "model/sampler.h"
#include "model/tokenizer.h"
#include "scheduler/scheduler.h"

namespace flotilla::worker {

class EngineMetrics;

struct EngineRequest {
  std::vector<int32_t> prompt;  // token ids
  int max_tokens = 0;           // 0: up to the context
  SamplingParams sampling;
  std::vector<std::string> stop;
  bool ignore_eos = false;
  int priority = 0;
  std::string tenant;
  int shared_prefix_tokens = 0;
  TimeNs deadline = 0;  // engine clock; 0: none
};

struct TokenLogprobs {
  int32_t token = 0;
  float logprob = 0;
  std::vector<TokenLogprob> top;
};

struct Usage {
  int prompt_tokens = 0;
  int completion_tokens = 0;
  int cached_tokens = 0;
};

// One message to a request's caller.
struct GenerationEvent {
  std::vector<int32_t> token_ids;
  std::string text;  // whole UTF-8 characters, stop sequences withheld
  std::vector<TokenLogprobs> logprobs;
  bool finished = false;
  scheduler::FinishReason reason = scheduler::FinishReason::kNone;
  absl::Status status;  // non-OK when the request failed (expired: DEADLINE_EXCEEDED; step error: INTERNAL)
  Usage usage;          // on the finishing event
  double time_to_first_token_s = 0;  // on the first event with tokens
  double queue_time_s = 0;           // on the finishing event
};

class RequestSink {
 public:
  virtual ~RequestSink() = default;
  // Called on the engine thread, in order; the last call has finished == true.
  virtual void OnEvent(GenerationEvent event) = 0;
};

struct EngineConfig {
  int max_num_seqs = 64;
  int max_tokens_per_step = 512;
  int max_waiting = 1024;
  bool enable_prefix_cache = true;
  int max_stop_sequences = 8;
  int max_stop_length = 256;
  std::string model_name;
};

// A consistent snapshot of load, updated every step (readable from any thread).
struct LoadSnapshot {
  int running = 0;
  int waiting = 0;
  double kv_usage = 0;
  int free_blocks = 0;
  int total_blocks = 0;
  double tokens_per_second = 0;
  double prefill_tokens_per_second = 0;  // capacity while busy, not a rate over idle time
  double prefix_hit_rate = 0;
  bool draining = false;
  bool healthy = true;
};

class Engine {
 public:
  // The executor must already be warmed up. metrics may be null.
  Engine(std::unique_ptr<Executor> executor, std::shared_ptr<const Tokenizer> tokenizer, const EngineConfig& config,
         const Clock* clock, EngineMetrics* metrics);
  ~Engine();  // stops the loop; requests still running end with CANCELLED

  // Validates and queues a request. INVALID_ARGUMENT for bad requests, RESOURCE_EXHAUSTED when
  // the queue is full, UNAVAILABLE while draining or unhealthy. Returns the request id.
  absl::StatusOr<uint64_t> Submit(EngineRequest request, std::shared_ptr<RequestSink> sink);
  // Cancels a request; its KV blocks are freed within one step. Thread-safe; unknown ids ignored.
  void Cancel(uint64_t id);
  // Stops admitting; in-flight requests finish.
  void StartDrain();
  // Blocks until nothing is running or queued, or the timeout passes. Returns whether empty.
  bool WaitIdle(TimeNs timeout_ns);
  // Called (on the engine thread) once when the engine becomes idle while draining.
  void OnDrained(std::function<void()> callback);

  LoadSnapshot load() const;
  scheduler::SchedulerStats scheduler_stats() const;
  const Executor& executor() const { return *executor_; }
  const Tokenizer& tokenizer() const { return *tokenizer_; }
  const EngineConfig& config() const { return config_; }
  int in_flight() const { return in_flight_.load(); }

 private:
  struct Live;  // per-request decoding state, engine thread only
  struct Inbox {
    std::vector<std::pair<uint64_t, std::unique_ptr<Live>>> submits;
    std::vector<uint64_t> cancels;
  };

  void Loop();
  void Step();
  void Admit(Inbox& inbox);
  void FinishRequest(uint64_t id, scheduler::FinishReason reason, absl::Status status, const scheduler::FinishedRequest* f);
  void EmitToken(Live& live, const SampleResult& s, bool* stopped);
  void PublishLoad();

  std::unique_ptr<Executor> executor_;
  std::shared_ptr<const Tokenizer> tokenizer_;
  EngineConfig config_;
  const Clock* clock_;
  EngineMetrics* metrics_;
  std::unique_ptr<scheduler::Scheduler> scheduler_;  // engine thread only

  mutable std::mutex mu_;
  std::condition_variable cv_;
  Inbox inbox_ ABSL_GUARDED_BY(mu_);
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::function<void()>> drained_callbacks_ ABSL_GUARDED_BY(mu_);
  LoadSnapshot load_ ABSL_GUARDED_BY(mu_);
  scheduler::SchedulerStats stats_ ABSL_GUARDED_BY(mu_);

  std::atomic<uint64_t> next_id_{1};
  std::atomic<int> in_flight_{0};
  std::atomic<bool> draining_{false};
  std::atomic<bool> healthy_{true};

  // Engine thread only.
  absl::flat_hash_map<uint64_t, std::unique_ptr<Live>> live_;
  ForwardBatch batch_;
  std::vector<float> logits_;
  std::vector<int> logit_row_;  // per plan seq: row in logits_ or -1
  // A step's sampled sequences, in plan order: sampled on the executor's threads, then emitted.
  struct Pick {
    Live* live;
    std::span<float> row;
    std::span<const int32_t> tokens;
    SampleResult result;
  };
  std::vector<Pick> picks_;
  double tok_rate_ = 0;          // generated tokens per wall-clock second (decays while idle)
  double prefill_capacity_ = 0;  // prompt tokens per busy second (0 until measured)
  TimeNs last_rate_update_ = 0;
  int64_t tokens_since_ = 0;

  std::thread thread_;
};

}  // namespace flotilla::worker
