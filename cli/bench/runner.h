// Drives a load shape against a sender: closed-loop (N in flight) or open-loop arrivals at
// precomputed offsets; then waits for what is in flight. A stop request (Ctrl-C) cancels what
// is in flight and returns what was measured.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <vector>

#include "cli/bench/sender.h"
#include "cli/bench/stats.h"
#include "cli/bench/workload.h"

namespace flotilla::cli::bench {

struct RunOptions {
  LoadShape shape;
  double duration_s = 30;   // sending stops after this (in-flight requests still finish)
  size_t max_requests = 0;  // 0: no limit
  int max_inflight = 1024;  // open loop: an arrival waits while this many are in flight
  uint64_t seed = 1;
};

// Live counters, read by the progress bar while the run goes on.
struct RunProgress {
  std::atomic<size_t> sent{0};
  std::atomic<size_t> done{0};
  std::atomic<size_t> failed{0};
  std::atomic<size_t> output_tokens{0};
  std::atomic<bool> sending_finished{false};
};

// Runs the load. `stop` (may be null) is polled; when it turns true, in-flight requests are
// cancelled. Returns every request's record, in send order.
std::vector<RequestRecord> RunLoad(const RunOptions& options, RequestFactory& factory, RequestSender& sender,
                                   SteadyTime epoch, RunProgress* progress, const std::atomic<bool>* stop);

}  // namespace flotilla::cli::bench
