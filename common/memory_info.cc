#include "common/memory_info.h"

#include <algorithm>
#include <charconv>
#include <string>

#include "common/read_file.h"

namespace flotilla {
namespace {

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\n')) s.remove_suffix(1);
  return s;
}

// A whole non-negative decimal number, nothing else.
std::optional<int64_t> ParseInt(std::string_view s) {
  s = Trim(s);
  int64_t v = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || s.empty() || end != s.data() + s.size() || v < 0) return std::nullopt;
  return v;
}

// What the cgroup has left: limit minus usage, with v2 names first, then v1's.
std::optional<int64_t> CgroupRemaining() {
  const char* pairs[][2] = {{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"},
                            {"/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes"}};
  for (const auto& p : pairs) {
    const absl::StatusOr<std::string> limit_text = ReadFileToString(p[0]);
    const absl::StatusOr<std::string> usage_text = ReadFileToString(p[1]);
    if (!limit_text.ok() || !usage_text.ok()) continue;
    const auto limit = ParseCgroupBytes(*limit_text);
    const auto usage = ParseCgroupBytes(*usage_text);
    // v1 reports "no limit" as a huge number; anything past 2^60 is treated as none.
    if (!limit || !usage || *limit >= (int64_t{1} << 60)) return std::nullopt;
    return std::max<int64_t>(0, *limit - *usage);
  }
  return std::nullopt;
}

}  // namespace

std::optional<int64_t> ParseMemAvailable(std::string_view meminfo) {
  constexpr std::string_view kKey = "MemAvailable:";
  const size_t at = meminfo.find(kKey);
  if (at == std::string_view::npos) return std::nullopt;
  std::string_view rest = meminfo.substr(at + kKey.size());
  rest = Trim(rest.substr(0, rest.find('\n')));
  constexpr std::string_view kUnit = "kB";
  if (rest.size() < kUnit.size() || rest.substr(rest.size() - kUnit.size()) != kUnit) return std::nullopt;
  const auto kb = ParseInt(rest.substr(0, rest.size() - kUnit.size()));
  if (!kb || *kb > (int64_t{1} << 52)) return std::nullopt;
  return *kb * 1024;
}

std::optional<int64_t> ParseCgroupBytes(std::string_view text) {
  text = Trim(text);
  if (text == "max") return std::nullopt;
  return ParseInt(text);
}

std::optional<int64_t> AvailableMemoryBytes() {
  std::optional<int64_t> host;
  if (const absl::StatusOr<std::string> m = ReadFileToString("/proc/meminfo"); m.ok()) host = ParseMemAvailable(*m);
  const std::optional<int64_t> group = CgroupRemaining();
  if (host && group) return std::min(*host, *group);
  return host ? host : group;
}

}  // namespace flotilla
