// Process-wide logging set-up (spdlog). Call once from main before any thread starts.
#pragma once

#include <string>

#include "absl/status/status.h"

namespace flotilla {

struct LogOptions {
  std::string format = "text";  // "text" or "json"
  std::string level = "info";   // trace, debug, info, warn, error, off
  std::string component;        // e.g. "worker", shown in every line
};

absl::Status SetupLogging(const LogOptions& options);

// Escapes a string for inclusion in a JSON log line (quotes not included).
std::string JsonEscape(const std::string& s);

// Ends a server process once every component has stopped: flushes the logs and stdio and exits
// with `code` without running static destructors. gRPC finishes its own shutdown on a thread
// that can outlive main(); static destructors running under it corrupted a global mutex now and
// then ("Mutex corrupt" and an abort after a clean drain: 1 in ~20 gateway SIGTERM drains).
[[noreturn]] void ExitAfterShutdown(int code);

}  // namespace flotilla
