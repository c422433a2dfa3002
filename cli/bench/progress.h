// A one-line progress bar on stderr for `flotilla bench`, redrawn a few times a second while
// the run goes on. Only drawn when stderr is a terminal (or when forced), so logs stay clean.
#pragma once

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "cli/bench/runner.h"

namespace flotilla::cli::bench {

class ProgressBar {
 public:
  // Starts drawing at once. `duration_s` and `max_requests` give the scale of the bar.
  ProgressBar(const RunProgress* progress, SteadyTime epoch, double duration_s, size_t max_requests, bool enabled);
  ~ProgressBar();  // Finish()
  // Draws the last state and ends the line.
  void Finish();

  // The text of the bar for the given figures (pure, for tests).
  static std::string Render(double elapsed_s, double duration_s, size_t max_requests, size_t sent, size_t done,
                            size_t failed, size_t output_tokens, bool sending_finished, int width);

 private:
  void Draw(bool final);

  const RunProgress* progress_;
  SteadyTime epoch_;
  double duration_s_;
  size_t max_requests_;
  bool enabled_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool finished_ = false;
  std::thread thread_;
};

}  // namespace flotilla::cli::bench
