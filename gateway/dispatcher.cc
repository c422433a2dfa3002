#include "gateway/dispatcher.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "gateway/dispatcher_request.h"
#include "gateway/errors.h"
#include "spdlog/spdlog.h"

namespace flotilla::gateway {
namespace {

Rng& ThreadRng() {
  thread_local Rng rng(std::random_device{}());
  return rng;
}

}  // namespace

Dispatcher::Dispatcher(DispatcherOptions options, Fleet* fleet, Authenticator* auth, RateLimiter* limiter,
                       ResponseCache* cache, GatewayMetrics* metrics, TimerThread* timer, const Clock* clock)
    : options_(std::move(options)),
      fleet_(fleet),
      auth_(auth),
      limiter_(limiter),
      cache_(cache),
      metrics_(metrics),
      timer_(timer),
      clock_(clock) {}

Dispatcher::~Dispatcher() = default;

std::shared_ptr<RequestHandle> Dispatcher::Submit(GenerateInput input, std::shared_ptr<ResponseSink> sink) {
  open_.fetch_add(1);
  metrics_->StreamOpened(input.api);
  ResponseSink* raw = sink.get();
  auto r = std::make_shared<Request>(this, std::move(input), std::move(sink));
  raw->handle_ = r;
  {
    absl::MutexLock lock(&open_mu_);
    open_set_[r->serial()] = r;
  }
  r->Begin();
  return r;
}

void Dispatcher::CancelAll() {
  std::vector<std::shared_ptr<Request>> open;
  {
    absl::MutexLock lock(&open_mu_);
    for (auto& [id, weak] : open_set_) {
      if (auto r = weak.lock()) open.push_back(std::move(r));
    }
  }
  for (auto& r : open) r->Cancel();
}

Dispatcher::Pool& Dispatcher::PoolFor(const std::string& model) {
  auto& p = pools_[model];
  if (!p) p = std::make_unique<Pool>(options_);
  return *p;
}

void Dispatcher::Admit(const std::shared_ptr<Request>& r) {
  const TimeNs now = clock_->Now();
  const std::string& model = r->model();
  AdmissionDecision decision;
  {
    absl::MutexLock lock(&mu_);
    Pool& pool = PoolFor(model);
    pool.budget.RecordRequest(now);
    auto snap = fleet_->Snapshot(model);
    PoolLoad load;
    if (snap) {
      load = SummarisePool(snap->views, options_.router.queue_depth, pool.mean_request_s, snap->prefill_tokens_per_s);
    }
    const TimeNs deadline_left = r->deadline() > 0 ? std::max<TimeNs>(1, r->deadline() - now) : 0;
    TimeNs wait = options_.admission.queue_timeout;
    if (!snap && options_.admission.activation_timeout > 0 && !pool.queue.full()) {
      // No ready worker of a model we know (Prepare let it through): wait for one to come up
      // rather than refuse; the queue depth is the autoscaler's activation signal.
      decision.verdict = AdmissionVerdict::kQueue;
      wait = options_.admission.activation_timeout;
    } else {
      decision = gateway::Admit(options_.admission, load, pool.queue.size(), deadline_left, r->prompt_tokens());
    }
    if (decision.verdict != AdmissionVerdict::kDispatch && snap && spdlog::should_log(spdlog::level::debug)) {
      for (const auto& v : snap->views) {
        spdlog::debug("admission: worker {} running={} waiting={} inflight={} inflight_at_report={} slots={} available={}",
                     v.id, v.running, v.waiting, v.inflight, v.inflight_at_report, v.max_num_seqs, v.available);
      }
    }
    if (decision.verdict == AdmissionVerdict::kQueue) {
      TimeNs expires = now + wait;
      if (r->deadline() > 0) expires = std::min(expires, r->deadline());
      pool.queue.Push(r, expires);
      metrics_->SetQueueDepth(model, static_cast<double>(pool.queue.size()));
      timer_->Schedule(expires - now, [this, model] { ExpireQueued(model); });
    }
  }
  switch (decision.verdict) {
    case AdmissionVerdict::kDispatch: r->Dispatch(); break;
    case AdmissionVerdict::kQueue: {
      // It may have become dispatchable while we enqueued (a slot freed in between).
      DrainQueue(model);
      break;
    }
    case AdmissionVerdict::kReject: r->FailFromQueue(decision.status); break;
  }
}

void Dispatcher::DrainQueue(const std::string& model) {
  while (true) {
    std::shared_ptr<Request> next;
    {
      absl::MutexLock lock(&mu_);
      auto it = pools_.find(model);
      if (it == pools_.end() || it->second->queue.empty()) return;
      Pool& pool = *it->second;
      auto snap = fleet_->Snapshot(model);
      if (!snap) return;
      PoolLoad load = SummarisePool(snap->views, options_.router.queue_depth, pool.mean_request_s, 0);
      if (load.open_workers == 0) return;
      next = *pool.queue.Pop();
      metrics_->SetQueueDepth(model, static_cast<double>(pool.queue.size()));
    }
    next->Dispatch();
  }
}

void Dispatcher::OnPoolChanged(const std::string& model) {
  if (!model.empty()) DrainQueue(model);
}

void Dispatcher::ExpireQueued(const std::string& model) {
  std::vector<std::shared_ptr<Request>> expired;
  const TimeNs now = clock_->Now();
  int64_t retry_ms = 1000;
  bool no_worker = false;
  {
    absl::MutexLock lock(&mu_);
    auto it = pools_.find(model);
    if (it == pools_.end()) return;
    Pool& pool = *it->second;
    expired = pool.queue.Expire(now);
    metrics_->SetQueueDepth(model, static_cast<double>(pool.queue.size()));
    PoolLoad load;
    auto snap = fleet_->Snapshot(model);
    if (snap) load = SummarisePool(snap->views, options_.router.queue_depth, pool.mean_request_s, 0);
    no_worker = !snap;
    retry_ms = ShedRetryAfterMs(options_.admission, load, pool.queue.size());
  }
  for (auto& r : expired) {
    if (r->deadline() > 0 && now >= r->deadline()) {
      r->FailFromQueue(absl::DeadlineExceededError("deadline exceeded while waiting for a free worker"));
    } else if (no_worker) {
      r->FailFromQueue(WithReason(
          WithRetryAfter(absl::UnavailableError(absl::StrCat("no worker of model '", model,
                                                             "' became ready while the request waited")),
                         retry_ms),
          "no_workers"));
    } else {
      r->FailFromQueue(WithReason(
          WithRetryAfter(absl::ResourceExhaustedError("every worker of the model stayed busy; retry later"), retry_ms),
          "queue_timeout"));
    }
  }
}

void Dispatcher::RecordDuration(const std::string& model, double seconds) {
  absl::MutexLock lock(&mu_);
  Pool& pool = PoolFor(model);
  pool.mean_request_s = pool.mean_request_s == 0 ? seconds : 0.9 * pool.mean_request_s + 0.1 * seconds;
}

bool Dispatcher::TakeRetry(const std::string& model) {
  absl::MutexLock lock(&mu_);
  return PoolFor(model).budget.TryRetry(clock_->Now());
}

std::optional<size_t> Dispatcher::Route(const std::string& model, const PoolSnapshot& snap, const RouteKey& key,
                                        const std::vector<bool>& excluded) {
  Pool* pool;
  {
    absl::MutexLock lock(&mu_);
    pool = &PoolFor(model);  // pools are never erased: the pointer stays valid
  }
  return pool->router.Pick(snap.views, key, excluded, ThreadRng());
}

bool Dispatcher::AcquireConcurrency(const Tenant& t) {
  absl::MutexLock lock(&mu_);
  uint32_t& n = tenant_open_[t.name];
  if (t.limits.max_concurrent > 0 && n >= t.limits.max_concurrent) return false;
  ++n;
  return true;
}

void Dispatcher::ReleaseConcurrency(const std::string& tenant) {
  absl::MutexLock lock(&mu_);
  auto it = tenant_open_.find(tenant);
  if (it != tenant_open_.end() && it->second > 0) --it->second;
}

}  // namespace flotilla::gateway
