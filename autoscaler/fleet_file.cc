#include "autoscaler/fleet_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace flotilla::autoscaler {
namespace {

bool HasSpace(absl::string_view s) {
  for (char c : s) {
    if (absl::ascii_isspace(static_cast<unsigned char>(c))) return true;
  }
  return false;
}

bool LooksLikeHostPort(absl::string_view s) {
  size_t colon = s.rfind(':');
  if (colon == absl::string_view::npos || colon == 0) return false;
  int port = 0;
  return absl::SimpleAtoi(s.substr(colon + 1), &port) && port > 0 && port < 65536;
}

}  // namespace

std::string FormatFleetFile(const std::vector<FleetEntry>& entries) {
  std::string out = "# flotilla fleet v1: host:port model zone [key=value ...]\n";
  for (const FleetEntry& e : entries) {
    absl::StrAppend(&out, e.address, " ", e.model, " ", e.zone.empty() ? "local" : e.zone);
    if (!e.id.empty()) absl::StrAppend(&out, " id=", e.id);
    if (!e.metrics_address.empty()) absl::StrAppend(&out, " metrics=", e.metrics_address);
    if (e.pid > 0) absl::StrAppend(&out, " pid=", e.pid);
    out += "\n";
  }
  return out;
}

absl::StatusOr<std::vector<FleetEntry>> ParseFleetFile(absl::string_view text) {
  std::vector<FleetEntry> out;
  int line_no = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_no;
    line = absl::StripAsciiWhitespace(line);
    if (line.empty() || line.front() == '#') continue;
    std::vector<absl::string_view> f = absl::StrSplit(line, absl::ByAnyChar(" \t"), absl::SkipEmpty());
    auto bad = [&](absl::string_view why) {
      return absl::InvalidArgumentError(absl::StrCat("fleet file line ", line_no, ": ", why));
    };
    if (f.size() < 3) return bad("want 'host:port model zone [key=value ...]'");
    if (!LooksLikeHostPort(f[0])) return bad(absl::StrCat("'", f[0], "' is not host:port"));
    FleetEntry e;
    e.address = std::string(f[0]);
    e.model = std::string(f[1]);
    e.zone = std::string(f[2]);
    for (size_t i = 3; i < f.size(); ++i) {
      std::pair<absl::string_view, absl::string_view> kv = absl::StrSplit(f[i], absl::MaxSplits('=', 1));
      if (kv.first == "id") {
        e.id = std::string(kv.second);
      } else if (kv.first == "metrics") {
        if (!LooksLikeHostPort(kv.second)) return bad("metrics= is not host:port");
        e.metrics_address = std::string(kv.second);
      } else if (kv.first == "pid") {
        if (!absl::SimpleAtoi(kv.second, &e.pid)) return bad("pid= is not a number");
      }
      // Unknown keys are for newer writers; skipping them keeps old readers working.
    }
    out.push_back(std::move(e));
  }
  return out;
}

absl::StatusOr<std::vector<FleetEntry>> ReadFleetFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open fleet file ", path));
  std::stringstream ss;
  ss << in.rdbuf();
  return ParseFleetFile(ss.str());
}

absl::Status WriteFleetFile(const std::string& path, const std::vector<FleetEntry>& entries) {
  for (const FleetEntry& e : entries) {
    if (!LooksLikeHostPort(e.address) || e.model.empty() || HasSpace(e.model) || HasSpace(e.zone) ||
        HasSpace(e.id)) {
      return absl::InvalidArgumentError(
          absl::StrCat("fleet entry '", e.address, " ", e.model, "' cannot be written"));
    }
  }
  return WriteFileAtomically(path, FormatFleetFile(entries));
}

std::string FormatPrometheusSd(const std::vector<FleetEntry>& entries) {
  nlohmann::json list = nlohmann::json::array();
  for (const FleetEntry& e : entries) {
    if (e.metrics_address.empty()) continue;
    list.push_back({{"targets", {e.metrics_address}},
                    {"labels",
                     {{"flotilla_pool", e.model},
                      {"flotilla_worker_id", e.id},
                      {"flotilla_zone", e.zone}}}});
  }
  return list.dump(2) + "\n";
}

absl::Status WriteFileAtomically(const std::string& path, absl::string_view contents) {
  const std::string tmp = absl::StrCat(path, ".tmp.", getpid());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    return absl::InternalError(absl::StrCat("cannot create ", tmp, ": ", std::strerror(errno)));
  }
  size_t done = 0;
  while (done < contents.size()) {
    ssize_t n = ::write(fd, contents.data() + done, contents.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int err = errno;
      ::close(fd);
      ::unlink(tmp.c_str());
      return absl::InternalError(absl::StrCat("cannot write ", tmp, ": ", std::strerror(err)));
    }
    done += static_cast<size_t>(n);
  }
  ::close(fd);
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    return absl::InternalError(absl::StrCat("cannot rename ", tmp, " to ", path, ": ", std::strerror(err)));
  }
  return absl::OkStatus();
}

}  // namespace flotilla::autoscaler
