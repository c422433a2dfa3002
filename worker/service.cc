#include "worker/service.h"

#include <spdlog/spdlog.h>

#include <chrono>
#include <deque>
#include <list>
#include <mutex>

#include "model/utf8.h"

namespace flotilla::worker {
namespace {

namespace pb = flotilla::v1;

pb::FinishReason ToProto(scheduler::FinishReason r) {
  switch (r) {
    case scheduler::FinishReason::kLength: return pb::FINISH_REASON_LENGTH;
    case scheduler::FinishReason::kStop: return pb::FINISH_REASON_STOP;
    case scheduler::FinishReason::kEos: return pb::FINISH_REASON_EOS;
    case scheduler::FinishReason::kCancelled: return pb::FINISH_REASON_CANCELLED;
    case scheduler::FinishReason::kExpired:
    case scheduler::FinishReason::kError: return pb::FINISH_REASON_ERROR;
    case scheduler::FinishReason::kNone: break;
  }
  return pb::FINISH_REASON_UNSPECIFIED;
}

void FillLogprob(const Tokenizer& tok, int32_t id, float lp, pb::TopLogprob* out) {
  const std::string bytes = tok.TokenBytes(id);
  out->set_token_id(id);
  out->set_token(SanitizeUtf8(bytes));
  out->set_token_bytes(bytes);
  out->set_logprob(lp);
}

// Bridges the engine (producer, engine thread) and one Generate stream (gRPC threads).
// At most one write is in flight; the response being written stays at the queue's front.
class GenerateReactor final : public grpc::ServerWriteReactor<v1::GenerateResponse> {
 public:
  class Sink final : public RequestSink {
   public:
    explicit Sink(GenerateReactor* r) : reactor_(r) {}
    void OnEvent(GenerationEvent ev) override {
      std::lock_guard<std::mutex> l(mu_);
      if (reactor_) reactor_->Enqueue(std::move(ev));
    }
    void Detach() {
      std::lock_guard<std::mutex> l(mu_);
      reactor_ = nullptr;
    }
    std::mutex& mu() { return mu_; }

   private:
    std::mutex mu_;
    GenerateReactor* reactor_;
  };

  GenerateReactor(Engine* engine, const Tokenizer* tok) : engine_(engine), tok_(tok), sink_(std::make_shared<Sink>(this)) {}

  // The sink's lock is held across Submit so that no event, cancel or Finish can race with
  // setting up the request (the engine only queues in Submit; it never calls back from it).
  void Start(EngineRequest req) {
    std::lock_guard<std::mutex> l(sink_->mu());
    auto id = engine_->Submit(std::move(req), sink_);
    if (!id.ok()) {
      FinishOnce(ToGrpc(id.status()));
      return;
    }
    id_ = *id;
    started_ = true;
    if (cancelled_) engine_->Cancel(id_);
  }

  void OnCancel() override {
    std::lock_guard<std::mutex> l(sink_->mu());
    cancelled_ = true;
    if (started_) engine_->Cancel(id_);
    if (!writing_) FinishOnce(grpc::Status::CANCELLED);
  }

  void OnWriteDone(bool ok) override {
    std::lock_guard<std::mutex> l(sink_->mu());
    writing_ = false;
    queue_.pop_front();
    if (!ok) {
      // The client is gone: free the request's KV in the engine and end the call.
      cancelled_ = true;
      if (started_) engine_->Cancel(id_);
    }
    Pump();
  }

  void OnDone() override {
    sink_->Detach();
    delete this;
  }

