// Where decisions take effect. LocalFleet runs worker processes on this machine;
// KubernetesBackend sets the replicas of a Deployment through the API server.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "autoscaler/signals.h"

namespace flotilla::autoscaler {

class ScalingBackend {
 public:
  virtual ~ScalingBackend() = default;
  // Thread-safe in both implementations.
  virtual absl::StatusOr<ReplicaState> GetReplicas(const std::string& pool) = 0;
  // Asks for `replicas`; returns once the request is accepted, not when replicas are ready
  // (or drained): GetReplicas shows the progress.
  virtual absl::Status SetReplicas(const std::string& pool, int replicas) = 0;
  virtual std::string Name() const = 0;
};

}  // namespace flotilla::autoscaler
