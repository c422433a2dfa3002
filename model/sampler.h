// Turning logits into the next token: penalties, temperature, top-k, top-p, min-p, a seeded
// random draw, and top-N log-probabilities. One Sampler per request (it owns the RNG state);
// not thread-safe, used by the engine thread only.
#pragma once

#include <cstdint>
#include <random>
#include <span>
#include <vector>

#include "absl/status/status.h"

namespace flotilla {

struct SamplingParams {
  float temperature = 1.0f;  // 0: greedy
  int top_k = 0;             // 0: off
  float top_p = 1.0f;        // 1: off
  float min_p = 0.0f;        // 0: off
  float repetition_penalty = 1.0f;  // over prompt and output tokens; 1: off
  float presence_penalty = 0.0f;    // over output tokens
  float frequency_penalty = 0.0f;   // over output tokens
  uint64_t seed = 0;
  bool has_seed = false;  // without a seed each request draws one
  int logprobs = 0;       // number of top alternatives to report (0..20)

  bool greedy() const { return temperature <= 0.0f || top_k == 1; }
};

// INVALID_ARGUMENT naming the parameter when a value is out of range.
absl::Status ValidateSamplingParams(const SamplingParams& p);

struct TokenLogprob {
  int32_t token;
  float logprob;
};

struct SampleResult {
  int32_t token = -1;
  float logprob = 0.0f;             // of the chosen token (under the penalised distribution)
  std::vector<TokenLogprob> top;    // the `logprobs` most likely tokens
};

// The index of the largest element of x (the lowest such index on ties; NaN never counts), and
// the element through max_value when given; 0 and -infinity for an empty or all-NaN x.
int32_t ArgMax(std::span<const float> x, float* max_value = nullptr);

class Sampler {
 public:
  Sampler(const SamplingParams& params, int vocab_size);

  // `logits` is scratch (modified). `tokens` holds the prompt then the output so far;
  // the first `n_prompt` of them are the prompt.
  SampleResult Sample(std::span<float> logits, std::span<const int32_t> tokens, size_t n_prompt);

  const SamplingParams& params() const { return params_; }

 private:
  void ApplyPenalties(std::span<float> logits, std::span<const int32_t> tokens, size_t n_prompt);
  double Uniform();
  double Probabilities(std::span<const float> logits, float inv_t);
  double Collect(float tau);
  int32_t Draw(double total);
  void TopK(int k, float floor);
  int32_t DrawInOrder(double total, int32_t fallback);
  std::pair<size_t, double> Nucleus(double target);

  SamplingParams params_;
  int vocab_size_;
  std::mt19937_64 rng_;
  std::vector<float> probs_;                      // softmax of the logits, reused
  std::vector<std::pair<float, int32_t>> cand_;  // reused between calls
  std::vector<uint32_t> counts_;                  // output-token counts, reused
};

}  // namespace flotilla
