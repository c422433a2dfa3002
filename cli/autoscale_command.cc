// `flotilla autoscale`: the autoscaler's control loop in the foreground, with the same flags
// as the flotilla-autoscaler binary (autoscaler/flags.h; docs/autoscaler.md).
#include <CLI/CLI.hpp>

#include <cstdio>

#include "autoscaler/flags.h"
#include "autoscaler/run.h"
#include "cli/commands.h"
#include "common/logging.h"

namespace flotilla::cli {

void RegisterAutoscale(CLI::App& app, int* exit_code) {
  auto flags = std::make_shared<autoscaler::AutoscalerFlags>();
  CLI::App* cmd = app.add_subcommand(
      "autoscale", "Run the autoscaler loop (scrape or PromQL metrics; local or Kubernetes backend) until Ctrl-C");
  autoscaler::AddAutoscalerFlags(*cmd, flags.get());
  cmd->callback([flags, exit_code] {
    (void)SetupLogging({.format = flags->log_format, .level = flags->log_level, .component = "autoscaler"});
    absl::StatusOr<autoscaler::AutoscalerConfig> config = autoscaler::ConfigFromFlags(*flags);
    if (!config.ok()) {
      std::fprintf(stderr, "error: %s\n", std::string(config.status().message()).c_str());
      *exit_code = 2;
      return;
    }
    // Blocks SIGINT/SIGTERM and runs until one arrives; then drains local workers.
    absl::Status st = autoscaler::RunAutoscalerUntilSignal(*config);
    if (!st.ok()) {
      std::fprintf(stderr, "error: %s\n", std::string(st.message()).c_str());
      *exit_code = 1;
    }
  });
}

}  // namespace flotilla::cli
