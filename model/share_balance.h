// Sizes the threads' static shares of a forward pass's split steps by how fast each thread
// turned out to be.
//
// Decode steps split each matrix statically, one contiguous range per thread (the weight stream
// a thread's prefetches follow best), and meet at a barrier after it. Equal ranges suit equal
// cores; this project's VMs sometimes run one vCPU a third slower than the other (a 1B Q4_0
// decode on one thread: 37.7 tok/s on one, 50.3 on the other), and then the fast thread waits at
// every barrier for the slow one's half. After each pass the executor reports what each thread
// did (work, in the steps' own units, and the time it took) and the shares move toward each
// thread's measured speed, smoothed so that one noisy pass moves them little, and kept between
// min_fraction / n and 1 - that of the whole. The split in use follows the smoothed estimate
// only once they differ by `deadband`: equal cores then keep exactly equal ranges instead of
// a boundary that wanders by a unit with the host's noise. Which thread computes which row never changes a
// result (the kernels' arithmetic per output is fixed), so the shares are free to move.
//
// Pure policy: the caller supplies the measurements; tests drive it with made-up ones.
#pragma once

#include <cstdint>
#include <vector>

namespace flotilla {

class ShareBalance {
 public:
  struct Options {
    double smoothing = 0.3;     // how far one pass's measurement moves the shares
    double min_fraction = 0.5;  // no thread's share below this times 1 / n
    double min_busy_ns = 200'000;  // passes with less work than this (all threads) are not used
    double deadband = 0.02;     // the split moves when a thread's estimate is this far from it
  };
  ShareBalance(int threads, Options o);
  explicit ShareBalance(int threads) : ShareBalance(threads, Options{}) {}

  // The first of thread `tid`'s units out of `units` (tid == threads: units). Consecutive
  // threads' ranges tile [0, units).
  int64_t Begin(int64_t units, int tid) const;

  // One pass: thread i did work[i] in busy_ns[i].
  void Record(const std::vector<double>& work, const std::vector<double>& busy_ns);

  // Each thread's fraction of the work in the split in use (they sum to 1), and the smoothed
  // estimate it follows.
  std::vector<double> fractions() const;
  const std::vector<double>& estimate() const { return estimate_; }

 private:
  // Puts the split in use at `fractions`.
  void Apply(const std::vector<double>& fractions);

  Options o_;
  std::vector<double> estimate_;
  std::vector<double> cumulative_;  // [threads + 1]: where each thread's share in use starts
};

}  // namespace flotilla
