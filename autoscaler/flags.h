// Command-line flags of flotilla-autoscaler, shared with `flotilla autoscale` so both take the
// same options. Flags override a --config JSON file key by key.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "autoscaler/config.h"

namespace CLI {
class App;
}

namespace flotilla::autoscaler {

struct AutoscalerFlags {
  std::string config_file;
  double interval_s = 0;  // 0: from the config (default 5)
  std::string metrics_address;
  std::string reader;  // scrape | promql
  std::string prometheus_url;
  std::string extra_selector;
  std::vector<std::string> scrape_targets;  // POOL=URL
  std::string scrape_fleet_file;
  std::vector<std::string> activation_urls;
  double window_s = 0;
  std::string backend;  // local | kubernetes
  std::string work_dir;
  std::string fleet_file;
  std::string prometheus_sd_file;
  std::string worker_binary;
  std::string k8s_api_server;
  std::string k8s_namespace;
  std::string k8s_token_file;
  std::string k8s_ca_file;
  // "model=NAME,min_replicas=1,max_replicas=3,model_path=PATH,..." (keys as in the JSON pool
  // object; nested ones as scale_down.stabilization_window_s; list values space-separated).
  std::vector<std::string> pools;
  std::string log_format = "text";
  std::string log_level = "info";
};

// Adds the flags to `app` (a subcommand or the binary's app), storing into *flags.
void AddAutoscalerFlags(CLI::App& app, AutoscalerFlags* flags);

// The config file (if any) with the flags applied, validated.
absl::StatusOr<AutoscalerConfig> ConfigFromFlags(const AutoscalerFlags& flags);

}  // namespace flotilla::autoscaler
