// Kubernetes backend: each pool is a Deployment; replicas are read from and written to its
// `scale` subresource through the API server, as `kubectl scale` and the HPA do:
//   GET   /apis/apps/v1/namespaces/{ns}/deployments/{name}/scale
//   PATCH /apis/apps/v1/namespaces/{ns}/deployments/{name}/scale
//         Content-Type: application/merge-patch+json   {"spec":{"replicas":N}}
// and, for the ready count the scale subresource does not carry,
//   GET   /apis/apps/v1/namespaces/{ns}/deployments/{name}   (status.readyReplicas)
// Every request has `Authorization: Bearer <token>`, the token re-read from its file each
// time (projected service-account tokens rotate). RBAC needed: get on deployments, get and
// patch on deployments/scale.
// Tested against a local fake API server only (tests/autoscaler/kubernetes_backend_test.cc),
// not a real cluster. Thread-safe (no mutable state).
#pragma once

#include <map>
#include <string>

#include "absl/status/statusor.h"
#include "autoscaler/backend.h"

namespace flotilla::autoscaler {

inline constexpr char kServiceAccountDir[] = "/var/run/secrets/kubernetes.io/serviceaccount";

struct KubernetesOptions {
  std::string api_server;  // https://host:port; empty: https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT
  std::string token_file;  // empty: <kServiceAccountDir>/token
  std::string ca_file;     // empty: <kServiceAccountDir>/ca.crt (https only)
  std::string namespace_name;  // empty: contents of <kServiceAccountDir>/namespace
  std::map<std::string, std::string> deployments;  // pool -> Deployment name
  bool read_ready_from_deployment = true;
  double timeout_s = 5;
};

// Fills the empty fields from the in-cluster environment; fails naming what is missing.
absl::StatusOr<KubernetesOptions> ResolveInCluster(KubernetesOptions options);

class KubernetesBackend final : public ScalingBackend {
 public:
  // `options` should have been through ResolveInCluster.
  explicit KubernetesBackend(KubernetesOptions options);

  absl::StatusOr<ReplicaState> GetReplicas(const std::string& pool) override;
  absl::Status SetReplicas(const std::string& pool, int replicas) override;
  std::string Name() const override { return "kubernetes"; }

 private:
  absl::StatusOr<std::string> DeploymentPath(const std::string& pool) const;
  // Sends one request with the bearer token; parses a 2xx JSON body or maps the API error.
  absl::StatusOr<std::string> Call(const std::string& method, const std::string& path,
                                   const std::string& body) const;

  KubernetesOptions options_;
};

}  // namespace flotilla::autoscaler
