#include "model/sampler.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"

namespace flotilla {

absl::Status ValidateSamplingParams(const SamplingParams& p) {
  auto bad = [](const std::string& m) { return absl::InvalidArgumentError(m); };
  if (!(p.temperature >= 0.0f && p.temperature <= 100.0f)) return bad(absl::StrCat("temperature ", p.temperature, " must be in [0, 100]"));
  if (p.top_k < 0) return bad(absl::StrCat("top_k ", p.top_k, " must be >= 0"));
  if (!(p.top_p > 0.0f && p.top_p <= 1.0f)) return bad(absl::StrCat("top_p ", p.top_p, " must be in (0, 1]"));
  if (!(p.min_p >= 0.0f && p.min_p <= 1.0f)) return bad(absl::StrCat("min_p ", p.min_p, " must be in [0, 1]"));
  if (!(p.repetition_penalty > 0.0f && p.repetition_penalty <= 10.0f)) {
    return bad(absl::StrCat("repetition_penalty ", p.repetition_penalty, " must be in (0, 10]"));
  }
  if (!(p.presence_penalty >= -2.0f && p.presence_penalty <= 2.0f)) return bad(absl::StrCat("presence_penalty ", p.presence_penalty, " must be in [-2, 2]"));
  if (!(p.frequency_penalty >= -2.0f && p.frequency_penalty <= 2.0f)) return bad(absl::StrCat("frequency_penalty ", p.frequency_penalty, " must be in [-2, 2]"));
  if (p.logprobs < 0 || p.logprobs > 20) return bad(absl::StrCat("logprobs ", p.logprobs, " must be in [0, 20]"));
  return absl::OkStatus();
}

Sampler::Sampler(const SamplingParams& params, int vocab_size)
    : params_(params), vocab_size_(vocab_size), rng_(params.has_seed ? params.seed : std::random_device{}()) {}

double Sampler::Uniform() { return static_cast<double>(rng_() >> 11) * (1.0 / 9007199254740992.0); }

void Sampler::ApplyPenalties(std::span<float> logits, std::span<const int32_t> tokens, size_t n_prompt) {
  const SamplingParams& p = params_;
  const bool rep = p.repetition_penalty != 1.0f;
  const bool pf = p.presence_penalty != 0.0f || p.frequency_penalty != 0.0f;
  if (!rep && !pf) return;
  counts_.assign(vocab_size_, 0);
  // counts_ bit 31 marks "seen anywhere" for the repetition penalty; the rest counts outputs.
  for (size_t i = 0; i < tokens.size(); ++i) {
    const int32_t t = tokens[i];
    if (t < 0 || t >= vocab_size_) continue;
    counts_[t] |= 0x80000000u;
    if (i >= n_prompt) ++counts_[t];
  }
  for (int32_t t = 0; t < vocab_size_; ++t) {
    const uint32_t c = counts_[t];
    if (c == 0) continue;
    if (rep) logits[t] = logits[t] > 0 ? logits[t] / p.repetition_penalty : logits[t] * p.repetition_penalty;
    const uint32_t n = c & 0x7fffffffu;
    if (n > 0) logits[t] -= p.presence_penalty + p.frequency_penalty * static_cast<float>(n);
  }
}

int32_t ArgMax(std::span<const float> x, float* max_value) {
  // 16 lanes, each keeping the first index of its own maximum, so the compiler can keep them in
  // vector registers (one scan with a running index was a serial chain of compare-and-branch:
  // 15-20 us per 32,000-entry vocabulary, a few percent of a batch-16 step on the engine
  // thread while the pool's threads waited). Ties go to the lowest index, as the scan's did; NaN
  // never wins (every comparison with it is false).
  constexpr int kLanes = 16;
  const int32_t n = static_cast<int32_t>(x.size());
  float best[kLanes];
  int32_t at[kLanes];
  for (int l = 0; l < kLanes; ++l) {
    best[l] = -INFINITY;
    at[l] = 0;
  }
  int32_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int l = 0; l < kLanes; ++l) {
      const bool more = x[i + l] > best[l];
      best[l] = more ? x[i + l] : best[l];
      at[l] = more ? i + l : at[l];
    }
  }
  float m = -INFINITY;
  int32_t a = 0;
  for (int l = 0; l < kLanes; ++l) {
    if (best[l] > m || (best[l] == m && at[l] < a)) {
      m = best[l];
      a = at[l];
    }
  }
  for (; i < n; ++i) {
    if (x[i] > m) {
      m = x[i];
      a = i;
    }
  }
  if (max_value) *max_value = m;
  return a;
}

