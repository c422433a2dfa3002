#include "cli/bench/stats.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace flotilla::cli::bench {

double Percentile(const std::vector<double>& sorted, double q) {
  if (sorted.empty()) return 0;
  const double pos = std::clamp(q, 0.0, 1.0) * static_cast<double>(sorted.size() - 1);
  const size_t lo = static_cast<size_t>(std::floor(pos));
  const size_t hi = std::min(lo + 1, sorted.size() - 1);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - static_cast<double>(lo));
}

Percentiles Summarize(std::vector<double> v) {
  Percentiles p;
  p.n = v.size();
  if (v.empty()) return p;
  std::sort(v.begin(), v.end());
  p.mean = std::accumulate(v.begin(), v.end(), 0.0) / static_cast<double>(v.size());
  p.p50 = Percentile(v, 0.50);
  p.p90 = Percentile(v, 0.90);
  p.p95 = Percentile(v, 0.95);
  p.p99 = Percentile(v, 0.99);
  p.max = v.back();
  return p;
}

namespace {

// Time per output token after the first: (e2e - ttft) / (n - 1); undefined for one token.
bool Tpot(const RequestRecord& r, double* out) {
  if (r.output_tokens < 2 || r.ttft_s < 0) return false;
  *out = (r.e2e_s - r.ttft_s) / (r.output_tokens - 1);
  return true;
}

}  // namespace

bool MeetsSlo(const RequestRecord& r, const Slo& slo) {
  if (!r.ok) return false;
  if (slo.ttft_ms > 0 && (r.ttft_s < 0 || r.ttft_s * 1e3 > slo.ttft_ms)) return false;
  double tpot = 0;
  if (slo.tpot_ms > 0 && Tpot(r, &tpot) && tpot * 1e3 > slo.tpot_ms) return false;
  if (slo.e2e_ms > 0 && r.e2e_s * 1e3 > slo.e2e_ms) return false;
  return true;
}

BenchReport BuildReport(const std::vector<RequestRecord>& records, const Slo& slo) {
  BenchReport rep;
  rep.slo = slo;
  rep.sent = records.size();
  std::vector<double> ttft, itl, tpot, e2e, prompt, output;
  double first = 0, last = 0;
  bool any = false;
  size_t good = 0;
  for (const RequestRecord& r : records) {
    if (!any || r.start_s < first) first = r.start_s;
    last = std::max(last, r.start_s + r.e2e_s);
    any = true;
    if (r.attempts > 1) ++rep.retried;
    if (!r.ok) {
      ++rep.failed;
      ++rep.errors[r.error.empty() ? "UNKNOWN" : r.error];
      continue;
    }
    ++rep.completed;
    rep.total_prompt_tokens += r.prompt_tokens;
    rep.total_output_tokens += r.output_tokens;
    prompt.push_back(r.prompt_tokens);
    output.push_back(r.output_tokens);
    if (r.ttft_s >= 0) ttft.push_back(r.ttft_s * 1e3);
    for (double g : r.itl_s) itl.push_back(g * 1e3);
    double t = 0;
    if (Tpot(r, &t)) tpot.push_back(t * 1e3);
    e2e.push_back(r.e2e_s * 1e3);
    if (MeetsSlo(r, slo)) ++good;
  }
  rep.duration_s = any ? last - first : 0;
  if (rep.duration_s > 0) {
    rep.request_throughput = rep.completed / rep.duration_s;
    rep.output_throughput = rep.total_output_tokens / rep.duration_s;
    rep.total_token_throughput = (rep.total_prompt_tokens + rep.total_output_tokens) / rep.duration_s;
    rep.goodput = good / rep.duration_s;
  }
  rep.slo_attainment = rep.sent > 0 ? static_cast<double>(good) / rep.sent : 0;
  rep.prompt_tokens = Summarize(prompt);
  rep.output_tokens = Summarize(output);
  rep.ttft_ms = Summarize(ttft);
  rep.itl_ms = Summarize(itl);
  rep.tpot_ms = Summarize(tpot);
  rep.e2e_ms = Summarize(e2e);
  if (any) {
    rep.completions_per_second.assign(static_cast<size_t>(std::ceil(rep.duration_s)) + 1, 0);
    for (const RequestRecord& r : records) {
      if (!r.ok) continue;
      const size_t sec = static_cast<size_t>(std::max(0.0, r.start_s + r.e2e_s - first));
      if (sec < rep.completions_per_second.size()) rep.completions_per_second[sec] += 1;
    }
  }
  return rep;
}

