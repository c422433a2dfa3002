// The serving benchmarks start flotilla-worker and flotilla-gateway from the build they belong
// to: the bin directory they sit in (make bench with any BUILD_DIR), unless FLOTILLA_BIN_DIR
// names another. The test helpers' BinDir() reads that variable; without it they guess a
// folder relative to the working directory, which on a fresh clone need not exist.
#pragma once

#include <cstdlib>
#include <filesystem>

namespace flotilla::bench {

inline void UseOwnBinDir() {
  if (std::getenv("FLOTILLA_BIN_DIR") != nullptr) return;
  std::error_code ec;
  const std::filesystem::path self = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (!ec) setenv("FLOTILLA_BIN_DIR", self.parent_path().c_str(), 1);
}

}  // namespace flotilla::bench
