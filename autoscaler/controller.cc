#include "autoscaler/controller.h"

#include <chrono>

#include <spdlog/spdlog.h>

namespace flotilla::autoscaler {

void StopSignal::Stop() {
  std::lock_guard<std::mutex> lock(mu_);
  stopped_ = true;
  cv_.notify_all();
}

bool StopSignal::stopped() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stopped_;
}

bool StopSignal::WaitFor(double seconds) {
  std::unique_lock<std::mutex> lock(mu_);
  return cv_.wait_for(lock, std::chrono::duration<double>(seconds), [&] { return stopped_; });
}

Controller::Controller(const std::vector<PolicyConfig>& pools, MetricsReader* reader, ScalingBackend* backend,
                       const Clock* clock, AutoscalerMetrics* metrics)
    : reader_(reader), backend_(backend), metrics_(metrics) {
  policies_.reserve(pools.size());
  for (const PolicyConfig& c : pools) policies_.emplace_back(c, clock);
}

std::vector<Decision> Controller::Tick() {
  std::vector<Decision> out;
  for (PoolPolicy& policy : policies_) {
    const std::string& pool = policy.config().pool;
    absl::StatusOr<ReplicaState> state = backend_->GetReplicas(pool);
    if (!state.ok()) {
      spdlog::warn("autoscale pool={} no decision: {} backend unavailable: {}", pool, backend_->Name(),
                   state.status().ToString());
      if (metrics_ != nullptr) metrics_->RecordBackendError(pool);
      continue;
    }
    absl::StatusOr<PoolSignals> signals = reader_->Read(pool);
    Decision d = policy.Decide(signals, *state);
    if (d.action == Action::kHold) {
      spdlog::warn("autoscale {}", d.ToLogLine());
    } else {
      spdlog::info("autoscale {}", d.ToLogLine());
    }
    if (metrics_ != nullptr) metrics_->RecordDecision(d);
    if (d.Changes()) {
      absl::Status st = backend_->SetReplicas(pool, d.target);
      if (metrics_ != nullptr) metrics_->RecordScaleResult(pool, st.ok());
      if (!st.ok()) {
        spdlog::error("autoscale pool={} setting {} replicas on {} failed: {}", pool, d.target,
                      backend_->Name(), st.ToString());
      }
    }
    out.push_back(std::move(d));
  }
  return out;
}

void Controller::Run(double interval_s, StopSignal* stop) {
  while (!stop->stopped()) {
    const auto start = std::chrono::steady_clock::now();
    Tick();
    const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (stop->WaitFor(std::max(0.0, interval_s - took))) break;
  }
}

}  // namespace flotilla::autoscaler
