// Running a whole autoscaler from its configuration: what flotilla-autoscaler's main and
// `flotilla autoscale` call. Builds the reader, the backend and the autoscaler's own /metrics
// endpoint, then runs the control loop until stopped; with the local backend it then drains
// and stops every worker it started.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "autoscaler/config.h"
#include "autoscaler/controller.h"
#include "autoscaler/metrics_reader.h"
#include "common/clock.h"

namespace flotilla::autoscaler {

// The reader a config asks for. `local_fleet_file` is where the local backend writes its
// fleet (the scrape reader's default target list); empty when there is none.
absl::StatusOr<std::unique_ptr<MetricsReader>> MakeReader(const ReaderConfig& config,
                                                          const std::string& local_fleet_file,
                                                          const Clock* clock);

// Runs until `stop`. Returns an error only for start-up failures (bad config, ports, backend).
absl::Status RunAutoscaler(const AutoscalerConfig& config, StopSignal* stop);

// RunAutoscaler, stopped by SIGINT or SIGTERM. Blocks those signals in the calling thread
// (threads started later inherit that), so call it before starting other threads.
absl::Status RunAutoscalerUntilSignal(const AutoscalerConfig& config);

}  // namespace flotilla::autoscaler
