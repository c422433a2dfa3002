// Small builders shared by the scheduler tests.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "scheduler/scheduler.h"

namespace flotilla::scheduler::testing {

// `n` tokens unlikely to share a block with another `seed`'s prompt.
inline std::vector<int32_t> Prompt(int n, int32_t seed) {
  std::vector<int32_t> p(n);
  for (int i = 0; i < n; ++i) p[i] = seed * 1000 + i;
  return p;
}

inline RequestSpec Spec(uint64_t id, int prompt_len, int max_new, int priority = 0, std::string tenant = "t") {
  RequestSpec s;
  s.id = id;
  s.prompt = Prompt(prompt_len, static_cast<int32_t>(id));
  s.max_new_tokens = max_new;
  s.priority = priority;
  s.tenant = std::move(tenant);
  return s;
}

inline SchedulerConfig Config(int num_blocks, int block_size = 4, int budget = 64, int max_seqs = 8) {
  SchedulerConfig c;
  c.num_blocks = num_blocks;
  c.block_size = block_size;
  c.max_tokens_per_step = budget;
  c.max_num_seqs = max_seqs;
  return c;
}

}  // namespace flotilla::scheduler::testing
