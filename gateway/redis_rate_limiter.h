// Rate limits shared by every gateway replica through Redis. Both buckets of a tenant live in one
// Redis hash pair and are updated by one Lua script, so "take one request and N tokens, both or
// neither" is atomic across replicas; the script reads Redis's own clock, so replicas' clocks
// need not agree.
//
// One I/O thread owns the (synchronous hiredis) connection and pipelines every queued operation,
// so request threads never block on Redis. When Redis cannot be reached the limiter falls back to
// an in-process LocalRateLimiter (each replica then enforces the limits on its own) and counts the
// fallback; it reconnects in the background.
// Thread-safety: all public methods may be called from any thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "gateway/rate_limiter.h"

namespace flotilla::gateway {

struct RedisOptions {
  std::string host = "127.0.0.1";
  int port = 6379;
  std::string password;              // AUTH when set
  std::string key_prefix = "flotilla:rl:";
  int64_t connect_timeout_ms = 500;
  int64_t command_timeout_ms = 200;
  size_t max_pending = 10000;        // queued operations beyond this fall back at once
};

class RedisRateLimiter final : public RateLimiter {
 public:
  // Connects lazily; `fallback` decides while Redis is unreachable (required).
  RedisRateLimiter(RedisOptions options, std::unique_ptr<LocalRateLimiter> fallback);
  ~RedisRateLimiter() override;

  void Acquire(const std::string& tenant, const TenantLimits& limits, int64_t tokens,
               Callback done) override;
  void Debit(const std::string& tenant, const TenantLimits& limits, int64_t tokens) override;

  // Decisions made by the fallback because Redis failed (for metrics and tests).
  int64_t fallbacks() const { return fallbacks_.load(std::memory_order_relaxed); }
  bool connected() const { return connected_.load(std::memory_order_relaxed); }

 private:
  struct Op {
    bool debit = false;
    std::string tenant;
    TenantLimits limits;
    int64_t tokens = 0;
    Callback done;  // empty for debits
  };
  class Connection;

  void Loop();
  void Fallback(Op& op);

  const RedisOptions options_;
  std::unique_ptr<LocalRateLimiter> fallback_;
  std::atomic<int64_t> fallbacks_{0};
  std::atomic<bool> connected_{false};

  absl::Mutex mu_;
  std::deque<Op> queue_ ABSL_GUARDED_BY(mu_);
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace flotilla::gateway