 private:
  // Called with the sink's mutex held.
  void Enqueue(GenerationEvent ev) {
    if (finished_) return;
    v1::GenerateResponse r;
    for (int32_t t : ev.token_ids) r.add_token_ids(t);
    r.set_text(std::move(ev.text));
    for (const auto& lp : ev.logprobs) {
      pb::TokenLogprob* out = r.add_logprobs();
      const std::string bytes = tok_->TokenBytes(lp.token);
      out->set_token_id(lp.token);
      out->set_token(SanitizeUtf8(bytes));
      out->set_token_bytes(bytes);
      out->set_logprob(lp.logprob);
      for (const auto& t : lp.top) FillLogprob(*tok_, t.token, t.logprob, out->add_top());
    }
    if (ev.time_to_first_token_s > 0) r.set_time_to_first_token_s(ev.time_to_first_token_s);
    if (ev.finished) {
      r.set_finish_reason(ToProto(ev.reason));
      r.mutable_usage()->set_prompt_tokens(ev.usage.prompt_tokens);
      r.mutable_usage()->set_completion_tokens(ev.usage.completion_tokens);
      r.mutable_usage()->set_cached_tokens(ev.usage.cached_tokens);
      r.set_queue_time_s(ev.queue_time_s);
      done_event_ = true;
      final_status_ = ToGrpc(ev.status);
    }
    // While a write is in flight and another message already waits behind it, fold this one
    // into the waiting message: a slow reader gets fewer, larger messages instead of a growing
    // queue, and no token waits longer than it would have anyway.
    if (queue_.size() >= 2) {
      v1::GenerateResponse& back = queue_.back();
      const double ttft = back.time_to_first_token_s();
      std::string text = back.text() + r.text();
      back.MergeFrom(r);  // appends ids and logprobs; set scalars (finish, usage) overwrite
      back.set_text(std::move(text));
      if (ttft > 0) back.set_time_to_first_token_s(ttft);
    } else {
      queue_.push_back(std::move(r));
    }
    Pump();
  }

  // One write in flight; Finish only when no write is pending.
  void Pump() {
    if (writing_ || finished_) return;
    if (cancelled_) {
      FinishOnce(grpc::Status::CANCELLED);
    } else if (!queue_.empty()) {
      writing_ = true;
      StartWrite(&queue_.front());
    } else if (done_event_) {
      FinishOnce(final_status_);
    }
  }

  void FinishOnce(const grpc::Status& s) {
    if (finished_) return;
    finished_ = true;
    Finish(s);
  }

  Engine* engine_;
  const Tokenizer* tok_;
  std::shared_ptr<Sink> sink_;
  uint64_t id_ = 0;
  bool started_ = false;
  bool cancelled_ = false;
  bool writing_ = false;
  bool done_event_ = false;
  bool finished_ = false;
  grpc::Status final_status_;
  std::deque<v1::GenerateResponse> queue_;
};

}  // namespace

// Feeds every WatchLoad stream from one thread, each at its own interval.
class LoadWatchers {
 public:
  explicit LoadWatchers(const WorkerService* service) : service_(service), thread_([this] { Run(); }) {}
  ~LoadWatchers() {
    {
      std::lock_guard<std::mutex> l(mu_);
      stop_ = true;
      for (Watcher* w : watchers_) w->Detach();
    }
    thread_.join();
  }

  class Watcher final : public grpc::ServerWriteReactor<v1::LoadReport> {
   public:
    Watcher(LoadWatchers* owner, std::chrono::milliseconds interval) : owner_(owner), interval_(interval) {}
    void OnWriteDone(bool ok) override {
      std::lock_guard<std::mutex> l(mu_);
      writing_ = false;
      if (!ok || cancelled_) Close(grpc::Status::CANCELLED);
    }
    void OnCancel() override {
      std::lock_guard<std::mutex> l(mu_);
      cancelled_ = true;
      if (!writing_) Close(grpc::Status::CANCELLED);
    }
    void OnDone() override {
      LoadWatchers* owner;
      {
        std::lock_guard<std::mutex> l(mu_);
        owner = owner_;
      }
      if (owner) owner->Remove(this);
      delete this;
    }
    // Writes a report when due and idle. Called by the ticker with the owner's mutex held.
    void Tick(std::chrono::steady_clock::time_point now, const WorkerService* s) {
      {
        std::lock_guard<std::mutex> l(mu_);
        if (closed_ || writing_ || now < next_) return;
        next_ = now + interval_;
        report_.Clear();
        s->FillLoad(&report_);
        writing_ = true;
      }
      StartWrite(&report_);  // report_ is untouched until OnWriteDone clears writing_
    }
    void Detach() {
      std::lock_guard<std::mutex> l(mu_);
      owner_ = nullptr;
      cancelled_ = true;
      if (!writing_) Close(grpc::Status(grpc::StatusCode::UNAVAILABLE, "worker is shutting down"));
    }

   private:
    void Close(const grpc::Status& s) {
      if (closed_) return;
      closed_ = true;
      Finish(s);
    }
    LoadWatchers* owner_;
    std::chrono::milliseconds interval_;
    std::mutex mu_;
    bool writing_ = false;
    bool cancelled_ = false;
    bool closed_ = false;
    std::chrono::steady_clock::time_point next_{};
    v1::LoadReport report_;
  };

