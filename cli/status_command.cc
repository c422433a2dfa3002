// `flotilla status`: the fleet at a glance (workers, their load, gateway and autoscaler figures),
// from a running `flotilla up`, or from a fleet file for fleets started otherwise.
#include <CLI/CLI.hpp>

#include <cstdio>

#include "cli/client_flags.h"
#include "cli/commands.h"
#include "cli/fleet_state.h"
#include "cli/fleet_view.h"

namespace flotilla::cli {
namespace {

struct StatusArgs {
  std::string state_dir;
  std::string fleet_file;
  std::string gateway_http;
  bool json = false;
};

int RunStatus(const StatusArgs& a) {
  FleetView view;
  if (!a.fleet_file.empty()) {
    view = GatherFromFleetFile(a.fleet_file, a.gateway_http);
  } else {
    absl::StatusOr<FleetState> state = ReadFleetState(StateFilePath(a.state_dir));
    if (!state.ok()) {
      std::fprintf(stderr, "error: %s\n(or point at a fleet file with --fleet-file)\n",
                   std::string(state.status().message()).c_str());
      return 1;
    }
    view = GatherFromUp(*state);
  }
  std::fputs((a.json ? FleetViewToJson(view) : FleetViewToText(view)).c_str(), stdout);
  return 0;
}

}  // namespace

void RegisterStatus(CLI::App& app, int* exit_code) {
  auto args = std::make_shared<StatusArgs>();
  CLI::App* cmd = app.add_subcommand("status", "Show the workers (state, model, zone, load, KV %, tokens/s) and gateway figures");
  AddStateDirFlag(*cmd, &args->state_dir);
  cmd->add_option("--fleet-file", args->fleet_file, "Read the workers from this fleet file instead of a running `flotilla up`");
  cmd->add_option("--gateway-http", args->gateway_http, "With --fleet-file: the gateway's HTTP host:port for its figures");
  cmd->add_flag("--json", args->json, "JSON output");
  cmd->callback([args, exit_code] { *exit_code = RunStatus(*args); });
}

}  // namespace flotilla::cli
