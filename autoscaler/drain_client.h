// The one gRPC call the autoscaler makes to a worker: Drain. Keeps gRPC headers out of the
// fleet code. Thread-safe (one channel per call; drains are rare).
#pragma once

#include <string>

#include "absl/status/statusor.h"

namespace flotilla::autoscaler {

// Calls flotilla.worker.v1.Worker/Drain on `address` (host:port). With wait=true it returns
// once the worker holds no request, or DEADLINE_EXCEEDED after timeout_s. Returns the
// requests still in flight when the call returned.
absl::StatusOr<int> DrainWorkerRpc(const std::string& address, bool wait, double timeout_s);

}  // namespace flotilla::autoscaler