  Watcher* Add(std::chrono::milliseconds interval) {
    auto* w = new Watcher(this, interval);
    std::lock_guard<std::mutex> l(mu_);
    if (stop_) {
      w->Detach();
    } else {
      watchers_.push_back(w);
    }
    return w;
  }
  void Remove(Watcher* w) {
    std::lock_guard<std::mutex> l(mu_);
    watchers_.remove(w);
  }

 private:
  void Run() {
    for (;;) {
      {
        std::lock_guard<std::mutex> l(mu_);
        if (stop_) return;
        const auto now = std::chrono::steady_clock::now();
        for (Watcher* w : watchers_) w->Tick(now, service_);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  }

  const WorkerService* service_;
  std::mutex mu_;
  std::list<Watcher*> watchers_;
  bool stop_ = false;
  std::thread thread_;
};

grpc::Status ToGrpc(const absl::Status& s) {
  if (s.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(s.code()), std::string(s.message()));
}

WorkerService::WorkerService(Engine* engine, ServiceInfo info, const Clock* clock)
    : engine_(engine), info_(std::move(info)), clock_(clock), watchers_(std::make_unique<LoadWatchers>(this)) {}

WorkerService::~WorkerService() = default;

void WorkerService::StartDrain() {
  engine_->StartDrain();
  if (!drain_started_.exchange(true)) {
    spdlog::info("draining: no new requests; {} in flight", engine_->in_flight());
    if (on_drain_start_) on_drain_start_();
  }
}

grpc::ServerWriteReactor<v1::GenerateResponse>* WorkerService::Generate(grpc::CallbackServerContext* ctx,
                                                                        const v1::GenerateRequest* req) {
  auto* reactor = new GenerateReactor(engine_, &engine_->tokenizer());
  EngineRequest r;
  const Tokenizer& tok = engine_->tokenizer();
  if (req->prompt_ids_size() > 0) {
    r.prompt.assign(req->prompt_ids().begin(), req->prompt_ids().end());
  } else {
    r.prompt = tok.Encode(req->prompt(), req->has_add_bos() ? req->add_bos() : tok.add_bos());
    if (req->prompt().empty()) r.prompt.clear();  // an empty prompt is an error, BOS or not
  }
  r.max_tokens = static_cast<int>(std::min<uint32_t>(req->max_tokens(), 1u << 30));
  const pb::SamplingParams& sp = req->sampling();
  r.sampling.temperature = sp.has_temperature() ? sp.temperature() : 1.0f;
  r.sampling.top_k = sp.has_top_k() ? sp.top_k() : 0;
  r.sampling.top_p = sp.has_top_p() ? sp.top_p() : 1.0f;
  r.sampling.min_p = sp.has_min_p() ? sp.min_p() : 0.0f;
  r.sampling.repetition_penalty = sp.has_repetition_penalty() ? sp.repetition_penalty() : 1.0f;
  r.sampling.presence_penalty = sp.has_presence_penalty() ? sp.presence_penalty() : 0.0f;
  r.sampling.frequency_penalty = sp.has_frequency_penalty() ? sp.frequency_penalty() : 0.0f;
  r.sampling.has_seed = sp.has_seed();
  r.sampling.seed = sp.seed();
  r.sampling.logprobs = static_cast<int>(std::min<uint32_t>(sp.logprobs(), 1000));
  r.stop.assign(req->stop().begin(), req->stop().end());
  r.ignore_eos = req->ignore_eos();
  r.priority = req->priority();
  r.tenant = req->tenant();
  r.shared_prefix_tokens = static_cast<int>(std::min<uint32_t>(req->shared_prefix_tokens(), 1u << 30));
  const auto deadline = ctx->deadline();
  if (deadline != std::chrono::system_clock::time_point::max()) {
    const auto left = deadline - std::chrono::system_clock::now();
    r.deadline = clock_->Now() + std::chrono::duration_cast<std::chrono::nanoseconds>(left).count();
  }
  reactor->Start(std::move(r));
  return reactor;
}

void WorkerService::FillLoad(v1::LoadReport* r) const {
  const LoadSnapshot s = engine_->load();
  r->set_worker_id(info_.worker_id);
  r->set_model(info_.model_name);
  r->set_running(s.running);
  r->set_waiting(s.waiting);
  r->set_kv_usage(s.kv_usage);
  r->set_free_blocks(s.free_blocks);
  r->set_total_blocks(s.total_blocks);
  r->set_tokens_per_second(s.tokens_per_second);
  r->set_prefill_tokens_per_second(s.prefill_tokens_per_second);
  r->set_prefix_cache_hit_rate(s.prefix_hit_rate);
  r->set_draining(s.draining);
  r->set_healthy(s.healthy);
  r->set_max_num_seqs(engine_->config().max_num_seqs);
  r->set_max_waiting(engine_->config().max_waiting);
  r->set_zone(info_.zone);
  r->set_region(info_.region);
  r->set_timestamp_ms(std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count());
}

grpc::ServerUnaryReactor* WorkerService::GetLoad(grpc::CallbackServerContext* ctx, const v1::GetLoadRequest*,
                                                 v1::LoadReport* resp) {
  FillLoad(resp);
  auto* r = ctx->DefaultReactor();
  r->Finish(grpc::Status::OK);
  return r;
}

grpc::ServerWriteReactor<v1::LoadReport>* WorkerService::WatchLoad(grpc::CallbackServerContext*,
                                                                   const v1::WatchLoadRequest* req) {
  const uint32_t ms = req->interval_ms() == 0 ? 100 : std::max<uint32_t>(req->interval_ms(), 10);
  return watchers_->Add(std::chrono::milliseconds(ms));
}

grpc::ServerUnaryReactor* WorkerService::Info(grpc::CallbackServerContext* ctx, const v1::InfoRequest*,
                                              v1::InfoResponse* resp) {
  const Executor& ex = engine_->executor();
  const LlamaConfig& c = ex.config();
  resp->set_worker_id(info_.worker_id);
  resp->set_model(info_.model_name);
  resp->set_model_path(info_.model_path);
  resp->set_context_length(c.context_length);
  resp->set_quantization(kernels::Info(c.weight_type).name);
  resp->set_block_size(ex.block_size());
  resp->set_num_kv_blocks(ex.num_kv_blocks());
  resp->set_vocab_size(c.vocab_size);
  resp->set_backend(ex.Describe());
  resp->set_max_num_seqs(engine_->config().max_num_seqs);
  resp->set_max_batch_tokens(ex.max_batch_tokens());
  resp->set_chat_template(c.chat_template);
  resp->set_chat_template_family(info_.chat_template_family);
  resp->set_zone(info_.zone);
  resp->set_region(info_.region);
  resp->set_version(info_.version);
  resp->set_bos_token_id(engine_->tokenizer().bos_id());
  resp->set_eos_token_id(engine_->tokenizer().eos_id());
  auto* r = ctx->DefaultReactor();
  r->Finish(grpc::Status::OK);
  return r;
}

grpc::ServerUnaryReactor* WorkerService::Drain(grpc::CallbackServerContext* ctx, const v1::DrainRequest* req,
                                               v1::DrainResponse* resp) {
  StartDrain();
  auto* r = ctx->DefaultReactor();
  if (!req->wait() || engine_->in_flight() == 0) {
    resp->set_in_flight(engine_->in_flight());
    r->Finish(grpc::Status::OK);
    return r;
  }
  engine_->OnDrained([r, resp, this] {
    resp->set_in_flight(engine_->in_flight());
    r->Finish(grpc::Status::OK);
  });
  return r;
}

grpc::ServerUnaryReactor* WorkerService::Tokenize(grpc::CallbackServerContext* ctx, const v1::TokenizeRequest* req,
                                                  v1::TokenizeResponse* resp) {
  const Tokenizer& tok = engine_->tokenizer();
  for (int32_t id : tok.Encode(req->text(), req->has_add_bos() ? req->add_bos() : tok.add_bos())) resp->add_token_ids(id);
  auto* r = ctx->DefaultReactor();
  r->Finish(grpc::Status::OK);
  return r;
}

grpc::ServerUnaryReactor* WorkerService::GetTokenizer(grpc::CallbackServerContext* ctx, const v1::GetTokenizerRequest*,
                                                      v1::TokenizerResponse* resp) {
  const Vocab& v = engine_->tokenizer().vocab();
  for (int32_t i = 0; i < v.size(); ++i) {
    // Pieces are bytes in the model file; protobuf strings must be valid UTF-8.
    resp->add_pieces(SanitizeUtf8(v.pieces[i]));
    resp->add_scores(v.scores[i]);
    resp->add_types(static_cast<int32_t>(v.types[i]));
  }
  resp->set_bos_token_id(v.bos_id);
  resp->set_eos_token_id(v.eos_id);
  resp->set_unk_token_id(v.unk_id);
  resp->set_add_bos(v.add_bos);
  resp->set_add_space_prefix(v.add_space_prefix);
  auto* r = ctx->DefaultReactor();
  r->Finish(grpc::Status::OK);
  return r;
}

}  // namespace flotilla::worker
