#include "worker/engine_metrics.h"

namespace flotilla::worker {
namespace {

using prometheus::BuildCounter;
using prometheus::BuildGauge;
using prometheus::BuildHistogram;
using prometheus::Histogram;

// Buckets as vLLM's, so dashboards and alert thresholds carry over.
const Histogram::BucketBoundaries kTtftBuckets = {0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5,
                                                  0.75,  1.0,   2.5,  5.0,  7.5,  10.0, 20.0, 40.0, 80.0};
const Histogram::BucketBoundaries kItlBuckets = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2,
                                                 0.3,   0.4,    0.5,   0.75, 1.0,   2.5,  5.0,   7.5, 10.0};
const Histogram::BucketBoundaries kLatencyBuckets = {0.01, 0.025, 0.05, 0.1, 0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5,
                                                     5.0,  10.0,  15.0, 20.0, 30.0, 40.0, 50.0, 60.0};
const Histogram::BucketBoundaries kIterationBuckets = {1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192};

prometheus::Labels L(const std::string& model) { return {{"model", model}}; }

}  // namespace

EngineMetrics::EngineMetrics(prometheus::Registry& r, const std::string& model)
    : requests_running(BuildGauge().Name("flotilla_requests_running").Help("Requests in the running batch").Register(r).Add(L(model))),
      requests_waiting(BuildGauge().Name("flotilla_requests_waiting").Help("Requests waiting to be scheduled").Register(r).Add(L(model))),
      kv_cache_usage(BuildGauge().Name("flotilla_kv_cache_usage_ratio").Help("Fraction of KV-cache blocks in use (0-1)").Register(r).Add(L(model))),
      time_to_first_token(BuildHistogram().Name("flotilla_time_to_first_token_seconds").Help("Time from arrival to the first token").Register(r).Add(L(model), kTtftBuckets)),
      inter_token_latency(BuildHistogram().Name("flotilla_inter_token_latency_seconds").Help("Time between consecutive output tokens").Register(r).Add(L(model), kItlBuckets)),
      e2e_latency(BuildHistogram().Name("flotilla_e2e_request_latency_seconds").Help("Time from arrival to finish").Register(r).Add(L(model), kLatencyBuckets)),
      queue_time(BuildHistogram().Name("flotilla_request_queue_time_seconds").Help("Time from arrival to first scheduling").Register(r).Add(L(model), kLatencyBuckets)),
      iteration_tokens(BuildHistogram().Name("flotilla_iteration_tokens").Help("Tokens processed per engine step").Register(r).Add(L(model), kIterationBuckets)),
      prompt_tokens(BuildCounter().Name("flotilla_prompt_tokens_total").Help("Prompt tokens of requests that began generating").Register(r).Add(L(model))),
      generation_tokens(BuildCounter().Name("flotilla_generation_tokens_total").Help("Generated tokens").Register(r).Add(L(model))),
      preemptions(BuildCounter().Name("flotilla_preemptions_total").Help("Sequences preempted to free KV blocks").Register(r).Add(L(model))),
      prefix_queries(BuildCounter().Name("flotilla_prefix_cache_queries_total").Help("Prompt tokens looked up in the prefix cache").Register(r).Add(L(model))),
      prefix_hits(BuildCounter().Name("flotilla_prefix_cache_hits_total").Help("Prompt tokens found in the prefix cache").Register(r).Add(L(model))),
      success_stop(BuildCounter().Name("flotilla_request_success_total").Help("Finished requests by reason").Register(r).Add({{"model", model}, {"finished_reason", "stop"}})),
      success_length(BuildCounter().Name("flotilla_request_success_total").Help("Finished requests by reason").Register(r).Add({{"model", model}, {"finished_reason", "length"}})),
      success_abort(BuildCounter().Name("flotilla_request_success_total").Help("Finished requests by reason").Register(r).Add({{"model", model}, {"finished_reason", "abort"}})),
      healthy(BuildGauge().Name("flotilla_worker_healthy").Help("1 while the worker can serve").Register(r).Add(L(model))) {}

}  // namespace flotilla::worker
