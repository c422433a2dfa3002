#include "model/sampler.h"

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
