#include "cli/client_flags.h"

#include <CLI/CLI.hpp>

#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "cli/fleet_state.h"
#include "common/read_file.h"

namespace flotilla::cli {

void AddStateDirFlag(CLI::App& app, std::string* state_dir) {
  app.add_option("--state-dir", *state_dir,
                 "Where a running `flotilla up` keeps up.json (default $FLOTILLA_STATE_DIR, "
                 "$XDG_RUNTIME_DIR/flotilla or /tmp/flotilla-UID)");
}

void AddClientFlags(CLI::App& app, ClientFlags* f) {
  app.add_option("--gateway", f->gateway,
                 "Gateway gRPC address host:port (default $FLOTILLA_GATEWAY, else the running `flotilla up`)");
  app.add_option("--api-key", f->api_key, "API key, sent as 'authorization: Bearer KEY' (default $FLOTILLA_API_KEY)");
  app.add_flag("--tls", f->tls, "Connect with TLS");
  app.add_option("--ca-file", f->ca_file, "PEM roots that must have signed the gateway's certificate (implies --tls)");
  app.add_option("--tls-server-name", f->tls_server_name, "Verify the certificate for this name (implies --tls)");
  AddStateDirFlag(app, &f->state_dir);
}

absl::StatusOr<std::string> ResolveGateway(const ClientFlags& flags) {
  if (!flags.gateway.empty()) return flags.gateway;
  if (const char* g = std::getenv("FLOTILLA_GATEWAY"); g != nullptr && *g != '\0') return std::string(g);
  absl::StatusOr<FleetState> state = ReadFleetState(StateFilePath(flags.state_dir));
  if (!state.ok()) {
    return absl::Status(state.status().code(),
                        absl::StrCat("no gateway given (--gateway or $FLOTILLA_GATEWAY) and ", state.status().message()));
  }
  return state->gateway_grpc;
}

absl::StatusOr<sdk::ClientOptions> MakeClientOptions(const ClientFlags& flags) {
  sdk::ClientOptions o;
  absl::StatusOr<std::string> target = ResolveGateway(flags);
  if (!target.ok()) return target.status();
  o.target = *target;
  o.api_key = flags.api_key;
  if (o.api_key.empty()) {
    if (const char* k = std::getenv("FLOTILLA_API_KEY"); k != nullptr) o.api_key = k;
  }
  o.tls.enabled = flags.tls || !flags.ca_file.empty() || !flags.tls_server_name.empty();
  if (!flags.ca_file.empty()) {
    absl::StatusOr<std::string> pem = ReadFileToString(flags.ca_file);
    if (!pem.ok()) return pem.status();
    o.tls.root_certs_pem = *pem;
  }
  o.tls.server_name_override = flags.tls_server_name;
  o.user_agent = "flotilla-cli";
  return o;
}

absl::StatusOr<std::unique_ptr<sdk::Client>> MakeClient(const ClientFlags& flags) {
  absl::StatusOr<sdk::ClientOptions> o = MakeClientOptions(flags);
  if (!o.ok()) return o.status();
  return sdk::Client::Create(*std::move(o));
}

absl::StatusOr<std::string> ResolveModel(sdk::Client& client, const std::string& model) {
  if (!model.empty()) return model;
  sdk::CallOptions call;
  call.timeout = absl::Seconds(10);
  absl::StatusOr<std::vector<flotilla::v1::ModelInfo>> models = client.ListModels(call);
  if (!models.ok()) {
    return absl::Status(models.status().code(),
                        absl::StrCat("no --model given and listing models failed: ", models.status().message()));
  }
  if (models->size() == 1) return models->front().id();
  if (models->empty()) return absl::UnavailableError("no --model given and the gateway serves no model yet");
  std::vector<std::string> ids;
  for (const auto& m : *models) ids.push_back(m.id());
  return absl::InvalidArgumentError(absl::StrCat("several models served (", absl::StrJoin(ids, ", "), "): pick one with --model"));
}

}  // namespace flotilla::cli
