#include "model/share_balance.h"

#include <algorithm>
#include <cmath>

namespace flotilla {

ShareBalance::ShareBalance(int threads, Options o)
    : o_(o), estimate_(std::max(1, threads), 1.0 / std::max(1, threads)), cumulative_(estimate_.size() + 1) {
  Apply(estimate_);
}

void ShareBalance::Apply(const std::vector<double>& fractions) {
  for (size_t i = 0; i < fractions.size(); ++i) cumulative_[i + 1] = cumulative_[i] + fractions[i];
  cumulative_.back() = 1.0;
}

std::vector<double> ShareBalance::fractions() const {
  std::vector<double> f(estimate_.size());
  for (size_t i = 0; i < f.size(); ++i) f[i] = cumulative_[i + 1] - cumulative_[i];
  return f;
}

int64_t ShareBalance::Begin(int64_t units, int tid) const {
  const int n = static_cast<int>(estimate_.size());
  if (tid <= 0) return 0;
  if (tid >= n) return units;
  const auto b = static_cast<int64_t>(std::llround(static_cast<double>(units) * cumulative_[tid]));
  return std::clamp<int64_t>(b, 0, units);
}

void ShareBalance::Record(const std::vector<double>& work, const std::vector<double>& busy_ns) {
  const size_t n = estimate_.size();
  if (n < 2 || work.size() != n || busy_ns.size() != n) return;
  double busy = 0, speeds = 0;
  for (size_t i = 0; i < n; ++i) {
    if (!(work[i] > 0) || !(busy_ns[i] > 0)) return;  // a thread without measured work says nothing
    busy += busy_ns[i];
    speeds += work[i] / busy_ns[i];
  }
  if (busy < o_.min_busy_ns) return;
  const double lo = o_.min_fraction / static_cast<double>(n), hi = 1.0 - lo * static_cast<double>(n - 1);
  double sum = 0;
  for (size_t i = 0; i < n; ++i) {
    const double target = work[i] / busy_ns[i] / speeds;
    estimate_[i] = std::clamp((1 - o_.smoothing) * estimate_[i] + o_.smoothing * target, lo, hi);
    sum += estimate_[i];
  }
  double moved = 0;
  for (size_t i = 0; i < n; ++i) {
    estimate_[i] /= sum;
    moved = std::max(moved, std::abs(estimate_[i] - (cumulative_[i + 1] - cumulative_[i])));
  }
  if (moved > o_.deadband) Apply(estimate_);
}

}  // namespace flotilla
