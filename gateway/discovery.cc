#include "gateway/discovery.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <sys/socket.h>

#include <algorithm>
#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "nlohmann/json.hpp"

namespace flotilla::gateway {
namespace {

bool SplitHostPort(absl::string_view address, std::string* host, int* port) {
  size_t colon = address.rfind(':');
  if (colon == absl::string_view::npos || colon == 0) return false;
  absl::string_view h = address.substr(0, colon);
  if (h.front() == '[') {
    if (h.back() != ']') return false;
    h = h.substr(1, h.size() - 2);
  }
  int p = 0;
  if (!absl::SimpleAtoi(address.substr(colon + 1), &p) || p <= 0 || p > 65535) return false;
  *host = std::string(h);
  *port = p;
  return !host->empty();
}

class Static final : public Discovery {
 public:
  explicit Static(std::vector<std::string> a) : addresses_(std::move(a)) {}
  std::string name() const override { return "static"; }
  absl::StatusOr<std::vector<std::string>> Resolve() override { return addresses_; }

 private:
  std::vector<std::string> addresses_;
};

class Dns final : public Discovery {
 public:
  explicit Dns(std::string target) : target_(std::move(target)) {}
  std::string name() const override { return "dns:" + target_; }
  absl::StatusOr<std::vector<std::string>> Resolve() override {
    std::string host;
    int port = 0;
    if (!SplitHostPort(target_, &host, &port)) {
      return absl::InvalidArgumentError(absl::StrCat("DNS target '", target_, "' is not name:port"));
    }
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* res = nullptr;
    int rc = getaddrinfo(host.c_str(), nullptr, &hints, &res);
    if (rc != 0) return absl::UnavailableError(absl::StrCat("resolve ", host, ": ", gai_strerror(rc)));
    std::vector<std::string> out;
    for (addrinfo* ai = res; ai; ai = ai->ai_next) {
      char buf[INET6_ADDRSTRLEN] = {};
      if (ai->ai_family == AF_INET) {
        inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(ai->ai_addr)->sin_addr, buf, sizeof(buf));
        out.push_back(absl::StrCat(buf, ":", port));
      } else if (ai->ai_family == AF_INET6) {
        inet_ntop(AF_INET6, &reinterpret_cast<sockaddr_in6*>(ai->ai_addr)->sin6_addr, buf, sizeof(buf));
        out.push_back(absl::StrCat("[", buf, "]:", port));
      }
    }
    freeaddrinfo(res);
    std::sort(out.begin(), out.end());
    out.erase(std::unique(out.begin(), out.end()), out.end());
    return out;
  }

 private:
  std::string target_;
};

class File final : public Discovery {
 public:
  explicit File(std::string path) : path_(std::move(path)) {}
  std::string name() const override { return "file:" + path_; }
  absl::StatusOr<std::vector<std::string>> Resolve() override {
    std::ifstream in(path_);
    if (!in) return absl::NotFoundError(absl::StrCat("cannot open workers file ", path_));
    std::stringstream ss;
    ss << in.rdbuf();
    return ParseWorkersFile(ss.str());
  }

 private:
  std::string path_;
};

}  // namespace

absl::Status ValidateAddress(absl::string_view address) {
  std::string host;
  int port;
  if (!SplitHostPort(address, &host, &port)) {
    return absl::InvalidArgumentError(absl::StrCat("worker address '", address, "' is not host:port"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::string>> ParseWorkersFile(absl::string_view text) {
  std::vector<std::string> out;
  absl::string_view trimmed = absl::StripAsciiWhitespace(text);
  if (!trimmed.empty() && (trimmed.front() == '{' || trimmed.front() == '[')) {
    using json = nlohmann::json;
    json j = json::parse(trimmed.begin(), trimmed.end(), nullptr, false);
    if (j.is_discarded()) return absl::InvalidArgumentError("workers file is not valid JSON");
    const json* list = &j;
    if (j.is_object()) {
      if (!j.contains("workers")) return absl::InvalidArgumentError("workers file needs a 'workers' list");
      list = &j["workers"];
    }
    if (!list->is_array()) return absl::InvalidArgumentError("'workers' must be a list");
    for (const auto& w : *list) {
      if (w.is_string()) {
        out.push_back(w.get<std::string>());
      } else if (w.is_object() && w.contains("address") && w["address"].is_string()) {
        out.push_back(w["address"].get<std::string>());
      } else {
        return absl::InvalidArgumentError("workers entries must be \"host:port\" or {\"address\": ...}");
      }
    }
  } else {
    for (absl::string_view line : absl::StrSplit(text, '\n')) {
      line = absl::StripAsciiWhitespace(line);
      if (line.empty() || line.front() == '#') continue;
      // The local fleet's file (autoscaler/fleet_file.h) has "host:port model zone k=v..." lines;
      // the worker tells us model and zone itself, so the address is all we take.
      std::vector<absl::string_view> fields = absl::StrSplit(line, absl::ByAnyChar(" \t"), absl::SkipEmpty());
      out.emplace_back(fields[0]);
    }
  }
  for (const auto& a : out) {
    if (absl::Status st = ValidateAddress(a); !st.ok()) return st;
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

std::unique_ptr<Discovery> StaticDiscovery(std::vector<std::string> addresses) {
  return std::make_unique<Static>(std::move(addresses));
}
std::unique_ptr<Discovery> DnsDiscovery(std::string target) { return std::make_unique<Dns>(std::move(target)); }
std::unique_ptr<Discovery> FileDiscovery(std::string path) { return std::make_unique<File>(std::move(path)); }

}  // namespace flotilla::gateway
