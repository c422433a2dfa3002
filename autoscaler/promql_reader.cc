#include "autoscaler/promql_reader.h"

#include <cmath>
#include <cstdlib>
#include <utility>

#include <nlohmann/json.hpp>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "autoscaler/http_client.h"
#include "autoscaler/metrics_text.h"

namespace flotilla::autoscaler {
namespace {

// A PromQL string literal: backslashes and quotes escaped.
std::string Quote(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '\\' || c == '"') out.push_back('\\');
    out.push_back(c);
  }
  out.push_back('"');
  return out;
}

std::optional<double> SampleValue(const nlohmann::json& pair) {
  // [ <unix time>, "<value>" ]; the value is a string so that NaN and Inf survive JSON.
  if (!pair.is_array() || pair.size() != 2 || !pair[1].is_string()) return std::nullopt;
  const std::string v = pair[1].get<std::string>();
  char* end = nullptr;
  double d = std::strtod(v.c_str(), &end);
  if (end == v.c_str()) return std::nullopt;
  return d;
}

}  // namespace

absl::StatusOr<QueryValue> ParsePromqlResponse(int http_status, const std::string& body) {
  nlohmann::json j = nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::DataLossError(absl::StrCat("Prometheus answered HTTP ", http_status, " with non-JSON: ",
                                            body.substr(0, 200)));
  }
  if (j.value("status", "") != "success") {
    return absl::UnavailableError(absl::StrCat("Prometheus query failed (HTTP ", http_status, "): ",
                                               j.value("errorType", "?"), ": ", j.value("error", "?")));
  }
  const nlohmann::json& data = j["data"];
  if (!data.is_object()) return absl::DataLossError("Prometheus response without data");
  const std::string type = data.value("resultType", "");
  const nlohmann::json& result = data["result"];
  QueryValue out;
  if (type == "scalar") {
    out.series = 1;
    std::optional<double> v = SampleValue(result);
    if (v && !std::isnan(*v)) out.value = v;
    return out;
  }
  if (type != "vector" || !result.is_array()) {
    return absl::InvalidArgumentError(absl::StrCat("want an instant vector, got ", type));
  }
  double sum = 0;
  bool any = false;
  for (const nlohmann::json& series : result) {
    ++out.series;
    std::optional<double> v = SampleValue(series.contains("value") ? series["value"] : nlohmann::json());
    if (v && !std::isnan(*v)) {
      sum += *v;
      any = true;
    }
  }
  if (any) out.value = sum;
  return out;
}

PromqlReader::PromqlReader(PromqlReaderOptions options) : options_(std::move(options)) {}

std::string PromqlReader::Selector(const std::string& pool) const {
  std::string sel = absl::StrCat("{", options_.names.model_label, "=", Quote(pool));
  if (!options_.extra_selector.empty()) absl::StrAppend(&sel, ",", options_.extra_selector);
  sel += "}";
  return sel;
}

absl::StatusOr<QueryValue> PromqlReader::Query(const std::string& promql) const {
  HttpRequest req;
  req.url = JoinUrl(options_.url, absl::StrCat("/api/v1/query?query=", UrlEncode(promql)));
  HttpOptions opts;
  opts.timeout_s = options_.timeout_s;
  absl::StatusOr<HttpResponse> resp = SendHttp(req, opts);
  if (!resp.ok()) {
    return absl::UnavailableError(absl::StrCat("Prometheus at ", options_.url, ": ", resp.status().message()));
  }
  absl::StatusOr<QueryValue> v = ParsePromqlResponse(resp->status, resp->body);
  if (!v.ok()) return absl::Status(v.status().code(), absl::StrCat(v.status().message(), " [", promql, "]"));
  return v;
}

absl::StatusOr<PoolSignals> PromqlReader::Read(const std::string& pool) {
  const MetricNames& n = options_.names;
  const std::string sel = Selector(pool);
  const std::string window = absl::StrFormat("%ds", static_cast<int>(std::ceil(options_.window_s)));
  PoolSignals s;
  s.pool = pool;
  s.read_at = options_.clock->Now();

  // Replicas reporting, and how old their newest samples are: a scrape that stopped leaves
  // no series (staleness markers), a slow one shows here.
  absl::StatusOr<QueryValue> count = Query(absl::StrCat("count(", n.running, sel, ")"));
  if (!count.ok()) return count.status();
  s.reporting = static_cast<int>(count->value.value_or(0));
  if (s.reporting > 0) {
    absl::StatusOr<QueryValue> age = Query(absl::StrCat("max(time() - timestamp(", n.running, sel, "))"));
    if (!age.ok()) return age.status();
    s.max_sample_age_s = age->value.value_or(0);
    struct {
      const std::string* name;
      double* into;
    } gauges[] = {{&n.running, &s.running}, {&n.waiting, &s.waiting}, {&n.kv_usage, &s.kv_usage_sum}};
    for (auto& g : gauges) {
      absl::StatusOr<QueryValue> v = Query(absl::StrCat("sum(", *g.name, sel, ")"));
      if (!v.ok()) return v.status();
      if (!v->value) {
        return absl::NotFoundError(absl::StrCat("no ", *g.name, sel, " while ", s.reporting, " replicas report"));
      }
      *g.into = *v->value;
    }
    absl::StatusOr<QueryValue> p95 = Query(absl::StrCat("histogram_quantile(0.95, sum by (le) (rate(", n.ttft,
                                                        "_bucket", sel, "[", window, "])))"));
    if (!p95.ok()) return p95.status();
    s.ttft_p95_s = p95->value;  // NaN (no first tokens in the window) reads as none
  }
  // Activation: a failure here is not fatal (see ScrapeReader); absent series mean no demand.
  s.activation_known = true;
  for (const std::string& spec : n.activation) {
    absl::StatusOr<MetricSelector> parsed = ParseMetricSelector(spec);
    if (!parsed.ok()) return parsed.status();
    const std::string& name = parsed->name;
    std::string gw_sel = absl::StrCat("{", n.model_label, "=", Quote(pool));
    for (const auto& [k, v] : parsed->labels) absl::StrAppend(&gw_sel, ",", k, "=", Quote(v));
    gw_sel += "}";
    const bool counter = absl::EndsWith(name, "_total");
    const std::string q = counter ? absl::StrCat("sum(increase(", name, gw_sel, "[", window, "]))")
                                  : absl::StrCat("sum(", name, gw_sel, ")");
    absl::StatusOr<QueryValue> v = Query(q);
    if (!v.ok()) {
      s.activation_known = false;
      continue;
    }
    s.activation += v->value.value_or(0);
  }
  return s;
}

}  // namespace flotilla::autoscaler
