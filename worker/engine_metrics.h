// The engine's Prometheus metrics, declared in one place. Names and semantics follow vLLM's
// same-named metrics (vllm:num_requests_running -> flotilla_requests_running, ...), so existing
// autoscaling rules map one to one. The registry is passed in, never global.
#pragma once

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <string>

namespace flotilla::worker {

class EngineMetrics {
 public:
  EngineMetrics(prometheus::Registry& registry, const std::string& model);

  prometheus::Gauge& requests_running;
  prometheus::Gauge& requests_waiting;
  prometheus::Gauge& kv_cache_usage;
  prometheus::Histogram& time_to_first_token;
  prometheus::Histogram& inter_token_latency;
  prometheus::Histogram& e2e_latency;
  prometheus::Histogram& queue_time;
  prometheus::Histogram& iteration_tokens;
  prometheus::Counter& prompt_tokens;
  prometheus::Counter& generation_tokens;
  prometheus::Counter& preemptions;
  prometheus::Counter& prefix_queries;
  prometheus::Counter& prefix_hits;
  prometheus::Counter& success_stop;
  prometheus::Counter& success_length;
  prometheus::Counter& success_abort;
  prometheus::Gauge& healthy;
};

}  // namespace flotilla::worker
