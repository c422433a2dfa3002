#include "autoscaler/scrape_reader.h"

#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "autoscaler/fleet_file.h"
#include "autoscaler/http_client.h"
#include "autoscaler/metrics_text.h"

namespace flotilla::autoscaler {
namespace {

absl::StatusOr<MetricsText> Scrape(const std::string& url, double timeout_s) {
  HttpRequest req;
  req.url = url;
  req.headers = {{"Accept", "text/plain;version=0.0.4"}};
  HttpOptions opts;
  opts.timeout_s = timeout_s;
  absl::StatusOr<HttpResponse> resp = SendHttp(req, opts);
  if (!resp.ok()) return absl::UnavailableError(absl::StrCat("scraping ", url, ": ", resp.status().message()));
  if (resp->status != 200) {
    return absl::UnavailableError(absl::StrCat("scraping ", url, ": HTTP ", resp->status));
  }
  absl::StatusOr<MetricsText> parsed = ParseMetricsText(resp->body);
  if (!parsed.ok()) {
    return absl::DataLossError(absl::StrCat("scraping ", url, ": ", parsed.status().message()));
  }
  return parsed;
}

}  // namespace

TargetSource FleetFileTargets(std::string path) {
  return [path = std::move(path)]() -> absl::StatusOr<std::vector<ScrapeTarget>> {
    absl::StatusOr<std::vector<FleetEntry>> entries = ReadFleetFile(path);
    if (!entries.ok()) {
      // No file yet means no worker has become ready yet, which is a fleet of zero.
      if (absl::IsNotFound(entries.status())) return std::vector<ScrapeTarget>{};
      return entries.status();
    }
    std::vector<ScrapeTarget> out;
    for (const FleetEntry& e : *entries) {
      if (e.metrics_address.empty()) continue;
      out.push_back({e.model, absl::StrCat("http://", e.metrics_address, "/metrics")});
    }
    return out;
  };
}

TargetSource StaticTargets(std::vector<ScrapeTarget> targets) {
  return [targets = std::move(targets)]() -> absl::StatusOr<std::vector<ScrapeTarget>> {
    return targets;
  };
}

ScrapeReader::ScrapeReader(ScrapeReaderOptions options) : options_(std::move(options)) {}

template <typename T>
const ScrapeReader::Snapshot<T>* ScrapeReader::Remember(
    std::map<std::string, std::deque<Snapshot<T>>>& history, const std::string& key, TimeNs now,
    T value) {
  auto& h = history[key];
  h.push_back({now, std::move(value)});
  const TimeNs window = static_cast<TimeNs>(options_.window_s * kNsPerSec);
  while (h.size() > 1 && now - h.front().at > window) h.pop_front();
  if (h.size() < 2) return nullptr;
  return &h.front();
}

absl::StatusOr<PoolSignals> ScrapeReader::Read(const std::string& pool) {
  const TimeNs now = options_.clock->Now();
  absl::StatusOr<std::vector<ScrapeTarget>> targets = options_.workers();
  if (!targets.ok()) {
    return absl::UnavailableError(absl::StrCat("listing scrape targets: ", targets.status().message()));
  }
  PoolSignals s;
  s.pool = pool;
  s.read_at = now;
  const LabelPairs match = {{options_.names.model_label, pool}};
  const MetricNames& n = options_.names;
  Buckets ttft_increase;
  bool have_ttft = false;
  for (const ScrapeTarget& t : *targets) {
    if (t.pool != pool) continue;
    absl::StatusOr<MetricsText> m = Scrape(t.url, options_.timeout_s);
    if (!m.ok()) return m.status();
    double values[3];
    const std::string* names[3] = {&n.running, &n.waiting, &n.kv_usage};
    for (int i = 0; i < 3; ++i) {
      int found = 0;
      values[i] = m->Sum(*names[i], match, &found);
      if (found == 0) {
        return absl::NotFoundError(
            absl::StrCat(t.url, " has no ", *names[i], "{", n.model_label, "=\"", pool, "\"}"));
      }
    }
    s.running += values[0];
    s.waiting += values[1];
    s.kv_usage_sum += values[2];
    ++s.reporting;
    Buckets buckets = ExtractBuckets(*m, n.ttft, match);
    if (!buckets.empty()) {
      const Buckets now_buckets = buckets;
      const auto* base = Remember(ttft_history_, absl::StrCat(t.url, "|", pool), now, std::move(buckets));
      if (base != nullptr) {
        AddBuckets(ttft_increase, BucketIncrease(base->value, now_buckets));
        have_ttft = true;
      }
    }
  }
  if (have_ttft) s.ttft_p95_s = HistogramQuantile(0.95, ttft_increase);
  // Activation problems are not fatal: with replicas up the worker figures suffice, and at
  // zero the policy holds when activation_known stays false.
  (void)ReadActivation(pool, now, &s);

  // Forget workers not seen for a while (scaled away) so history does not grow.
  const TimeNs forget = static_cast<TimeNs>(2 * options_.window_s * kNsPerSec);
  for (auto it = ttft_history_.begin(); it != ttft_history_.end();) {
    it = (it->second.empty() || now - it->second.back().at > forget) ? ttft_history_.erase(it) : std::next(it);
  }
  // counter_history_ is bounded (fixed gateway URLs x pools x names) and is kept: forgetting a
  // series would make its return look like a burst of new demand.
  return s;
}

absl::Status ScrapeReader::ReadActivation(const std::string& pool, TimeNs now, PoolSignals* out) {
  const LabelPairs match = {{options_.names.model_label, pool}};
  absl::Status last = absl::OkStatus();
  for (const std::string& url : options_.activation_urls) {
    absl::StatusOr<MetricsText> m = Scrape(url, options_.timeout_s);
    if (!m.ok()) {
      last = m.status();
      continue;
    }
    out->activation_known = true;
    const bool url_seen_before = !seen_activation_urls_.insert(url).second;
    for (const std::string& spec : options_.names.activation) {
      absl::StatusOr<MetricSelector> sel = ParseMetricSelector(spec);
      if (!sel.ok()) return sel.status();
      const std::string& name = sel->name;
      LabelPairs series_match = sel->labels;
      series_match.insert(series_match.end(), match.begin(), match.end());
      int found = 0;
      const double v = m->Sum(name, series_match, &found);
      if (found == 0) continue;  // this gateway has not seen the model: no demand from it
      const bool counter = m->TypeOf(name) == MetricType::kCounter ||
                           (m->TypeOf(name) == MetricType::kUntyped && absl::EndsWith(name, "_total"));
      if (!counter) {
        out->activation += v;
        continue;
      }
      const std::string key = absl::StrCat(url, "|", pool, "|", spec);
      const bool new_series = counter_history_.find(key) == counter_history_.end();
      const auto* base = Remember(counter_history_, key, now, v);
      if (base != nullptr) {
        out->activation += v >= base->value ? v - base->value : v;
      } else if (new_series && url_seen_before) {
        // A gateway we already read grew this series since: it started from zero. (Gateways
        // create a labelled counter on its first increment; missing that increment would
        // miss the very request that should wake a pool at zero.)
        out->activation += v;
      }
    }
  }
  return last;
}

}  // namespace flotilla::autoscaler
