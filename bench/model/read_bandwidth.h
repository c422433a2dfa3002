// The memory read bandwidth a decode step can hope for: a streaming-read loop (AVX2 loads summed
// into registers) over a buffer much larger than the last-level cache, on 1..N threads.
#pragma once

#include <cstdint>

#include "common/huge_pages.h"

namespace flotilla::bench {

// A buffer filled once, measured as often as wanted: to interleave bandwidth measurements with
// the work they bound (the host's bandwidth drifts from one second to the next).
class ReadBandwidthProbe {
 public:
  // `bytes` rounded down to 4 KiB, on huge pages (as the CPU executor keeps its weights: the
  // bound is the best streaming read this machine gives, not one slowed by a TLB miss every
  // 4 KiB); every page committed with distinct content.
  ReadBandwidthProbe(int64_t bytes, int threads);
  bool ok() const { return mem_.data() != nullptr; }
  // Best of `reps` passes split over the probe's threads (started per call, one untimed
  // warm-up pass each); bytes per second, 0 when the buffer could not be allocated.
  double Measure(int reps);

 private:
  HugePageBuffer mem_;
  int64_t bytes_;
  int threads_;
};

// One-shot: a probe of `bytes` on `threads` threads, best of `reps` passes.
double MeasureReadBandwidth(int64_t bytes, int threads, int reps);

}  // namespace flotilla::bench
