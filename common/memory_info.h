// How much memory this process can still commit: the smaller of the host's MemAvailable and
// what the process's cgroup (a container's limit) has left. Used to refuse a configuration
// that asks for more up front (the CPU executor commits its whole KV cache at start) with a
// clear error instead of being killed by the OOM killer half way through.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace flotilla {

// Bytes available, or nullopt where neither source can be read.
std::optional<int64_t> AvailableMemoryBytes();

// Parsers, exposed for tests. MemAvailable of /proc/meminfo text ("MemAvailable: N kB").
std::optional<int64_t> ParseMemAvailable(std::string_view meminfo);
// A cgroup limit file's content: a byte count, or nullopt for "max" (no limit) and bad text.
std::optional<int64_t> ParseCgroupBytes(std::string_view text);

}  // namespace flotilla
