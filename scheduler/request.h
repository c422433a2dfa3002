// Per-request state the scheduler keeps (internal to scheduler/).
//
// A request is either waiting (no blocks, nothing computed) or running (its block table covers
// exactly the positions 0 .. num_computed-1). Preemption returns it to waiting with all its tokens,
// so re-admission recomputes prompt and output alike as one longer prefill.
#pragma once

#include <cstdint>
#include <vector>

#include "common/clock.h"
#include "scheduler/block_hash.h"

namespace flotilla::scheduler {

struct Request {
  uint64_t id = 0;
  int priority = 0;
  uint64_t arrival = 0;  // Add() order; breaks priority ties (first come, first served)
  TimeNs deadline = 0;   // 0 = none
  int prompt_len = 0;
  int max_new_tokens = 0;
  int shared_prefix_tokens = 0;
  BlockHash salt;

  std::vector<int32_t> tokens;    // prompt then output so far
  std::vector<int32_t> blocks;    // block table
  std::vector<BlockHash> hashes;  // hash of every full block of `tokens` (prefix cache on)
  // Leading tokens whose KV is written, or is written by the step most recently scheduled.
  int num_computed = 0;
  // Leading blocks already offered to the prefix cache (registered there or taken from it).
  int num_registered = 0;
  int cached_tokens = 0;  // prefix-cache hit at first admission

  bool admitted_once = false;
  bool running = false;
  bool cancelled = false;     // Cancel() seen; ended by the next Schedule()
  int plan_index = -1;        // index in the plan being built, -1 if not in it
  uint64_t preempted_in = 0;  // step number of the last preemption

  int output_len() const { return static_cast<int>(tokens.size()) - prompt_len; }
};

// Scheduling order: higher priority first, then earlier arrival.
inline bool RanksBefore(const Request& a, const Request& b) {
  if (a.priority != b.priority) return a.priority > b.priority;
  return a.arrival < b.arrival;
}

}  // namespace flotilla::scheduler
