// Small helpers shared by the gateway's end-to-end tests: request bodies, gRPC stubs for the
// gateway and the worker, the worker's load, and waiting for the gateway to see its workers.
#pragma once

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <memory>
#include <string>

#include "flotilla/v1/inference.grpc.pb.h"
#include "flotilla/worker/v1/worker.grpc.pb.h"
#include "nlohmann/json.hpp"
#include "tests/gateway/e2e_env.h"

namespace flotilla::gateway::testing {

// An OpenAI completions body for the test model.
nlohmann::json Completion(const std::string& prompt, int max_tokens, bool greedy = true);

std::unique_ptr<flotilla::v1::Inference::Stub> GatewayStub(const GatewayProcess& g);
std::unique_ptr<flotilla::worker::v1::Worker::Stub> WorkerStub(const WorkerProcess& w);
// The worker's load report, straight from it (GetLoad).
flotilla::worker::v1::LoadReport Load(const WorkerProcess& w);
std::string WorkerMetrics(const WorkerProcess& w);

// Waits until the gateway counts `n` healthy workers of the test model.
bool WaitHealthy(const GatewayProcess& g, int n, std::chrono::milliseconds timeout = std::chrono::seconds(20));

// One gRPC Generate through the gateway: what came back before the status.
struct StreamOutcome {
  grpc::Status status;
  int tokens = 0;
  bool finished = false;  // a finish reason (length) arrived
};
// A greedy request for kModel that runs long (ignore_eos, max_tokens tokens): on a worker with a
// 4096 context, 4000 tokens take seconds, so the stream stays open while a test acts.
flotilla::v1::GenerateRequest LongRequest(int max_tokens = 4000);

StreamOutcome RunStream(flotilla::v1::Inference::Stub* stub, const std::string& prompt, int max_tokens);

}  // namespace flotilla::gateway::testing
