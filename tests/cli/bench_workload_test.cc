// `flotilla bench`'s workload: length distributions, arrival schedules, request shaping.
#include <cmath>
#include <numeric>

#include "cli/bench/workload.h"
#include "gtest/gtest.h"

namespace flotilla::cli::bench {
namespace {

TEST(LengthDist, ParsesEveryForm) {
  for (const char* spec : {"32", "fixed:32", "uniform:16:64", "normal:64:8", "lognormal:64:0.5",
                           "0.8*uniform:16:64,0.2*uniform:300:400"}) {
    EXPECT_TRUE(LengthDist::Parse(spec).ok()) << spec;
  }
  for (const char* spec : {"", "0", "uniform:64:16", "fixed", "normal:1", "gamma:1:2", "-1*fixed:3", "x*fixed:3",
                           "uniform:0:4"}) {
    EXPECT_FALSE(LengthDist::Parse(spec).ok()) << spec;
  }
}

TEST(LengthDist, SamplesStayInRangeAndMixesFollowTheirWeights) {
  std::mt19937_64 rng(7);
  auto u = *LengthDist::Parse("uniform:16:64");
  for (int i = 0; i < 1000; ++i) {
    const int v = u.Sample(rng);
    ASSERT_GE(v, 16);
    ASSERT_LE(v, 64);
  }
  EXPECT_EQ(u.UpperBound(), 64);
  auto mix = *LengthDist::Parse("0.8*fixed:10,0.2*fixed:400");
  int long_ones = 0;
  for (int i = 0; i < 10000; ++i) long_ones += mix.Sample(rng) == 400;
  EXPECT_NEAR(long_ones / 10000.0, 0.2, 0.02);
  EXPECT_EQ(mix.UpperBound(), 400);
  auto n = *LengthDist::Parse("normal:5:50");  // mostly negative draws: clamped to 1
  for (int i = 0; i < 100; ++i) EXPECT_GE(n.Sample(rng), 1);
}

TEST(Arrivals, PoissonRateGivesTheExpectedCount) {
  LoadShape s;
  s.scenario = Scenario::kRate;
  s.rate = 50;
  const auto t = ArrivalTimes(s, 20, 0, 3);
  // 1000 expected; a Poisson count's SD is ~32.
  EXPECT_NEAR(static_cast<double>(t.size()), 1000, 130);
  EXPECT_TRUE(std::is_sorted(t.begin(), t.end()));
  EXPECT_GE(t.front(), 0);
  EXPECT_LT(t.back(), 20);
  // Inter-arrival gaps of a Poisson process are exponential: coefficient of variation ~1.
  std::vector<double> gaps;
  for (size_t i = 1; i < t.size(); ++i) gaps.push_back(t[i] - t[i - 1]);
  const double mean = std::accumulate(gaps.begin(), gaps.end(), 0.0) / gaps.size();
  double var = 0;
  for (double g : gaps) var += (g - mean) * (g - mean);
  const double cv = std::sqrt(var / gaps.size()) / mean;
  EXPECT_NEAR(cv, 1.0, 0.15);
}

TEST(Arrivals, UniformArrivalsAreEvenlySpacedAndSeedsReproduce) {
  LoadShape s;
  s.scenario = Scenario::kRate;
  s.rate = 10;
  s.poisson = false;
  const auto t = ArrivalTimes(s, 2, 0, 1);
  // At 0.1, 0.2, ..., 1.9, and the 20th on the end (in or out by rounding of the integral).
  ASSERT_GE(t.size(), 19u);
  ASSERT_LE(t.size(), 20u);
  EXPECT_NEAR(t[1] - t[0], 0.1, 1e-3);
  s.poisson = true;
  EXPECT_EQ(ArrivalTimes(s, 5, 0, 42), ArrivalTimes(s, 5, 0, 42));
  EXPECT_NE(ArrivalTimes(s, 5, 0, 42), ArrivalTimes(s, 5, 0, 43));
  EXPECT_EQ(ArrivalTimes(s, 100, 7, 1).size(), 7u);  // max_requests
}

TEST(Arrivals, BurstConcentratesArrivalsInItsWindow) {
  LoadShape s;
  s.scenario = Scenario::kBurst;
  s.rate = 5;
  s.burst_rate = 100;
  s.burst_start_s = 10;
  s.burst_duration_s = 5;
  const auto t = ArrivalTimes(s, 30, 0, 5);
  size_t in = 0;
  for (double x : t) in += x >= 10 && x < 15;
  EXPECT_NEAR(static_cast<double>(in), 500, 80);
  EXPECT_NEAR(static_cast<double>(t.size() - in), 125, 40);
  EXPECT_DOUBLE_EQ(RateAt(s, 12, 30), 100);
  EXPECT_DOUBLE_EQ(RateAt(s, 16, 30), 5);
  s.burst_start_s = -1;  // default: the middle third
  s.burst_duration_s = -1;
  EXPECT_DOUBLE_EQ(RateAt(s, 15, 30), 100);
  EXPECT_DOUBLE_EQ(RateAt(s, 5, 30), 5);
}

TEST(Arrivals, RampGrowsLinearly) {
  LoadShape s;
  s.scenario = Scenario::kRamp;
  s.ramp_from = 0;
  s.rate = 100;
  EXPECT_DOUBLE_EQ(RateAt(s, 5, 10), 50);
  const auto t = ArrivalTimes(s, 10, 0, 9);
  size_t first_half = 0;
  for (double x : t) first_half += x < 5;
  // Integral of the rate: 125 in the first half, 375 in the second.
  EXPECT_NEAR(static_cast<double>(first_half), 125, 40);
  EXPECT_NEAR(static_cast<double>(t.size()), 500, 80);
  EXPECT_TRUE(ArrivalTimes(LoadShape{}, 10, 0, 1).empty());  // closed loop: no schedule
}

TEST(Shape, ValidationNamesTheFlag) {
  LoadShape s;
  s.scenario = Scenario::kBurst;
  EXPECT_FALSE(ValidateShape(s, 10).ok());
  s.burst_rate = 10;
  EXPECT_TRUE(ValidateShape(s, 10).ok());
  EXPECT_FALSE(ValidateShape(s, 0).ok());
  EXPECT_FALSE(ParseScenario("spike").ok());
  EXPECT_EQ(*ParseScenario("ramp"), Scenario::kRamp);
}

TEST(Requests, FitTheContextOutputFirst) {
  RequestFactory f(*LengthDist::Parse("400"), *LengthDist::Parse("200"), 512, 1);
  const RequestSpec r = f.Next();
  EXPECT_EQ(r.prompt_len, 400);
  EXPECT_LE(r.prompt_len + r.prompt_len / 8 + 2 + r.max_tokens, 512);
  EXPECT_GE(r.max_tokens, 1);
  RequestFactory huge(*LengthDist::Parse("5000"), *LengthDist::Parse("10"), 512, 1);
  const RequestSpec h = huge.Next();
  EXPECT_EQ(h.max_tokens, 1);
  EXPECT_LE(h.prompt_len + h.prompt_len / 8 + 2 + h.max_tokens, 512);
  RequestFactory free(*LengthDist::Parse("5000"), *LengthDist::Parse("10"), 0, 1);
  EXPECT_EQ(free.Next().prompt_len, 5000);
}

TEST(Requests, PromptsHaveTheAskedNumberOfWordsAndDiffer) {
  std::mt19937_64 rng(1);
  const std::string a = MakePrompt(50, rng);
  const std::string b = MakePrompt(50, rng);
  EXPECT_EQ(std::count(a.begin(), a.end(), ' '), 49);
  EXPECT_EQ(a.rfind("Once", 0), 0u);
  EXPECT_NE(a, b);
  EXPECT_EQ(MakePrompt(1, rng), "Once");
}

}  // namespace
}  // namespace flotilla::cli::bench
