// The memory read bandwidth a decode step can hope for: a streaming-read loop (AVX2 loads summed
// into registers) over a buffer much larger than the last-level cache, on 1..N threads.
#pragma once

#include <cstdint>

namespace flotilla::bench {

// Best of `reps` passes over `bytes` (rounded down to 4 KiB), split over `threads` threads
// started once; returns bytes per second. Touches the buffer once before timing.
double MeasureReadBandwidth(int64_t bytes, int threads, int reps);

}  // namespace flotilla::bench
