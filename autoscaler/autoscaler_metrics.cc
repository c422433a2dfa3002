#include "autoscaler/autoscaler_metrics.h"

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>

#include <chrono>

namespace flotilla::autoscaler {

struct AutoscalerMetrics::Families {
  prometheus::Family<prometheus::Gauge>& replicas;
  prometheus::Family<prometheus::Gauge>& signal;
  prometheus::Family<prometheus::Gauge>& metrics_available;
  prometheus::Family<prometheus::Counter>& decisions;
  prometheus::Family<prometheus::Counter>& scale_operations;
  prometheus::Family<prometheus::Counter>& backend_errors;
  prometheus::Family<prometheus::Gauge>& last_decision;
};

AutoscalerMetrics::AutoscalerMetrics(prometheus::Registry& r)
    : f_(new Families{
          prometheus::BuildGauge()
              .Name("flotilla_autoscaler_replicas")
              .Help("Replicas of a pool by kind: current (backend's desired before the decision), desired "
                    "(after), ready, starting, recommended (from signals, before windows and limits)")
              .Register(r),
          prometheus::BuildGauge()
              .Name("flotilla_autoscaler_signal")
              .Help("Inputs of the last decision: sums over the pool's replicas; ttft_p95_seconds is NaN "
                    "when no first token was seen in the window")
              .Register(r),
          prometheus::BuildGauge()
              .Name("flotilla_autoscaler_metrics_available")
              .Help("1 when the last decision had usable metrics; 0 when it held the size for lack of them")
              .Register(r),
          prometheus::BuildCounter()
              .Name("flotilla_autoscaler_decisions_total")
              .Help("Decisions by action: steady, scale_up, scale_down, activate, to_zero, hold, warming, cooldown")
              .Register(r),
          prometheus::BuildCounter()
              .Name("flotilla_autoscaler_scale_operations_total")
              .Help("Requests to the backend to change a pool's size, by result")
              .Register(r),
          prometheus::BuildCounter()
              .Name("flotilla_autoscaler_backend_errors_total")
              .Help("Failures reading a pool's replicas from the backend")
              .Register(r),
          prometheus::BuildGauge()
              .Name("flotilla_autoscaler_last_decision_timestamp_seconds")
              .Help("Unix time of the last decision for the pool")
              .Register(r),
      }) {}

AutoscalerMetrics::~AutoscalerMetrics() = default;

void AutoscalerMetrics::RecordDecision(const Decision& d) {
  auto rep = [&](const char* kind, double v) { f_->replicas.Add({{"pool", d.pool}, {"kind", kind}}).Set(v); };
  rep("current", d.current);
  rep("desired", d.target);
  rep("ready", d.ready);
  rep("starting", d.starting);
  rep("recommended", d.recommended);
  auto sig = [&](const char* name, double v) { f_->signal.Add({{"pool", d.pool}, {"signal", name}}).Set(v); };
  if (d.metrics_ok) {
    sig("waiting", d.inputs.waiting);
    sig("running", d.inputs.running);
    sig("kv_usage_sum", d.inputs.kv_usage_sum);
    sig("activation", d.inputs.activation);
    sig("reporting", d.inputs.reporting);
    sig("ttft_p95_seconds", d.inputs.ttft_p95_s.value_or(std::numeric_limits<double>::quiet_NaN()));
  }
  f_->metrics_available.Add({{"pool", d.pool}}).Set(d.metrics_ok ? 1 : 0);
  f_->decisions.Add({{"pool", d.pool}, {"action", ActionName(d.action)}}).Increment();
  const double unix_s =
      std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  f_->last_decision.Add({{"pool", d.pool}}).Set(unix_s);
}

void AutoscalerMetrics::RecordScaleResult(const std::string& pool, bool ok) {
  f_->scale_operations.Add({{"pool", pool}, {"result", ok ? "ok" : "error"}}).Increment();
}

void AutoscalerMetrics::RecordBackendError(const std::string& pool) {
  f_->backend_errors.Add({{"pool", pool}}).Increment();
}

}  // namespace flotilla::autoscaler
