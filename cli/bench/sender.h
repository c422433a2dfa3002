// How `flotilla bench` sends one request and times it: over gRPC with the SDK's async API (no
// thread per stream), or over the OpenAI-compatible HTTP API with streaming (SSE; a thread
// per request, as an HTTP client library with blocking reads needs).
// Thread-safety: Send and CancelAll may be called from any thread; `done` runs exactly once per
// request, on a sender thread, and must not block.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "cli/bench/stats.h"
#include "cli/bench/workload.h"

namespace flotilla::sdk {
class Client;
}

namespace flotilla::cli::bench {

using SteadyTime = std::chrono::steady_clock::time_point;

struct SenderOptions {
  std::string model;
  double temperature = 0;  // bench default: greedy, so runs are comparable
  bool ignore_eos = true;  // outputs as long as asked, so output lengths follow the distribution
  double timeout_s = 120;  // gRPC: the request's deadline; 0: none
  int retries = 0;         // SDK retries before the first token (gRPC only)
  std::string api_key;
  SteadyTime epoch;        // start_s is measured from here
};

class RequestSender {
 public:
  virtual ~RequestSender() = default;
  virtual void Send(const RequestSpec& spec, std::function<void(RequestRecord)> done) = 0;
  // Cancels every request in flight (their records end as CANCELLED).
  virtual void CancelAll() = 0;
};

// `client` must outlive the sender.
std::unique_ptr<RequestSender> MakeGrpcSender(sdk::Client* client, SenderOptions options);
// `base_url` is http://host:port of the gateway's HTTP port; requests go to /v1/completions.
absl::StatusOr<std::unique_ptr<RequestSender>> MakeOpenAiSender(const std::string& base_url, SenderOptions options);

// Records the arrival of `tokens` tokens at `now` into r (ttft, inter-token gaps, counts).
// Shared by both senders; public for tests.
void RecordTokens(RequestRecord* r, SteadyTime start, SteadyTime* last, SteadyTime now, int tokens);

// Parses the Server-Sent-Events body of a streamed OpenAI completion incrementally.
class SseParser {
 public:
  struct Event {
    std::string data;  // the joined data: lines of one event
  };
  // Feeds bytes; returns the complete events they finished.
  std::vector<Event> Feed(const char* data, size_t n);

 private:
  std::string buffer_;
  std::string data_;
  bool has_data_ = false;
};

}  // namespace flotilla::cli::bench
