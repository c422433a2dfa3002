// Random workloads over many seeds: random pool and budget sizes (often tight enough to
// preempt), prompt lengths beyond a chunk, shared prefixes across and within tenants, priorities,
// arrivals spread over time, cancels, deadlines on a FakeClock, and EOS from the model.
// Checked: invariants after every Schedule() and Update() (no block leaks or double holds, no
// write into a shared block), every request ends exactly once with a reason it could have, every
// output is a prefix of the request's greedy reference (so preemption, recompute and prefix
// sharing never change results), and the whole pool is free at the end.
#include <algorithm>
#include <cstdio>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "scheduler/scheduler.h"
#include "tests/scheduler/fake_engine.h"

namespace flotilla::scheduler {
namespace {

using testing::FakeEngine;
using testing::ReferenceOutput;

constexpr int kVocab = 48;  // small, so EOS (token 0) comes up now and then
constexpr int32_t kEos = 0;

struct Totals {
  int64_t preemptions = 0;
  uint64_t prefix_hits = 0;
  int64_t cancelled = 0;
  int64_t expired = 0;
  int64_t eos = 0;
  int64_t length = 0;
  int64_t seeds_run = 0;
  int64_t steps = 0;
};

struct Planned {
  RequestSpec spec;
  int arrive_step = 0;
  int cancel_step = -1;  // -1: never
};

int Uniform(std::mt19937_64& rng, int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); }
bool Chance(std::mt19937_64& rng, double p) { return std::bernoulli_distribution(p)(rng); }

// Runs one seed; returns a failure message or "".
std::string RunSeed(uint64_t seed, bool tight, Totals* totals) {
  std::mt19937_64 rng(seed);
  SchedulerConfig c;
  c.block_size = std::vector<int>{1, 2, 4, 8, 16}[Uniform(rng, 0, 4)];
  c.num_blocks = tight ? Uniform(rng, 3, 24) : Uniform(rng, 64, 256);
  c.max_tokens_per_step = Chance(rng, 0.2) ? Uniform(rng, 1, 4) : Uniform(rng, 5, 96);
  c.max_num_seqs = Uniform(rng, 1, 10);
  c.max_context = Chance(rng, 0.5) ? 0 : Uniform(rng, 8, 120);
  c.max_waiting = 1000;
  c.enable_prefix_cache = !Chance(rng, 0.2);
  const int pool_tokens = c.num_blocks * c.block_size;
  const int max_len = std::min(pool_tokens, c.max_context > 0 ? c.max_context : pool_tokens);
  if (max_len < 2) return "skip";  // nothing fits; Add() rejection is covered elsewhere

  // A few stems that prompts start with, so prefixes repeat within and across tenants.
  std::vector<std::vector<int32_t>> stems(3);
  for (auto& s : stems) {
    s.resize(Uniform(rng, 0, 48));
    for (int32_t& t : s) t = Uniform(rng, 1, kVocab - 1);
  }
  const std::string tenants[] = {"a", "b", "c"};
  const int n = Uniform(rng, 4, 36);
  std::vector<Planned> planned;
  for (int i = 0; i < n; ++i) {
    Planned p;
    RequestSpec& s = p.spec;
    s.id = 1000 + static_cast<uint64_t>(i) * 7;
    const auto& stem = stems[Uniform(rng, 0, 2)];
    s.prompt.assign(stem.begin(), stem.end());
    const int extra = Uniform(rng, stem.empty() ? 1 : 0, Chance(rng, 0.3) ? 90 : 12);
    for (int k = 0; k < extra; ++k) s.prompt.push_back(Uniform(rng, 1, kVocab - 1));
    if (static_cast<int>(s.prompt.size()) >= max_len) s.prompt.resize(max_len - 1);
    s.max_new_tokens = Uniform(rng, 1, 40);
    s.priority = Uniform(rng, 0, 2);
    s.tenant = tenants[Uniform(rng, 0, 2)];
    s.shared_prefix_tokens = Chance(rng, 0.4) ? static_cast<int>(stem.size()) : 0;
    p.arrive_step = Uniform(rng, 0, 40);
    if (Chance(rng, 0.1)) p.cancel_step = p.arrive_step + Uniform(rng, 0, 30);
    if (Chance(rng, 0.2)) s.deadline = 1;  // set relative to arrival below
    planned.push_back(std::move(p));
  }

  FakeClock clock;
  FakeEngine e(c, &clock, kVocab, kEos);
  std::map<uint64_t, const Planned*> by_id;
  std::map<uint64_t, bool> cancel_sent;
  constexpr int kMaxSteps = 20000;
  int step = 0;
  size_t arrived = 0;
  std::sort(planned.begin(), planned.end(), [](const Planned& a, const Planned& b) { return a.arrive_step < b.arrive_step; });
  for (; step < kMaxSteps; ++step) {
    while (arrived < planned.size() && planned[arrived].arrive_step <= step) {
      Planned& p = planned[arrived++];
      if (p.spec.deadline != 0) p.spec.deadline = clock.Now() + Uniform(rng, 0, 60) * kNsPerMs;
      if (absl::Status st = e.Add(p.spec); !st.ok()) return "Add: " + std::string(st.message());
      by_id[p.spec.id] = &p;
    }
    for (auto& [id, p] : by_id) {
      if (p->cancel_step == step && e.ended_at(id) == 0) {
        e.scheduler().Cancel(id);
        cancel_sent[id] = true;
      }
    }
    if (arrived == planned.size() && e.scheduler().idle()) break;
    if (!e.scheduler().idle()) {
      if (absl::Status st = e.Step(); !st.ok()) return std::string(st.message());
    }
    clock.AdvanceMs(1);
  }
  if (step == kMaxSteps) return "no progress: still busy after " + std::to_string(kMaxSteps) + " steps";

  const SchedulerStats st = e.scheduler().stats();
  if (st.free_blocks != st.total_blocks || st.running != 0 || st.waiting != 0 || st.kv_usage != 0.0) {
    return "blocks or requests left at the end: free " + std::to_string(st.free_blocks) + " of " +
           std::to_string(st.total_blocks);
  }
  if (st.prefix_hits > st.prefix_queries) return "more prefix hits than queries";
  for (const Planned& p : planned) {
    const RequestSpec& s = p.spec;
    auto it = e.ended().find(s.id);
    if (it == e.ended().end()) return "request " + std::to_string(s.id) + " never ended";
    const FinishedRequest& f = it->second;
    const std::vector<int32_t> out = e.model().Output(s.id);
    const std::vector<int32_t> ref = ReferenceOutput(s.prompt, s.max_new_tokens, max_len, kVocab, kEos);
    const std::string who = "request " + std::to_string(s.id) + " (" + FinishReasonName(f.reason) + "): ";
    if (out.size() > ref.size() || !std::equal(out.begin(), out.end(), ref.begin())) {
      return who + "output differs from the greedy reference";
    }
    const TimeNs ended = e.ended_time(s.id);
    switch (f.reason) {
      case FinishReason::kLength:
        if (out != ref) return who + "ended early";
        if (static_cast<int>(out.size()) != s.max_new_tokens &&
            static_cast<int>(s.prompt.size() + out.size()) != max_len) {
          return who + "neither max_new_tokens nor the length limit reached";
        }
        if (!out.empty() && out.back() == kEos) return who + "EOS reported as length";
        ++totals->length;
        break;
      case FinishReason::kEos:
        if (out != ref || out.empty() || out.back() != kEos) return who + "EOS without the EOS token";
        ++totals->eos;
        break;
      case FinishReason::kCancelled:
        if (!cancel_sent[s.id]) return who + "cancelled without a Cancel()";
        ++totals->cancelled;
        break;
      case FinishReason::kExpired:
        if (s.deadline == 0) return who + "expired without a deadline";
        if (ended <= s.deadline) return who + "expired before its deadline";
        ++totals->expired;
        break;
      default:
        return who + "unexpected reason";
    }
    // Tenant isolation: a hit can only come from a sequence with the same tokens under the same
    // salt: same tenant, or a prefix both requests marked shared.
    if (f.cached_tokens > 0) {
      if (!c.enable_prefix_cache) return who + "prefix hit with the prefix cache off";
      int bound = 0;
      for (const Planned& o : planned) {
        if (o.spec.id == s.id || e.ended_at(o.spec.id) == 0) continue;
        const std::vector<int32_t>& seq = e.model().Sequence(o.spec.id);
        const int lcp = static_cast<int>(
            std::mismatch(s.prompt.begin(), s.prompt.end(), seq.begin(), seq.end()).first - s.prompt.begin());
        const int allowed = o.spec.tenant == s.tenant
                                ? lcp
                                : std::min({lcp, o.spec.shared_prefix_tokens, s.shared_prefix_tokens});
        bound = std::max(bound, allowed);
      }
      if (f.cached_tokens > bound) {
        return who + std::to_string(f.cached_tokens) + " cached tokens, but other sequences under its salt share only " +
               std::to_string(bound);
      }
    }
    // A passed deadline is caught at the first Schedule() after it (cancels are handled first).
    if (s.deadline != 0 && f.reason != FinishReason::kExpired && f.reason != FinishReason::kCancelled &&
        ended > s.deadline) {
      return who + "outlived its deadline";
    }
  }
  totals->preemptions += e.total_preempted();
  totals->steps += e.steps();
  totals->prefix_hits += st.prefix_hits;
  return "";
}

class SchedulerRandomTest : public ::testing::TestWithParam<bool> {};

TEST_P(SchedulerRandomTest, ManySeeds) {
  const bool tight = GetParam();
  Totals totals;
  int skipped = 0;
  for (uint64_t seed = 0; seed < 300; ++seed) {
    const std::string failure = RunSeed(seed, tight, &totals);
    if (failure == "skip") {
      ++skipped;
      continue;
    }
    ++totals.seeds_run;
    ASSERT_EQ(failure, "") << "seed " << seed << (tight ? " (tight pool)" : " (roomy pool)");
  }
  // The workloads must actually exercise what they claim to.
  EXPECT_LT(skipped, 10);
  if (tight) {
    EXPECT_GT(totals.preemptions, 100);
  }
  EXPECT_GT(totals.prefix_hits, 1000u);
  EXPECT_GT(totals.cancelled, 20);
  EXPECT_GT(totals.expired, 20);
  EXPECT_GT(totals.eos, 20);
  EXPECT_GT(totals.length, 1000);
  std::printf("seeds run %lld skipped %d steps %lld\n", static_cast<long long>(totals.seeds_run), skipped,
              static_cast<long long>(totals.steps));
  std::printf("preemptions %lld prefix_hits %llu cancelled %lld expired %lld eos %lld length %lld\n",
              static_cast<long long>(totals.preemptions), static_cast<unsigned long long>(totals.prefix_hits),
              static_cast<long long>(totals.cancelled), static_cast<long long>(totals.expired),
              static_cast<long long>(totals.eos), static_cast<long long>(totals.length));
}

INSTANTIATE_TEST_SUITE_P(Pools, SchedulerRandomTest, ::testing::Values(true, false),
                         [](const auto& info) { return info.param ? std::string("Tight") : std::string("Roomy"); });

}  // namespace
}  // namespace flotilla::scheduler
