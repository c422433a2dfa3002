// Flags shared by the commands that talk to a gateway (generate, models, bench, status), and
// how they find it: --gateway, else $FLOTILLA_GATEWAY, else the state file of a running
// `flotilla up` (fleet_state.h).
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "flotilla/sdk/client.h"

namespace CLI {
class App;
}

namespace flotilla::cli {

struct ClientFlags {
  std::string gateway;    // host:port of the gateway's gRPC port
  std::string api_key;    // default $FLOTILLA_API_KEY
  bool tls = false;
  std::string ca_file;    // PEM roots for --tls (default: the system's)
  std::string tls_server_name;
  std::string state_dir;  // where `flotilla up` keeps up.json
};

void AddClientFlags(CLI::App& app, ClientFlags* flags);
void AddStateDirFlag(CLI::App& app, std::string* state_dir);

// The gateway's gRPC address, or an error that says how to give one.
absl::StatusOr<std::string> ResolveGateway(const ClientFlags& flags);

absl::StatusOr<sdk::ClientOptions> MakeClientOptions(const ClientFlags& flags);
absl::StatusOr<std::unique_ptr<sdk::Client>> MakeClient(const ClientFlags& flags);

// `model` when given; else the only model the gateway serves (an error naming them when there
// are several, or none yet).
absl::StatusOr<std::string> ResolveModel(sdk::Client& client, const std::string& model);

}  // namespace flotilla::cli
