// Configuration of a whole autoscaler: loop interval, its own metrics address, the metrics
// reader, the backend and the pools. Read from JSON (docs/autoscaler.md has every key; an
// unknown key is an error, so a typo cannot silently fall back to a default).
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "autoscaler/kubernetes_backend.h"
#include "autoscaler/local_fleet.h"
#include "autoscaler/metrics_reader.h"
#include "autoscaler/policy.h"
#include "autoscaler/scrape_reader.h"

namespace flotilla::autoscaler {

struct ReaderConfig {
  std::string kind = "scrape";  // scrape | promql
  // promql
  std::string prometheus_url = "http://127.0.0.1:9090";
  std::string extra_selector;
  // scrape: fixed targets, and/or a fleet file (the local backend's by default)
  std::vector<ScrapeTarget> targets;
  std::string fleet_file;
  std::vector<std::string> activation_urls;
  double window_s = 60;
  double timeout_s = 3;
  MetricNames names;
};

struct PoolEntry {
  PolicyConfig policy;
  int initial_replicas = -1;  // local backend: started at launch; -1 = min_replicas
  LocalPoolSpec local;        // local backend (model_name = policy.pool)
  std::string deployment;     // kubernetes backend
};

struct BackendConfig {
  std::string kind = "local";  // local | kubernetes
  LocalFleetOptions local;
  KubernetesOptions kubernetes;  // deployments are filled from the pools
};

struct AutoscalerConfig {
  double interval_s = 5;
  std::string metrics_address = "127.0.0.1:0";  // the autoscaler's own /metrics; port 0 = any
  ReaderConfig reader;
  BackendConfig backend;
  std::vector<PoolEntry> pools;

  absl::Status Validate() const;
};

absl::StatusOr<AutoscalerConfig> ParseConfigJson(const std::string& text);
absl::StatusOr<AutoscalerConfig> LoadConfigFile(const std::string& path);

}  // namespace flotilla::autoscaler
