#include "gateway/timer.h"

#include <algorithm>

namespace flotilla::gateway {

TimerThread::TimerThread(const Clock* clock) : clock_(clock) {
  thread_ = std::thread([this] { Loop(); });
}

TimerThread::~TimerThread() { Stop(); }

void TimerThread::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

TimerThread::TaskId TimerThread::Schedule(TimeNs delay_ns, std::function<void()> fn) {
  absl::MutexLock lock(&mu_);
  TaskId id = next_id_++;
  tasks_.emplace(clock_->Now() + delay_ns, Task{id, 0, std::move(fn)});
  wake_ = true;
  return id;
}

TimerThread::TaskId TimerThread::Every(TimeNs period_ns, std::function<void()> fn) {
  absl::MutexLock lock(&mu_);
  TaskId id = next_id_++;
  tasks_.emplace(clock_->Now() + period_ns, Task{id, period_ns, std::move(fn)});
  wake_ = true;
  return id;
}

void TimerThread::Cancel(TaskId id) {
  absl::MutexLock lock(&mu_);
  for (auto it = tasks_.begin(); it != tasks_.end(); ++it) {
    if (it->second.id == id) {
      tasks_.erase(it);
      return;
    }
  }
  // Not queued: it may be running right now; keep a periodic one from being re-armed.
  if (running_ == id) cancelled_.insert(id);
}

void TimerThread::Loop() {
  auto woken = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return stop_ || wake_; };
  absl::MutexLock lock(&mu_);
  while (!stop_) {
    wake_ = false;
    if (tasks_.empty()) {
      mu_.AwaitWithTimeout(absl::Condition(&woken), absl::Milliseconds(500));
      continue;
    }
    const TimeNs now = clock_->Now();
    auto it = tasks_.begin();
    if (it->first > now) {
      // A fake clock in tests does not wake us: cap the sleep so its jumps are noticed.
      mu_.AwaitWithTimeout(absl::Condition(&woken), absl::Nanoseconds(std::min<TimeNs>(it->first - now, 50 * kNsPerMs)));
      continue;
    }
    Task task = std::move(it->second);
    tasks_.erase(it);
    running_ = task.id;
    mu_.Unlock();
    task.fn();
    mu_.Lock();
    running_ = 0;
    if (task.period > 0 && cancelled_.erase(task.id) == 0) {
      tasks_.emplace(clock_->Now() + task.period, std::move(task));
    }
    cancelled_.erase(task.id);
  }
}

}  // namespace flotilla::gateway
