// `flotilla models`: the models the gateway serves, with their context and healthy workers.
#include <CLI/CLI.hpp>

#include <cstdio>

#include <nlohmann/json.hpp>

#include "cli/client_flags.h"
#include "cli/commands.h"
#include "cli/table.h"
#include "flotilla/sdk/client.h"

namespace flotilla::cli {
namespace {

struct ModelsArgs {
  ClientFlags client;
  bool json = false;
};

int RunModels(const ModelsArgs& a) {
  absl::StatusOr<std::unique_ptr<sdk::Client>> client = MakeClient(a.client);
  if (!client.ok()) {
    std::fprintf(stderr, "error: %s\n", std::string(client.status().message()).c_str());
    return 1;
  }
  sdk::CallOptions call;
  call.timeout = absl::Seconds(10);
  absl::StatusOr<std::vector<flotilla::v1::ModelInfo>> models = (*client)->ListModels(call);
  if (!models.ok()) {
    std::fprintf(stderr, "error: %s\n", models.status().ToString().c_str());
    return 1;
  }
  if (a.json) {
    nlohmann::json list = nlohmann::json::array();
    for (const auto& m : *models) {
      list.push_back({{"id", m.id()},
                      {"context_length", m.context_length()},
                      {"quantization", m.quantization()},
                      {"healthy_workers", m.healthy_workers()}});
    }
    std::printf("%s\n", nlohmann::json{{"models", list}}.dump(2).c_str());
    return 0;
  }
  Table t({"MODEL", "CONTEXT", "QUANT", "HEALTHY WORKERS"});
  for (const auto& m : *models) {
    t.AddRow({m.id(), std::to_string(m.context_length()), m.quantization(), std::to_string(m.healthy_workers())});
  }
  t.Print(stdout);
  return 0;
}

}  // namespace

void RegisterModels(CLI::App& app, int* exit_code) {
  auto args = std::make_shared<ModelsArgs>();
  CLI::App* cmd = app.add_subcommand("models", "List the models the gateway serves");
  cmd->add_flag("--json", args->json, "JSON output");
  AddClientFlags(*cmd, &args->client);
  cmd->callback([args, exit_code] { *exit_code = RunModels(*args); });
}

}  // namespace flotilla::cli
