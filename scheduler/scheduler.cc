// The continuous-batching policy. Each Schedule():
//   1. ends cancelled and expired requests (waiting or running) and frees their blocks;
//   2. gives every running decode one token, then continues running chunked prefills;
//   3. admits waiting requests in rank order (priority, then arrival) under the token budget and
//      the sequence limit, reusing prefix-cached blocks; a waiting request that outranks a running
//      prefill is admitted before that prefill takes more budget.
// Blocks are allocated lazily, chunk by chunk. When they run out, the lowest-ranked running
// request is preempted (blocks freed, tokens kept, recomputed on re-admission); a waiting request
// may displace running ones only if they have strictly lower priority. Cost per step is
// O(running + admitted + ended); the waiting queue is only looked at from its head.
#include "scheduler/scheduler.h"

#include <algorithm>
#include <cassert>
#include <iterator>
#include <limits>
#include <set>
#include <string>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "scheduler/block_hash.h"
#include "scheduler/block_pool.h"
#include "scheduler/request.h"

namespace flotilla::scheduler {

const char* FinishReasonName(FinishReason r) {
  switch (r) {
    case FinishReason::kNone: return "none";
    case FinishReason::kLength: return "length";
    case FinishReason::kStop: return "stop";
    case FinishReason::kEos: return "eos";
    case FinishReason::kCancelled: return "cancelled";
    case FinishReason::kExpired: return "expired";
    case FinishReason::kError: return "error";
  }
  return "unknown";
}

namespace {

struct RankOrder {
  bool operator()(const Request* a, const Request* b) const { return RanksBefore(*a, *b); }
};
struct DeadlineOrder {
  bool operator()(const Request* a, const Request* b) const {
    if (a->deadline != b->deadline) return a->deadline < b->deadline;
    return a->arrival < b->arrival;
  }
};

int64_t CeilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

SchedulerConfig Sanitized(SchedulerConfig c) {
  c.num_blocks = std::max(c.num_blocks, 0);
  c.block_size = std::max(c.block_size, 1);
  c.max_num_seqs = std::max(c.max_num_seqs, 1);
  c.max_tokens_per_step = std::max(c.max_tokens_per_step, 1);
  c.max_waiting = std::max(c.max_waiting, 0);
  return c;
}

}  // namespace

class Scheduler::Impl {
 public:
  Impl(const SchedulerConfig& config, const Clock* clock)
      : config_(Sanitized(config)), clock_(clock), pool_(config_.num_blocks) {
    const int64_t pool_tokens = static_cast<int64_t>(config_.num_blocks) * config_.block_size;
    const int64_t context = config_.max_context > 0 ? config_.max_context : std::numeric_limits<int>::max();
    // A sequence never outgrows the whole pool, so the top-ranked request can always progress.
    max_seq_len_ = static_cast<int>(std::min(pool_tokens, context));
    claim_.assign(config_.num_blocks, 0);
  }

  absl::Status Add(RequestSpec spec);
  void Cancel(uint64_t id);
  StepPlan Schedule();
  std::vector<FinishedRequest> Update(const StepPlan& plan, std::span<const SeqResult> results);
  SchedulerStats stats() const;
  bool idle() const { return requests_.empty(); }
  const Request* Find(uint64_t id) const {
    auto it = requests_.find(id);
    return it == requests_.end() ? nullptr : it->second.get();
  }
  absl::Status CheckInvariants() const;

 private:
  void ScheduleRunning(Request& r, int want, StepPlan* plan);
  bool AdmitNext(StepPlan* plan);
  bool MakeRoomFor(const Request& w, bool need_slot, int need_blocks, StepPlan* plan);
  void Emit(Request& r, int chunk, StepPlan* plan);
  Request* LowestRunning();
  void Preempt(Request& r, StepPlan* plan);
  void GrowTo(Request& r, int num_tokens);
  void RegisterFullBlocks(Request& r);
  void ReleaseBlocks(Request& r);
  void End(Request& r, FinishReason reason, std::vector<FinishedRequest>* out);
  void CompactRunning();

  const SchedulerConfig config_;
  const Clock* const clock_;
  int max_seq_len_ = 0;  // a sequence ends with kLength at this many tokens
  BlockPool pool_;

