#include "model/thread_mode.h"

#include <algorithm>

namespace flotilla {

int64_t ThreadModeChooser::Median(std::vector<int64_t>& v) {
  std::nth_element(v.begin(), v.begin() + v.size() / 2, v.end());
  return v[v.size() / 2];
}

void ThreadModeChooser::Record(int64_t ns) {
  if (phase_ == Phase::kSettled) {
    if (--settled_left_ <= 0) phase_ = Phase::kMeasurePool;
    return;
  }
  samples_.push_back(ns);
  if (static_cast<int>(samples_.size()) < std::max(1, o_.window)) return;
  const int64_t median = Median(samples_);
  samples_.clear();
  if (phase_ == Phase::kMeasurePool) {
    pool_median_ = median;
    if (median < o_.short_pass_ns) {
      phase_ = Phase::kMeasureSolo;
      return;
    }
    solo_ = false;
  } else {
    solo_median_ = median;
    solo_ = static_cast<double>(median) < o_.solo_margin * static_cast<double>(pool_median_);
  }
  phase_ = Phase::kSettled;
  settled_left_ = o_.explore_every;
}

}  // namespace flotilla
