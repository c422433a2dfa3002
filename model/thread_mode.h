// Chooses, for single-token forward passes, between the thread pool and the calling thread
// alone, by timing both. A pool pays for every step with barriers; when a step's work is a few
// microseconds (a tiny model, or a draft model) that can cost more than it saves, and how much a
// barrier costs depends on where the host puts the threads: on this project's 2-vCPU machines
// a barrier took 57 ns in one placement and 326 ns in another, where stories260K's 2-thread
// decode fell below its 1-thread speed (23.7k vs 26.2k tok/s). So the choice is measured, not
// guessed: passes run on the pool; when their median is short (below short_pass_ns, where
// synchronisation can matter at all) a window of passes runs alone, and the faster mode is kept
// for the next explore_every passes, after which both are measured again (the host may have
// moved the threads). Passes longer than that never run alone: a 1B-shape decode step is
// milliseconds, and a solo window there would only cost time.
//
// Pure policy: durations come from the caller, so tests drive it with made-up times.
#pragma once

#include <cstdint>
#include <vector>

namespace flotilla {

class ThreadModeChooser {
 public:
  struct Options {
    int window = 8;                    // passes per measurement of one mode
    int explore_every = 512;           // passes between measurements once settled
    int64_t short_pass_ns = 500'000;   // pool passes at least this long never try solo
    double solo_margin = 0.95;         // solo must beat the pool's median by 5 %
  };
  ThreadModeChooser() : ThreadModeChooser(Options{}) {}
  explicit ThreadModeChooser(Options o) : o_(o) {}

  // Whether the next single-token pass should run on the calling thread alone.
  bool Solo() const { return phase_ == Phase::kMeasureSolo || (phase_ == Phase::kSettled && solo_); }
  // The pass Solo() asked for took `ns` nanoseconds.
  void Record(int64_t ns);

  // For tests and logs: the medians of the last measurement (0 before one).
  int64_t pool_median_ns() const { return pool_median_; }
  int64_t solo_median_ns() const { return solo_median_; }

 private:
  enum class Phase { kMeasurePool, kMeasureSolo, kSettled };
  static int64_t Median(std::vector<int64_t>& v);

  Options o_;
  Phase phase_ = Phase::kMeasurePool;
  bool solo_ = false;
  int settled_left_ = 0;
  std::vector<int64_t> samples_;
  int64_t pool_median_ = 0;
  int64_t solo_median_ = 0;
};

}  // namespace flotilla
