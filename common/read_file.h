// Reading a small text file (a key, a certificate, a /proc or cgroup entry) into a string.
#pragma once

#include <string>

#include "absl/status/statusor.h"

namespace flotilla {

// The whole file; NotFound "cannot read PATH" when it cannot be opened.
absl::StatusOr<std::string> ReadFileToString(const std::string& path);

}  // namespace flotilla
