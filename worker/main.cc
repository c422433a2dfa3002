// flotilla-worker: one model replica served over gRPC. See worker/options.h and worker/server.cc.
#include <cstdio>
#include <string>

#include "common/logging.h"
#include "worker/options.h"

int main(int argc, char** argv) {
  int exit_code = -1;
  auto options = flotilla::worker::ParseWorkerOptions(argc, argv, &exit_code);
  if (!options.ok()) {
    // CLI11 has printed its own parse errors (exit_code set); the checks after parsing have not.
    if (exit_code >= 0) return exit_code;
    std::fprintf(stderr, "error: %s\n", std::string(options.status().message()).c_str());
    return 2;
  }
  // RunWorker returns once the server and engine have stopped.
  flotilla::ExitAfterShutdown(flotilla::worker::RunWorker(*options));
}
