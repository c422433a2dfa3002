// A worker client's hooks reach the fleet and the dispatcher, which its owner destroys right after
// shutting it down, while the client's gRPC callbacks may still be in flight: Shutdown must wait
// for a hook that is running and let none start afterwards.
#include "gateway/worker_client.h"

#include <atomic>
#include <chrono>
#include <memory>
#include <thread>

#include <gtest/gtest.h>

#include "common/clock.h"
#include "gateway/timer.h"
#include "grpcpp/security/credentials.h"

namespace flotilla::gateway {
namespace {

using namespace std::chrono_literals;

TEST(WorkerClient, ShutdownWaitsForARunningHookAndNoneRunsAfterIt) {
  TimerThread timer(SystemClock::Get());
  std::atomic<int> running{0}, calls{0};
  std::atomic<bool> shut{false}, after_shutdown{false};
  WorkerClient::Hooks hooks;
  hooks.on_change = [&](WorkerClient*) {
    if (shut) after_shutdown = true;
    ++running;
    ++calls;
    std::this_thread::sleep_for(200ms);  // long enough for Shutdown to be called meanwhile
    --running;
  };
  WorkerClientOptions o;
  o.health_interval = 20 * kNsPerMs;
  o.health_timeout = 200 * kNsPerMs;
  o.info_retry = 20 * kNsPerMs;
  // Nothing listens on port 1: the first health check fails and reports the worker unreachable.
  auto c = std::make_shared<WorkerClient>("127.0.0.1:1", grpc::InsecureChannelCredentials(), o, &timer,
                                          SystemClock::Get(), hooks);
  c->Start();
  const auto end = std::chrono::steady_clock::now() + 10s;
  while (running == 0 && std::chrono::steady_clock::now() < end) std::this_thread::sleep_for(1ms);
  ASSERT_GT(running, 0) << "no hook ran";
  c->Shutdown();
  shut = true;
  EXPECT_EQ(running, 0) << "Shutdown returned while a hook was still running";
  const int calls_at_shutdown = calls;
  std::this_thread::sleep_for(300ms);  // health checks, retries and stream restarts would run here
  EXPECT_FALSE(after_shutdown);
  EXPECT_EQ(calls, calls_at_shutdown);
  timer.Stop();
}

}  // namespace
}  // namespace flotilla::gateway
