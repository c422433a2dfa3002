#include "autoscaler/histogram.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <map>

namespace flotilla::autoscaler {
namespace {

bool ParseLe(const std::string& s, double* out) {
  if (s == "+Inf" || s == "Inf") {
    *out = std::numeric_limits<double>::infinity();
    return true;
  }
  char* end = nullptr;
  *out = std::strtod(s.c_str(), &end);
  return end != s.c_str() && *end == '\0';
}

Buckets FromMap(const std::map<double, double>& m) {
  Buckets out;
  out.reserve(m.size());
  for (const auto& [le, count] : m) out.push_back({le, count});
  return out;
}

}  // namespace

Buckets ExtractBuckets(const MetricsText& metrics, const std::string& family,
                       const LabelPairs& match) {
  const std::string name = family + "_bucket";
  std::map<double, double> by_le;
  for (const Sample& s : metrics.samples) {
    if (s.name != name || !s.Matches(match)) continue;
    const std::string* le_text = s.Label("le");
    double le = 0;
    if (le_text == nullptr || !ParseLe(*le_text, &le)) continue;
    by_le[le] += s.value;
  }
  return FromMap(by_le);
}

Buckets BucketIncrease(const Buckets& before, const Buckets& after) {
  std::map<double, double> prev;
  for (const Bucket& b : before) prev[b.le] = b.count;
  Buckets out;
  out.reserve(after.size());
  for (const Bucket& b : after) {
    auto it = prev.find(b.le);
    double old = it == prev.end() ? 0 : it->second;
    out.push_back({b.le, b.count >= old ? b.count - old : b.count});
  }
  return out;
}

void AddBuckets(Buckets& a, const Buckets& b) {
  std::map<double, double> sum;
  for (const Bucket& x : a) sum[x.le] += x.count;
  for (const Bucket& x : b) sum[x.le] += x.count;
  a = FromMap(sum);
}

std::optional<double> HistogramQuantile(double q, const Buckets& buckets_in) {
  if (buckets_in.size() < 2 || !std::isinf(buckets_in.back().le)) return std::nullopt;
  if (q < 0) return -std::numeric_limits<double>::infinity();
  if (q > 1) return std::numeric_limits<double>::infinity();
  // Counts from separate scrapes or subtraction can be slightly non-monotonic; PromQL makes
  // them monotonic before interpolating and so do we.
  Buckets buckets = buckets_in;
  for (size_t i = 1; i < buckets.size(); ++i) {
    buckets[i].count = std::max(buckets[i].count, buckets[i - 1].count);
  }
  const double total = buckets.back().count;
  if (total <= 0) return std::nullopt;
  double rank = q * total;
  size_t b = 0;
  while (b < buckets.size() - 1 && buckets[b].count < rank) ++b;
  if (b == buckets.size() - 1) return buckets[buckets.size() - 2].le;
  if (b == 0 && buckets[0].le <= 0) return buckets[0].le;
  double start = 0;
  double end = buckets[b].le;
  double count = buckets[b].count;
  if (b > 0) {
    start = buckets[b - 1].le;
    count -= buckets[b - 1].count;
    rank -= buckets[b - 1].count;
  }
  if (count <= 0) return end;
  return start + (end - start) * (rank / count);
}

}  // namespace flotilla::autoscaler
