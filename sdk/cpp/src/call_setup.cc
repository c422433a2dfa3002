#include "call_setup.h"

#include <algorithm>
#include <random>

#include <google/protobuf/io/coded_stream.h>

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

namespace {

using google::protobuf::io::CodedInputStream;

// Calls fn(field_number, bytes) for each length-delimited field of a message; false when the
// bytes are not a well-formed message. Hand-rolled so the SDK needs no googleapis protos.
template <typename Fn>
bool ForEachBytesField(const std::string& message, Fn fn) {
  CodedInputStream in(reinterpret_cast<const uint8_t*>(message.data()), static_cast<int>(message.size()));
  while (uint32_t tag = in.ReadTag()) {
    const uint32_t field = tag >> 3;
    switch (tag & 7) {
      case 0: {  // varint
        uint64_t ignored;
        if (!in.ReadVarint64(&ignored)) return false;
        break;
      }
      case 1:  // 64-bit
        if (!in.Skip(8)) return false;
        break;
      case 2: {  // length-delimited
        uint32_t len;
        std::string bytes;
        if (!in.ReadVarint32(&len) || !in.ReadString(&bytes, static_cast<int>(len))) return false;
        fn(field, bytes);
        break;
      }
      case 5:  // 32-bit
        if (!in.Skip(4)) return false;
        break;
      default:
        return false;
    }
  }
  return in.ConsumedEntireMessage();
}

// google.protobuf.Duration {int64 seconds = 1; int32 nanos = 2;}
absl::Duration ParseDuration(const std::string& bytes) {
  CodedInputStream in(reinterpret_cast<const uint8_t*>(bytes.data()), static_cast<int>(bytes.size()));
  int64_t seconds = 0;
  int64_t nanos = 0;
  while (uint32_t tag = in.ReadTag()) {
    uint64_t v = 0;
    if ((tag & 7) != 0 || !in.ReadVarint64(&v)) return absl::ZeroDuration();
    if ((tag >> 3) == 1) seconds = static_cast<int64_t>(v);
    if ((tag >> 3) == 2) nanos = static_cast<int32_t>(v);
  }
  return absl::Seconds(seconds) + absl::Nanoseconds(nanos);
}

}  // namespace

absl::Duration RetryDelayFromStatusDetails(const std::string& details) {
  absl::Duration delay = absl::ZeroDuration();
  // google.rpc.Status {int32 code = 1; string message = 2; repeated google.protobuf.Any details = 3;}
  ForEachBytesField(details, [&](uint32_t field, const std::string& any) {
    if (field != 3) return;
    // google.protobuf.Any {string type_url = 1; bytes value = 2;}
    std::string type_url;
    std::string value;
    ForEachBytesField(any, [&](uint32_t f, const std::string& b) { (f == 1 ? type_url : value) = b; });
    if (type_url != "type.googleapis.com/google.rpc.RetryInfo") return;
    // google.rpc.RetryInfo {google.protobuf.Duration retry_delay = 1;}
    ForEachBytesField(value, [&](uint32_t f, const std::string& d) {
      if (f == 1) delay = std::max(absl::ZeroDuration(), ParseDuration(d));
    });
  });
  return delay;
}

absl::Duration ServerRetryDelay(const grpc::Status& status) {
  if (status.ok() || status.error_details().empty()) return absl::ZeroDuration();
  return RetryDelayFromStatusDetails(status.error_details());
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
