#include "worker/engine.h"

#include <spdlog/spdlog.h>

#include "absl/strings/str_cat.h"
#include "model/utf8.h"
#include "worker/engine_metrics.h"
#include "worker/stop_matcher.h"

namespace flotilla::worker {

using scheduler::FinishReason;

struct Engine::Live {
  Live(uint64_t id_, EngineRequest r, std::shared_ptr<RequestSink> s, int vocab, TimeNs now)
      : id(id_), req(std::move(r)), sink(std::move(s)), sampler(req.sampling, vocab), stop(req.stop), arrival(now) {}
  uint64_t id;
  EngineRequest req;
  std::shared_ptr<RequestSink> sink;
  Sampler sampler;
  Utf8Stream utf8;
  StopMatcher stop;
  TimeNs arrival;
  TimeNs first_scheduled = 0;
  TimeNs first_token = 0;
  TimeNs last_token = 0;
  int generated = 0;
  GenerationEvent pending;  // tokens of this step not yet delivered
};

Engine::Engine(std::unique_ptr<Executor> executor, std::shared_ptr<const Tokenizer> tokenizer, const EngineConfig& config,
               const Clock* clock, EngineMetrics* metrics)
    : executor_(std::move(executor)), tokenizer_(std::move(tokenizer)), config_(config), clock_(clock), metrics_(metrics) {
  scheduler::SchedulerConfig sc;
  sc.num_blocks = executor_->num_kv_blocks();
  sc.block_size = executor_->block_size();
  sc.max_num_seqs = config_.max_num_seqs;
  sc.max_tokens_per_step = std::min(config_.max_tokens_per_step, executor_->max_batch_tokens());
  // A sequence can never hold more than the context, nor more than the whole pool.
  sc.max_context = std::min<int>(executor_->config().context_length, executor_->num_kv_blocks() * executor_->block_size());
  sc.max_waiting = config_.max_waiting;
  sc.enable_prefix_cache = config_.enable_prefix_cache;
  scheduler_ = std::make_unique<scheduler::Scheduler>(sc, clock_);
  logits_.resize(static_cast<size_t>(config_.max_num_seqs) * executor_->config().vocab_size);
  last_rate_update_ = clock_->Now();
  {
    std::lock_guard<std::mutex> l(mu_);
    stats_ = scheduler_->stats();
  }
  PublishLoad();
  thread_ = std::thread([this] { Loop(); });
}

Engine::~Engine() {
  {
    std::lock_guard<std::mutex> l(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

absl::StatusOr<uint64_t> Engine::Submit(EngineRequest r, std::shared_ptr<RequestSink> sink) {
  if (!healthy_.load()) return absl::UnavailableError("worker is unhealthy after an engine error");
  if (draining_.load()) return absl::UnavailableError("worker is draining and admits no new requests");
  const LlamaConfig& c = executor_->config();
  if (r.prompt.empty()) return absl::InvalidArgumentError("prompt is empty");
  for (int32_t t : r.prompt) {
    if (t < 0 || t >= c.vocab_size) {
      return absl::InvalidArgumentError(absl::StrCat("prompt token id ", t, " is outside the vocabulary of ", c.vocab_size));
    }
  }
  const int limit = std::min<int>(c.context_length, executor_->num_kv_blocks() * executor_->block_size());
  const int n = static_cast<int>(r.prompt.size());
  if (n >= limit) {
    return absl::InvalidArgumentError(absl::StrCat("prompt of ", n, " tokens leaves no room to generate in the context of ", limit,
                                                   " tokens"));
  }
  if (r.max_tokens < 0) return absl::InvalidArgumentError("max_tokens must not be negative");
  if (r.max_tokens == 0) r.max_tokens = limit - n;
  if (static_cast<int64_t>(n) + r.max_tokens > limit) {
    return absl::InvalidArgumentError(absl::StrCat("prompt (", n, " tokens) + max_tokens (", r.max_tokens,
                                                   ") exceeds the context of ", limit, " tokens"));
  }
  if (absl::Status s = ValidateSamplingParams(r.sampling); !s.ok()) return s;
  if (static_cast<int>(r.stop.size()) > config_.max_stop_sequences) {
    return absl::InvalidArgumentError(absl::StrCat("at most ", config_.max_stop_sequences, " stop sequences"));
  }
  for (const auto& s : r.stop) {
    if (static_cast<int>(s.size()) > config_.max_stop_length) {
      return absl::InvalidArgumentError(absl::StrCat("stop sequences are limited to ", config_.max_stop_length, " bytes"));
    }
  }
  if (r.priority < -1000 || r.priority > 1000) return absl::InvalidArgumentError("priority must be in [-1000, 1000]");
  if (r.shared_prefix_tokens < 0 || r.shared_prefix_tokens > n) {
    return absl::InvalidArgumentError("shared_prefix_tokens must be within the prompt");
  }
  if (in_flight_.fetch_add(1) >= config_.max_waiting + config_.max_num_seqs) {
    in_flight_.fetch_sub(1);
    return absl::ResourceExhaustedError(absl::StrCat("worker queue is full (", config_.max_waiting, " waiting)"));
  }
  const uint64_t id = next_id_.fetch_add(1);
  auto live = std::make_unique<Live>(id, std::move(r), std::move(sink), c.vocab_size, clock_->Now());
  {
    std::lock_guard<std::mutex> l(mu_);
    inbox_.submits.emplace_back(id, std::move(live));
  }
  cv_.notify_one();
  return id;
}

void Engine::Cancel(uint64_t id) {
  {
    std::lock_guard<std::mutex> l(mu_);
    inbox_.cancels.push_back(id);
  }
  cv_.notify_one();
}

void Engine::StartDrain() {
  draining_.store(true);
  cv_.notify_one();
}

void Engine::OnDrained(std::function<void()> callback) {
  {
    std::lock_guard<std::mutex> l(mu_);
    drained_callbacks_.push_back(std::move(callback));
  }
  cv_.notify_one();
}

bool Engine::WaitIdle(TimeNs timeout_ns) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::nanoseconds(timeout_ns);
  while (in_flight_.load() > 0) {
    if (std::chrono::steady_clock::now() > until) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return true;
}

LoadSnapshot Engine::load() const {
  std::lock_guard<std::mutex> l(mu_);
  LoadSnapshot s = load_;
  s.draining = draining_.load();
  s.healthy = healthy_.load();
  return s;
}

scheduler::SchedulerStats Engine::scheduler_stats() const {
  std::lock_guard<std::mutex> l(mu_);
  return stats_;
}

void Engine::Loop() {
  for (;;) {
    Inbox inbox;
    std::vector<std::function<void()>> drained;
    {
      std::unique_lock<std::mutex> l(mu_);
      if (inbox_.submits.empty() && inbox_.cancels.empty() && live_.empty() && !stop_) {
        if (draining_.load() && !drained_callbacks_.empty()) {
          drained.swap(drained_callbacks_);
        } else {
          // Wake now and then to let the rates in the load report decay while idle.
          cv_.wait_for(l, std::chrono::milliseconds(250));
        }
      }
      if (stop_) break;
      std::swap(inbox, inbox_);
    }
    for (auto& cb : drained) cb();
    Admit(inbox);
    if (!live_.empty()) {
      Step();  // publishes the load itself, before it hands out the step's tokens
    } else {
      PublishLoad();
    }
  }
  // Shutting down: everything still live ends as cancelled.
  std::vector<uint64_t> ids;
  for (auto& [id, live] : live_) ids.push_back(id);
  for (uint64_t id : ids) FinishRequest(id, FinishReason::kCancelled, absl::CancelledError("worker is shutting down"), nullptr);
  std::vector<std::function<void()>> drained;
  {
    std::lock_guard<std::mutex> l(mu_);
    drained.swap(drained_callbacks_);
  }
  for (auto& cb : drained) cb();
}

void Engine::Admit(Inbox& inbox) {
  for (auto& [id, live] : inbox.submits) {
    scheduler::RequestSpec spec;
    spec.id = id;
    spec.prompt = live->req.prompt;
    spec.max_new_tokens = live->req.max_tokens;
    spec.priority = live->req.priority;
    spec.deadline = live->req.deadline;
    spec.tenant = live->req.tenant;
    spec.shared_prefix_tokens = live->req.shared_prefix_tokens;
    absl::Status s = scheduler_->Add(std::move(spec));
    live_.emplace(id, std::move(live));
    if (!s.ok()) FinishRequest(id, FinishReason::kError, s, nullptr);
  }
  for (uint64_t id : inbox.cancels) scheduler_->Cancel(id);
}

void Engine::EmitToken(Live& live, const SampleResult& s, bool* stopped) {
  const TimeNs now = clock_->Now();
  if (live.generated == 0) {
    live.first_token = now;
    live.pending.time_to_first_token_s = NsToSec(now - live.arrival);
    if (metrics_) {
      metrics_->time_to_first_token.Observe(live.pending.time_to_first_token_s);
      metrics_->prompt_tokens.Increment(static_cast<double>(live.req.prompt.size()));
    }
  } else if (metrics_) {
    metrics_->inter_token_latency.Observe(NsToSec(now - live.last_token));
  }
  live.last_token = now;
  ++live.generated;
  if (metrics_) metrics_->generation_tokens.Increment();
  live.pending.token_ids.push_back(s.token);
  if (live.req.sampling.logprobs > 0) live.pending.logprobs.push_back({s.token, s.logprob, s.top});
  *stopped = false;
  if (!live.req.ignore_eos && tokenizer_->IsEnd(s.token)) return;  // EOS adds no text
  live.pending.text += live.stop.Push(live.utf8.Push(tokenizer_->TokenBytes(s.token)), stopped);
}

void Engine::Step() {
  const int V = executor_->config().vocab_size;
  scheduler::StepPlan plan = scheduler_->Schedule();
  for (const auto& f : plan.finished) {
    absl::Status st = f.reason == FinishReason::kExpired ? absl::DeadlineExceededError("deadline passed before the request finished")
                                                          : absl::CancelledError("request cancelled");
    FinishRequest(f.id, f.reason, st, &f);
  }
  if (metrics_ && plan.num_preempted > 0) metrics_->preemptions.Increment(plan.num_preempted);
  if (plan.seqs.empty()) {
    if (!live_.empty()) {
      // Nothing runnable this step (should be rare): do not spin.
      std::unique_lock<std::mutex> l(mu_);
      cv_.wait_for(l, std::chrono::milliseconds(1));
    }
    PublishLoad();
    return;
  }
  const TimeNs now = clock_->Now();
  batch_.Clear();
  logit_row_.assign(plan.seqs.size(), -1);
  int rows = 0;
  int64_t prefill_tokens = 0;
  for (size_t i = 0; i < plan.seqs.size(); ++i) {
    const auto& s = plan.seqs[i];
    const int32_t si = batch_.AddSequence(s.block_table);
    for (size_t j = 0; j < s.tokens.size(); ++j) {
      batch_.Add(s.tokens[j], s.start_pos + static_cast<int32_t>(j), si, s.sample && j + 1 == s.tokens.size());
    }
    if (s.sample) logit_row_[i] = rows++;
    if (s.tokens.size() > 1 || !s.sample) prefill_tokens += static_cast<int64_t>(s.tokens.size());
    auto it = live_.find(s.id);
    if (it != live_.end() && it->second->first_scheduled == 0) {
      it->second->first_scheduled = now;
      if (metrics_) metrics_->queue_time.Observe(NsToSec(now - it->second->arrival));
    }
  }
  if (static_cast<size_t>(rows) * V > logits_.size()) logits_.resize(static_cast<size_t>(rows) * V);
  if (metrics_) metrics_->iteration_tokens.Observe(static_cast<double>(batch_.size()));
  const TimeNs t0 = clock_->Now();
  const absl::Status fs = executor_->Forward(batch_, logits_);
  const double step_s = NsToSec(clock_->Now() - t0);
  // Prefill capacity: tokens per busy second of steps that were mostly prefill. Unlike a rate
  // over wall time it does not fall while idle, so admission can use it to estimate TTFT.
  if (fs.ok() && prefill_tokens >= 16 && step_s > 0) {
    const double sample = static_cast<double>(batch_.size()) / step_s;
    prefill_capacity_ = prefill_capacity_ == 0 ? sample : 0.8 * prefill_capacity_ + 0.2 * sample;
  }

  std::vector<scheduler::SeqResult> results;
  results.reserve(rows);
  if (!fs.ok()) {
    // A failed step fails every request in it; a backend error also makes the worker unhealthy.
    spdlog::error("engine step failed: {}", fs.ToString());
    if (fs.code() != absl::StatusCode::kInvalidArgument) healthy_.store(false);
    // A kError result ends its sequence whether or not it sampled (see scheduler.h).
    for (const auto& s : plan.seqs) {
      results.push_back({s.id, -1, FinishReason::kError});
      if (auto it = live_.find(s.id); it != live_.end()) {
        it->second->pending.status = absl::InternalError("engine step failed: " + fs.ToString());
      }
    }
  } else {
    // Sampling first, on the executor's threads (each sequence has its own sampler and
    // logits row; nothing else is touched), then tokens are emitted here in plan order.
    picks_.clear();
    for (size_t i = 0; i < plan.seqs.size(); ++i) {
      if (logit_row_[i] < 0) continue;
      const auto& s = plan.seqs[i];
      std::span<float> row(logits_.data() + static_cast<size_t>(logit_row_[i]) * V, V);
      picks_.push_back({live_.at(s.id).get(), row, scheduler_->tokens(s.id), {}});
    }
    executor_->ParallelFor(static_cast<int64_t>(picks_.size()), [&](int64_t k) {
      Pick& p = picks_[static_cast<size_t>(k)];
      p.result = p.live->sampler.Sample(p.row, p.tokens, p.live->req.prompt.size());
    });
    for (const Pick& p : picks_) {
      bool stopped = false;
      EmitToken(*p.live, p.result, &stopped);
      FinishReason fr = FinishReason::kNone;
      if (!p.live->req.ignore_eos && tokenizer_->IsEnd(p.result.token)) fr = FinishReason::kEos;
      if (stopped) fr = FinishReason::kStop;
      results.push_back({p.live->id, p.result.token, fr});
    }
  }
  tokens_since_ += static_cast<int64_t>(results.size());
  for (const auto& f : scheduler_->Update(plan, results)) {
    absl::Status st;
    if (f.reason == FinishReason::kExpired) st = absl::DeadlineExceededError("deadline passed before the request finished");
    if (f.reason == FinishReason::kCancelled) st = absl::CancelledError("request cancelled");
    if (f.reason == FinishReason::kError) {
      auto it = live_.find(f.id);
      st = it != live_.end() && !it->second->pending.status.ok() ? it->second->pending.status : absl::InternalError("engine step failed");
    }
    FinishRequest(f.id, f.reason, st, &f);
  }
  // The load as this step leaves it, published before its tokens go out: a client that has seen
  // its first token then also sees its request in the load report (published after the delivery,
  // a quick GetLoad could still read the report from before the request was admitted).
  PublishLoad();
  // Deliver this step's tokens to requests that go on.
  for (const auto& s : plan.seqs) {
    auto it = live_.find(s.id);
    if (it == live_.end()) continue;
    Live& live = *it->second;
    if (live.pending.token_ids.empty() && live.pending.text.empty()) continue;
    GenerationEvent ev = std::move(live.pending);
    live.pending = GenerationEvent{};
    live.sink->OnEvent(std::move(ev));
  }
}

void Engine::FinishRequest(uint64_t id, FinishReason reason, absl::Status status, const scheduler::FinishedRequest* f) {
  auto it = live_.find(id);
  if (it == live_.end()) return;
  std::unique_ptr<Live> live = std::move(it->second);
  live_.erase(it);
  GenerationEvent ev = std::move(live->pending);
  ev.finished = true;
  ev.reason = reason;
  ev.status = status;
  if (reason != FinishReason::kStop) {
    // Release text held back for a possible stop sequence or an unfinished character.
    bool stopped = false;
    ev.text += live->stop.Push(live->utf8.Finish(), &stopped);
    ev.text += live->stop.Flush();
  }
  ev.usage.prompt_tokens = static_cast<int>(live->req.prompt.size());
  ev.usage.completion_tokens = live->generated;
  ev.usage.cached_tokens = f ? f->cached_tokens : 0;
  const TimeNs now = clock_->Now();
  ev.queue_time_s = live->first_scheduled ? NsToSec(live->first_scheduled - live->arrival) : NsToSec(now - live->arrival);
  if (metrics_) {
    metrics_->e2e_latency.Observe(NsToSec(now - live->arrival));
    switch (reason) {
      case FinishReason::kStop:
      case FinishReason::kEos: metrics_->success_stop.Increment(); break;
      case FinishReason::kLength: metrics_->success_length.Increment(); break;
      default: metrics_->success_abort.Increment(); break;
    }
  }
  // Count the request out before its caller hears of the end, so that whoever sees the final
  // event also sees the engine's load without it.
  in_flight_.fetch_sub(1);
  live->sink->OnEvent(std::move(ev));
}

void Engine::PublishLoad() {
  const scheduler::SchedulerStats st = scheduler_->stats();
  const TimeNs now = clock_->Now();
  const double dt = NsToSec(now - last_rate_update_);
  if (dt >= 0.5) {
    // Exponentially weighted rates over roughly the last few seconds.
    const double a = std::min(1.0, dt / 2.0);
    tok_rate_ = (1 - a) * tok_rate_ + a * (tokens_since_ / dt);
    tokens_since_ = 0;
    last_rate_update_ = now;
  }
  std::lock_guard<std::mutex> l(mu_);
  if (metrics_) {
    metrics_->requests_running.Set(st.running);
    metrics_->requests_waiting.Set(st.waiting);
    metrics_->kv_cache_usage.Set(st.kv_usage);
    metrics_->healthy.Set(healthy_.load() ? 1 : 0);
    if (st.prefix_queries > stats_.prefix_queries) metrics_->prefix_queries.Increment(static_cast<double>(st.prefix_queries - stats_.prefix_queries));
    if (st.prefix_hits > stats_.prefix_hits) metrics_->prefix_hits.Increment(static_cast<double>(st.prefix_hits - stats_.prefix_hits));
  }
  stats_ = st;
  load_.running = st.running;
  load_.waiting = st.waiting;
  load_.kv_usage = st.kv_usage;
  load_.free_blocks = st.free_blocks;
  load_.total_blocks = st.total_blocks;
  load_.tokens_per_second = tok_rate_;
  load_.prefill_tokens_per_second = prefill_capacity_;
  load_.prefix_hit_rate = st.prefix_queries ? static_cast<double>(st.prefix_hits) / st.prefix_queries : 0.0;
}

}  // namespace flotilla::worker
