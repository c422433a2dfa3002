// flotilla-autoscaler: reads the fleet's metrics, decides replicas per model pool, and acts
// through a backend (local worker processes or a Kubernetes Deployment). See docs/autoscaler.md.
#include <CLI/CLI.hpp>

#include <spdlog/spdlog.h>

#include "autoscaler/flags.h"
#include "autoscaler/run.h"
#include "common/logging.h"

int main(int argc, char** argv) {
  CLI::App app{"flotilla-autoscaler: scales model pools from their metrics"};
  flotilla::autoscaler::AutoscalerFlags flags;
  flotilla::autoscaler::AddAutoscalerFlags(app, &flags);
  CLI11_PARSE(app, argc, argv);
  if (absl::Status st = flotilla::SetupLogging({flags.log_format, flags.log_level, "autoscaler"}); !st.ok()) {
    fprintf(stderr, "%s\n", st.ToString().c_str());
    return 2;
  }
  absl::StatusOr<flotilla::autoscaler::AutoscalerConfig> config = flotilla::autoscaler::ConfigFromFlags(flags);
  if (!config.ok()) {
    spdlog::error("{}", config.status().ToString());
    return 2;
  }
  absl::Status st = flotilla::autoscaler::RunAutoscalerUntilSignal(*config);
  if (!st.ok()) spdlog::error("{}", st.ToString());
  flotilla::ExitAfterShutdown(st.ok() ? 0 : 1);
}
