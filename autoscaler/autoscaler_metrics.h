// The autoscaler's own Prometheus metrics, declared in one place; the registry is passed in.
// Per pool (label `pool`):
//   flotilla_autoscaler_replicas{pool,kind=current|desired|ready|starting|recommended}  gauge
//   flotilla_autoscaler_signal{pool,signal=waiting|running|kv_usage_sum|ttft_p95_seconds|activation|reporting}
//   flotilla_autoscaler_metrics_available{pool}   1 when the last decision had usable metrics, else 0
//   flotilla_autoscaler_decisions_total{pool,action}   one per decision (steady, scale_up, hold, ...)
//   flotilla_autoscaler_scale_operations_total{pool,result=ok|error}   backend calls that change size
//   flotilla_autoscaler_backend_errors_total{pool}     reading the backend failed
//   flotilla_autoscaler_last_decision_timestamp_seconds{pool}   unix time
// Thread-safe (prometheus-cpp metrics are).
#pragma once

#include <memory>
#include <string>

#include "autoscaler/policy.h"

namespace prometheus {
class Registry;
}

namespace flotilla::autoscaler {

class AutoscalerMetrics {
 public:
  explicit AutoscalerMetrics(prometheus::Registry& registry);
  ~AutoscalerMetrics();

  void RecordDecision(const Decision& d);
  void RecordScaleResult(const std::string& pool, bool ok);
  void RecordBackendError(const std::string& pool);

 private:
  struct Families;
  std::unique_ptr<Families> f_;
};

}  // namespace flotilla::autoscaler
