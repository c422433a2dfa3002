// Internal: what every call of the client does the same way — its deadline, its metadata, the
// retry decision, and the mapping of gRPC statuses to absl ones.
#pragma once

#include <grpcpp/grpcpp.h>

#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "flotilla/sdk/options.h"
#include "flotilla/v1/inference.grpc.pb.h"

namespace flotilla::sdk::internal {

// What a call needs from its client; shared so that a stream outlives nothing it uses.
struct Shared {
  ClientOptions options;
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<flotilla::v1::Inference::Stub> stub;
  // Asynchronous calls still alive (their objects, not just their RPCs): ~Client waits for
  // zero so that no SDK object is left to a gRPC thread after the client (or the process) ends.
  mutable std::mutex live_mu;
  mutable std::condition_variable live_cv;
  mutable int live_async = 0;
};

// Counts one asynchronous call in Shared::live_async for as long as it exists.
class LiveCall {
 public:
  explicit LiveCall(const Shared& s) : s_(s) {
    std::lock_guard<std::mutex> lock(s_.live_mu);
    ++s_.live_async;
  }
  ~LiveCall() {
    std::lock_guard<std::mutex> lock(s_.live_mu);
    if (--s_.live_async == 0) s_.live_cv.notify_all();
  }
  LiveCall(const LiveCall&) = delete;
  LiveCall& operator=(const LiveCall&) = delete;

 private:
  const Shared& s_;
};

// The absolute deadline of a call: the earliest of the call's deadline, the call's timeout and
// (when the call has none) the client's timeout. InfiniteFuture when there is none.
absl::Time CallDeadline(const ClientOptions& client, const CallOptions& call, absl::Time now);

// Sets deadline, API key and extra metadata on a fresh context.
void PrepareContext(const ClientOptions& client, const CallOptions& call, absl::Time deadline,
                    grpc::ClientContext* ctx);

absl::Status FromGrpc(const grpc::Status& status);

// The delay the server asked for: google.rpc.RetryInfo in the status details (the gRPC
// convention; the gateway attaches it to RESOURCE_EXHAUSTED and UNAVAILABLE refusals). Zero
// when absent or unreadable.
absl::Duration ServerRetryDelay(const grpc::Status& status);
// The same from a serialized google.rpc.Status (exposed for tests).
absl::Duration RetryDelayFromStatusDetails(const std::string& details);

// Whether to try again after a call that failed with `status` before any chunk arrived, and
// after how long: none when the code is not retryable, the attempts are used up, or the wait
// would end past the deadline (a retry that cannot finish in time only delays the error).
std::optional<absl::Duration> RetryWait(const RetryPolicy& policy, const absl::Status& status,
                                        int attempts_made, absl::Duration server_delay,
                                        absl::Time deadline, absl::Time now, double unit_random);

// Waits `wait` (a retry's backoff) while driving the channel's reconnection: a blocking client
// has no thread polling the channel between calls, so without this a refused connection is
// only noticed again by gRPC's 5 s backup poller. Returns early (false) when `stop()` is true.
bool BackoffWithReconnect(grpc::Channel& channel, absl::Duration wait, const std::function<bool()>& stop);

// Uniform in [0, 1), from a per-thread generator.
double UnitRandom();

// A random 16-byte hex id, so the attempts of one request share an id in the gateway's logs.
std::string NewRequestId();

}  // namespace flotilla::sdk::internal
