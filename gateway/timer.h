// One thread that runs delayed and periodic tasks for the gateway (discovery polls, key-file
// reloads, health checks, admission queue expiry, reconnect back-off). Tasks must be short and
// must not block: anything slow (DNS) runs on its own thread or is bounded by a timeout.
// Thread-safety: all methods may be called from any thread, including from inside a task.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <thread>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_set.h"
#include "absl/synchronization/mutex.h"
#include "common/clock.h"

namespace flotilla::gateway {

class TimerThread {
 public:
  using TaskId = uint64_t;

  explicit TimerThread(const Clock* clock);
  ~TimerThread();  // stops; pending tasks do not run

  // Runs `fn` once after `delay_ns`.
  TaskId Schedule(TimeNs delay_ns, std::function<void()> fn);
  // Runs `fn` every `period_ns` (first run after one period) until cancelled.
  TaskId Every(TimeNs period_ns, std::function<void()> fn);
  // A cancelled task does not start afterwards (one already running finishes).
  void Cancel(TaskId id);
  void Stop();

 private:
  struct Task {
    TaskId id;
    TimeNs period;  // 0: once
    std::function<void()> fn;
  };
  void Loop();

  const Clock* clock_;
  absl::Mutex mu_;
  std::multimap<TimeNs, Task> tasks_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_set<TaskId> cancelled_ ABSL_GUARDED_BY(mu_);
  TaskId next_id_ ABSL_GUARDED_BY(mu_) = 1;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  bool wake_ ABSL_GUARDED_BY(mu_) = false;  // a task was added: re-check the earliest
  TaskId running_ ABSL_GUARDED_BY(mu_) = 0;
  std::thread thread_;
};

}  // namespace flotilla::gateway
