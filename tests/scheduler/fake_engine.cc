#include "tests/scheduler/fake_engine.h"

#include <algorithm>
#include <set>

#include "absl/strings/str_cat.h"

namespace flotilla::scheduler::testing {

int32_t NextToken(std::span<const int32_t> seq, int vocab) {
  uint64_t h = 1469598103934665603ull;  // FNV-1a over (token, position)
  for (size_t p = 0; p < seq.size(); ++p) {
    h = (h ^ static_cast<uint32_t>(seq[p])) * 1099511628211ull;
    h = (h ^ static_cast<uint32_t>(p)) * 1099511628211ull;
  }
  return static_cast<int32_t>((h >> 17) % static_cast<uint64_t>(vocab));
}

std::vector<int32_t> ReferenceOutput(std::span<const int32_t> prompt, int max_new, int max_len, int vocab,
                                     int32_t eos) {
  std::vector<int32_t> seq(prompt.begin(), prompt.end());
  std::vector<int32_t> out;
  while (static_cast<int>(out.size()) < max_new && static_cast<int>(seq.size()) < max_len) {
    const int32_t t = NextToken(seq, vocab);
    seq.push_back(t);
    out.push_back(t);
    if (t == eos) break;
  }
  return out;
}

FakeModel::FakeModel(int num_blocks, int block_size, int vocab, int32_t eos)
    : num_blocks_(num_blocks),
      block_size_(block_size),
      vocab_(vocab),
      eos_(eos),
      kv_(static_cast<size_t>(num_blocks) * block_size) {}

void FakeModel::Track(uint64_t id, std::span<const int32_t> prompt) {
  Seq& s = seqs_[id];
  s.tokens.assign(prompt.begin(), prompt.end());
  s.prompt_len = static_cast<int>(prompt.size());
}

std::vector<int32_t> FakeModel::Output(uint64_t id) const {
  const Seq& s = seqs_.at(id);
  return std::vector<int32_t>(s.tokens.begin() + s.prompt_len, s.tokens.end());
}

absl::StatusOr<std::vector<SeqResult>> FakeModel::Run(const StepPlan& plan) {
  const int bs = block_size_;
  std::set<uint64_t> ids;
  int num_tokens = 0;
  // Validate, as the executor would, before writing anything.
  for (const ScheduledSeq& s : plan.seqs) {
    const std::string who = absl::StrCat("seq ", s.id, ": ");
    if (!ids.insert(s.id).second) return absl::InternalError(absl::StrCat(who, "twice in one plan"));
    auto it = seqs_.find(s.id);
    if (it == seqs_.end()) return absl::InternalError(absl::StrCat(who, "unknown to the model"));
    const std::vector<int32_t>& known = it->second.tokens;
    const size_t end = static_cast<size_t>(s.start_pos) + s.tokens.size();
    if (s.tokens.empty() || s.start_pos < 0 || end > known.size()) {
      return absl::InternalError(absl::StrCat(who, "feeds [", s.start_pos, ", ", end, ") of ", known.size(), " tokens"));
    }
    if (!std::equal(s.tokens.begin(), s.tokens.end(), known.begin() + s.start_pos)) {
      return absl::InternalError(absl::StrCat(who, "feeds tokens that differ from its sequence at ", s.start_pos));
    }
    if (s.sample != (end == known.size())) {
      return absl::InternalError(absl::StrCat(who, "sample=", s.sample, " for a chunk ending at ", end, " of ", known.size()));
    }
    if (s.block_table.size() < (end + bs - 1) / bs) {
      return absl::InternalError(absl::StrCat(who, "block table of ", s.block_table.size(), " for ", end, " positions"));
    }
    for (size_t i = 0; i < (end + bs - 1) / bs; ++i) {
      if (s.block_table[i] < 0 || s.block_table[i] >= num_blocks_) {
        return absl::InternalError(absl::StrCat(who, "block id ", s.block_table[i], " out of range"));
      }
    }
    num_tokens += static_cast<int>(s.tokens.size());
  }
  if (num_tokens != plan.num_tokens) {
    return absl::InternalError(absl::StrCat("plan says ", plan.num_tokens, " tokens, holds ", num_tokens));
  }
  // Every write of the step, then every read (the executor writes K/V before attention).
  for (const ScheduledSeq& s : plan.seqs) {
    for (size_t i = 0; i < s.tokens.size(); ++i) {
      const int32_t pos = s.start_pos + static_cast<int32_t>(i);
      kv_[static_cast<size_t>(s.block_table[pos / bs]) * bs + pos % bs] = Slot{s.tokens[i], pos};
    }
  }
  std::vector<SeqResult> results;
  std::vector<int32_t> read;
  for (const ScheduledSeq& s : plan.seqs) {
    if (!s.sample) continue;
    Seq& seq = seqs_[s.id];
    const int32_t last = s.start_pos + static_cast<int32_t>(s.tokens.size()) - 1;
    read.clear();
    for (int32_t pos = 0; pos <= last; ++pos) {
      const int32_t block = s.block_table[pos / bs];
      const Slot& slot = kv_[static_cast<size_t>(block) * bs + pos % bs];
      if (slot.pos != pos || slot.token != seq.tokens[pos]) {
        return absl::InternalError(absl::StrCat("seq ", s.id, " position ", pos, " reads (token ", slot.token, ", pos ",
                                                slot.pos, ") from block ", block, "; its token there is ",
                                                seq.tokens[pos]));
      }
      read.push_back(slot.token);
    }
    const int32_t t = NextToken(read, vocab_);
    seq.tokens.push_back(t);
    results.push_back(SeqResult{s.id, t, t == eos_ ? FinishReason::kEos : FinishReason::kNone});
  }
  return results;
}

FakeEngine::FakeEngine(const SchedulerConfig& config, const Clock* clock, int vocab, int32_t eos)
    : clock_(clock), scheduler_(config, clock), model_(config.num_blocks, config.block_size, vocab, eos) {}

absl::Status FakeEngine::Add(const RequestSpec& spec) {
  absl::Status st = scheduler_.Add(spec);
  if (!st.ok()) return st;
  model_.Track(spec.id, spec.prompt);
  live_[spec.id] = true;
  return absl::OkStatus();
}

int FakeEngine::ended_at(uint64_t id) const {
  auto it = ended_step_.find(id);
  return it == ended_step_.end() ? 0 : it->second;
}

absl::Status FakeEngine::Record(const FinishedRequest& f) {
  auto it = live_.find(f.id);
  if (it == live_.end() || !it->second) return absl::InternalError(absl::StrCat("request ", f.id, " ended twice or never began"));
  it->second = false;
  if (f.reason == FinishReason::kNone) return absl::InternalError(absl::StrCat("request ", f.id, " ended without a reason"));
  const std::vector<int32_t> out = model_.Output(f.id);
  const int prompt = static_cast<int>(model_.Sequence(f.id).size() - out.size());
  if (f.output_tokens != static_cast<int>(out.size()) || f.prompt_tokens != prompt) {
    return absl::InternalError(absl::StrCat("request ", f.id, " reports ", f.prompt_tokens, "+", f.output_tokens,
                                            " tokens; the model saw ", prompt, "+", out.size()));
  }
  if (f.cached_tokens < 0 || f.cached_tokens >= prompt) {
    return absl::InternalError(absl::StrCat("request ", f.id, " reports ", f.cached_tokens, " cached of ", prompt));
  }
  ended_[f.id] = f;
  ended_step_[f.id] = steps_;
  ended_time_[f.id] = clock_->Now();
  return absl::OkStatus();
}

absl::Status FakeEngine::Step(StepPlan* plan_out) {
  ++steps_;
  StepPlan plan = scheduler_.Schedule();
  total_preempted_ += plan.num_preempted;
  if (absl::Status st = scheduler_.CheckInvariants(); !st.ok()) {
    return absl::InternalError(absl::StrCat("after Schedule() of step ", steps_, ": ", st.message()));
  }
  for (const FinishedRequest& f : plan.finished) {
    if (absl::Status st = Record(f); !st.ok()) return st;
  }
  // The top-ranked live request can always run, so a non-idle scheduler never plans nothing.
  if (plan.seqs.empty() && !scheduler_.idle()) {
    return absl::InternalError(absl::StrCat("step ", steps_, " planned nothing while requests are live"));
  }
  absl::StatusOr<std::vector<SeqResult>> results = model_.Run(plan);
  if (!results.ok()) return absl::InternalError(absl::StrCat("step ", steps_, ": ", results.status().message()));
  for (const FinishedRequest& f : scheduler_.Update(plan, *results)) {
    if (absl::Status st = Record(f); !st.ok()) return st;
  }
  if (absl::Status st = scheduler_.CheckInvariants(); !st.ok()) {
    return absl::InternalError(absl::StrCat("after Update() of step ", steps_, ": ", st.message()));
  }
  // The scheduler's view of every live sequence equals what the model produced.
  for (const auto& [id, live] : live_) {
    if (!live) continue;
    std::span<const int32_t> mine = scheduler_.tokens(id);
    const std::vector<int32_t>& model = model_.Sequence(id);
    if (!std::equal(mine.begin(), mine.end(), model.begin(), model.end())) {
      return absl::InternalError(absl::StrCat("request ", id, ": scheduler and model disagree on its tokens"));
    }
  }
  if (plan_out != nullptr) *plan_out = std::move(plan);
  return absl::OkStatus();
}

absl::Status FakeEngine::RunUntilIdle(int max_steps) {
  for (int i = 0; i < max_steps && !scheduler_.idle(); ++i) {
    if (absl::Status st = Step(); !st.ok()) return st;
  }
  if (!scheduler_.idle()) return absl::InternalError(absl::StrCat("not idle after ", max_steps, " steps"));
  return absl::OkStatus();
}

}  // namespace flotilla::scheduler::testing
