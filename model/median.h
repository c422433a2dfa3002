// The median of a handful of timings, for the executor's timing policies (ThreadModeChooser,
// SoloFallback): the upper middle element for an even count, so one stalled sample of a window
// never decides it.
#pragma once

#include <algorithm>
#include <vector>

namespace flotilla {

template <class T>
T MedianOf(std::vector<T> v) {
  std::nth_element(v.begin(), v.begin() + v.size() / 2, v.end());
  return v[v.size() / 2];
}

}  // namespace flotilla
