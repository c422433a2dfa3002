// What `flotilla bench` sends and when: length distributions for prompts and outputs, the
// load shape (closed-loop concurrency, or open-loop arrivals at a rate that may change over
// time: constant, a burst, a ramp), and synthetic prompts. Pure and seeded: the same flags
// give the same requests at the same offsets, so runs can be compared.
#pragma once

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace flotilla::cli::bench {

// A distribution of lengths (tokens), written as comma-separated weighted components:
//   fixed:N | uniform:LO:HI | normal:MEAN:SD | lognormal:MEDIAN:SIGMA
//   0.8*uniform:16:64,0.2*uniform:256:400     (a long-context mix: 20 % long prompts)
// Samples are rounded and clamped to >= 1.
class LengthDist {
 public:
  static absl::StatusOr<LengthDist> Parse(absl::string_view spec);
  int Sample(std::mt19937_64& rng) const;
  // The largest value a sample can take (for context-fit checks); normal and lognormal
  // components count their mean + 4 SD / median * e^(4 sigma).
  int UpperBound() const;
  const std::string& spec() const { return spec_; }

 private:
  enum class Kind { kFixed, kUniform, kNormal, kLognormal };
  struct Component {
    double weight = 1;
    Kind kind = Kind::kFixed;
    double a = 0;
    double b = 0;
  };
  std::vector<Component> components_;
  double total_weight_ = 0;
  std::string spec_;
};

enum class Scenario {
  kConcurrency,  // closed loop: N requests in flight, each completion starts the next
  kRate,         // open loop: arrivals at `rate` per second
  kBurst,        // open loop: `rate`, then `burst_rate` for a window, then `rate` again
  kRamp,         // open loop: from `ramp_from` to `rate` linearly over the run
};

absl::StatusOr<Scenario> ParseScenario(absl::string_view name);
const char* ScenarioName(Scenario s);

struct LoadShape {
  Scenario scenario = Scenario::kConcurrency;
  int concurrency = 8;
  double rate = 10;             // requests/s (rate, burst base, ramp end)
  double burst_rate = 0;        // burst: requests/s during the burst
  double burst_start_s = -1;    // burst: default a third of the duration
  double burst_duration_s = -1; // burst: default a third of the duration
  double ramp_from = 0;         // ramp: requests/s at the start
  bool poisson = true;          // false: evenly spaced arrivals at the same rate
};

absl::Status ValidateShape(const LoadShape& shape, double duration_s);

// The arrival rate at offset t of a run of `duration_s` (open-loop scenarios).
double RateAt(const LoadShape& shape, double t, double duration_s);

// Arrival offsets in [0, duration_s), at most max_requests (0: no limit). Poisson arrivals of
// a time-varying rate by inversion: the k-th arrival is where the integrated rate reaches the
// sum of k Exp(1) draws (or exactly k for evenly spaced arrivals).
std::vector<double> ArrivalTimes(const LoadShape& shape, double duration_s, size_t max_requests, uint64_t seed);

struct RequestSpec {
  std::string prompt;
  int prompt_len = 0;  // the length asked for (tokens, approximately: see MakePrompt)
  int max_tokens = 0;
};

// Makes requests from the two distributions. When max_context > 0 a pair that would not fit
// (prompt + output + a margin for tokenization) is shrunk: the output first, down to 1 token,
// then the prompt.
class RequestFactory {
 public:
  RequestFactory(LengthDist prompt_len, LengthDist output_len, int max_context, uint64_t seed);
  RequestSpec Next();

 private:
  LengthDist prompt_len_;
  LengthDist output_len_;
  int max_context_;
  std::mt19937_64 rng_;
};

// A TinyStories-like prompt of about `tokens` tokens: short common words, most of them one
// token in a small SentencePiece vocabulary and in Llama's; each request gets a different word
// sequence so the prefix cache cannot serve one from another (beyond the first word).
std::string MakePrompt(int tokens, std::mt19937_64& rng);

}  // namespace flotilla::cli::bench
