#include "autoscaler/http_client.h"

#include <httplib.h>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"

namespace flotilla::autoscaler {
namespace {

struct SplitUrl {
  std::string origin;  // scheme://host:port
  std::string path;    // /path?query
};

absl::StatusOr<SplitUrl> Split(const std::string& url) {
  size_t scheme_end = url.find("://");
  if (scheme_end == std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat("URL without scheme: '", url, "'"));
  }
  absl::string_view scheme = absl::string_view(url).substr(0, scheme_end);
  if (scheme != "http" && scheme != "https") {
    return absl::InvalidArgumentError(absl::StrCat("URL scheme must be http or https: '", url, "'"));
  }
  size_t path_start = url.find('/', scheme_end + 3);
  SplitUrl out;
  if (path_start == std::string::npos) {
    out.origin = url;
    out.path = "/";
  } else {
    out.origin = url.substr(0, path_start);
    out.path = url.substr(path_start);
  }
  if (out.origin.size() <= scheme_end + 3) {
    return absl::InvalidArgumentError(absl::StrCat("URL without host: '", url, "'"));
  }
  return out;
}

}  // namespace

absl::StatusOr<HttpResponse> SendHttp(const HttpRequest& request, const HttpOptions& options) {
  absl::StatusOr<SplitUrl> url = Split(request.url);
  if (!url.ok()) return url.status();
  httplib::Client client(url->origin);
  if (!client.is_valid()) {
    return absl::InvalidArgumentError(absl::StrCat("cannot use URL '", request.url, "'"));
  }
  const auto sec = static_cast<time_t>(options.timeout_s);
  const auto usec = static_cast<time_t>((options.timeout_s - static_cast<double>(sec)) * 1e6);
  client.set_connection_timeout(sec, usec);
  client.set_read_timeout(sec, usec);
  client.set_write_timeout(sec, usec);
  if (absl::StartsWith(request.url, "https://")) {
    client.enable_server_certificate_verification(true);
    if (!options.ca_file.empty()) client.set_ca_cert_path(options.ca_file);
  }
  httplib::Headers headers;
  for (const auto& [k, v] : request.headers) headers.emplace(k, v);

  auto send = [&]() -> httplib::Result {
    if (request.method == "GET") return client.Get(url->path, headers);
    if (request.method == "POST") {
      return client.Post(url->path, headers, request.body, request.content_type);
    }
    if (request.method == "PATCH") {
      return client.Patch(url->path, headers, request.body, request.content_type);
    }
    return client.Put(url->path, headers, request.body, request.content_type);
  };
  if (request.method != "GET" && request.method != "POST" && request.method != "PATCH" &&
      request.method != "PUT") {
    return absl::InvalidArgumentError(absl::StrCat("unsupported HTTP method ", request.method));
  }
  httplib::Result result = send();
  if (!result) {
    return absl::UnavailableError(absl::StrCat(request.method, " ", request.url, ": ",
                                               httplib::to_string(result.error())));
  }
  HttpResponse out;
  out.status = result->status;
  out.body = std::move(result->body);
  out.content_type = result->get_header_value("Content-Type");
  return out;
}

std::string UrlEncode(absl::string_view s) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(s.size() * 3);
  for (unsigned char c : s) {
    if (absl::ascii_isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
  return out;
}

std::string JoinUrl(absl::string_view base, absl::string_view path) {
  base = absl::StripSuffix(base, "/");
  if (!absl::StartsWith(path, "/")) return absl::StrCat(base, "/", path);
  return absl::StrCat(base, path);
}

}  // namespace flotilla::autoscaler
