#include "model/sampler.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>
#include <string>

#include "gtest/gtest.h"

namespace flotilla {
namespace {

std::vector<float> Logits() { return {1.0f, 3.0f, 2.5f, -1.0f, 0.0f, 2.9f, 0.5f, -3.0f}; }

std::vector<int32_t> Draw(SamplingParams p, int n) {
  Sampler s(p, 8);
  std::vector<int32_t> out;
  std::vector<int32_t> hist = {0};
  for (int i = 0; i < n; ++i) {
    auto l = Logits();
    out.push_back(s.Sample(l, hist, 1).token);
  }
  return out;
}

TEST(Sampler, GreedyIsArgmax) {
  SamplingParams p;
  p.temperature = 0;
  for (int32_t t : Draw(p, 10)) EXPECT_EQ(t, 1);
  p.temperature = 1.5f;
  p.top_k = 1;
  for (int32_t t : Draw(p, 10)) EXPECT_EQ(t, 1);
}

// Against a plain scan: every position of the maximum (in the lanes and in the tail), ties,
// NaNs, infinities, and lengths around the lane count.
TEST(Sampler, ArgMaxEqualsAScan) {
  auto scan = [](const std::vector<float>& x) {
    float m = -INFINITY;
    int32_t a = 0;
    for (size_t i = 0; i < x.size(); ++i) {
      if (x[i] > m) m = x[i], a = static_cast<int32_t>(i);
    }
    return std::pair<int32_t, float>(a, m);
  };
  auto check = [&](const std::vector<float>& x, const std::string& what) {
    float m = 0;
    const int32_t a = ArgMax(x, &m);
    const auto [ea, em] = scan(x);
    EXPECT_EQ(a, ea) << what;
    EXPECT_EQ(m, em) << what;
  };
  for (int n : {0, 1, 5, 15, 16, 17, 31, 32, 33, 100, 32000}) {
    std::vector<float> x(n);
    for (int i = 0; i < n; ++i) x[i] = std::sin(0.37f * i) * 3.0f;
    check(x, "sine " + std::to_string(n));
    for (int at : {0, n / 3, n - 1}) {
      if (at < 0 || at >= n) continue;
      auto y = x;
      y[at] = 10.0f;
      check(y, "peak at " + std::to_string(at) + " of " + std::to_string(n));
      if (n > 2) {
        y[n - 1 - at / 2] = 10.0f;  // a tie: the lower index wins
        check(y, "tie " + std::to_string(n));
        y[at] = NAN;
        check(y, "NaN " + std::to_string(n));
      }
    }
    check(std::vector<float>(n, -INFINITY), "all -inf " + std::to_string(n));
    check(std::vector<float>(n, NAN), "all NaN " + std::to_string(n));
    check(std::vector<float>(n, 2.0f), "all equal " + std::to_string(n));
  }
}

TEST(Sampler, SameSeedSameOutputDifferentSeedDifferent) {
  SamplingParams p;
  p.temperature = 1.0f;
  p.seed = 42;
  p.has_seed = true;
  const auto a = Draw(p, 200), b = Draw(p, 200);
  EXPECT_EQ(a, b);
  p.seed = 43;
  EXPECT_NE(Draw(p, 200), a);
}

TEST(Sampler, DistributionFollowsSoftmax) {
  SamplingParams p;
  p.temperature = 1.0f;
  p.seed = 7;
  p.has_seed = true;
  const int n = 40000;
  std::map<int32_t, int> counts;
  for (int32_t t : Draw(p, n)) ++counts[t];
  auto l = Logits();
  double z = 0;
  for (float x : l) z += std::exp(x);
  for (int i = 0; i < 8; ++i) EXPECT_NEAR(counts[i] / double(n), std::exp(l[i]) / z, 0.01) << i;
}

TEST(Sampler, TopKTopPMinPRestrictTheCandidates) {
  SamplingParams p;
  p.temperature = 1.0f;
  p.has_seed = true;
  p.top_k = 2;
  for (int32_t t : Draw(p, 300)) EXPECT_TRUE(t == 1 || t == 5) << t;
  p.top_k = 0;
  p.top_p = 0.3f;  // token 1 alone holds ~0.3 of the mass; 5 tips it over
  for (int32_t t : Draw(p, 300)) EXPECT_TRUE(t == 1 || t == 5) << t;
  p.top_p = 1.0f;
  p.min_p = 0.5f;  // keeps tokens with p >= 0.5 * p(1): 1 (3.0), 5 (2.9), 2 (2.5)
  for (int32_t t : Draw(p, 300)) EXPECT_TRUE(t == 1 || t == 5 || t == 2) << t;
}

TEST(Sampler, PenaltiesChangeTheWinner) {
  SamplingParams p;
  p.temperature = 0;
  p.presence_penalty = 1.0f;
  Sampler s(p, 8);
  auto l = Logits();
  std::vector<int32_t> hist = {0, 1};  // token 1 was generated (prompt length 1)
  EXPECT_EQ(s.Sample(l, hist, 1).token, 5);
  l = Logits();
  EXPECT_EQ(s.Sample(l, hist, 2).token, 1) << "prompt tokens are not presence-penalised";
  p.presence_penalty = 0;
  p.repetition_penalty = 2.0f;
  Sampler r(p, 8);
  l = Logits();
  EXPECT_EQ(r.Sample(l, hist, 2).token, 5) << "repetition penalty covers the prompt";
  p.repetition_penalty = 1.0f;
  p.frequency_penalty = 0.05f;
  Sampler f(p, 8);
  std::vector<int32_t> many = {0, 1, 1, 1};  // 3 x 0.05 = 0.15 > 0.1 gap to token 5
  l = Logits();
  EXPECT_EQ(f.Sample(l, many, 1).token, 5);
}

TEST(Sampler, LogprobsAreNormalisedAndSorted) {
  SamplingParams p;
  p.temperature = 0;
  p.logprobs = 3;
  Sampler s(p, 8);
  auto l = Logits();
  const SampleResult r = s.Sample(l, {}, 0);
  ASSERT_EQ(r.top.size(), 3u);
  EXPECT_EQ(r.top[0].token, 1);
  EXPECT_EQ(r.top[1].token, 5);
  EXPECT_EQ(r.top[2].token, 2);
  EXPECT_FLOAT_EQ(r.logprob, r.top[0].logprob);
  double z = 0;
  for (float x : Logits()) z += std::exp(x);
  EXPECT_NEAR(r.logprob, 3.0 - std::log(z), 1e-5);
}

// The distribution each setting should sample from, by the plain method: the whole vocabulary
// sorted by probability, then top-k, min-p and top-p as documented in sampler.h.
std::map<int32_t, double> Expected(const std::vector<float>& logits, const SamplingParams& p) {
  std::vector<std::pair<double, int32_t>> c;
  double mx = -INFINITY;
  for (float l : logits) mx = std::max<double>(mx, l / p.temperature);
  for (size_t t = 0; t < logits.size(); ++t) c.emplace_back(std::exp(logits[t] / p.temperature - mx), static_cast<int32_t>(t));
  std::sort(c.begin(), c.end(), [](const auto& a, const auto& b) { return a.first > b.first || (a.first == b.first && a.second < b.second); });
  size_t n = c.size();
  if (p.top_k > 0) n = std::min<size_t>(n, p.top_k);
  if (p.min_p > 0) {
    while (n > 1 && c[n - 1].first < p.min_p * c[0].first) --n;
  }
  double sum = 0;
  for (size_t i = 0; i < n; ++i) sum += c[i].first;
  if (p.top_p < 1) {
    double acc = 0;
    size_t keep = 0;
    while (keep < n) {
      acc += c[keep++].first;
      if (acc >= p.top_p * sum) break;
    }
    n = keep;
    sum = acc;
  }
  std::map<int32_t, double> out;
  for (size_t i = 0; i < n; ++i) out[c[i].second] = c[i].first / sum;
  return out;
}

// A vocabulary of 4,000 with a few leading tokens over a wide tail (the shape a trained model
// gives), or flat, so that the sampler's gathering by threshold has to widen several times.
std::vector<float> WideLogits(bool peaked) {
  std::vector<float> l(4000);
  uint64_t x = 12345;
  for (auto& v : l) {
    x = x * 6364136223846793005ULL + 1442695040888963407ULL;
    v = peaked ? static_cast<float>((x >> 40) % 1000) / 100.0f : 1.0f;
  }
  if (peaked) {
    l[17] = 16.0f;
    l[3999] = 15.5f;
    l[123] = 15.0f;
  }
  return l;
}

TEST(Sampler, EveryRestrictionSamplesThePlainDistribution) {
  struct Case {
    const char* name;
    float temperature, top_p, min_p;
    int top_k;
    bool peaked;
  };
  const Case cases[] = {
      {"whole distribution", 1.0f, 1.0f, 0.0f, 0, true},  {"temperature 0.7", 0.7f, 1.0f, 0.0f, 0, true},
      {"top-p 0.9", 1.0f, 0.9f, 0.0f, 0, true},           {"top-p 0.99 (wide tail)", 1.0f, 0.99f, 0.0f, 0, true},
      {"top-k 50", 1.0f, 1.0f, 0.0f, 50, true},           {"top-k 50, flat", 1.0f, 1.0f, 0.0f, 50, false},
      {"min-p 0.1", 1.0f, 1.0f, 0.1f, 0, true},           {"top-k 300 + top-p 0.5 + min-p 0.01", 0.8f, 0.5f, 0.01f, 300, true},
      {"top-p 0.3, flat", 1.0f, 0.3f, 0.0f, 0, false},
  };
  for (const Case& k : cases) {
    SCOPED_TRACE(k.name);
    SamplingParams p;
    p.temperature = k.temperature;
    p.top_p = k.top_p;
    p.min_p = k.min_p;
    p.top_k = k.top_k;
    p.has_seed = true;
    p.seed = 99;
    const std::vector<float> base = WideLogits(k.peaked);
    const std::map<int32_t, double> want = Expected(base, p);
    Sampler s(p, static_cast<int>(base.size()));
    const int n = 20000;
    std::map<int32_t, int> got;
    for (int i = 0; i < n; ++i) {
      std::vector<float> l = base;
      const int32_t t = s.Sample(l, {}, 0).token;
      ASSERT_TRUE(want.count(t)) << "token " << t << " is outside the kept set of " << want.size();
      ++got[t];
    }
    // Frequencies of the tokens that carry mass, and of everything else lumped together.
    double rest_want = 0, rest_got = 0;
    for (const auto& [t, q] : want) {
      if (q >= 0.02) {
        EXPECT_NEAR(got[t] / double(n), q, 0.012) << "token " << t;
      } else {
        rest_want += q;
        rest_got += got[t] / double(n);
      }
    }
    EXPECT_NEAR(rest_got, rest_want, 0.015);
  }
}

TEST(Sampler, MinusInfinityIsNeverDrawnAndNaNDoesNotCrash) {
  SamplingParams p;
  p.has_seed = true;
  Sampler s(p, 8);
  for (int i = 0; i < 500; ++i) {
    std::vector<float> l = {0.0f, -INFINITY, 0.5f, -INFINITY, 0.0f, 0.1f, -INFINITY, 0.2f};
    const int32_t t = s.Sample(l, {}, 0).token;
    EXPECT_TRUE(t != 1 && t != 3 && t != 6) << t;
  }
  // NaN logits (a broken model) give some token, under every setting, and never hang.
  for (int setting = 0; setting < 4; ++setting) {
    SamplingParams q = p;
    q.top_p = setting == 1 ? 0.5f : 1.0f;
    q.top_k = setting == 2 ? 2 : 0;
    q.min_p = setting == 3 ? 0.1f : 0.0f;
    q.logprobs = 2;
    for (const auto& l0 : {std::vector<float>{NAN, 1.0f, 2.0f, NAN}, std::vector<float>(4, NAN)}) {
      Sampler sq(q, 4);
      std::vector<float> l = l0;
      const int32_t t = sq.Sample(l, {}, 0).token;
      EXPECT_TRUE(t >= 0 && t < 4) << setting << ": " << t;
    }
  }
}

// Log-probabilities are of the distribution before temperature, whatever the temperature and
// whichever path drew the token (at temperature 1 the draw's probabilities are reused).
TEST(Sampler, LogprobsOfAWideVocabularyAreTheTopByLogit) {
  const std::vector<float> base = WideLogits(true);
  std::vector<std::pair<float, int32_t>> c;
  for (size_t t = 0; t < base.size(); ++t) c.emplace_back(base[t], static_cast<int32_t>(t));
  std::sort(c.begin(), c.end(), [](const auto& a, const auto& b) { return a.first > b.first || (a.first == b.first && a.second < b.second); });
  double z = 0;
  for (float x : base) z += std::exp(static_cast<double>(x) - 16.0);
  const double log_z = 16.0 + std::log(z);
  for (float temperature : {0.0f, 1.0f, 0.5f}) {
    for (float top_p : {1.0f, 0.9f}) {
      SamplingParams p;
      p.temperature = temperature;
      p.top_p = top_p;
      p.logprobs = 20;
      p.has_seed = true;
      Sampler s(p, static_cast<int>(base.size()));
      std::vector<float> l = base;
      const SampleResult r = s.Sample(l, {}, 0);
      ASSERT_EQ(r.top.size(), 20u);
      for (size_t i = 0; i < 20; ++i) {
        EXPECT_EQ(r.top[i].token, c[i].second) << "temperature " << temperature << " top-p " << top_p << " #" << i;
        EXPECT_NEAR(r.top[i].logprob, c[i].first - log_z, 1e-4) << "temperature " << temperature << " #" << i;
      }
      EXPECT_NEAR(r.logprob, base[r.token] - log_z, 1e-4) << "temperature " << temperature;
      if (temperature == 0.0f) {
        EXPECT_EQ(r.token, 17);
      }
    }
  }
}

TEST(Sampler, ValidationNamesTheParameter) {
  SamplingParams p;
  p.temperature = -1;
  EXPECT_NE(ValidateSamplingParams(p).message().find("temperature"), std::string::npos);
  p = {};
  p.top_p = 0;
  EXPECT_NE(ValidateSamplingParams(p).message().find("top_p"), std::string::npos);
  p = {};
  p.logprobs = 50;
  EXPECT_NE(ValidateSamplingParams(p).message().find("logprobs"), std::string::npos);
  p = {};
  p.temperature = NAN;
  EXPECT_FALSE(ValidateSamplingParams(p).ok());
  EXPECT_TRUE(ValidateSamplingParams(SamplingParams{}).ok());
}

}  // namespace
}  // namespace flotilla
