// Test support: a stand-in for the model executor and the engine loop around a Scheduler.
//
// FakeModel keeps a simulated paged KV cache, (block id, slot) -> (token, position), and writes
// it for every fed token exactly as the real executor does (slot = block_table[pos / block_size],
// pos % block_size; all writes of a step land before any read). For each sampled sequence it reads
// positions 0..last back through the block table, fails unless they hold exactly that sequence's
// tokens, and derives the next token from what it read. So a scheduler bug that feeds the wrong
// tokens, loses KV, shares a block it then overwrites, or hands out a stale block shows up either
// as a read mismatch or as output different from ReferenceOutput().
#pragma once

#include <cstdint>
#include <map>
#include <span>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/clock.h"
#include "scheduler/scheduler.h"

namespace flotilla::scheduler::testing {

// The fake model's next token for a whole sequence: a hash of its (token, position) pairs.
int32_t NextToken(std::span<const int32_t> seq, int vocab);

// What a request must produce if scheduling does not change results: greedy continuation of
// `prompt` until max_new tokens, `eos` (included), or the sequence holding max_len tokens.
std::vector<int32_t> ReferenceOutput(std::span<const int32_t> prompt, int max_new, int max_len, int vocab,
                                     int32_t eos = -1);

class FakeModel {
 public:
  FakeModel(int num_blocks, int block_size, int vocab, int32_t eos = -1);

  void Track(uint64_t id, std::span<const int32_t> prompt);
  // Runs one step of `plan`; any paged-KV inconsistency is an InternalError.
  absl::StatusOr<std::vector<SeqResult>> Run(const StepPlan& plan);
  // Prompt then every token sampled for the request so far.
  const std::vector<int32_t>& Sequence(uint64_t id) const { return seqs_.at(id).tokens; }
  std::vector<int32_t> Output(uint64_t id) const;

 private:
  struct Slot {
    int32_t token = -1;
    int32_t pos = -1;
  };
  struct Seq {
    std::vector<int32_t> tokens;
    int prompt_len = 0;
  };
  int num_blocks_;
  int block_size_;
  int vocab_;
  int32_t eos_;
  std::vector<Slot> kv_;
  std::map<uint64_t, Seq> seqs_;
};

// The engine loop: Schedule, run the fake model, Update; checks scheduler invariants around every
// step and that each request ends exactly once with counts that agree with the model.
class FakeEngine {
 public:
  FakeEngine(const SchedulerConfig& config, const Clock* clock, int vocab = 1000, int32_t eos = -1);

  absl::Status Add(const RequestSpec& spec);
  // One step. `plan_out`, when given, receives the plan that ran.
  absl::Status Step(StepPlan* plan_out = nullptr);
  absl::Status RunUntilIdle(int max_steps = 100000);

  Scheduler& scheduler() { return scheduler_; }
  FakeModel& model() { return model_; }
  const std::map<uint64_t, FinishedRequest>& ended() const { return ended_; }
  // The step number (1-based) at which a request ended; 0 if it has not.
  int ended_at(uint64_t id) const;
  // The clock reading when a request ended.
  TimeNs ended_time(uint64_t id) const { return ended_time_.at(id); }
  int steps() const { return steps_; }
  int64_t total_preempted() const { return total_preempted_; }

 private:
  absl::Status Record(const FinishedRequest& f);

  const Clock* clock_;
  Scheduler scheduler_;
  FakeModel model_;
  std::map<uint64_t, FinishedRequest> ended_;
  std::map<uint64_t, int> ended_step_;
  std::map<uint64_t, TimeNs> ended_time_;
  std::map<uint64_t, bool> live_;
  int steps_ = 0;
  int64_t total_preempted_ = 0;
};

}  // namespace flotilla::scheduler::testing
