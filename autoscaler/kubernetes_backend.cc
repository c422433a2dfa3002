#include "autoscaler/kubernetes_backend.h"

#include <cstdlib>

#include <nlohmann/json.hpp>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "autoscaler/http_client.h"
#include "common/read_file.h"

namespace flotilla::autoscaler {
namespace {

absl::StatusOr<std::string> ReadSmallFile(const std::string& path) {
  absl::StatusOr<std::string> text = ReadFileToString(path);
  if (!text.ok()) return text.status();
  return std::string(absl::StripAsciiWhitespace(*text));
}

// The API server's errors come as a Status object: {"kind":"Status","message":...,"reason":...}.
absl::Status ApiError(int http_status, const std::string& body, const std::string& what) {
  std::string message = body.substr(0, 300);
  nlohmann::json j = nlohmann::json::parse(body, nullptr, false);
  if (!j.is_discarded() && j.is_object() && j.contains("message") && j["message"].is_string()) {
    message = j["message"].get<std::string>();
  }
  const std::string text = absl::StrCat(what, ": HTTP ", http_status, ": ", message);
  switch (http_status) {
    case 400: case 422: return absl::InvalidArgumentError(text);
    case 401: return absl::UnauthenticatedError(text);
    case 403: return absl::PermissionDeniedError(text);
    case 404: return absl::NotFoundError(text);
    case 409: return absl::AbortedError(text);
    case 429: return absl::ResourceExhaustedError(text);
    default: return absl::UnavailableError(text);
  }
}

int IntAt(const nlohmann::json& j, const char* a, const char* b) {
  // Kubernetes omits zero-valued fields (readyReplicas is absent when none is ready).
  if (!j.contains(a) || !j[a].is_object()) return 0;
  const nlohmann::json& o = j[a];
  if (!o.contains(b) || !o[b].is_number_integer()) return 0;
  return o[b].get<int>();
}

}  // namespace

absl::StatusOr<KubernetesOptions> ResolveInCluster(KubernetesOptions o) {
  const std::string dir = kServiceAccountDir;
  if (o.api_server.empty()) {
    const char* host = std::getenv("KUBERNETES_SERVICE_HOST");
    const char* port = std::getenv("KUBERNETES_SERVICE_PORT");
    if (host == nullptr || *host == '\0') {
      return absl::FailedPreconditionError(
          "no API server given and KUBERNETES_SERVICE_HOST is unset (not running in a pod?)");
    }
    std::string h = host;
    if (h.find(':') != std::string::npos) h = absl::StrCat("[", h, "]");  // IPv6
    o.api_server = absl::StrCat("https://", h, ":", port != nullptr && *port != '\0' ? port : "443");
  }
  if (o.token_file.empty()) o.token_file = dir + "/token";
  if (o.ca_file.empty() && o.api_server.rfind("https://", 0) == 0) o.ca_file = dir + "/ca.crt";
  if (o.namespace_name.empty()) {
    absl::StatusOr<std::string> ns = ReadSmallFile(dir + "/namespace");
    if (!ns.ok()) return absl::FailedPreconditionError(absl::StrCat("no namespace given and ", ns.status().message()));
    o.namespace_name = *ns;
  }
  if (o.deployments.empty()) return absl::InvalidArgumentError("no pool is mapped to a Deployment");
  return o;
}

KubernetesBackend::KubernetesBackend(KubernetesOptions options) : options_(std::move(options)) {}

absl::StatusOr<std::string> KubernetesBackend::DeploymentPath(const std::string& pool) const {
  auto it = options_.deployments.find(pool);
  if (it == options_.deployments.end()) {
    return absl::NotFoundError(absl::StrCat("pool '", pool, "' has no Deployment"));
  }
  return absl::StrCat("/apis/apps/v1/namespaces/", options_.namespace_name, "/deployments/", it->second);
}

absl::StatusOr<std::string> KubernetesBackend::Call(const std::string& method, const std::string& path,
                                                    const std::string& body) const {
  absl::StatusOr<std::string> token = ReadSmallFile(options_.token_file);
  if (!token.ok()) return absl::UnauthenticatedError(absl::StrCat("service-account token: ", token.status().message()));
  HttpRequest req;
  req.method = method;
  req.url = JoinUrl(options_.api_server, path);
  req.headers = {{"Authorization", absl::StrCat("Bearer ", *token)}, {"Accept", "application/json"}};
  if (method == "PATCH") {
    req.body = body;
    req.content_type = "application/merge-patch+json";
  }
  HttpOptions opts;
  opts.timeout_s = options_.timeout_s;
  opts.ca_file = options_.ca_file;
  absl::StatusOr<HttpResponse> resp = SendHttp(req, opts);
  if (!resp.ok()) return resp.status();
  if (resp->status < 200 || resp->status >= 300) {
    return ApiError(resp->status, resp->body, absl::StrCat(method, " ", path));
  }
  return std::move(resp->body);
}

absl::StatusOr<ReplicaState> KubernetesBackend::GetReplicas(const std::string& pool) {
  absl::StatusOr<std::string> path = DeploymentPath(pool);
  if (!path.ok()) return path.status();
  absl::StatusOr<std::string> scale_body = Call("GET", *path + "/scale", "");
  if (!scale_body.ok()) return scale_body.status();
  nlohmann::json scale = nlohmann::json::parse(*scale_body, nullptr, false);
  if (scale.is_discarded() || !scale.is_object()) return absl::DataLossError("scale: not JSON");
  ReplicaState s;
  s.desired = IntAt(scale, "spec", "replicas");
  int ready = IntAt(scale, "status", "replicas");  // without the Deployment: pods that exist
  if (options_.read_ready_from_deployment) {
    absl::StatusOr<std::string> dep_body = Call("GET", *path, "");
    if (!dep_body.ok()) return dep_body.status();
    nlohmann::json dep = nlohmann::json::parse(*dep_body, nullptr, false);
    if (dep.is_discarded() || !dep.is_object()) return absl::DataLossError("deployment: not JSON");
    ready = IntAt(dep, "status", "readyReplicas");
  }
  s.ready = std::min(ready, s.desired);
  s.starting = std::max(0, s.desired - s.ready);
  return s;
}

absl::Status KubernetesBackend::SetReplicas(const std::string& pool, int replicas) {
  if (replicas < 0) return absl::InvalidArgumentError("replicas must be >= 0");
  absl::StatusOr<std::string> path = DeploymentPath(pool);
  if (!path.ok()) return path.status();
  nlohmann::json patch = {{"spec", {{"replicas", replicas}}}};
  absl::StatusOr<std::string> body = Call("PATCH", *path + "/scale", patch.dump());
  if (!body.ok()) return body.status();
  nlohmann::json scale = nlohmann::json::parse(*body, nullptr, false);
  if (!scale.is_discarded() && scale.is_object() && IntAt(scale, "spec", "replicas") != replicas) {
    return absl::InternalError(absl::StrCat("API server accepted the patch but reports spec.replicas=",
                                            IntAt(scale, "spec", "replicas")));
  }
  return absl::OkStatus();
}

}  // namespace flotilla::autoscaler
