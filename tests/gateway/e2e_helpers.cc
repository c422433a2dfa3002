#include "tests/gateway/e2e_helpers.h"

namespace flotilla::gateway::testing {

using namespace std::chrono_literals;
using json = nlohmann::json;

json Completion(const std::string& prompt, int max_tokens, bool greedy) {
  json j = {{"model", kModel}, {"prompt", prompt}, {"max_tokens", max_tokens}};
  if (greedy) j["temperature"] = 0;
  return j;
}

std::unique_ptr<flotilla::v1::Inference::Stub> GatewayStub(const GatewayProcess& g) {
  return flotilla::v1::Inference::NewStub(grpc::CreateChannel(g.grpc(), grpc::InsecureChannelCredentials()));
}

std::unique_ptr<flotilla::worker::v1::Worker::Stub> WorkerStub(const WorkerProcess& w) {
  return flotilla::worker::v1::Worker::NewStub(grpc::CreateChannel(w.address, grpc::InsecureChannelCredentials()));
}

flotilla::worker::v1::LoadReport Load(const WorkerProcess& w) {
  auto stub = WorkerStub(w);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + 5s);
  flotilla::worker::v1::LoadReport r;
  stub->GetLoad(&ctx, {}, &r);
  return r;
}

std::string WorkerMetrics(const WorkerProcess& w) {
  return HttpGet("127.0.0.1:" + std::to_string(w.metrics_port), "/metrics").body;
}

bool WaitHealthy(const GatewayProcess& g, int n, std::chrono::milliseconds timeout) {
  return WaitFor(
      [&] {
        auto r = HttpGet(g.http(), "/metrics");
        return MetricValue(r.body, "flotilla_gateway_healthy_workers", {{"model", kModel}}) == n;
      },
      timeout);
}

flotilla::v1::GenerateRequest LongRequest(int max_tokens) {
  flotilla::v1::GenerateRequest req;
  req.set_model(kModel);
  req.set_prompt("Once upon a time");
  req.set_max_tokens(max_tokens);
  req.set_ignore_eos(true);
  return req;
}

StreamOutcome RunStream(flotilla::v1::Inference::Stub* stub, const std::string& prompt, int max_tokens) {
  StreamOutcome out;
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + 60s);
  flotilla::v1::GenerateRequest req;
  req.set_model(kModel);
  req.set_prompt(prompt);
  req.set_max_tokens(max_tokens);
  req.set_ignore_eos(true);
  auto reader = stub->Generate(&ctx, req);
  flotilla::v1::GenerateResponse msg;
  while (reader->Read(&msg)) {
    out.tokens += msg.token_ids_size();
    if (msg.finish_reason() == flotilla::v1::FINISH_REASON_LENGTH) out.finished = true;
  }
  out.status = reader->Finish();
  return out;
}

}  // namespace flotilla::gateway::testing
