#include "gateway/worker_client.h"

#include <algorithm>
#include <chrono>

#include "grpcpp/create_channel.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/support/byte_buffer.h"
#include "spdlog/spdlog.h"

namespace flotilla::gateway {
namespace {

int64_t UnixMicros() {
  return std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

constexpr int64_t kEventHorizonUs = 5'000'000;  // reports older than this are stale anyway

std::chrono::system_clock::time_point DeadlineIn(TimeNs ns) {
  return std::chrono::system_clock::now() + std::chrono::nanoseconds(ns);
}

// grpc.health.v1.HealthCheckResponse is {ServingStatus status = 1;}: one varint field. Decoding it
// by hand saves generating the health proto (gRPC's own server side needs no proto either).
int ParseHealthStatus(const grpc::ByteBuffer& buf) {
  std::vector<grpc::Slice> slices;
  if (!buf.Dump(&slices).ok()) return -1;
  std::string bytes;
  for (const auto& s : slices) bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
  if (bytes.empty()) return 0;  // UNKNOWN (the default value is not sent)
  if (bytes.size() >= 2 && static_cast<uint8_t>(bytes[0]) == 0x08) return static_cast<uint8_t>(bytes[1]) & 0x7f;
  return -1;
}

}  // namespace

const char* HealthName(WorkerClient::Health h) {
  switch (h) {
    case WorkerClient::Health::kUnknown: return "unknown";
    case WorkerClient::Health::kServing: return "serving";
    case WorkerClient::Health::kNotServing: return "not_serving";
    case WorkerClient::Health::kUnreachable: return "unreachable";
  }
  return "unknown";
}

// The WatchLoad stream. Owns itself: deleted in OnDone. Holds only a weak reference to the client,
// which may go away first.
class WorkerClient::LoadWatcher : public grpc::ClientReadReactor<worker::v1::LoadReport> {
 public:
  LoadWatcher(std::weak_ptr<WorkerClient> client, uint32_t interval_ms) : client_(std::move(client)) {
    request_.set_interval_ms(interval_ms);
  }
  void Start(worker::v1::Worker::Stub* stub) {
    stub->async()->WatchLoad(&ctx_, &request_, this);
    StartRead(&report_);
    StartCall();
  }
  void Cancel() { ctx_.TryCancel(); }

  void OnReadDone(bool ok) override {
    if (!ok) return;  // OnDone follows
    if (auto c = client_.lock()) c->OnLoadReport(report_);
    StartRead(&report_);
  }
  void OnDone(const grpc::Status& status) override {
    if (auto c = client_.lock()) {
      {
        absl::MutexLock lock(&c->mu_);
        if (c->watcher_ == this) c->watcher_ = nullptr;
      }
      c->OnLoadStreamDone(status);
    }
    delete this;
  }

 private:
  std::weak_ptr<WorkerClient> client_;
  grpc::ClientContext ctx_;
  worker::v1::WatchLoadRequest request_;
  worker::v1::LoadReport report_;
};

WorkerClient::WorkerClient(std::string address, std::shared_ptr<grpc::ChannelCredentials> creds,
                           WorkerClientOptions options, TimerThread* timer, const Clock* clock, Hooks hooks)
    : address_(std::move(address)),
      options_(options),
      timer_(timer),
      clock_(clock),
      hooks_(std::move(hooks)),
      breaker_(options.breaker) {
  grpc::ChannelArguments args;
  // A restarted worker should be reachable again within about a second, not gRPC's default two
  // minutes of back-off.
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 10000);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 5000);
  args.SetMaxReceiveMessageSize(64 << 20);  // large vocabularies
  // One channel per worker address; do not let gRPC share subchannels between them.
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  channel_ = grpc::CreateCustomChannel(address_, creds, args);
  stub_ = worker::v1::Worker::NewStub(channel_);
  generic_stub_ = std::make_unique<grpc::GenericStub>(channel_);
}

WorkerClient::~WorkerClient() {
  // After Shutdown the timer may be gone (the last reference can be a late gRPC callback's).
  absl::MutexLock lock(&gate_);
  if (!closed_ && health_task_) timer_->Cancel(health_task_);
}