  absl::flat_hash_map<uint64_t, std::unique_ptr<Request>> requests_;
  std::set<Request*, RankOrder> waiting_;
  std::set<Request*, DeadlineOrder> deadlines_;  // live requests that have one
  std::vector<Request*> running_;                // rank order; may hold stale entries inside a step
  int num_running_ = 0;
  std::vector<uint64_t> pending_cancels_;
  uint64_t next_arrival_ = 0;
  uint64_t step_ = 0;
  uint64_t prefix_queries_ = 0;
  uint64_t prefix_hits_ = 0;
  uint64_t preemptions_ = 0;

  // Per-step scratch, kept so that a steady state allocates nothing beyond the plan itself.
  int budget_ = 0;
  bool admission_closed_ = false;  // the head of the queue could not be admitted this step
  size_t tail_ = 0;                   // running_[tail_-1] is at or above the lowest live entry
  std::vector<Request*> scheduled_;   // parallel to plan.seqs; null where an entry was withdrawn
  std::vector<Request*> admitted_;    // admitted this step, merged into running_ at the end
  std::vector<Request*> merged_;
  std::vector<Request*> victims_;
  std::vector<int> claim_;  // per block: how many of the candidate victims hold it
  std::vector<int32_t> touched_;
  std::vector<std::unique_ptr<Request>> ended_;  // alive until running_ drops its pointers
  absl::flat_hash_map<uint64_t, const SeqResult*> results_by_id_;
};

absl::Status Scheduler::Impl::Add(RequestSpec spec) {
  if (spec.prompt.empty()) return absl::InvalidArgumentError("the prompt is empty");
  if (spec.max_new_tokens < 1) {
    return absl::InvalidArgumentError(absl::StrCat("max_new_tokens must be at least 1, got ", spec.max_new_tokens));
  }
  if (requests_.contains(spec.id)) {
    return absl::InvalidArgumentError(absl::StrCat("request id ", spec.id, " is already live"));
  }
  const int64_t prompt_len = static_cast<int64_t>(spec.prompt.size());
  if (prompt_len >= max_seq_len_) {
    return absl::InvalidArgumentError(
        absl::StrCat("a prompt of ", prompt_len, " tokens leaves no room to generate: a sequence may hold ", max_seq_len_,
                     " tokens (context ", config_.max_context, ", KV pool ",
                     static_cast<int64_t>(config_.num_blocks) * config_.block_size, ")"));
  }
  if (waiting_.size() >= static_cast<size_t>(config_.max_waiting)) {
    return absl::ResourceExhaustedError(absl::StrCat("the waiting queue is full (", config_.max_waiting, " requests)"));
  }
  auto owned = std::make_unique<Request>();
  Request& r = *owned;
  r.id = spec.id;
  r.priority = spec.priority;
  r.arrival = next_arrival_++;
  r.deadline = spec.deadline;
  r.prompt_len = static_cast<int>(prompt_len);
  r.max_new_tokens = spec.max_new_tokens;
  r.shared_prefix_tokens = std::clamp(spec.shared_prefix_tokens, 0, r.prompt_len);
  r.tokens = std::move(spec.prompt);
  // The block table grows inside Schedule(); size it once for the longest this request can get.
  const int64_t longest = std::min<int64_t>(prompt_len + spec.max_new_tokens, max_seq_len_);
  r.blocks.reserve(CeilDiv(longest, config_.block_size));
  if (config_.enable_prefix_cache) {
    r.salt = TenantSalt(spec.tenant);
    ExtendBlockHashes(r.tokens, config_.block_size, r.salt, r.shared_prefix_tokens, &r.hashes);
  }
  requests_.emplace(r.id, std::move(owned));
  waiting_.insert(&r);
  if (r.deadline != 0) deadlines_.insert(&r);
  return absl::OkStatus();
}

void Scheduler::Impl::Cancel(uint64_t id) {
  auto it = requests_.find(id);
  if (it == requests_.end() || it->second->cancelled) return;
  // Flag the request itself, not just the id: a later request reusing the id must not be hit.
  it->second->cancelled = true;
  pending_cancels_.push_back(id);
}

StepPlan Scheduler::Impl::Schedule() {
  StepPlan plan;
  ++step_;
  const TimeNs now = clock_->Now();
  for (uint64_t id : pending_cancels_) {
    auto it = requests_.find(id);
    if (it != requests_.end() && it->second->cancelled) End(*it->second, FinishReason::kCancelled, &plan.finished);
  }
  pending_cancels_.clear();
  while (!deadlines_.empty() && (*deadlines_.begin())->deadline < now) {
    End(**deadlines_.begin(), FinishReason::kExpired, &plan.finished);
  }

  budget_ = config_.max_tokens_per_step;
  scheduled_.clear();
  tail_ = running_.size();
  // Decodes first: one token each keeps every running sequence streaming.
  for (size_t i = 0; i < running_.size() && budget_ > 0; ++i) {
    Request& r = *running_[i];
    if (r.running && r.plan_index < 0 && r.tokens.size() - r.num_computed == 1) ScheduleRunning(r, 1, &plan);
  }
  // Then prefills under way (chunked prompts, recomputes) and admissions, merged in rank order:
  // a long low-priority prompt must not hold the budget while a higher-priority request waits.
  admission_closed_ = false;
  for (size_t i = 0; i < running_.size() && budget_ > 0; ++i) {
    Request& r = *running_[i];
    if (!r.running || r.plan_index >= 0) continue;
    while (!admission_closed_ && budget_ > 0 && !waiting_.empty() && RanksBefore(**waiting_.begin(), r)) {
      admission_closed_ = !AdmitNext(&plan);
    }
    if (!r.running || budget_ == 0) continue;  // an admission may have displaced r
    const int64_t left = static_cast<int64_t>(r.tokens.size()) - r.num_computed;
    if (left > 0) ScheduleRunning(r, static_cast<int>(std::min<int64_t>(left, budget_)), &plan);
  }
  while (!admission_closed_ && budget_ > 0 && !waiting_.empty()) admission_closed_ = !AdmitNext(&plan);

  // Drop the entries of requests preempted after they were planned.
  size_t kept = 0;
  for (size_t i = 0; i < plan.seqs.size(); ++i) {
    if (scheduled_[i] == nullptr) continue;
    scheduled_[i]->plan_index = -1;
    if (kept != i) plan.seqs[kept] = std::move(plan.seqs[i]);
    ++kept;
  }
  plan.seqs.resize(kept);
  CompactRunning();
  return plan;
}

void Scheduler::Impl::ScheduleRunning(Request& r, int want, StepPlan* plan) {
  const int bs = config_.block_size;
  for (;;) {
    // Tokens that fit in r's last block plus every unreferenced block. A prefill chunk shrinks to
    // fit rather than push anyone out; only when not one token fits is someone preempted.
    const int64_t room = static_cast<int64_t>(r.blocks.size()) * bs - r.num_computed +
                         static_cast<int64_t>(pool_.num_free()) * bs;
    if (room > 0) {
      want = static_cast<int>(std::min<int64_t>(want, room));
      break;
    }
    Request* victim = LowestRunning();
    Preempt(*victim, plan);
    if (victim == &r) return;
  }
  GrowTo(r, r.num_computed + want);
  Emit(r, want, plan);
}

Request* Scheduler::Impl::LowestRunning() {
  // Entries only ever leave running_ within a step, so the scan moves one way: O(running) a step.
  while (tail_ > 0 && !running_[tail_ - 1]->running) --tail_;
  assert(tail_ > 0);
  return running_[tail_ - 1];
}

bool Scheduler::Impl::AdmitNext(StepPlan* plan) {
  if (waiting_.empty()) return false;
  Request& w = **waiting_.begin();
  // A request pushed out in this very step waits a step, as does everyone behind it (rank order).
  if (w.preempted_in == step_) return false;
  const int bs = config_.block_size;
  const bool need_slot = num_running_ >= config_.max_num_seqs;

  int hit = 0;
  if (config_.enable_prefix_cache) {
    // Share only full blocks strictly before the block of the last known token: that token is
    // always computed (its logits are needed) and no write can land in a shared block.
    const int max_hit = (static_cast<int>(w.tokens.size()) - 1) / bs;
    while (hit < max_hit) {
      const int32_t b = pool_.Find(w.hashes[hit]);
      if (b < 0) break;
      pool_.Ref(b);  // before allocating, so eviction cannot take it
      w.blocks.push_back(b);
      ++hit;
    }
  }
  const int start = hit * bs;
  const int chunk = static_cast<int>(std::min<int64_t>(static_cast<int64_t>(w.tokens.size()) - start, budget_));
  const int need_blocks = static_cast<int>(CeilDiv(start + chunk, bs)) - hit;
  if ((need_slot || pool_.num_free() < need_blocks) && !MakeRoomFor(w, need_slot, need_blocks, plan)) {
    ReleaseBlocks(w);
    return false;
  }
  waiting_.erase(&w);
  w.running = true;
  ++num_running_;
  w.num_computed = start;
  w.num_registered = hit;
  if (!w.admitted_once) {
    w.admitted_once = true;
    w.cached_tokens = start;
    if (config_.enable_prefix_cache) {
      prefix_queries_ += w.prompt_len;
      prefix_hits_ += start;
    }
  }
  GrowTo(w, start + chunk);
  admitted_.push_back(&w);
  Emit(w, chunk, plan);
  return true;
}

bool Scheduler::Impl::MakeRoomFor(const Request& w, bool need_slot, int need_blocks, StepPlan* plan) {
  // Pick victims from the lowest rank up, among strictly lower priorities only, and count exactly
  // which blocks their release would unreference; preempt nobody unless that is enough.
  victims_.clear();
  touched_.clear();
  int reclaim = 0;
  bool enough = false;
  for (size_t i = running_.size(); i-- > 0 && !enough;) {
    Request* v = running_[i];
    if (!v->running) continue;
    if (v->priority >= w.priority) break;  // running_ is in rank order: no lower priority above
    victims_.push_back(v);
    for (int32_t b : v->blocks) {
      touched_.push_back(b);
      if (++claim_[b] == pool_.ref_count(b)) ++reclaim;
    }
    enough = pool_.num_free() + reclaim >= need_blocks;  // one victim always frees a slot
  }
  for (int32_t b : touched_) claim_[b] = 0;
  if (!enough) return false;
  for (Request* v : victims_) Preempt(*v, plan);
  return true;
}

void Scheduler::Impl::Emit(Request& r, int chunk, StepPlan* plan) {
  assert(chunk > 0);
  ScheduledSeq s;
  s.id = r.id;
  s.start_pos = r.num_computed;
  s.tokens.assign(r.tokens.begin() + r.num_computed, r.tokens.begin() + r.num_computed + chunk);
  s.block_table = std::span<const int32_t>(r.blocks);
  r.num_computed += chunk;
  s.sample = r.num_computed == static_cast<int>(r.tokens.size());
  r.plan_index = static_cast<int>(plan->seqs.size());
  plan->seqs.push_back(std::move(s));
  scheduled_.push_back(&r);
  plan->num_tokens += chunk;
  budget_ -= chunk;
}

void Scheduler::Impl::Preempt(Request& r, StepPlan* plan) {
  if (r.plan_index >= 0) {  // planned earlier in this step: withdraw it and take its budget back
    const int n = static_cast<int>(plan->seqs[r.plan_index].tokens.size());
    budget_ += n;
    plan->num_tokens -= n;
    scheduled_[r.plan_index] = nullptr;
    r.plan_index = -1;
  }
  ReleaseBlocks(r);
  r.num_computed = 0;
  r.num_registered = 0;
  r.running = false;
  --num_running_;
  r.preempted_in = step_;
  waiting_.insert(&r);
  ++preemptions_;
  ++plan->num_preempted;
}

void Scheduler::Impl::GrowTo(Request& r, int num_tokens) {
  const size_t need = static_cast<size_t>(CeilDiv(num_tokens, config_.block_size));
  while (r.blocks.size() < need) {
    const int32_t b = pool_.Allocate();
    assert(b >= 0);  // callers checked room first
    r.blocks.push_back(b);
  }
}

void Scheduler::Impl::RegisterFullBlocks(Request& r) {
  if (!config_.enable_prefix_cache) return;
  const int full = r.num_computed / config_.block_size;
  for (int i = r.num_registered; i < full; ++i) pool_.Register(r.blocks[i], r.hashes[i]);
  r.num_registered = std::max(r.num_registered, full);
}

void Scheduler::Impl::ReleaseBlocks(Request& r) {
  // Last block first: the tail of a prefix becomes evictable before its more widely shared head.
  for (auto it = r.blocks.rbegin(); it != r.blocks.rend(); ++it) pool_.Unref(*it);
  r.blocks.clear();
}

void Scheduler::Impl::End(Request& r, FinishReason reason, std::vector<FinishedRequest>* out) {
  ReleaseBlocks(r);
  if (r.running) {
    r.running = false;  // running_ drops it at the next compaction
    --num_running_;
  } else {
    waiting_.erase(&r);
  }
  if (r.deadline != 0) deadlines_.erase(&r);
  out->push_back(FinishedRequest{r.id, reason, r.prompt_len, r.output_len(), r.cached_tokens});
  auto it = requests_.find(r.id);
  ended_.push_back(std::move(it->second));
  requests_.erase(it);
}

void Scheduler::Impl::CompactRunning() {
  std::erase_if(running_, [](const Request* r) { return !r->running; });
  if (!admitted_.empty()) {
    std::sort(admitted_.begin(), admitted_.end(), RankOrder{});
    merged_.clear();
    std::merge(running_.begin(), running_.end(), admitted_.begin(), admitted_.end(), std::back_inserter(merged_),
               RankOrder{});
    running_.swap(merged_);
    admitted_.clear();
  }
  ended_.clear();
}

std::vector<FinishedRequest> Scheduler::Impl::Update(const StepPlan& plan, std::span<const SeqResult> results) {
  std::vector<FinishedRequest> done;
  results_by_id_.clear();
  for (const SeqResult& res : results) results_by_id_[res.id] = &res;
  for (const ScheduledSeq& s : plan.seqs) {
    auto it = requests_.find(s.id);
    if (it == requests_.end() || !it->second->running) continue;
    Request& r = *it->second;
    auto rit = results_by_id_.find(s.id);
    const SeqResult* res = rit == results_by_id_.end() ? nullptr : rit->second;
    FinishReason reason = res != nullptr ? res->finish : FinishReason::kNone;
    if (reason == FinishReason::kError) {
      End(r, reason, &done);  // this step's KV is not trustworthy: cache nothing from it
      continue;
    }
    if (s.sample) {
      // A sampled chunk owes a token; without one the sequence cannot continue.
      if (res == nullptr || (res->token < 0 && reason == FinishReason::kNone)) {
        End(r, FinishReason::kError, &done);
        continue;
      }
      if (res->token >= 0) {
        r.tokens.push_back(res->token);
        if (config_.enable_prefix_cache) {
          ExtendBlockHashes(r.tokens, config_.block_size, r.salt, r.shared_prefix_tokens, &r.hashes);
        }
      }
    }
    RegisterFullBlocks(r);
    if (reason == FinishReason::kNone &&
        (r.output_len() >= r.max_new_tokens || static_cast<int64_t>(r.tokens.size()) >= max_seq_len_)) {
      reason = FinishReason::kLength;
    }
    if (reason != FinishReason::kNone) End(r, reason, &done);
  }
  CompactRunning();
  return done;
}

SchedulerStats Scheduler::Impl::stats() const {
  SchedulerStats s;
  s.running = num_running_;
  s.waiting = static_cast<int>(waiting_.size());
  s.free_blocks = pool_.num_free();
  s.total_blocks = pool_.num_blocks();
  s.kv_usage = s.total_blocks > 0 ? static_cast<double>(s.total_blocks - s.free_blocks) / s.total_blocks : 0.0;
  s.prefix_queries = prefix_queries_;
  s.prefix_hits = prefix_hits_;
  s.preemptions = preemptions_;
  return s;
}

absl::Status Scheduler::Impl::CheckInvariants() const {
  const int bs = config_.block_size;
  const int n = pool_.num_blocks();
  std::vector<int> refs(n, 0);
  std::vector<uint64_t> seen_by(n, 0);  // arrival+1 of the last request seen holding the block
  int n_running = 0;
  size_t n_waiting = 0;
  size_t n_deadlines = 0;
  for (const auto& [id, owned] : requests_) {
    const Request& r = *owned;
    const std::string who = absl::StrCat("request ", id, ": ");
    if (r.id != id) return absl::InternalError(absl::StrCat(who, "keyed under the wrong id"));
    if (r.plan_index != -1) return absl::InternalError(absl::StrCat(who, "plan index left set"));
    if (r.deadline != 0) ++n_deadlines;
    if (r.num_computed < 0 || r.num_computed > static_cast<int>(r.tokens.size())) {
      return absl::InternalError(absl::StrCat(who, r.num_computed, " computed of ", r.tokens.size(), " tokens"));
    }
    if (static_cast<int64_t>(r.tokens.size()) >= max_seq_len_) {
      return absl::InternalError(absl::StrCat(who, "live with ", r.tokens.size(), " tokens, the limit is ", max_seq_len_));
    }
    if (!r.running) {
      ++n_waiting;
      if (!r.blocks.empty() || r.num_computed != 0) {
        return absl::InternalError(absl::StrCat(who, "waiting but holds ", r.blocks.size(), " blocks"));
      }
      if (!waiting_.contains(const_cast<Request*>(&r))) return absl::InternalError(absl::StrCat(who, "not queued"));
      continue;
    }
    ++n_running;
    if (static_cast<int64_t>(r.blocks.size()) != CeilDiv(r.num_computed, bs)) {
      return absl::InternalError(absl::StrCat(who, r.blocks.size(), " blocks for ", r.num_computed, " computed tokens"));
    }
    for (size_t i = 0; i < r.blocks.size(); ++i) {
      const int32_t b = r.blocks[i];
      if (b < 0 || b >= n) return absl::InternalError(absl::StrCat(who, "block id ", b, " out of range"));
      if (seen_by[b] == r.arrival + 1) return absl::InternalError(absl::StrCat(who, "holds block ", b, " twice"));
      seen_by[b] = r.arrival + 1;
      ++refs[b];
      const bool full = static_cast<int64_t>(i + 1) * bs <= r.num_computed;
      // A cached block must hold exactly this sequence's content at this index.
      if (pool_.is_cached(b) && (!full || i >= r.hashes.size() || pool_.hash(b) != r.hashes[i])) {
        return absl::InternalError(absl::StrCat(who, "block ", b, " at index ", i, " is cached with other content"));
      }
      // The block still being written must be private.
      if (!full && (pool_.ref_count(b) != 1 || pool_.is_cached(b))) {
        return absl::InternalError(absl::StrCat(who, "writes into shared block ", b));
      }
    }
  }
  if (n_running != num_running_ || static_cast<int>(running_.size()) != n_running) {
    return absl::InternalError(absl::StrCat(n_running, " running requests, counter ", num_running_, ", list ",
                                            running_.size()));
  }
  if (n_running > config_.max_num_seqs) {
    return absl::InternalError(absl::StrCat(n_running, " running exceed max_num_seqs ", config_.max_num_seqs));
  }
  for (size_t i = 0; i < running_.size(); ++i) {
    if (!running_[i]->running) return absl::InternalError("running list holds a request that is not running");
    if (i > 0 && !RanksBefore(*running_[i - 1], *running_[i])) return absl::InternalError("running list out of order");
  }
  if (waiting_.size() != n_waiting) {
    return absl::InternalError(absl::StrCat("waiting queue has ", waiting_.size(), " entries for ", n_waiting));
  }
  if (deadlines_.size() != n_deadlines) return absl::InternalError("deadline index out of step");
  if (!ended_.empty() || !admitted_.empty()) return absl::InternalError("step scratch not cleared");
  return pool_.CheckInvariants(refs);
}

Scheduler::Scheduler(const SchedulerConfig& config, const Clock* clock)
    : impl_(std::make_unique<Impl>(config, clock)) {}
Scheduler::~Scheduler() = default;

absl::Status Scheduler::Add(RequestSpec spec) { return impl_->Add(std::move(spec)); }
void Scheduler::Cancel(uint64_t id) { impl_->Cancel(id); }
StepPlan Scheduler::Schedule() { return impl_->Schedule(); }
std::vector<FinishedRequest> Scheduler::Update(const StepPlan& plan, std::span<const SeqResult> results) {
  return impl_->Update(plan, results);
}
SchedulerStats Scheduler::stats() const { return impl_->stats(); }
bool Scheduler::idle() const { return impl_->idle(); }

std::span<const int32_t> Scheduler::tokens(uint64_t id) const {
  const Request* r = impl_->Find(id);
  return r == nullptr ? std::span<const int32_t>() : std::span<const int32_t>(r->tokens);
}

int Scheduler::prompt_len(uint64_t id) const {
  const Request* r = impl_->Find(id);
  return r == nullptr ? 0 : r->prompt_len;
}

absl::Status Scheduler::CheckInvariants() const { return impl_->CheckInvariants(); }

}  // namespace flotilla::scheduler
