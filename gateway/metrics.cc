#include "gateway/metrics.h"

#include <sstream>

#include "prometheus/text_serializer.h"

namespace flotilla::gateway {
namespace {

using prometheus::BuildCounter;
using prometheus::BuildGauge;
using prometheus::BuildHistogram;

const prometheus::Histogram::BucketBoundaries& LatencyBuckets() {
  static const auto* b = new prometheus::Histogram::BucketBoundaries{
      0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120};
  return *b;
}

}  // namespace

GatewayMetrics::GatewayMetrics()
    : registry_(std::make_shared<prometheus::Registry>()),
      requests_(BuildCounter().Name("flotilla_gateway_requests_total")
                    .Help("Finished requests by status code, model and tenant").Register(*registry_)),
      request_duration_(BuildHistogram().Name("flotilla_gateway_request_duration_seconds")
                            .Help("Time from arrival to the end of the response").Register(*registry_)),
      rate_limited_(BuildCounter().Name("flotilla_gateway_rate_limited_total")
                        .Help("Requests refused by a tenant limit (requests, tokens, concurrency)").Register(*registry_)),
      shed_(BuildCounter().Name("flotilla_gateway_shed_total")
                .Help("Requests refused by admission (overloaded, deadline_infeasible, queue_timeout, no_workers)")
                .Register(*registry_)),
      retries_(BuildCounter().Name("flotilla_gateway_retries_total")
                   .Help("Requests retried on another worker before their first token").Register(*registry_)),
      cache_(BuildCounter().Name("flotilla_gateway_response_cache_lookups_total")
                 .Help("Response cache lookups by result (hit, miss)").Register(*registry_)),
      upstream_ttft_(BuildHistogram().Name("flotilla_gateway_upstream_time_to_first_token_seconds")
                         .Help("From sending to a worker to its first token").Register(*registry_)),
      upstream_duration_(BuildHistogram().Name("flotilla_gateway_upstream_duration_seconds")
                             .Help("Duration of worker calls by status code").Register(*registry_)),
      open_streams_(BuildGauge().Name("flotilla_gateway_open_streams")
                        .Help("Requests currently open, by API (grpc, http)").Register(*registry_)),
      healthy_workers_(BuildGauge().Name("flotilla_gateway_healthy_workers")
                           .Help("Workers that can take requests, per model").Register(*registry_)),
      workers_(BuildGauge().Name("flotilla_gateway_workers")
                   .Help("Workers known per model, healthy or not").Register(*registry_)),
      queue_depth_(BuildGauge().Name("flotilla_gateway_queue_depth")
                       .Help("Requests waiting in the gateway for a worker, per model").Register(*registry_)),
      ejections_(BuildCounter().Name("flotilla_gateway_worker_ejections_total")
                     .Help("Circuit-breaker ejections per worker").Register(*registry_)),
      prompt_tokens_(BuildCounter().Name("flotilla_gateway_prompt_tokens_total")
                         .Help("Prompt tokens admitted, per model and tenant").Register(*registry_)),
      completion_tokens_(BuildCounter().Name("flotilla_gateway_completion_tokens_total")
                             .Help("Completion tokens streamed, per model and tenant").Register(*registry_)),
      rate_limiter_fallbacks_(BuildGauge().Name("flotilla_gateway_rate_limiter_fallbacks")
                                  .Help("Rate-limit decisions made locally because Redis was unreachable")
                                  .Register(*registry_)),
      key_reloads_(BuildCounter().Name("flotilla_gateway_api_key_reloads_total")
                       .Help("API key file reloads by result").Register(*registry_)) {}

void GatewayMetrics::RequestDone(const std::string& code, const std::string& model, const std::string& tenant,
                                 const std::string& api, double seconds) {
  requests_.Add({{"code", code}, {"model", model}, {"tenant", tenant}}).Increment();
  request_duration_.Add({{"api", api}}, LatencyBuckets()).Observe(seconds);
}

void GatewayMetrics::RateLimited(const std::string& tenant, const std::string& limit) {
  rate_limited_.Add({{"tenant", tenant}, {"limit", limit}}).Increment();
}

void GatewayMetrics::Shed(const std::string& model, const std::string& reason) {
  shed_.Add({{"model", model}, {"reason", reason}}).Increment();
}

void GatewayMetrics::Retried(const std::string& model, const std::string& reason) {
  retries_.Add({{"model", model}, {"reason", reason}}).Increment();
}

void GatewayMetrics::CacheLookup(const std::string& model, bool hit) {
  cache_.Add({{"model", model}, {"result", hit ? "hit" : "miss"}}).Increment();
}

void GatewayMetrics::UpstreamTtft(const std::string& model, double seconds) {
  upstream_ttft_.Add({{"model", model}}, LatencyBuckets()).Observe(seconds);
}

void GatewayMetrics::UpstreamDuration(const std::string& model, const std::string& code, double seconds) {
  upstream_duration_.Add({{"model", model}, {"code", code}}, LatencyBuckets()).Observe(seconds);
}

void GatewayMetrics::StreamOpened(const std::string& api) { open_streams_.Add({{"api", api}}).Increment(); }
void GatewayMetrics::StreamClosed(const std::string& api) { open_streams_.Add({{"api", api}}).Decrement(); }

void GatewayMetrics::SetHealthyWorkers(const std::string& model, double n) {
  healthy_workers_.Add({{"model", model}}).Set(n);
}

void GatewayMetrics::SetWorkers(const std::string& model, double n) { workers_.Add({{"model", model}}).Set(n); }

void GatewayMetrics::SetQueueDepth(const std::string& model, double n) {
  queue_depth_.Add({{"model", model}}).Set(n);
}

void GatewayMetrics::Ejected(const std::string& worker) { ejections_.Add({{"worker", worker}}).Increment(); }

void GatewayMetrics::PromptTokens(const std::string& model, const std::string& tenant, double n) {
  prompt_tokens_.Add({{"model", model}, {"tenant", tenant}}).Increment(n);
}

void GatewayMetrics::CompletionTokens(const std::string& model, const std::string& tenant, double n) {
  completion_tokens_.Add({{"model", model}, {"tenant", tenant}}).Increment(n);
}

void GatewayMetrics::RateLimiterFallbacks(double total) { rate_limiter_fallbacks_.Add({}).Set(total); }

void GatewayMetrics::KeyReload(bool ok) { key_reloads_.Add({{"result", ok ? "ok" : "error"}}).Increment(); }

std::string GatewayMetrics::Serialize() const {
  std::ostringstream out;
  prometheus::TextSerializer().Serialize(out, registry_->Collect());
  return out.str();
}

}  // namespace flotilla::gateway
