// The control loop: every interval, for each pool, read the backend's replica counts and the
// metrics, let the pool's policy decide, log the decision with its inputs, export it, and
// apply it. The same loop serves flotilla-autoscaler, `flotilla autoscale` and `flotilla up`.
// Controller is not thread-safe (one thread runs Tick/Run); StopSignal is.
#pragma once

#include <condition_variable>
#include <mutex>
#include <vector>

#include "autoscaler/autoscaler_metrics.h"
#include "autoscaler/backend.h"
#include "autoscaler/metrics_reader.h"
#include "autoscaler/policy.h"
#include "common/clock.h"

namespace flotilla::autoscaler {

// A stop request another thread (or a signal-watching thread) can make.
class StopSignal {
 public:
  void Stop();
  bool stopped() const;
  // Waits up to `seconds`; true when stopped.
  bool WaitFor(double seconds);

 private:
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stopped_ = false;
};

class Controller {
 public:
  // Every config must have passed Validate(). reader, backend and clock must outlive the
  // controller; metrics may be null.
  Controller(const std::vector<PolicyConfig>& pools, MetricsReader* reader, ScalingBackend* backend,
             const Clock* clock, AutoscalerMetrics* metrics);

  // One round over every pool. Returns the decisions made (a pool whose backend could not be
  // read gets none: without a current size there is nothing to decide from).
  std::vector<Decision> Tick();
  // Tick every interval_s until stop.
  void Run(double interval_s, StopSignal* stop);

 private:
  MetricsReader* reader_;
  ScalingBackend* backend_;
  AutoscalerMetrics* metrics_;
  std::vector<PoolPolicy> policies_;
};

}  // namespace flotilla::autoscaler
