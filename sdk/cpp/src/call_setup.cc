#include "call_setup.h"

#include <algorithm>
#include <random>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace flotilla::sdk {

bool IsRetryable(const RetryPolicy& policy, absl::StatusCode code) {
  return code == absl::StatusCode::kUnavailable ||
         (policy.retry_resource_exhausted && code == absl::StatusCode::kResourceExhausted);
}

absl::Duration BackoffFor(const RetryPolicy& policy, int retry, double unit_random) {
  if (retry < 1) retry = 1;
  absl::Duration d = policy.initial_backoff;
  for (int i = 1; i < retry && d < policy.max_backoff; ++i) d = d * policy.multiplier;
  d = std::min(d, policy.max_backoff);
  const double jitter = std::clamp(policy.jitter, 0.0, 1.0);
  const double scale = 1.0 + jitter * (2.0 * std::clamp(unit_random, 0.0, 1.0) - 1.0);
  return std::max(absl::ZeroDuration(), d * scale);
}

namespace internal {

absl::Time CallDeadline(const ClientOptions& client, const CallOptions& call, absl::Time now) {
  absl::Time deadline = call.deadline;
  const absl::Duration timeout = call.timeout != absl::InfiniteDuration() ? call.timeout : client.timeout;
  if (timeout != absl::InfiniteDuration()) deadline = std::min(deadline, now + timeout);
  return deadline;
}

void PrepareContext(const ClientOptions& client, const CallOptions& call, absl::Time deadline,
                    grpc::ClientContext* ctx) {
  if (deadline != absl::InfiniteFuture()) ctx->set_deadline(absl::ToChronoTime(deadline));
  if (!client.api_key.empty()) ctx->AddMetadata("authorization", absl::StrCat("Bearer ", client.api_key));
  for (const auto& [key, value] : call.metadata) ctx->AddMetadata(key, value);
}

absl::Status FromGrpc(const grpc::Status& status) {
  // gRPC's and Abseil's code enumerations are the same numbers by design.
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()), status.error_message());
}

absl::Duration ServerRetryDelay(const grpc::ClientContext& ctx) {
  const auto& trailers = ctx.GetServerTrailingMetadata();
  auto it = trailers.find("retry-after-ms");
  if (it == trailers.end()) return absl::ZeroDuration();
  int64_t ms = 0;
  if (!absl::SimpleAtoi(absl::string_view(it->second.data(), it->second.size()), &ms) || ms < 0) {
    return absl::ZeroDuration();
  }
  return absl::Milliseconds(ms);
}

std::optional<absl::Duration> RetryWait(const RetryPolicy& policy, const absl::Status& status,
                                        int attempts_made, absl::Duration server_delay,
                                        absl::Time deadline, absl::Time now, double unit_random) {
  if (status.ok() || !IsRetryable(policy, status.code())) return std::nullopt;
  if (attempts_made >= policy.max_attempts) return std::nullopt;
  const absl::Duration wait = std::max(BackoffFor(policy, attempts_made, unit_random), server_delay);
  if (now + wait >= deadline) return std::nullopt;
  return wait;
}

bool BackoffWithReconnect(grpc::Channel& channel, absl::Duration wait, const std::function<bool()>& stop) {
  const absl::Time until = absl::Now() + wait;
  while (absl::Now() < until) {
    if (stop()) return false;
    // Short slices so a cancel is noticed quickly; GetState(true) starts a connection attempt
    // when the channel is idle, WaitForStateChange polls it.
    const absl::Time slice = std::min(until, absl::Now() + absl::Milliseconds(20));
    const grpc_connectivity_state state = channel.GetState(/*try_to_connect=*/true);
    if (state == GRPC_CHANNEL_READY) {
      absl::SleepFor(slice - absl::Now());
    } else {
      channel.WaitForStateChange(state, absl::ToChronoTime(slice));
    }
  }
  return !stop();
}

double UnitRandom() {
  thread_local std::mt19937_64 rng(std::random_device{}());
  return std::uniform_real_distribution<double>(0.0, 1.0)(rng);
}

std::string NewRequestId() {
  thread_local std::mt19937_64 rng(std::random_device{}());
  return absl::StrFormat("%016x%016x", rng(), rng());
}

}  // namespace internal
}  // namespace flotilla::sdk
