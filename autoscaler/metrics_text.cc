#include "autoscaler/metrics_text.h"

#include <cstdlib>
#include <limits>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace flotilla::autoscaler {
namespace {

bool IsNameStart(char c) { return absl::ascii_isalpha(c) || c == '_' || c == ':'; }
bool IsNameChar(char c) { return absl::ascii_isalnum(c) || c == '_' || c == ':'; }

void SkipBlanks(absl::string_view& s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
}

// Consumes a metric or label name from the front of s.
bool ConsumeName(absl::string_view& s, std::string* out) {
  if (s.empty() || !IsNameStart(s.front())) return false;
  size_t n = 1;
  while (n < s.size() && IsNameChar(s[n])) ++n;
  out->assign(s.data(), n);
  s.remove_prefix(n);
  return true;
}

// Consumes a double-quoted label value with the format's three escapes (\\, \", \n).
bool ConsumeQuoted(absl::string_view& s, std::string* out) {
  if (s.empty() || s.front() != '"') return false;
  s.remove_prefix(1);
  out->clear();
  while (!s.empty()) {
    char c = s.front();
    s.remove_prefix(1);
    if (c == '"') return true;
    if (c == '\\') {
      if (s.empty()) return false;
      char e = s.front();
      s.remove_prefix(1);
      if (e == 'n') {
        out->push_back('\n');
      } else {
        out->push_back(e);  // \\ and \" (and, leniently, any other escaped character)
      }
    } else {
      out->push_back(c);
    }
  }
  return false;
}

// Go's strconv.ParseFloat spellings that Prometheus writes: NaN, +Inf, -Inf, plain numbers.
bool ParseValue(absl::string_view token, double* out) {
  std::string t(token);
  if (t == "+Inf" || t == "Inf") {
    *out = std::numeric_limits<double>::infinity();
    return true;
  }
  if (t == "-Inf") {
    *out = -std::numeric_limits<double>::infinity();
    return true;
  }
  if (t == "NaN") {
    *out = std::numeric_limits<double>::quiet_NaN();
    return true;
  }
  char* end = nullptr;
  *out = std::strtod(t.c_str(), &end);
  return end != t.c_str() && *end == '\0';
}

absl::Status LineError(int line_no, absl::string_view why, absl::string_view line) {
  return absl::InvalidArgumentError(
      absl::StrCat("metrics text line ", line_no, ": ", why, ": '", line.substr(0, 120), "'"));
}

MetricType ParseType(absl::string_view t) {
  if (t == "counter") return MetricType::kCounter;
  if (t == "gauge") return MetricType::kGauge;
  if (t == "histogram") return MetricType::kHistogram;
  if (t == "summary") return MetricType::kSummary;
  return MetricType::kUntyped;
}

absl::Status ParseSampleLine(absl::string_view line, int line_no, Sample* sample) {
  absl::string_view s = line;
  if (!ConsumeName(s, &sample->name)) return LineError(line_no, "bad metric name", line);
  SkipBlanks(s);
  if (!s.empty() && s.front() == '{') {
    s.remove_prefix(1);
    while (true) {
      SkipBlanks(s);
      if (!s.empty() && s.front() == '}') {
        s.remove_prefix(1);
        break;
      }
      std::string name, value;
      if (!ConsumeName(s, &name)) return LineError(line_no, "bad label name", line);
      SkipBlanks(s);
      if (s.empty() || s.front() != '=') return LineError(line_no, "expected '='", line);
      s.remove_prefix(1);
      SkipBlanks(s);
      if (!ConsumeQuoted(s, &value)) return LineError(line_no, "bad label value", line);
      sample->labels.emplace_back(std::move(name), std::move(value));
      SkipBlanks(s);
      if (!s.empty() && s.front() == ',') {
        s.remove_prefix(1);
        continue;
      }
      if (!s.empty() && s.front() == '}') {
        s.remove_prefix(1);
        break;
      }
      return LineError(line_no, "expected ',' or '}'", line);
    }
  }
  SkipBlanks(s);
  std::vector<absl::string_view> rest =
      absl::StrSplit(s, absl::ByAnyChar(" \t"), absl::SkipEmpty());
  if (rest.empty() || rest.size() > 2) return LineError(line_no, "expected value [timestamp]", line);
  if (!ParseValue(rest[0], &sample->value)) return LineError(line_no, "bad value", line);
  if (rest.size() == 2) {
    int64_t ts = 0;
    if (!absl::SimpleAtoi(rest[1], &ts)) return LineError(line_no, "bad timestamp", line);
    sample->timestamp_ms = ts;
  }
  return absl::OkStatus();
}

}  // namespace

const std::string* Sample::Label(absl::string_view name) const {
  for (const auto& [k, v] : labels) {
    if (k == name) return &v;
  }
  return nullptr;
}

bool Sample::Matches(const LabelPairs& match) const {
  for (const auto& [k, v] : match) {
    const std::string* have = Label(k);
    if (have == nullptr || *have != v) return false;
  }
  return true;
}

MetricType MetricsText::TypeOf(absl::string_view family) const {
  auto it = types.find(family);
  return it == types.end() ? MetricType::kUntyped : it->second;
}

double MetricsText::Sum(absl::string_view name, const LabelPairs& match, int* found) const {
  double sum = 0;
  int n = 0;
  for (const Sample& s : samples) {
    if (s.name == name && s.Matches(match)) {
      sum += s.value;
      ++n;
    }
  }
  if (found != nullptr) *found = n;
  return sum;
}

absl::StatusOr<MetricSelector> ParseMetricSelector(absl::string_view text) {
  // The selector grammar is the sample grammar without the value: reuse the line parser.
  Sample sample;
  absl::Status st = ParseSampleLine(absl::StrCat(absl::StripAsciiWhitespace(text), " 0"), 1, &sample);
  if (!st.ok()) return absl::InvalidArgumentError(absl::StrCat("bad metric selector '", text, "'"));
  return MetricSelector{std::move(sample.name), std::move(sample.labels)};
}

absl::StatusOr<MetricsText> ParseMetricsText(absl::string_view text) {
  MetricsText out;
  int line_no = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_no;
    line = absl::StripSuffix(line, "\r");
    absl::string_view trimmed = absl::StripLeadingAsciiWhitespace(line);
    if (trimmed.empty()) continue;
    if (trimmed.front() == '#') {
      // "# TYPE name type" declares a family; HELP and free comments carry nothing we use.
      std::vector<absl::string_view> parts =
          absl::StrSplit(trimmed, absl::ByAnyChar(" \t"), absl::SkipEmpty());
      if (parts.size() >= 4 && parts[1] == "TYPE") {
        out.types[std::string(parts[2])] = ParseType(parts[3]);
      }
      continue;
    }
    Sample sample;
    absl::Status st = ParseSampleLine(trimmed, line_no, &sample);
    if (!st.ok()) return st;
    out.samples.push_back(std::move(sample));
  }
  return out;
}

}  // namespace flotilla::autoscaler
