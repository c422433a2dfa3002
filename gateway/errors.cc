#include "gateway/errors.h"

#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace flotilla::gateway {
namespace {
constexpr absl::string_view kRetryAfterUrl = "type.flotilla.dev/retry_after_ms";
constexpr absl::string_view kReasonUrl = "type.flotilla.dev/reason";
}  // namespace

absl::Status WithRetryAfter(absl::Status status, int64_t retry_after_ms) {
  if (status.ok()) return status;
  if (retry_after_ms < 1) retry_after_ms = 1;
  status.SetPayload(kRetryAfterUrl, absl::Cord(absl::StrCat(retry_after_ms)));
  return status;
}

std::optional<int64_t> RetryAfterMs(const absl::Status& status) {
  auto payload = status.GetPayload(kRetryAfterUrl);
  if (!payload) return std::nullopt;
  int64_t ms = 0;
  if (!absl::SimpleAtoi(std::string(*payload), &ms)) return std::nullopt;
  return ms;
}

std::string RetryAfterSeconds(int64_t retry_after_ms) {
  int64_t s = (retry_after_ms + 999) / 1000;
  return absl::StrCat(s < 1 ? 1 : s);
}

absl::Status WithReason(absl::Status status, absl::string_view reason) {
  if (status.ok()) return status;
  status.SetPayload(kReasonUrl, absl::Cord(reason));
  return status;
}

std::string ErrorReason(const absl::Status& status) {
  auto payload = status.GetPayload(kReasonUrl);
  return payload ? std::string(*payload) : std::string();
}

int HttpStatusFor(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kOk: return 200;
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kOutOfRange:
    case absl::StatusCode::kFailedPrecondition: return 400;
    case absl::StatusCode::kUnauthenticated: return 401;
    case absl::StatusCode::kPermissionDenied: return 403;
    case absl::StatusCode::kNotFound: return 404;
    case absl::StatusCode::kResourceExhausted: return 429;
    case absl::StatusCode::kCancelled: return 499;  // nginx's "client closed request"
    case absl::StatusCode::kUnavailable: return 503;
    case absl::StatusCode::kDeadlineExceeded: return 504;
    default: return 500;
  }
}

absl::Status Overloaded(absl::string_view message, int64_t retry_after_ms) {
  return WithReason(WithRetryAfter(absl::ResourceExhaustedError(message), retry_after_ms), "overloaded");
}

absl::Status RateLimited(absl::string_view reason, absl::string_view message, int64_t retry_after_ms) {
  return WithReason(WithRetryAfter(absl::ResourceExhaustedError(message), retry_after_ms), reason);
}

}  // namespace flotilla::gateway
