// What `flotilla bench` measured, per request and summarised: percentiles of time to first
// token, inter-token latency, time per output token and end-to-end latency; throughput; and
// goodput, the rate of requests that met every SLO given (as vLLM's benchmark defines it).
#pragma once

#include <map>
#include <string>
#include <vector>

namespace flotilla::cli::bench {

struct RequestRecord {
  double start_s = 0;   // send time, from the start of the run
  double ttft_s = -1;   // first chunk with tokens; -1 when none came
  double e2e_s = 0;     // send to end of stream
  // Gaps between tokens after the first chunk: a chunk of k tokens after a gap g counts as k
  // gaps of g/k (the gateway may merge tokens into one message); the first chunk's tokens are
  // covered by the TTFT.
  std::vector<double> itl_s;
  int prompt_tokens = 0;      // from the server's usage (0 when unknown)
  int output_tokens = 0;      // tokens received
  int requested_tokens = 0;   // max_tokens asked for
  int attempts = 1;
  bool ok = false;
  std::string error;          // status code name (UNAVAILABLE, RESOURCE_EXHAUSTED, HTTP_429, ...)
  std::string message;
};

struct Percentiles {
  size_t n = 0;
  double mean = 0, p50 = 0, p90 = 0, p95 = 0, p99 = 0, max = 0;
};

// Linear interpolation between closest ranks (numpy's default).
double Percentile(const std::vector<double>& sorted, double q);
Percentiles Summarize(std::vector<double> values);

struct Slo {
  double ttft_ms = 0;  // 0: not checked
  double tpot_ms = 0;
  double e2e_ms = 0;
  bool any() const { return ttft_ms > 0 || tpot_ms > 0 || e2e_ms > 0; }
};

// Whether a finished request met every SLO that is set.
bool MeetsSlo(const RequestRecord& r, const Slo& slo);

struct BenchReport {
  // What ran (echoed for the JSON consumer).
  std::string api;
  std::string model;
  std::string scenario;
  std::map<std::string, double> shape;  // concurrency, rate, burst_rate, ...
  std::string prompt_len;
  std::string output_len;
  Slo slo;

  size_t sent = 0;
  size_t completed = 0;
  size_t failed = 0;
  std::map<std::string, size_t> errors;  // by code
  size_t retried = 0;                    // requests that took more than one attempt
  double duration_s = 0;                 // first send to last completion
  double request_throughput = 0;         // completed / duration
  double output_throughput = 0;          // output tokens / duration
  double total_token_throughput = 0;     // (prompt + output) / duration
  double goodput = 0;                    // requests meeting the SLO / duration
  double slo_attainment = 0;             // fraction of sent requests meeting the SLO
  size_t total_prompt_tokens = 0;
  size_t total_output_tokens = 0;
  Percentiles prompt_tokens;
  Percentiles output_tokens;
  Percentiles ttft_ms;
  Percentiles itl_ms;
  Percentiles tpot_ms;
  Percentiles e2e_ms;
  // Completed requests per second of the run, for burst and ramp runs.
  std::vector<double> completions_per_second;
};

BenchReport BuildReport(const std::vector<RequestRecord>& records, const Slo& slo);

std::string ReportToJson(const BenchReport& report);
std::string ReportToText(const BenchReport& report);

}  // namespace flotilla::cli::bench
