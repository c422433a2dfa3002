// Running the `flotilla` binary from tests: arguments in, exit code and output back.
#pragma once

#include <sys/wait.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "nlohmann/json.hpp"
#include "tests/common/subprocess.h"
#include "tests/common/temp_dir.h"

namespace flotilla::testing {

struct CliResult {
  int code = -1;
  std::string out;
  std::string err;
  nlohmann::json Json() const {
    return nlohmann::json::parse(out, nullptr, /*allow_exceptions=*/false);
  }
};

// Runs `flotilla ARGS...` to completion. Arguments are single-quoted for the shell (they must
// not contain single quotes).
inline CliResult RunCli(const TempDir& dir, const std::vector<std::string>& args) {
  static int n = 0;
  const std::string out = dir.File("cli." + std::to_string(n) + ".out");
  const std::string err = dir.File("cli." + std::to_string(n) + ".err");
  ++n;
  std::string cmd = BinDir() + "/flotilla";
  for (const std::string& a : args) cmd += " '" + a + "'";
  cmd += " > " + out + " 2> " + err + " < /dev/null";
  const int status = std::system(cmd.c_str());
  CliResult r;
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  r.out = ReadBytes(out);
  r.err = ReadBytes(err);
  return r;
}

}  // namespace flotilla::testing