namespace {

using Json = nlohmann::json;

double Round3(double v) { return std::round(v * 1000) / 1000; }

Json PercentilesJson(const Percentiles& p) {
  return Json{{"n", p.n},           {"mean", Round3(p.mean)}, {"p50", Round3(p.p50)}, {"p90", Round3(p.p90)},
              {"p95", Round3(p.p95)}, {"p99", Round3(p.p99)},  {"max", Round3(p.max)}};
}

}  // namespace

std::string ReportToJson(const BenchReport& r) {
  Json shape = Json::object();
  for (const auto& [k, v] : r.shape) shape[k] = v;
  Json errors = Json::object();
  for (const auto& [k, v] : r.errors) errors[k] = v;
  Json j = {
      {"api", r.api},
      {"model", r.model},
      {"scenario", r.scenario},
      {"shape", shape},
      {"prompt_len", r.prompt_len},
      {"output_len", r.output_len},
      {"slo", {{"ttft_ms", r.slo.ttft_ms}, {"tpot_ms", r.slo.tpot_ms}, {"e2e_ms", r.slo.e2e_ms}}},
      {"requests", {{"sent", r.sent}, {"completed", r.completed}, {"failed", r.failed}, {"retried", r.retried}}},
      {"errors", errors},
      {"duration_s", Round3(r.duration_s)},
      {"request_throughput", Round3(r.request_throughput)},
      {"output_throughput", Round3(r.output_throughput)},
      {"total_token_throughput", Round3(r.total_token_throughput)},
      {"goodput", Round3(r.goodput)},
      {"slo_attainment", Round3(r.slo_attainment)},
      {"total_prompt_tokens", r.total_prompt_tokens},
      {"total_output_tokens", r.total_output_tokens},
      {"prompt_tokens", PercentilesJson(r.prompt_tokens)},
      {"output_tokens", PercentilesJson(r.output_tokens)},
      {"ttft_ms", PercentilesJson(r.ttft_ms)},
      {"itl_ms", PercentilesJson(r.itl_ms)},
      {"tpot_ms", PercentilesJson(r.tpot_ms)},
      {"e2e_ms", PercentilesJson(r.e2e_ms)},
      {"completions_per_second", r.completions_per_second},
  };
  return j.dump(2) + "\n";
}

std::string ReportToText(const BenchReport& r) {
  std::string out;
  absl::StrAppendFormat(&out, "%s via %s, model %s; prompt %s, output %s\n", r.scenario, r.api, r.model, r.prompt_len,
                        r.output_len);
  absl::StrAppendFormat(&out, "requests: %zu sent, %zu completed, %zu failed", r.sent, r.completed, r.failed);
  if (r.retried > 0) absl::StrAppendFormat(&out, ", %zu retried", r.retried);
  out += "\n";
  for (const auto& [code, n] : r.errors) absl::StrAppendFormat(&out, "  %-20s %zu\n", code, n);
  absl::StrAppendFormat(&out, "duration: %.2f s\n", r.duration_s);
  absl::StrAppendFormat(&out, "throughput: %.2f req/s, %.1f output tok/s, %.1f total tok/s\n", r.request_throughput,
                        r.output_throughput, r.total_token_throughput);
  if (r.slo.any()) {
    absl::StrAppendFormat(&out, "goodput: %.2f req/s (%.1f%% of requests met ttft<=%gms tpot<=%gms e2e<=%gms; 0 = unchecked)\n",
                          r.goodput, 100 * r.slo_attainment, r.slo.ttft_ms, r.slo.tpot_ms, r.slo.e2e_ms);
  }
  absl::StrAppendFormat(&out, "tokens: prompt mean %.1f (max %.0f), output mean %.1f\n", r.prompt_tokens.mean,
                        r.prompt_tokens.max, r.output_tokens.mean);
  absl::StrAppendFormat(&out, "%-10s %9s %9s %9s %9s %9s %9s\n", "ms", "mean", "p50", "p90", "p95", "p99", "max");
  auto row = [&](const char* name, const Percentiles& p) {
    absl::StrAppendFormat(&out, "%-10s %9.2f %9.2f %9.2f %9.2f %9.2f %9.2f\n", name, p.mean, p.p50, p.p90, p.p95, p.p99,
                          p.max);
  };
  row("ttft", r.ttft_ms);
  row("itl", r.itl_ms);
  row("tpot", r.tpot_ms);
  row("e2e", r.e2e_ms);
  return out;
}

}  // namespace flotilla::cli::bench
