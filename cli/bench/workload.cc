#include "cli/bench/workload.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace flotilla::cli::bench {

absl::StatusOr<LengthDist> LengthDist::Parse(absl::string_view spec) {
  LengthDist d;
  d.spec_ = std::string(spec);
  for (absl::string_view part : absl::StrSplit(spec, ',', absl::SkipWhitespace())) {
    part = absl::StripAsciiWhitespace(part);
    Component c;
    if (size_t star = part.find('*'); star != absl::string_view::npos) {
      if (!absl::SimpleAtod(part.substr(0, star), &c.weight) || !(c.weight > 0)) {
        return absl::InvalidArgumentError(absl::StrCat("length '", part, "': weight must be a positive number"));
      }
      part = part.substr(star + 1);
    }
    std::vector<absl::string_view> f = absl::StrSplit(part, ':');
    auto num = [&](size_t i, double* out) {
      return i < f.size() && absl::SimpleAtod(f[i], out) && std::isfinite(*out);
    };
    bool ok = false;
    if (f[0] == "fixed" && f.size() == 2) {
      c.kind = Kind::kFixed;
      ok = num(1, &c.a) && c.a >= 1;
    } else if (f[0] == "uniform" && f.size() == 3) {
      c.kind = Kind::kUniform;
      ok = num(1, &c.a) && num(2, &c.b) && c.a >= 1 && c.b >= c.a;
    } else if (f[0] == "normal" && f.size() == 3) {
      c.kind = Kind::kNormal;
      ok = num(1, &c.a) && num(2, &c.b) && c.a >= 1 && c.b >= 0;
    } else if (f[0] == "lognormal" && f.size() == 3) {
      c.kind = Kind::kLognormal;
      ok = num(1, &c.a) && num(2, &c.b) && c.a >= 1 && c.b >= 0;
    } else if (f.size() == 1 && absl::SimpleAtod(f[0], &c.a) && c.a >= 1) {
      c.kind = Kind::kFixed;  // a bare number is fixed:N
      ok = true;
    }
    if (!ok) {
      return absl::InvalidArgumentError(absl::StrCat(
          "length '", part, "': want fixed:N, uniform:LO:HI, normal:MEAN:SD or lognormal:MEDIAN:SIGMA (values >= 1)"));
    }
    d.total_weight_ += c.weight;
    d.components_.push_back(c);
  }
  if (d.components_.empty()) return absl::InvalidArgumentError("empty length distribution");
  return d;
}

int LengthDist::Sample(std::mt19937_64& rng) const {
  const Component* c = &components_.front();
  if (components_.size() > 1) {
    double pick = std::uniform_real_distribution<double>(0, total_weight_)(rng);
    for (const Component& x : components_) {
      c = &x;
      if (pick < x.weight) break;
      pick -= x.weight;
    }
  }
  double v = c->a;
  switch (c->kind) {
    case Kind::kFixed:
      break;
    case Kind::kUniform:
      v = std::uniform_int_distribution<int64_t>(static_cast<int64_t>(c->a), static_cast<int64_t>(c->b))(rng);
      break;
    case Kind::kNormal:
      v = std::normal_distribution<double>(c->a, c->b)(rng);
      break;
    case Kind::kLognormal:
      v = std::lognormal_distribution<double>(std::log(c->a), c->b)(rng);
      break;
  }
  return std::max(1, static_cast<int>(std::lround(std::min(v, 1e9))));
}

int LengthDist::UpperBound() const {
  double hi = 1;
  for (const Component& c : components_) {
    switch (c.kind) {
      case Kind::kFixed:
        hi = std::max(hi, c.a);
        break;
      case Kind::kUniform:
        hi = std::max(hi, c.b);
        break;
      case Kind::kNormal:
        hi = std::max(hi, c.a + 4 * c.b);
        break;
      case Kind::kLognormal:
        hi = std::max(hi, c.a * std::exp(4 * c.b));
        break;
    }
  }
  return static_cast<int>(std::min(hi, 1e9));
}

absl::StatusOr<Scenario> ParseScenario(absl::string_view name) {
  if (name == "concurrency") return Scenario::kConcurrency;
  if (name == "rate") return Scenario::kRate;
  if (name == "burst") return Scenario::kBurst;
  if (name == "ramp") return Scenario::kRamp;
  return absl::InvalidArgumentError(absl::StrCat("scenario '", name, "': want concurrency, rate, burst or ramp"));
}

const char* ScenarioName(Scenario s) {
  switch (s) {
    case Scenario::kConcurrency:
      return "concurrency";
    case Scenario::kRate:
      return "rate";
    case Scenario::kBurst:
      return "burst";
    case Scenario::kRamp:
      return "ramp";
  }
  return "?";
}

