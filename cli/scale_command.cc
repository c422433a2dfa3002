// `flotilla scale --model M --replicas N`: sets the size of a model's pool in a running
// `flotilla up`. Returns once the request is accepted; with --wait, once the pool is there.
#include <CLI/CLI.hpp>

#include <chrono>
#include <cstdio>
#include <thread>

#include "cli/client_flags.h"
#include "cli/commands.h"
#include "cli/control_api.h"
#include "cli/fleet_state.h"

namespace flotilla::cli {
namespace {

struct ScaleArgs {
  std::string state_dir;
  std::string model;
  int replicas = 0;
  double wait_s = 0;
};

int RunScale(const ScaleArgs& a) {
  absl::StatusOr<FleetState> state = ReadFleetState(StateFilePath(a.state_dir));
  if (!state.ok()) {
    std::fprintf(stderr, "error: %s\n", std::string(state.status().message()).c_str());
    return 1;
  }
  std::string model = a.model;
  if (model.empty() && state->models.size() == 1) model = state->models.front();
  if (model.empty()) {
    std::fprintf(stderr, "error: --model is required (the fleet serves several)\n");
    return 2;
  }
  absl::StatusOr<ControlSnapshot> before = GetFleet(*state);
  if (absl::Status st = ScaleFleet(*state, model, a.replicas); !st.ok()) {
    std::fprintf(stderr, "error: %s\n", std::string(st.message()).c_str());
    return 1;
  }
  std::printf("%s: scaling to %d replica(s)\n", model.c_str(), a.replicas);
  std::fflush(stdout);
  if (before.ok() && before->autoscaler) {
    std::fprintf(stderr,
                 "note: the autoscaler is running; it may change the size again on its next decision "
                 "(within its min/max)\n");
  }
  if (a.wait_s <= 0) return 0;
  const auto until = std::chrono::steady_clock::now() + std::chrono::duration<double>(a.wait_s);
  while (std::chrono::steady_clock::now() < until) {
    absl::StatusOr<ControlSnapshot> snap = GetFleet(*state);
    if (snap.ok()) {
      for (const ControlPool& p : snap->pools) {
        if (p.model == model && p.ready == a.replicas && p.starting == 0) {
          int leaving = 0;
          for (const ControlWorker& w : snap->workers) {
            if (w.model == model && (w.state == "draining" || w.state == "stopping")) ++leaving;
          }
          if (leaving == 0) {
            std::printf("%s: %d ready\n", model.c_str(), p.ready);
            return 0;
          }
        }
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  std::fprintf(stderr, "error: %s did not reach %d ready replica(s) in %.0f s\n", model.c_str(), a.replicas, a.wait_s);
  return 1;
}

}  // namespace

void RegisterScale(CLI::App& app, int* exit_code) {
  auto args = std::make_shared<ScaleArgs>();
  CLI::App* cmd = app.add_subcommand("scale", "Set the number of workers of a model in a running `flotilla up`");
  cmd->add_option("-m,--model", args->model, "Model (pool) name (default: the only one)");
  cmd->add_option("--replicas", args->replicas, "Workers wanted (0 stops them all)")->required()->check(CLI::NonNegativeNumber);
  cmd->add_option("--wait", args->wait_s, "Wait up to this many seconds for the pool to reach the size");
  AddStateDirFlag(*cmd, &args->state_dir);
  cmd->callback([args, exit_code] { *exit_code = RunScale(*args); });
}

}  // namespace flotilla::cli
