#include "gateway/rate_limiter.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "gateway/errors.h"

namespace flotilla::gateway {

absl::Status RateLimitStatus(const RateLimitDecision& decision, const std::string& tenant) {
  if (decision.allowed) return absl::OkStatus();
  const bool tokens = decision.limited_by == RateLimitDecision::Limit::kTokens;
  if (decision.retry_after_ms < 0) {
    // Waiting cannot help: the request alone is larger than the tenant's token bucket.
    return WithReason(absl::InvalidArgumentError(absl::StrCat(
                          "request needs more tokens than tenant '", tenant,
                          "' may use per minute")),
                      "request_too_large");
  }
  return RateLimited(tokens ? "rate_limit_tokens" : "rate_limit_requests",
                     absl::StrCat("rate limit exceeded for tenant '", tenant, "' (",
                                  tokens ? "tokens per minute" : "requests per second", ")"),
                     decision.retry_after_ms);
}

void LocalRateLimiter::Acquire(const std::string& tenant, const TenantLimits& limits, int64_t tokens,
                               Callback done) {
  RateLimitDecision d = TryAcquire(tenant, limits, tokens);
  done(absl::OkStatus(), d);
}

LocalRateLimiter::Buckets& LocalRateLimiter::BucketsFor(const std::string& tenant,
                                                        const TenantLimits& limits, TimeNs now) {
  auto it = buckets_.find(tenant);
  if (it == buckets_.end()) {
    it = buckets_
             .emplace(tenant, Buckets{TokenBucket(limits.requests_per_second, limits.RequestBurst(), now),
                                      TokenBucket(limits.tokens_per_minute / 60.0, limits.TokenBurst(), now)})
             .first;
  } else {
    // Limits may change on a key-file reload; keep the balances.
    Buckets& b = it->second;
    if (b.requests.rate() != limits.requests_per_second || b.requests.capacity() != limits.RequestBurst()) {
      b.requests.Reconfigure(limits.requests_per_second, limits.RequestBurst(), now);
    }
    if (b.tokens.rate() != limits.tokens_per_minute / 60.0 || b.tokens.capacity() != limits.TokenBurst()) {
      b.tokens.Reconfigure(limits.tokens_per_minute / 60.0, limits.TokenBurst(), now);
    }
  }
  return it->second;
}

RateLimitDecision LocalRateLimiter::TryAcquire(const std::string& tenant, const TenantLimits& limits,
                                               int64_t tokens) {
  const bool limit_requests = limits.requests_per_second > 0;
  const bool limit_tokens = limits.tokens_per_minute > 0;
  if (!limit_requests && !limit_tokens) return {};
  const TimeNs now = clock_->Now();
  absl::MutexLock lock(&mu_);
  Buckets& b = BucketsFor(tenant, limits, now);
  RateLimitDecision d;
  // Both buckets are checked before either is taken from, so a refusal costs nothing.
  TimeNs wait_requests = limit_requests ? b.requests.TimeUntil(1, now) : 0;
  TimeNs wait_tokens = limit_tokens ? b.tokens.TimeUntil(static_cast<double>(tokens), now) : 0;
  if (wait_tokens == TokenBucket::kNever) {
    d.allowed = false;
    d.limited_by = RateLimitDecision::Limit::kTokens;
    d.retry_after_ms = -1;
    return d;
  }
  if (wait_requests > 0 || wait_tokens > 0) {
    d.allowed = false;
    d.limited_by = wait_requests >= wait_tokens ? RateLimitDecision::Limit::kRequests
                                                : RateLimitDecision::Limit::kTokens;
    d.retry_after_ms = std::max<int64_t>(1, (std::max(wait_requests, wait_tokens) + kNsPerMs - 1) / kNsPerMs);
    return d;
  }
  if (limit_requests) b.requests.TryTake(1, now);
  if (limit_tokens) b.tokens.TryTake(static_cast<double>(tokens), now);
  return d;
}

void LocalRateLimiter::Debit(const std::string& tenant, const TenantLimits& limits, int64_t tokens) {
  if (limits.tokens_per_minute <= 0 || tokens <= 0) return;
  const TimeNs now = clock_->Now();
  absl::MutexLock lock(&mu_);
  BucketsFor(tenant, limits, now).tokens.Debit(static_cast<double>(tokens), now);
}

}  // namespace flotilla::gateway