template <class F>
void WorkerClient::Gated(F&& f) {
  {
    absl::MutexLock lock(&gate_);
    if (closed_) return;
    ++gated_running_;
  }
  f();
  absl::MutexLock lock(&gate_);
  --gated_running_;
}

void WorkerClient::Start() {
  std::weak_ptr<WorkerClient> weak = weak_from_this();
  CheckHealth();
  health_task_ = timer_->Every(options_.health_interval, [weak] {
    if (auto c = weak.lock()) c->CheckHealth();
  });
  FetchInfo();
  StartLoadWatch();
}

void WorkerClient::Shutdown() {
  shutdown_ = true;
  {
    absl::MutexLock lock(&gate_);
    if (closed_) return;
    closed_ = true;
    // Hooks already running finish first.
    gate_.Await(absl::Condition(+[](int* running) { return *running == 0; }, &gated_running_));
  }
  if (health_task_) timer_->Cancel(health_task_);
  absl::MutexLock lock(&mu_);
  if (watcher_) watcher_->Cancel();
}

std::shared_ptr<const WorkerStatic> WorkerClient::statics() const {
  absl::MutexLock lock(&mu_);
  return statics_;
}

WorkerClient::Health WorkerClient::health() const {
  absl::MutexLock lock(&mu_);
  return health_;
}

worker::v1::LoadReport WorkerClient::Load(bool* fresh) const {
  absl::MutexLock lock(&mu_);
  if (fresh) *fresh = load_at_ > 0 && clock_->Now() - load_at_ < options_.load_stale_after;
  return load_;
}

uint32_t WorkerClient::ejections() const {
  absl::MutexLock lock(&mu_);
  return breaker_.ejections();
}

WorkerView WorkerClient::View(TimeNs now) const {
  WorkerView v;
  v.id = address_;
  v.inflight = inflight_.load(std::memory_order_relaxed);
  absl::MutexLock lock(&mu_);
  const bool fresh = load_at_ > 0 && now - load_at_ < options_.load_stale_after;
  if (statics_) {
    v.zone = statics_->info.zone();
    v.region = statics_->info.region();
    v.max_num_seqs = std::max<uint32_t>(1, statics_->info.max_num_seqs());
  }
  if (fresh) {
    v.running = load_.running();
    v.waiting = load_.waiting();
    // Outstanding() = report + ours now - ours then = ours now + others.
    const uint32_t total = load_.running() + load_.waiting();
    v.inflight_at_report = total > others_ ? total - others_ : 0;
    v.kv_usage = load_.kv_usage();
    if (load_.max_num_seqs() > 0) v.max_num_seqs = load_.max_num_seqs();
    if (!load_.zone().empty()) v.zone = load_.zone();
    if (!load_.region().empty()) v.region = load_.region();
  }
  v.available = statics_ != nullptr && health_ == Health::kServing && !(fresh && load_.draining()) &&
                breaker_.WouldAllow(now);
  return v;
}

bool WorkerClient::BeginRequest() {
  absl::MutexLock lock(&mu_);
  if (!breaker_.Allow(clock_->Now())) return false;
  inflight_.fetch_add(1, std::memory_order_relaxed);
  const int64_t now = UnixMicros();
  events_.emplace_back(now, +1);
  while (!events_.empty() && events_.front().first < now - kEventHorizonUs) events_.pop_front();
  return true;
}

void WorkerClient::EndRequest(bool worker_failed) {
  bool ejected = false;
  {
    absl::MutexLock lock(&mu_);
    const TimeNs now = clock_->Now();
    if (worker_failed) {
      const uint32_t before = breaker_.ejections();
      breaker_.RecordFailure(now);
      ejected = breaker_.ejections() != before;
    } else {
      breaker_.RecordSuccess(now);
    }
    inflight_.fetch_sub(1, std::memory_order_relaxed);
    events_.emplace_back(UnixMicros(), -1);
  }
  if (ejected) {
    SPDLOG_WARN("worker {} ejected after consecutive failures", address_);
    Gated([&] {
      if (hooks_.on_ejected) hooks_.on_ejected(address_);
    });
    Notify();
  }
}

void WorkerClient::Notify() {
  Gated([&] {
    if (hooks_.on_change) hooks_.on_change(this);
  });
}

