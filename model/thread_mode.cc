#include "model/thread_mode.h"

#include "model/median.h"

#include <algorithm>

namespace flotilla {

ThreadModeChooser::ThreadModeChooser() : ThreadModeChooser(Options{}) {}

ThreadModeChooser::Mode ThreadModeChooser::mode() const {
  if (measuring_ < 0) return settled_;
  return measuring_ == 0 ? Mode::kPool : alternatives_[measuring_ - 1];
}

void ThreadModeChooser::Record(int64_t ns) {
  if (measuring_ < 0) {
    if (--settled_left_ <= 0) measuring_ = 0;
    return;
  }
  samples_.push_back(ns);
  if (static_cast<int>(samples_.size()) < std::max(1, o_.window)) return;
  medians_[static_cast<int>(mode())] = MedianOf(samples_);
  samples_.clear();
  const int64_t pool = medians_[static_cast<int>(Mode::kPool)];
  if (measuring_ == 0 && pool >= o_.short_pass_ns) {
    settled_ = Mode::kPool;
  } else if (measuring_ < static_cast<int>(alternatives_.size())) {
    ++measuring_;
    return;
  } else {
    settled_ = Mode::kPool;
    int64_t best = pool;
    for (Mode m : alternatives_) {
      const int64_t t = medians_[static_cast<int>(m)];
      if (static_cast<double>(t) < o_.margin * static_cast<double>(pool) && t < best) settled_ = m, best = t;
    }
  }
  measuring_ = -1;
  settled_left_ = o_.explore_every;
}

}  // namespace flotilla
