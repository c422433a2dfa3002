// Error conventions of the gateway. Inside, every failure is an absl::Status; a refusal that the
// client may retry later carries its delay as a payload, and the front ends (gRPC, HTTP) turn that
// into Retry-After / retry info. The mapping to HTTP status codes lives here so both fronts agree.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace flotilla::gateway {

// Attaches a retry delay (milliseconds, at least 1) to a non-OK status.
absl::Status WithRetryAfter(absl::Status status, int64_t retry_after_ms);
// The retry delay attached by WithRetryAfter, if any.
std::optional<int64_t> RetryAfterMs(const absl::Status& status);
// Retry-After header value: whole seconds, rounded up, at least 1.
std::string RetryAfterSeconds(int64_t retry_after_ms);

// Attaches a short machine-readable reason ("rate_limit_requests", "overloaded", ...).
absl::Status WithReason(absl::Status status, absl::string_view reason);
std::string ErrorReason(const absl::Status& status);

// HTTP status for a gateway error: 400, 401, 403, 404, 429, 499, 503, 504 or 500.
int HttpStatusFor(const absl::Status& status);

// Statuses for the common refusals, so every caller words them the same way.
absl::Status Overloaded(absl::string_view message, int64_t retry_after_ms);
absl::Status RateLimited(absl::string_view reason, absl::string_view message, int64_t retry_after_ms);

}  // namespace flotilla::gateway
