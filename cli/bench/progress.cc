#include "cli/bench/progress.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>

#include "absl/strings/str_format.h"

namespace flotilla::cli::bench {

ProgressBar::ProgressBar(const RunProgress* progress, SteadyTime epoch, double duration_s, size_t max_requests,
                         bool enabled)
    : progress_(progress), epoch_(epoch), duration_s_(duration_s), max_requests_(max_requests), enabled_(enabled) {
  if (!enabled_) return;
  thread_ = std::thread([this] {
    std::unique_lock<std::mutex> lock(mu_);
    while (!finished_) {
      Draw(false);
      cv_.wait_for(lock, std::chrono::milliseconds(250));
    }
  });
}

ProgressBar::~ProgressBar() { Finish(); }

void ProgressBar::Finish() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (finished_) return;
    finished_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  if (enabled_) Draw(true);
}

std::string ProgressBar::Render(double elapsed_s, double duration_s, size_t max_requests, size_t sent, size_t done,
                                size_t failed, size_t output_tokens, bool sending_finished, int width) {
  // While sending, progress is the larger of time and count fractions; afterwards, the share of
  // sent requests that have finished.
  double frac = 0;
  if (!sending_finished) {
    frac = duration_s > 0 ? elapsed_s / duration_s : 0;
    if (max_requests > 0) frac = std::max(frac, static_cast<double>(sent) / max_requests);
  } else {
    frac = sent > 0 ? static_cast<double>(done) / sent : 1;
  }
  frac = std::clamp(frac, 0.0, 1.0);
  const int filled = static_cast<int>(frac * width);
  std::string bar(filled, '#');
  bar += std::string(width - filled, '.');
  const double tps = elapsed_s > 0 ? output_tokens / elapsed_s : 0;
  return absl::StrFormat("[%s] %3.0f%% %6.1fs  sent %zu  done %zu  failed %zu  in flight %zu  %.0f tok/s%s", bar,
                         frac * 100, elapsed_s, sent, done, failed, sent - std::min(sent, done), tps,
                         sending_finished ? "  (finishing)" : "");
}

void ProgressBar::Draw(bool final) {
  const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - epoch_).count();
  const std::string line =
      Render(elapsed, duration_s_, max_requests_, progress_->sent.load(), progress_->done.load(),
             progress_->failed.load(), progress_->output_tokens.load(), progress_->sending_finished.load(), 30);
  // \r and clear-to-end-of-line: one line redrawn in place.
  std::fprintf(stderr, "\r%s\033[K%s", line.c_str(), final ? "\n" : "");
  std::fflush(stderr);
}

}  // namespace flotilla::cli::bench
