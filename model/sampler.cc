#include "model/sampler.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "kernels/cpu/kernel_table.h"

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

// Fills probs_ with softmax(logits / temperature) by the kernels' vector softmax (a scalar exp
// per vocabulary entry took ~190 us a token); NaN and -infinity logits get probability 0.
// Returns the sum of probs_ in index order.
double Sampler::Probabilities(std::span<const float> logits, float inv_t) {
  probs_.resize(static_cast<size_t>(vocab_size_));
  for (int32_t t = 0; t < vocab_size_; ++t) probs_[t] = logits[t] * inv_t;
  kernels::cpu::BestKernels().softmax(probs_.data(), vocab_size_);
  double part[8] = {};
  int32_t t = 0;
  for (; t + 8 <= vocab_size_; t += 8) {
    for (int l = 0; l < 8; ++l) {
      if (!(logits[t + l] > -INFINITY)) probs_[t + l] = 0.0f;
      part[l] += probs_[t + l];
    }
  }
  for (; t < vocab_size_; ++t) {
    if (!(logits[t] > -INFINITY)) probs_[t] = 0.0f;
    part[0] += probs_[t];
  }
  return ((part[0] + part[1]) + (part[2] + part[3])) + ((part[4] + part[5]) + (part[6] + part[7]));
}

// cand_ = the (probability, token) pairs with probability >= tau, in token order; returns their
// mass.
double Sampler::Collect(float tau) {
  cand_.clear();
  double mass = 0.0;
  for (int32_t t = 0; t < vocab_size_; ++t) {
    if (probs_[t] >= tau && probs_[t] > 0.0f) {
      cand_.emplace_back(probs_[t], t);
      mass += probs_[t];
    }
  }
  return mass;
}

namespace {
// The next threshold down from tau (reaching 0, which gathers every token, in a few steps; at
// once for a NaN).
float Lower(float tau, float p_max) { return tau >= p_max * 0x1p-100f ? tau * 0x1p-12f : 0.0f; }

// Probability order: higher first, ties by lower token id (a strict total order on candidates).
bool Before(const std::pair<float, int32_t>& a, const std::pair<float, int32_t>& b) {
  return a.first > b.first || (a.first == b.first && a.second < b.second);
}
}  // namespace

// Moves to the front of cand_ the shortest prefix, in probability order, whose mass reaches
// `target` (in no particular order within it) and returns its length and mass. A quickselect
// on mass, expected linear time: a flat distribution (a high temperature, or an untrained
// model) keeps most of the vocabulary, whose full sort took ~2 ms a token.
std::pair<size_t, double> Sampler::Nucleus(double target) {
  size_t lo = 0, hi = cand_.size();
  double above = 0.0;  // mass of cand_[0, lo), all before every element of [lo, hi)
  while (hi - lo > 64) {
    const auto a = cand_[lo], b = cand_[lo + (hi - lo) / 2], c = cand_[hi - 1];
    const auto pivot = Before(a, b) ? (Before(b, c) ? b : Before(a, c) ? c : a) : (Before(a, c) ? a : Before(b, c) ? c : b);
    const auto first = cand_.begin() + static_cast<std::ptrdiff_t>(lo), last = cand_.begin() + static_cast<std::ptrdiff_t>(hi);
    const auto mid = std::partition(first, last, [&](const auto& x) { return Before(x, pivot); });
    const size_t m = static_cast<size_t>(mid - cand_.begin());
    double mass = 0.0;
    for (size_t i = lo; i < m; ++i) mass += cand_[i].first;
    if (above + mass >= target) {
      hi = m;  // the prefix ends before the pivot
      continue;
    }
    above += mass + pivot.first;
    std::iter_swap(mid, std::find(mid, last, pivot));
    if (above >= target) return {m + 1, above};
    lo = m + 1;
  }
  const auto first = cand_.begin() + static_cast<std::ptrdiff_t>(lo);
  std::sort(first, cand_.begin() + static_cast<std::ptrdiff_t>(hi), Before);
  for (size_t i = lo; i < hi; ++i) {
    above += cand_[i].first;
    if (above >= target) return {i + 1, above};
  }
  return {hi, above};  // rounding left the target just out of reach: everything up to hi
}

// cand_ = the k most probable tokens with probability >= floor (and above 0), in no particular
// order: one pass over probs_ against the least of a heap of k, which a token rarely beats once
// the heap is full (gathering candidates by threshold first gathered the whole vocabulary when
// the logits were flat).
void Sampler::TopK(int k, float floor) {
  cand_.clear();
  float worst = floor;  // what a token must beat (equal: compare ids) once the heap is full
  for (int32_t t = 0; t < vocab_size_; ++t) {
    const float p = probs_[t];
    if (!(p >= worst) || !(p > 0.0f)) continue;
    const std::pair<float, int32_t> c{p, t};
    if (cand_.size() < static_cast<size_t>(k)) {
      cand_.push_back(c);
      if (cand_.size() == static_cast<size_t>(k)) {
        std::make_heap(cand_.begin(), cand_.end(), Before);  // front: last in probability order
        worst = cand_.front().first;
      }
    } else if (Before(c, cand_.front())) {
      std::pop_heap(cand_.begin(), cand_.end(), Before);
      cand_.back() = c;
      std::push_heap(cand_.begin(), cand_.end(), Before);
      worst = cand_.front().first;
    }
  }
}

int32_t Sampler::Draw(double total) {
  if (cand_.empty()) return -1;  // no token with a probability above 0 (NaN logits)
  double u = Uniform() * total;
  for (const auto& [p, t] : cand_) {
    u -= p;
    if (u < 0) return t;
  }
  return cand_.back().second;  // u landed on the rounding left at the end
}

