// Chooses how single-token forward passes run, by timing the candidates: on the thread pool
// (each matrix split among the threads), on the pool with the small products replicated (each
// thread computes them whole and the threads meet once a layer: CpuExecutor's Step::replicate),
// or on the calling thread alone. A pool pays for every step with barriers and with results
// crossing between the cores; when a step's work is a few microseconds (a tiny model, or a draft
// model) that can cost more than it saves, and what it costs depends on where the host puts the
// threads: on this project's 2-vCPU machines a barrier took 57 ns in one placement and 240-330 ns
// in another. In the first, stories260K's 2-thread decode ran 48k tok/s split and 43k
// replicated; in the second, replicated was the faster and split fell below one thread. So the
// choice is measured, not guessed: passes run on the pool; when their median is short (below
// short_pass_ns, where synchronisation can matter at all) a window of passes runs in each other
// candidate mode, and the fastest is kept for the next explore_every passes (another mode must
// beat the pool's median by `margin`), after which all are measured again (the host may have
// moved the threads). Passes longer than that always run on the pool: a 1B-shape decode step is
// milliseconds, and a window in another mode there would only cost time.
//
// Pure policy: durations come from the caller, so tests drive it with made-up times.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

namespace flotilla {

class ThreadModeChooser {
 public:
  enum class Mode { kPool, kReplicate, kSolo };
  struct Options {
    int window = 8;                    // passes per measurement of one mode
    int explore_every = 512;           // passes between measurements once settled
    int64_t short_pass_ns = 500'000;   // pool passes at least this long never try another mode
    double margin = 0.95;              // another mode must beat the pool's median by 5 %
  };
  // `alternatives`: the modes tried besides the pool, in this order (by default: alone).
  ThreadModeChooser(Options o, std::vector<Mode> alternatives) : o_(o), alternatives_(std::move(alternatives)) {}
  explicit ThreadModeChooser(Options o) : ThreadModeChooser(o, {Mode::kSolo}) {}
  ThreadModeChooser();

  // How the next single-token pass should run.
  Mode mode() const;
  // The pass mode() asked for took `ns` nanoseconds.
  void Record(int64_t ns);

  // For tests and logs: the median of the last measurement of a mode (0 before one).
  int64_t median_ns(Mode m) const { return medians_[static_cast<int>(m)]; }

 private:

  Options o_;
  std::vector<Mode> alternatives_;
  int measuring_ = 0;          // 0: the pool, i: alternatives_[i - 1]; -1: settled
  Mode settled_ = Mode::kPool;
  int settled_left_ = 0;
  std::vector<int64_t> samples_;
  std::array<int64_t, 3> medians_{};
};

}  // namespace flotilla