void WorkerClient::FetchInfo() {
  {
    absl::MutexLock lock(&mu_);
    if (fetching_ || shutdown_) return;
    fetching_ = true;
  }
  struct Call {
    grpc::ClientContext ctx;
    worker::v1::InfoRequest req;
    worker::v1::InfoResponse resp;
  };
  auto call = std::make_shared<Call>();
  call->ctx.set_deadline(DeadlineIn(5 * kNsPerSec));
  std::weak_ptr<WorkerClient> weak = weak_from_this();
  stub_->async()->Info(&call->ctx, &call->req, &call->resp, [weak, call](grpc::Status st) {
    auto c = weak.lock();
    if (!c || c->shutdown_) return;  // (shut down: no tokenizer fetch, no retry)
    if (!st.ok()) {
      {
        absl::MutexLock lock(&c->mu_);
        c->fetching_ = false;
      }
      c->Gated([&] {
        c->timer_->Schedule(c->options_.info_retry, [weak] {
          if (auto c2 = weak.lock()) c2->FetchInfo();
        });
      });
      return;
    }
    std::shared_ptr<const PromptEncoder> enc;
    c->Gated([&] {
      if (c->hooks_.find_encoder) enc = c->hooks_.find_encoder(call->resp);
    });
    if (enc) {
      auto s = std::make_shared<WorkerStatic>();
      s->info = call->resp;
      s->encoder = std::move(enc);
      {
        absl::MutexLock lock(&c->mu_);
        c->statics_ = std::move(s);
        c->fetching_ = false;
      }
      SPDLOG_INFO("worker {} ready: model {} ({}, ctx {}, {})", c->address_, call->resp.model(),
                  call->resp.quantization(), call->resp.context_length(), call->resp.backend());
      c->Notify();
      return;
    }
    c->FetchTokenizer(call->resp);
  });
}

void WorkerClient::FetchTokenizer(worker::v1::InfoResponse info) {
  struct Call {
    grpc::ClientContext ctx;
    worker::v1::GetTokenizerRequest req;
    worker::v1::TokenizerResponse resp;
    worker::v1::InfoResponse info;
  };
  auto call = std::make_shared<Call>();
  call->info = std::move(info);
  call->ctx.set_deadline(DeadlineIn(10 * kNsPerSec));
  std::weak_ptr<WorkerClient> weak = weak_from_this();
  stub_->async()->GetTokenizer(&call->ctx, &call->req, &call->resp, [weak, call](grpc::Status st) {
    auto c = weak.lock();
    if (!c) return;
    const auto& r = call->resp;
    if (!st.ok() || r.pieces_size() == 0 || r.scores_size() != r.pieces_size()) {
      {
        absl::MutexLock lock(&c->mu_);
        c->fetching_ = false;
      }
      SPDLOG_WARN("worker {}: GetTokenizer failed: {}", c->address_,
                  st.ok() ? std::string("empty or inconsistent vocabulary") : st.error_message());
      c->Gated([&] {
        c->timer_->Schedule(c->options_.info_retry, [weak] {
          if (auto c2 = weak.lock()) c2->FetchInfo();
        });
      });
      return;
    }
    Vocab v;
    v.pieces.assign(r.pieces().begin(), r.pieces().end());
    v.scores.assign(r.scores().begin(), r.scores().end());
    v.types.reserve(r.pieces_size());
    for (int i = 0; i < r.pieces_size(); ++i) {
      v.types.push_back(i < r.types_size() ? static_cast<TokenType>(r.types(i)) : TokenType::kNormal);
    }
    v.bos_id = r.bos_token_id();
    v.eos_id = r.eos_token_id();
    v.unk_id = r.unk_token_id();
    v.add_bos = r.add_bos();
    v.add_space_prefix = r.add_space_prefix();
    auto s = std::make_shared<WorkerStatic>();
    s->info = call->info;
    s->encoder = std::make_shared<const PromptEncoder>(std::move(v));
    {
      absl::MutexLock lock(&c->mu_);
      c->statics_ = std::move(s);
      c->fetching_ = false;
    }
    SPDLOG_INFO("worker {} ready: model {} ({}, ctx {}, vocab {}, {})", c->address_, call->info.model(),
                call->info.quantization(), call->info.context_length(), r.pieces_size(), call->info.backend());
    c->Notify();
  });
}

