// The gateway's Prometheus metrics, declared in one place (prefix flotilla_gateway_). The registry
// is owned here and passed to whoever serves /metrics; there is no global registry.
// Thread-safety: every method may be called from any thread (prometheus-cpp families lock).
#pragma once

#include <memory>
#include <string>

#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"

namespace flotilla::gateway {

class GatewayMetrics {
 public:
  GatewayMetrics();

  // Finished requests by outcome: code is the gRPC status name ("OK", "RESOURCE_EXHAUSTED", ...).
  void RequestDone(const std::string& code, const std::string& model, const std::string& tenant,
                   const std::string& api, double seconds);
  // limit: requests | tokens | concurrency.
  void RateLimited(const std::string& tenant, const std::string& limit);
  // reason: overloaded | deadline_infeasible | queue_timeout | no_workers.
  void Shed(const std::string& model, const std::string& reason);
  void Retried(const std::string& model, const std::string& reason);
  void CacheLookup(const std::string& model, bool hit);
  void UpstreamTtft(const std::string& model, double seconds);
  void UpstreamDuration(const std::string& model, const std::string& code, double seconds);
  void StreamOpened(const std::string& api);
  void StreamClosed(const std::string& api);
  void SetHealthyWorkers(const std::string& model, double n);
  void SetWorkers(const std::string& model, double n);
  void SetQueueDepth(const std::string& model, double n);
  void Ejected(const std::string& worker);
  void PromptTokens(const std::string& model, const std::string& tenant, double n);
  void CompletionTokens(const std::string& model, const std::string& tenant, double n);
  void RateLimiterFallbacks(double total);
  void KeyReload(bool ok);

  std::shared_ptr<prometheus::Registry> registry() const { return registry_; }
  // The text exposition format of everything registered.
  std::string Serialize() const;

 private:
  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Family<prometheus::Counter>& requests_;
  prometheus::Family<prometheus::Histogram>& request_duration_;
  prometheus::Family<prometheus::Counter>& rate_limited_;
  prometheus::Family<prometheus::Counter>& shed_;
  prometheus::Family<prometheus::Counter>& retries_;
  prometheus::Family<prometheus::Counter>& cache_;
  prometheus::Family<prometheus::Histogram>& upstream_ttft_;
  prometheus::Family<prometheus::Histogram>& upstream_duration_;
  prometheus::Family<prometheus::Gauge>& open_streams_;
  prometheus::Family<prometheus::Gauge>& healthy_workers_;
  prometheus::Family<prometheus::Gauge>& workers_;
  prometheus::Family<prometheus::Gauge>& queue_depth_;
  prometheus::Family<prometheus::Counter>& ejections_;
  prometheus::Family<prometheus::Counter>& prompt_tokens_;
  prometheus::Family<prometheus::Counter>& completion_tokens_;
  prometheus::Family<prometheus::Gauge>& rate_limiter_fallbacks_;
  prometheus::Family<prometheus::Counter>& key_reloads_;
};

}  // namespace flotilla::gateway
