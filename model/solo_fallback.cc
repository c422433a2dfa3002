#include "model/solo_fallback.h"

#include <algorithm>

#include "model/median.h"

namespace flotilla {

std::vector<double> SoloFallback::Comparable(const std::vector<Pass>& of, const std::vector<Pass>& in) {
  std::vector<double> out;
  for (const Pass& p : of) {
    if (std::any_of(in.begin(), in.end(), [&](const Pass& q) { return q.tokens == p.tokens; })) {
      out.push_back(p.ns_per_token);
    }
  }
  return out;
}

namespace {
double PerToken(int64_t tokens, int64_t ns) {
  return static_cast<double>(ns) / static_cast<double>(std::max<int64_t>(1, tokens));
}
}  // namespace

bool SoloFallback::RecordPool(int64_t tokens, int64_t ns, int64_t slow, int64_t barriers) {
  pool_.push_back({tokens, PerToken(tokens, ns)});
  if (static_cast<int>(pool_.size()) > std::max(1, o_.history)) pool_.erase(pool_.begin());
  if (slow == 0) stretch_ = 0;
  if (left_ > 0) {
    --left_;
    return false;
  }
  // A few slow barriers can be honest imbalance in a long pass; many mean a late peer.
  if (slow <= std::max<int64_t>(2, barriers / 8)) return false;
  state_ = State::kTrial;
  left_ = std::max(1, o_.trial);
  alone_.clear();
  trial_pool_ = pool_;
  pool_.clear();  // the next trial compares with passes after this one
  ++trials_;
  return true;
}

bool SoloFallback::RecordAlone(int64_t tokens, int64_t ns) {
  if (state_ == State::kStretch) {
    if (--left_ <= 0) {
      state_ = State::kPool;
      left_ = 0;
    }
    return false;
  }
  if (state_ != State::kTrial) return false;
  alone_.push_back({tokens, PerToken(tokens, ns)});
  if (--left_ > 0) return false;
  const std::vector<double> alone = Comparable(alone_, trial_pool_), pool = Comparable(trial_pool_, alone_);
  if (alone.empty()) {  // nothing to compare with: measure again from the next late pool pass
    state_ = State::kPool;
    left_ = 0;
    return false;
  }
  const int stretch = stretch_ > 0 ? stretch_ : o_.first_stretch;
  stretch_ = std::min(o_.max_stretch, 2 * stretch);
  left_ = stretch;
  if (MedianOf(alone) < o_.margin * MedianOf(pool)) {
    state_ = State::kStretch;
    ++won_;
    return true;
  }
  state_ = State::kPool;  // the pool stays, its slow barriers ignored for the stretch
  return false;
}

}  // namespace flotilla