// A draw over probs_ in token order, a chunk at a time (the chunk's sum first, then its tokens
// only in the chunk that holds the draw); `fallback` if rounding leaves the draw past the end.
int32_t Sampler::DrawInOrder(double total, int32_t fallback) {
  constexpr int32_t kChunk = 64;
  double u = Uniform() * total;
  for (int32_t c = 0; c < vocab_size_; c += kChunk) {
    const int32_t end = std::min(vocab_size_, c + kChunk);
    float part[8] = {};
    for (int32_t t = c; t + 8 <= end; t += 8) {
      for (int l = 0; l < 8; ++l) part[l] += probs_[t + l];
    }
    double chunk = ((part[0] + part[1]) + (part[2] + part[3])) + ((part[4] + part[5]) + (part[6] + part[7]));
    for (int32_t t = c + (end - c) / 8 * 8; t < end; ++t) chunk += probs_[t];
    if (u >= chunk) {
      u -= chunk;
      continue;
    }
    int32_t last = fallback;
    for (int32_t t = c; t < end; ++t) {
      if (!(probs_[t] > 0.0f)) continue;
      last = t;
      u -= probs_[t];
      if (u < 0) return t;
    }
    return last;  // the chunk's sum and its walk rounded apart
  }
  return fallback;
}

SampleResult Sampler::Sample(std::span<float> logits, std::span<const int32_t> tokens, size_t n_prompt) {
  ApplyPenalties(logits, tokens, n_prompt);
  SampleResult r;

  float max_logit = -INFINITY;
  const int32_t argmax = ArgMax(logits.first(static_cast<size_t>(vocab_size_)), &max_logit);
  bool probs_at_t1 = false;  // probs_ holds the softmax at temperature 1 (logprobs reuse it)
  if (params_.greedy() || !(max_logit > -INFINITY)) {
    r.token = argmax;
  } else {
    // The candidates are the tokens in order of probability; top-k keeps the first k, min-p
    // those at or above min_p times the first, top-p the shortest prefix of what is left that
    // holds top_p of its mass, and the draw is over what remains. Sorting the whole vocabulary
    // for that took ~2.4 ms a token (every sequence, every step, on the engine thread while the
    // pool waited), so only the tokens that can matter are gathered, those above a threshold
    // lowered until the set provably holds every token kept, and selected without a full sort.
    // A prefix in probability order holds the kept set when it holds the top k, or everything
    // at or above the min-p cut, or (with neither) top_p of the whole mass.
    const double total = Probabilities(logits, 1.0f / params_.temperature);
    probs_at_t1 = params_.temperature == 1.0f;
    const float p_max = probs_[argmax];
    const bool top_k = params_.top_k > 0 && params_.top_k < vocab_size_;
    const bool min_p = params_.min_p > 0.0f;
    const bool top_p = params_.top_p < 1.0f;
    if (!(p_max > 0.0f) || !std::isfinite(total)) {
      r.token = argmax;  // NaN logits left no distribution to draw from
    } else if (!top_k && !min_p && !top_p) {
      // The whole distribution: the draw walks the vocabulary in token order instead of
      // probability order, which picks each token with the same probability.
      r.token = DrawInOrder(total, argmax);
    } else {
      const float cut = params_.min_p * p_max;
      if (top_k) {
        TopK(params_.top_k, cut);
      } else {
        float tau = min_p ? cut : p_max * 0x1p-14f;
        for (;; tau = Lower(tau, p_max)) {
          const double mass = Collect(tau);
          if (tau == 0.0f || min_p || mass >= params_.top_p * total) break;
        }
      }
      // The kept set is in no particular order (the draw picks each member with the same
      // probability whatever the order): the top k, then the min-p cut (against the largest,
      // which is always kept), then the nucleus.
      if (min_p) std::erase_if(cand_, [&](const auto& c) { return c.first < cut; });
      // Mass of the candidates top-p chooses among: all of them, or the whole vocabulary when
      // neither top-k nor min-p narrowed it (the gathered set is then only a prefix).
      double sum = 0.0;
      for (const auto& c : cand_) sum += c.first;
      if (!top_k && !min_p) sum = total;
      if (top_p) {
        const auto [keep, mass] = Nucleus(params_.top_p * sum);
        cand_.resize(keep);
        sum = mass;
      }
      r.token = Draw(sum);
      if (r.token < 0) r.token = argmax;
    }
  }

  if (params_.logprobs > 0) {
    // Log-probabilities of the penalised distribution before temperature: log z from the
    // vector softmax (the largest logit's probability is 1 / sum exp(l - max)).
    if (!probs_at_t1) Probabilities(logits, 1.0f);
    const double log_z = max_logit - std::log(static_cast<double>(probs_[argmax]));
    r.logprob = static_cast<float>(logits[r.token] - log_z);
    // The top tokens by logit: gathered by probability (a prefix in logit order, ties in or out
    // together), then sorted by logit.
    const size_t k = std::min<size_t>(params_.logprobs, static_cast<size_t>(vocab_size_));
    for (float tau = probs_[argmax] * 0x1p-14f;; tau = Lower(tau, probs_[argmax])) {
      Collect(tau);
      if (cand_.size() >= k || tau == 0.0f) break;
    }
    for (auto& c : cand_) c.first = logits[c.second];
    const size_t kk = std::min(k, cand_.size());
    std::partial_sort(cand_.begin(), cand_.begin() + kk, cand_.end(), Before);
    r.top.reserve(kk);
    for (size_t i = 0; i < kk; ++i) r.top.push_back({cand_[i].second, static_cast<float>(cand_[i].first - log_z)});
  }
  return r;
}

}  // namespace flotilla
