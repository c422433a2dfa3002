// `flotilla drain WORKER`: takes a worker out gracefully. The worker leaves the discovery file
// (gateways stop routing to it), finishes what it is running, then stops. WORKER is a worker id
// of a running `flotilla up` (see `flotilla status`), or host:port of any worker (then only its
// Drain RPC is called: stopping the process is its owner's business).
#include <CLI/CLI.hpp>

#include <cstdio>

#include "autoscaler/drain_client.h"
#include "cli/client_flags.h"
#include "cli/commands.h"
#include "cli/control_api.h"
#include "cli/fleet_state.h"

namespace flotilla::cli {
namespace {

struct DrainArgs {
  std::string state_dir;
  std::string worker;
  bool replace = false;
  double timeout_s = 60;
};

bool LooksLikeAddress(const std::string& s) {
  const size_t colon = s.rfind(':');
  return colon != std::string::npos && colon + 1 < s.size() &&
         s.find_first_not_of("0123456789", colon + 1) == std::string::npos;
}

int RunDrain(const DrainArgs& a) {
  if (LooksLikeAddress(a.worker)) {
    absl::StatusOr<int> left = autoscaler::DrainWorkerRpc(a.worker, /*wait=*/true, a.timeout_s);
    if (!left.ok()) {
      std::fprintf(stderr, "error: %s\n", std::string(left.status().message()).c_str());
      return 1;
    }
    std::printf("%s: drained (%d request(s) still in flight)\n", a.worker.c_str(), *left);
    return 0;
  }
  absl::StatusOr<FleetState> state = ReadFleetState(StateFilePath(a.state_dir));
  if (!state.ok()) {
    std::fprintf(stderr, "error: %s\n", std::string(state.status().message()).c_str());
    return 1;
  }
  if (absl::Status st = DrainFleetWorker(*state, a.worker, a.replace); !st.ok()) {
    std::fprintf(stderr, "error: %s\n", std::string(st.message()).c_str());
    return 1;
  }
  std::printf("%s: draining%s\n", a.worker.c_str(), a.replace ? " (a replacement is starting)" : "");
  return 0;
}

}  // namespace

void RegisterDrain(CLI::App& app, int* exit_code) {
  auto args = std::make_shared<DrainArgs>();
  CLI::App* cmd = app.add_subcommand("drain", "Drain a worker: stop routing to it, let it finish, stop it");
  cmd->add_option("worker", args->worker, "Worker id (from `flotilla status`) or host:port")->required();
  cmd->add_flag("--replace", args->replace, "Keep the pool's size: start a replacement (like deleting a pod)");
  cmd->add_option("--timeout", args->timeout_s, "host:port form: seconds to wait for the worker to empty")
      ->capture_default_str();
  AddStateDirFlag(*cmd, &args->state_dir);
  cmd->callback([args, exit_code] { *exit_code = RunDrain(*args); });
}

}  // namespace flotilla::cli