absl::Status ValidateShape(const LoadShape& s, double duration_s) {
  if (!(duration_s > 0)) return absl::InvalidArgumentError("duration must be > 0");
  switch (s.scenario) {
    case Scenario::kConcurrency:
      if (s.concurrency < 1) return absl::InvalidArgumentError("--concurrency must be >= 1");
      break;
    case Scenario::kRate:
      if (!(s.rate > 0)) return absl::InvalidArgumentError("--rate must be > 0");
      break;
    case Scenario::kBurst:
      if (s.rate < 0 || !(s.burst_rate > 0)) {
        return absl::InvalidArgumentError("burst needs --rate >= 0 (base) and --burst-rate > 0");
      }
      break;
    case Scenario::kRamp:
      if (s.ramp_from < 0 || !(s.rate > 0)) return absl::InvalidArgumentError("ramp needs --ramp-from >= 0 and --rate > 0");
      break;
  }
  return absl::OkStatus();
}

double RateAt(const LoadShape& s, double t, double duration_s) {
  switch (s.scenario) {
    case Scenario::kConcurrency:
      return 0;
    case Scenario::kRate:
      return s.rate;
    case Scenario::kBurst: {
      const double start = s.burst_start_s >= 0 ? s.burst_start_s : duration_s / 3;
      const double length = s.burst_duration_s >= 0 ? s.burst_duration_s : duration_s / 3;
      return t >= start && t < start + length ? s.burst_rate : s.rate;
    }
    case Scenario::kRamp:
      return s.ramp_from + (s.rate - s.ramp_from) * std::clamp(t / duration_s, 0.0, 1.0);
  }
  return 0;
}

std::vector<double> ArrivalTimes(const LoadShape& shape, double duration_s, size_t max_requests, uint64_t seed) {
  std::vector<double> out;
  if (shape.scenario == Scenario::kConcurrency) return out;
  std::mt19937_64 rng(seed);
  std::exponential_distribution<double> exp1(1.0);
  // Integrate the rate in 1 ms steps (the midpoint rule is exact for the piecewise-constant and
  // linear shapes here, up to the step at a burst's edges).
  constexpr double kStep = 1e-3;
  double integral = 0;
  double next = shape.poisson ? exp1(rng) : 1.0;
  for (double t = 0; t < duration_s; t += kStep) {
    const double step = std::min(kStep, duration_s - t);
    const double rate = RateAt(shape, t + step / 2, duration_s);
    const double after = integral + rate * step;
    while (after >= next) {
      // Linear interpolation inside the step.
      const double frac = rate > 0 ? (next - integral) / (rate * step) : 0;
      out.push_back(t + frac * step);
      if (max_requests > 0 && out.size() >= max_requests) return out;
      next += shape.poisson ? exp1(rng) : 1.0;
    }
    integral = after;
  }
  return out;
}

RequestFactory::RequestFactory(LengthDist prompt_len, LengthDist output_len, int max_context, uint64_t seed)
    : prompt_len_(std::move(prompt_len)), output_len_(std::move(output_len)), max_context_(max_context), rng_(seed) {}

RequestSpec RequestFactory::Next() {
  RequestSpec r;
  r.prompt_len = prompt_len_.Sample(rng_);
  r.max_tokens = output_len_.Sample(rng_);
  if (max_context_ > 0) {
    // Prompts are approximate: leave an eighth of the prompt (and BOS) as a margin so that a
    // prompt that tokenizes longer than asked still fits.
    auto need = [&] { return r.prompt_len + r.prompt_len / 8 + 2 + r.max_tokens; };
    if (need() > max_context_) r.max_tokens = std::max(1, max_context_ - (r.prompt_len + r.prompt_len / 8 + 2));
    while (need() > max_context_ && r.prompt_len > 1) --r.prompt_len;
  }
  r.prompt = MakePrompt(r.prompt_len, rng_);
  return r;
}

std::string MakePrompt(int tokens, std::mt19937_64& rng) {
  // Words that are one token each (after a space) in stories260K's 512-token vocabulary,
  // checked against the gateway's usage.prompt_tokens; in Llama's vocabulary they are too.
  // "Once" is one token too, so a prompt of N words is N tokens (plus BOS).
  static constexpr const char* kWords[] = {
      "the", "a",   "and",  "to",  "was", "he",  "she", "it",  "in",     "they", "her",
      "his", "with", "day", "big", "saw", "said", "you", "we",  "play",  "had",  "so",
      "on",  "for", "but",  "of",  "very", "mom", "up",  "time", "little", "happy"};
  constexpr size_t kCount = sizeof(kWords) / sizeof(kWords[0]);
  std::uniform_int_distribution<size_t> pick(0, kCount - 1);
  std::string out = "Once";
  for (int i = 1; i < tokens; ++i) {
    out += ' ';
    out += kWords[pick(rng)];
  }
  return out;
}

}  // namespace flotilla::cli::bench
