// Continuous-batching scheduler: pure policy over plain data. No threads, no I/O, no tensors;
// time comes from an injected Clock. The engine thread owns one Scheduler and per step calls
//   plan = Schedule();  run plan on the executor;  Update(plan, results);
// Requests enter with Add() and leave through StepPlan::finished or Update()'s return value.
// Not thread-safe: only the engine thread touches it.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "common/clock.h"

namespace flotilla::scheduler {

struct SchedulerConfig {
  int num_blocks = 0;             // KV blocks in the pool (ids 0 .. num_blocks-1)
  int block_size = 16;            // tokens per block
  int max_num_seqs = 64;          // sequences per step
  int max_tokens_per_step = 512;  // token budget per step (prefill chunks + decodes)
  int max_context = 0;            // prompt + output tokens one sequence may hold; 0 = only the pool limits it
                                  // (a sequence also ends with kLength before it would outgrow the whole pool)
  int max_waiting = 1024;         // Add() beyond this is RESOURCE_EXHAUSTED
  bool enable_prefix_cache = true;
};

enum class FinishReason {
  kNone = 0,
  kLength,     // max_new_tokens reached, or the context is full
  kStop,       // a stop sequence matched (decided by the engine)
  kEos,        // end-of-sequence token (decided by the engine)
  kCancelled,  // Cancel()
  kExpired,    // deadline passed, in the queue or in the batch
  kError,      // the step failed (engine reports it)
};
const char* FinishReasonName(FinishReason r);

struct RequestSpec {
  uint64_t id = 0;                 // unique among live requests
  std::vector<int32_t> prompt;     // token ids, non-empty
  int max_new_tokens = 16;         // >= 1
  int priority = 0;                // higher runs first and may preempt lower
  TimeNs deadline = 0;             // absolute (Clock time); 0 = none
  std::string tenant;              // salts the prefix cache
  int shared_prefix_tokens = 0;    // leading prompt tokens the operator marked shared across tenants
};

// One sequence's share of a step.
struct ScheduledSeq {
  uint64_t id = 0;
  int32_t start_pos = 0;                 // position of tokens[0]
  std::vector<int32_t> tokens;           // prompt chunk, recompute chunk, or the last sampled token
  std::span<const int32_t> block_table;  // valid until the next Schedule()/Update(); covers every position fed
  bool sample = false;                   // true when this chunk ends the known tokens: sample a new token from its last logits
};

struct FinishedRequest {
  uint64_t id = 0;
  FinishReason reason = FinishReason::kNone;
  int prompt_tokens = 0;
  int output_tokens = 0;
  int cached_tokens = 0;  // prompt tokens served from the prefix cache (first admission)
};

struct StepPlan {
  std::vector<ScheduledSeq> seqs;
  // Requests that ended before running this step (cancelled, expired); their blocks are already free.
  std::vector<FinishedRequest> finished;
  int num_tokens = 0;
  int num_preempted = 0;  // preemptions made while building this plan
};

// What the engine learned from running a ScheduledSeq with sample == true.
struct SeqResult {
  uint64_t id = 0;
  int32_t token = -1;                         // the sampled token (appended to the sequence)
  FinishReason finish = FinishReason::kNone;  // kEos / kStop / kError when the engine ends it
};

struct SchedulerStats {
  int running = 0;
  int waiting = 0;
  int free_blocks = 0;  // blocks with no reference (cached-but-unreferenced count as free)
  int total_blocks = 0;
  double kv_usage = 0.0;  // referenced blocks / total blocks
  uint64_t prefix_queries = 0;      // prompt tokens looked up in the prefix cache (vLLM semantics:
                                    // at first admission; recomputes after preemption not counted)
  uint64_t prefix_hits = 0;         // of those, tokens found
  uint64_t preemptions = 0;         // total so far
};

class Scheduler {
 public:
  Scheduler(const SchedulerConfig& config, const Clock* clock);
  ~Scheduler();

  // INVALID_ARGUMENT for an empty prompt, a prompt that cannot fit the context or the whole
  // pool, a duplicate id; RESOURCE_EXHAUSTED when the waiting queue is full.
  // The prompt must leave room for one output token: size < min(max_context, num_blocks * block_size).
  // A deadline already past is accepted and reported as kExpired by the next Schedule().
  absl::Status Add(RequestSpec spec);
  // Marks a request cancelled; it is reported in the next plan's `finished` and its blocks are
  // freed then. Unknown ids are ignored.
  void Cancel(uint64_t id);

  // Every Schedule() must be followed by Update() with its plan before the next Schedule().
  StepPlan Schedule();
  // Applies a step's results. Sequences reaching max_new_tokens or the context end with kLength.
  // Returns every request that ended in this step; their blocks are free on return.
  // A result with finish kError ends its sequence whether or not it sampled (report it for every
  // sequence of a failed step); a sampled sequence without a result also ends with kError.
  // Newly full blocks enter the prefix cache here, once their KV is known to be written.
  std::vector<FinishedRequest> Update(const StepPlan& plan, std::span<const SeqResult> results);

  SchedulerStats stats() const;
  bool idle() const;  // nothing running or waiting
  // Tokens of a live request: prompt then output so far (for sampling penalties); empty if unknown.
  std::span<const int32_t> tokens(uint64_t id) const;
  int prompt_len(uint64_t id) const;

  // Invariant check for tests: every block is referenced by exactly its holders; no leaks.
  absl::Status CheckInvariants() const;

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace flotilla::scheduler
