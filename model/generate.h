// Generating for one sequence alone, outside any server: for `flotilla run`, benchmarks and
// tests. The sequence uses KV blocks 0, 1, 2, ... of the executor.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "model/executor.h"
#include "model/sampler.h"
#include "model/tokenizer.h"

namespace flotilla {

struct GenerateOptions {
  int max_tokens = 128;
  SamplingParams sampling;
  bool stop_at_eos = true;
};

struct GenerateResult {
  std::vector<int32_t> tokens;  // generated ids
  std::string text;             // generated text
  double prefill_seconds = 0;
  double decode_seconds = 0;
};

// on_text (optional) receives each piece of text as soon as it forms whole UTF-8 characters.
absl::StatusOr<GenerateResult> GenerateSingle(Executor& ex, const Tokenizer& tok, std::span<const int32_t> prompt,
                                              const GenerateOptions& options,
                                              const std::function<void(std::string_view)>& on_text = nullptr);

// Runs the whole sequence in one pass and returns logits for every position (teacher forcing):
// row i predicts token i + 1. Used for agreement and KL measurements.
absl::StatusOr<std::vector<float>> ForwardAllPositions(Executor& ex, std::span<const int32_t> tokens);

}  // namespace flotilla
