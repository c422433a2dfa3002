// Injected time. Policy code (scheduler, router, autoscaler) takes a Clock so tests drive it with FakeClock.
// SystemClock is thread-safe; FakeClock is thread-safe too (its time is an atomic).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>

namespace flotilla {

// Monotonic time in nanoseconds since an arbitrary epoch.
using TimeNs = int64_t;
inline constexpr TimeNs kNsPerMs = 1'000'000;
inline constexpr TimeNs kNsPerSec = 1'000'000'000;

class Clock {
 public:
  virtual ~Clock() = default;
  virtual TimeNs Now() const = 0;
};

class SystemClock final : public Clock {
 public:
  TimeNs Now() const override {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
  }
  // Shared instance for production wiring; it has no state.
  static SystemClock* Get() {
    static SystemClock clock;
    return &clock;
  }
};

class FakeClock final : public Clock {
 public:
  explicit FakeClock(TimeNs start = 1'000 * kNsPerSec) : now_(start) {}
  TimeNs Now() const override { return now_.load(std::memory_order_relaxed); }
  void Advance(TimeNs d) { now_.fetch_add(d, std::memory_order_relaxed); }
  void AdvanceMs(int64_t ms) { Advance(ms * kNsPerMs); }
  void AdvanceSec(double s) { Advance(static_cast<TimeNs>(s * kNsPerSec)); }
  void Set(TimeNs t) { now_.store(t, std::memory_order_relaxed); }

 private:
  std::atomic<TimeNs> now_;
};

inline double NsToSec(TimeNs ns) { return static_cast<double>(ns) / kNsPerSec; }

}  // namespace flotilla
