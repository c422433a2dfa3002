// Decides when a thread pool's forward passes run on the calling thread alone because the pool's
// barriers were slow, and checks that alone is in fact faster before staying there.
//
// Barriers that wait past the pool's spin window (ThreadPool::slow_barriers) mean a peer thread
// arrived late. Either the host took its core away for a while (an oversubscribed machine: the
// waits are whole scheduler slices, and one thread alone beats two), or the peer's core is just
// slower (this project's VMs sometimes run one vCPU 1.5x slower than the other: a 1B-shape
// decode's phases, a few hundred microseconds each, then wait past the window while two threads
// still beat one by 15 %). Barrier counts cannot tell these apart, so a pass with many slow
// barriers starts a trial: `trial` passes alone, timed per token, against the pool's last
// passes. Alone is kept for a stretch only when it wins by `margin`; otherwise the pool stays
// and slow barriers are ignored for a stretch. Stretches double (to max_stretch) while the
// verdict repeats, and return to first_stretch after a pool pass with no slow barrier at all.
//
// A trial compares passes of the same size only (one-token decode with one-token decode, a
// batch of 16 with batches of 16), per token. When none of its passes alone has a size the
// pool's recent passes had (a prompt on the pool, then decode alone), it is inconclusive: the
// pool runs again and the next pass with slow barriers starts a new trial. Pure policy: the
// caller supplies durations; tests drive it with made-up ones.
#pragma once

#include <cstdint>
#include <vector>

namespace flotilla {

class SoloFallback {
 public:
  struct Options {
    int trial = 4;              // passes alone that measure alone
    int history = 4;            // the pool's last passes it is measured against
    int first_stretch = 16;     // passes alone (or with slow barriers ignored) after a verdict
    int max_stretch = 4096;
    double margin = 0.95;       // alone must take at most this much of the pool's time per token
  };
  explicit SoloFallback(Options o) : o_(o) {}
  SoloFallback() : SoloFallback(Options{}) {}

  // Whether the next pass runs alone (a trial or a stretch alone).
  bool alone() const { return state_ != State::kPool; }

  // A pass on the pool took `ns` for `tokens` tokens; `slow` of its `barriers` waited past the
  // spin window. Returns true when this pass starts a trial.
  bool RecordPool(int64_t tokens, int64_t ns, int64_t slow, int64_t barriers);
  // A pass alone (as alone() asked) took `ns` for `tokens` tokens. Returns true when it ended a
  // trial that alone won (the caller may say so once in its log).
  bool RecordAlone(int64_t tokens, int64_t ns);

  // For tests and logs.
  int trials() const { return trials_; }
  int trials_won() const { return won_; }

 private:
  enum class State { kPool, kTrial, kStretch };
  struct Pass {
    int64_t tokens;
    double ns_per_token;
  };
  // The ns per token of the passes in `of` whose size also occurs in `in`.
  static std::vector<double> Comparable(const std::vector<Pass>& of, const std::vector<Pass>& in);

  Options o_;
  State state_ = State::kPool;
  int left_ = 0;             // kTrial / kStretch: passes left; kPool: passes slow barriers are ignored
  int stretch_ = 0;          // the next stretch (0: first_stretch)
  std::vector<Pass> pool_;        // the pool's last passes
  std::vector<Pass> alone_;       // this trial's passes
  std::vector<Pass> trial_pool_;  // the pool's passes this trial is measured against
  int trials_ = 0;
  int won_ = 0;
};

}  // namespace flotilla
