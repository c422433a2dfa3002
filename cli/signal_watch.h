// Ctrl-C and SIGTERM for long-running commands (up, bench, generate, autoscale): the signals
// are blocked in every thread and one watcher thread takes them with sigwait, so the handler
// is ordinary code (it may lock, log, cancel RPCs) rather than an async-signal-safe one.
// Construct it before any other thread starts (threads inherit the blocked mask); one per
// process. The callback runs on the watcher thread, once per signal.
#pragma once

#include <pthread.h>

#include <atomic>
#include <functional>
#include <thread>

namespace flotilla::cli {

class SignalWatch {
 public:
  explicit SignalWatch(std::function<void(int signal)> on_signal);
  ~SignalWatch();  // stops the watcher (the signals stay blocked: the process is ending)
  SignalWatch(const SignalWatch&) = delete;
  SignalWatch& operator=(const SignalWatch&) = delete;

  int signals_seen() const { return seen_.load(); }

 private:
  std::function<void(int)> on_signal_;
  std::atomic<bool> exiting_{false};
  std::atomic<int> seen_{0};
  std::thread thread_;
};

}  // namespace flotilla::cli
