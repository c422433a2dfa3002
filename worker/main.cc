// flotilla-worker: one model replica served over gRPC. See worker/options.h and worker/server.cc.
#include "common/logging.h"
#include "worker/options.h"

int main(int argc, char** argv) {
  int exit_code = -1;
  auto options = flotilla::worker::ParseWorkerOptions(argc, argv, &exit_code);
  if (!options.ok()) return exit_code < 0 ? 2 : exit_code;
  // RunWorker returns once the server and engine have stopped.
  flotilla::ExitAfterShutdown(flotilla::worker::RunWorker(*options));
}
