// Load generation over gRPC's callback API (no thread per stream), against either the worker
// API (flotilla.worker.v1.Worker/Generate, "direct") or the gateway's public API
// (flotilla.v1.Inference/Generate). Each call records when it was sent, its first token, its
// end, the token count and the final status (with the retry hint of a refusal).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>

namespace flotilla::gateway::bench {

using Clock = std::chrono::steady_clock;

struct CallResult {
  Clock::time_point sent;
  Clock::time_point first_token;  // == sent when none arrived
  Clock::time_point done;
  int tokens = 0;
  grpc::StatusCode code = grpc::StatusCode::OK;
  bool has_retry_hint = false;  // retry-after-ms trailer on a refusal
  bool got_token() const { return first_token != sent; }
  double ttft_ms() const { return std::chrono::duration<double, std::milli>(first_token - sent).count(); }
  double total_ms() const { return std::chrono::duration<double, std::milli>(done - sent).count(); }
};

struct RequestSpec {
  std::string model;
  std::string prompt;
  uint32_t max_tokens = 128;
  bool greedy = true;
  bool ignore_eos = true;
};

class Target {
 public:
  // `gateway` selects the public API; otherwise the worker API. Channels are shared by calls
  // (`channels` of them, round-robin) as a real client pool would.
  Target(const std::string& address, bool gateway, int channels = 4);
  ~Target();
  // Starts one call; `done` runs on a gRPC thread when it ends.
  void Call(const RequestSpec& spec, std::function<void(const CallResult&)> done);
  bool gateway() const { return gateway_; }

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  bool gateway_;
};

// Keeps `streams` calls in flight until `duration` passes; returns every finished call.
std::vector<CallResult> RunClosedLoop(Target& target, const std::vector<RequestSpec>& specs, int streams,
                                      std::chrono::milliseconds duration);
// Sends calls at `rate` per second (evenly spaced) for `duration`, then waits for them all.
// `on_tick` runs every second (e.g. to sample memory).
std::vector<CallResult> RunOpenLoop(Target& target, const std::vector<RequestSpec>& specs, double rate,
                                    std::chrono::milliseconds duration, const std::function<void(int)>& on_tick);

double Percentile(std::vector<double> v, double p);

}  // namespace flotilla::gateway::bench
