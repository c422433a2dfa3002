// A small blocking HTTP(S) client for the autoscaler's three conversations: scraping /metrics,
// Prometheus's query API, and the Kubernetes API server. Keeps cpp-httplib out of headers.
// Thread-safe: every call opens its own connection (calls are seconds apart).
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace flotilla::autoscaler {

struct HttpRequest {
  std::string method = "GET";  // GET, POST, PATCH
  std::string url;             // http://host:port/path?query or https://...
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  std::string content_type;  // for requests with a body
};

struct HttpResponse {
  int status = 0;
  std::string body;
  std::string content_type;
};

struct HttpOptions {
  double timeout_s = 5;
  // PEM bundle that must have signed the server's certificate (https only). Empty: the
  // system's trust store.
  std::string ca_file;
};

// Sends one request. Transport failures (refused, timed out, TLS) are UNAVAILABLE; any HTTP
// status, 4xx and 5xx included, is a response for the caller to judge.
absl::StatusOr<HttpResponse> SendHttp(const HttpRequest& request, const HttpOptions& options);

// Percent-encodes a query parameter value (RFC 3986 unreserved characters pass through).
std::string UrlEncode(absl::string_view s);

// "http://h:p/x" + "/metrics" without doubling or losing the slash.
std::string JoinUrl(absl::string_view base, absl::string_view path);

}  // namespace flotilla::autoscaler
