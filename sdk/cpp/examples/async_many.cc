// Many concurrent generations without a thread each: GenerateAsync runs the streams on gRPC's
// threads and calls back per chunk and at the end.
//   flotilla_sdk_example_async_many [TARGET] [N]
#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <mutex>

#include "flotilla/sdk/client.h"

int main(int argc, char** argv) {
  flotilla::sdk::ClientOptions options;
  options.target = argc > 1 ? argv[1] : "127.0.0.1:50051";
  auto client = flotilla::sdk::Client::Create(options);
  if (!client.ok()) return 1;
  const int n = argc > 2 ? std::atoi(argv[2]) : 16;

  std::mutex mu;
  std::condition_variable cv;
  int finished = 0;
  int failed = 0;
  std::atomic<long> tokens{0};
  for (int i = 0; i < n; ++i) {
    flotilla::v1::GenerateRequest request;
    request.set_prompt("Once upon a time");
    request.set_max_tokens(64);
    request.mutable_sampling()->set_seed(i);
    flotilla::sdk::AsyncCallbacks callbacks;
    callbacks.on_chunk = [&](const flotilla::v1::GenerateResponse& chunk) { tokens += chunk.token_ids_size(); };
    callbacks.on_done = [&](const absl::Status& status, int /*attempts*/) {
      std::lock_guard<std::mutex> lock(mu);
      ++finished;
      if (!status.ok()) {
        ++failed;
        std::fprintf(stderr, "request failed: %s\n", status.ToString().c_str());
      }
      cv.notify_all();
    };
    (*client)->GenerateAsync(request, std::move(callbacks));
  }
  std::unique_lock<std::mutex> lock(mu);
  cv.wait(lock, [&] { return finished == n; });
  std::printf("%d requests, %d failed, %ld tokens\n", n, failed, tokens.load());
  return failed == 0 ? 0 : 1;
}
