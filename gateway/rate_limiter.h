// Per-tenant rate limits: one token bucket for requests and one for tokens (prompt tokens taken at
// admission, completion tokens debited when the usage is known). RateLimiter is the interface the
// request path uses; LocalRateLimiter keeps the buckets in this process, RedisRateLimiter
// (redis_rate_limiter.h) shares them between gateway replicas.
// Thread-safety: every method of every implementation may be called from any thread.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "common/clock.h"
#include "gateway/tenant.h"
#include "gateway/token_bucket.h"

namespace flotilla::gateway {

struct RateLimitDecision {
  enum class Limit { kNone, kRequests, kTokens };
  bool allowed = true;
  Limit limited_by = Limit::kNone;
  int64_t retry_after_ms = 0;  // when not allowed: how long until the request could pass
};

// The status a refused decision turns into: RESOURCE_EXHAUSTED with retry-after and a reason.
absl::Status RateLimitStatus(const RateLimitDecision& decision, const std::string& tenant);

class RateLimiter {
 public:
  using Callback = std::function<void(absl::Status status, RateLimitDecision decision)>;
  virtual ~RateLimiter() = default;

  // Takes one request and `tokens` tokens from the tenant's buckets, both or neither. `done` runs
  // exactly once, possibly before Acquire returns (in-process) or on another thread (Redis). A
  // non-OK status means the limiter itself failed (e.g. Redis unreachable); a refusal is an OK
  // status with decision.allowed == false. A cost larger than the bucket can ever hold is refused
  // with retry_after_ms == -1 (waiting will not help).
  virtual void Acquire(const std::string& tenant, const TenantLimits& limits, int64_t tokens,
                       Callback done) = 0;

  // Debits `tokens` more (completion tokens once known). Fire and forget.
  virtual void Debit(const std::string& tenant, const TenantLimits& limits, int64_t tokens) = 0;
};

class LocalRateLimiter final : public RateLimiter {
 public:
  explicit LocalRateLimiter(const Clock* clock) : clock_(clock) {}

  void Acquire(const std::string& tenant, const TenantLimits& limits, int64_t tokens,
               Callback done) override;
  void Debit(const std::string& tenant, const TenantLimits& limits, int64_t tokens) override;

  // The synchronous core of Acquire, for tests and for the Redis fallback.
  RateLimitDecision TryAcquire(const std::string& tenant, const TenantLimits& limits, int64_t tokens);

 private:
  struct Buckets {
    TokenBucket requests;
    TokenBucket tokens;
  };
  Buckets& BucketsFor(const std::string& tenant, const TenantLimits& limits, TimeNs now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const Clock* clock_;
  absl::Mutex mu_;
  absl::flat_hash_map<std::string, Buckets> buckets_ ABSL_GUARDED_BY(mu_);
};

}  // namespace flotilla::gateway