void WorkerClient::StartLoadWatch() {
  if (shutdown_) return;
  auto* w = new LoadWatcher(weak_from_this(), options_.load_interval_ms);
  {
    absl::MutexLock lock(&mu_);
    watcher_ = w;
  }
  w->Start(stub_.get());
}

void WorkerClient::OnLoadReport(const worker::v1::LoadReport& report) {
  {
    absl::MutexLock lock(&mu_);
    load_ = report;
    load_at_ = clock_->Now();
    const int64_t total = static_cast<int64_t>(report.running()) + report.waiting();
    // Ours when the report was taken = ours now, minus starts since, plus ends since.
    const int64_t taken_us = report.timestamp_ms() > 0 ? report.timestamp_ms() * 1000 + 500 : UnixMicros();
    int64_t ours_then = inflight_.load(std::memory_order_relaxed);
    for (auto it = events_.rbegin(); it != events_.rend() && it->first > taken_us; ++it) ours_then -= it->second;
    others_recent_[others_next_++ % others_recent_.size()] =
        static_cast<uint32_t>(std::max<int64_t>(0, total - std::max<int64_t>(0, ours_then)));
    others_ = *std::min_element(others_recent_.begin(), others_recent_.end());
  }
  Notify();
}

void WorkerClient::OnLoadStreamDone(const grpc::Status& status) {
  if (shutdown_) return;
  if (status.error_code() == grpc::StatusCode::UNAVAILABLE) {
    // The connection broke: the worker is most likely gone. Don't wait for the next health check
    // to stop routing to it.
    SetHealth(Health::kUnreachable);
    absl::MutexLock lock(&mu_);
    load_at_ = 0;
  }
  std::weak_ptr<WorkerClient> weak = weak_from_this();
  Gated([&] {
    timer_->Schedule(500 * kNsPerMs, [weak] {
      if (auto c = weak.lock()) c->StartLoadWatch();
    });
  });
}

void WorkerClient::SetHealth(Health h) {
  Health before;
  {
    absl::MutexLock lock(&mu_);
    before = health_;
    health_ = h;
    // A health check that says SERVING is the active probe that re-admits an ejected worker.
    const TimeNs now = clock_->Now();
    if (h == Health::kServing && breaker_.state(now) == CircuitBreaker::State::kHalfOpen && breaker_.Allow(now)) {
      breaker_.RecordSuccess(now);
    }
  }
  if (before != h) {
    if (h == Health::kServing || before == Health::kServing) {
      SPDLOG_INFO("worker {} health {} -> {}", address_, HealthName(before), HealthName(h));
    }
    if (before == Health::kUnreachable && h == Health::kServing) {
      // It may have restarted, possibly with another model or settings: ask again.
      FetchInfo();
    }
    Notify();
  }
}

void WorkerClient::CheckHealth() {
  if (shutdown_) return;
  struct Call {
    grpc::ClientContext ctx;
    grpc::ByteBuffer req;
    grpc::ByteBuffer resp;
  };
  auto call = std::make_shared<Call>();
  call->ctx.set_deadline(DeadlineIn(options_.health_timeout));
  grpc::Slice empty("", 0);
  call->req = grpc::ByteBuffer(&empty, 1);  // HealthCheckRequest{service: ""}
  std::weak_ptr<WorkerClient> weak = weak_from_this();
  generic_stub_->UnaryCall(&call->ctx, "/grpc.health.v1.Health/Check", grpc::StubOptions(), &call->req,
                           &call->resp, [weak, call](grpc::Status st) {
                             auto c = weak.lock();
                             if (!c) return;
                             if (!st.ok()) {
                               c->SetHealth(st.error_code() == grpc::StatusCode::UNIMPLEMENTED ||
                                                    st.error_code() == grpc::StatusCode::NOT_FOUND
                                                ? Health::kNotServing
                                                : Health::kUnreachable);
                               return;
                             }
                             c->SetHealth(ParseHealthStatus(call->resp) == 1 ? Health::kServing
                                                                             : Health::kNotServing);
                           });
}

}  // namespace flotilla::gateway