SampleResult Sampler::Sample(std::span<float> logits, std::span<const int32_t> tokens, size_t n_prompt) {
  ApplyPenalties(logits, tokens, n_prompt);
  SampleResult r;

  // Log-probabilities of the penalised distribution (before temperature), when asked for.
  float max_logit = -INFINITY;
  const int32_t argmax = ArgMax(logits.first(static_cast<size_t>(vocab_size_)), &max_logit);
  double log_z = 0.0;
  const bool want_logprobs = params_.logprobs > 0;
  if (want_logprobs) {
    double z = 0.0;
    for (int32_t t = 0; t < vocab_size_; ++t) z += std::exp(static_cast<double>(logits[t] - max_logit));
    log_z = std::log(z) + max_logit;
  }

  if (params_.greedy()) {
    r.token = argmax;
  } else {
    const float inv_t = 1.0f / params_.temperature;
    cand_.clear();
    for (int32_t t = 0; t < vocab_size_; ++t) cand_.emplace_back(logits[t] * inv_t, t);
    auto desc = [](const auto& a, const auto& b) { return a.first > b.first || (a.first == b.first && a.second < b.second); };
    size_t n = cand_.size();
    if (params_.top_k > 0 && static_cast<size_t>(params_.top_k) < n) {
      std::partial_sort(cand_.begin(), cand_.begin() + params_.top_k, cand_.end(), desc);
      n = params_.top_k;
    } else {
      std::sort(cand_.begin(), cand_.end(), desc);
    }
    // Softmax over the kept candidates, in place of the logits.
    const float top = cand_[0].first;
    double sum = 0.0;
    for (size_t i = 0; i < n; ++i) {
      cand_[i].first = std::exp(cand_[i].first - top);
      sum += cand_[i].first;
    }
    // min-p: drop candidates below min_p times the most likely one.
    if (params_.min_p > 0.0f) {
      const float cut = params_.min_p * cand_[0].first;
      size_t keep = 1;
      while (keep < n && cand_[keep].first >= cut) ++keep;
      for (size_t i = keep; i < n; ++i) sum -= cand_[i].first;
      n = keep;
    }
    // top-p: the smallest prefix whose mass reaches top_p.
    if (params_.top_p < 1.0f) {
      double acc = 0.0;
      size_t keep = 0;
      while (keep < n) {
        acc += cand_[keep].first;
        ++keep;
        if (acc >= params_.top_p * sum) break;
      }
      n = keep;
      sum = acc;
    }
    double u = Uniform() * sum;
    r.token = cand_[n - 1].second;
    for (size_t i = 0; i < n; ++i) {
      u -= cand_[i].first;
      if (u < 0) {
        r.token = cand_[i].second;
        break;
      }
    }
  }

  if (want_logprobs) {
    r.logprob = static_cast<float>(logits[r.token] - log_z);
    cand_.clear();
    for (int32_t t = 0; t < vocab_size_; ++t) cand_.emplace_back(logits[t], t);
    const size_t k = std::min<size_t>(params_.logprobs, cand_.size());
    std::partial_sort(cand_.begin(), cand_.begin() + k, cand_.end(),
                      [](const auto& a, const auto& b) { return a.first > b.first || (a.first == b.first && a.second < b.second); });
    r.top.reserve(k);
    for (size_t i = 0; i < k; ++i) r.top.push_back({cand_[i].second, static_cast<float>(cand_[i].first - log_z)});
  }
  return r;
}

}  // namespace flotilla
