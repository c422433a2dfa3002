#include "cli/signal_watch.h"

#include <signal.h>

namespace flotilla::cli {

namespace {
sigset_t WatchedSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGHUP);
  return set;
}
}  // namespace

SignalWatch::SignalWatch(std::function<void(int)> on_signal) : on_signal_(std::move(on_signal)) {
  sigset_t set = WatchedSignals();
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  thread_ = std::thread([this, set] {
    while (true) {
      int sig = 0;
      if (sigwait(&set, &sig) != 0) continue;
      if (exiting_.load()) return;
      ++seen_;
      on_signal_(sig);
    }
  });
}

SignalWatch::~SignalWatch() {
  exiting_.store(true);
  // A signal aimed at the watcher thread ends its sigwait; it sees exiting_ and returns.
  pthread_kill(thread_.native_handle(), SIGTERM);
  thread_.join();
}

}  // namespace flotilla::cli
