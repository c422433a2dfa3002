// Failover with a worker that fails on demand. The real flotilla-worker cannot be made to fail
// "before the first token" or "after two tokens" at will, so one side of this test is a small
// in-test Worker service (it forwards Info and GetTokenizer to the real worker so both share a
// vocabulary); everything else is real: the gateway process, the real worker, gRPC and HTTP.
#include <gtest/gtest.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "flotilla/v1/inference.grpc.pb.h"
#include "flotilla/worker/v1/worker.grpc.pb.h"
#include "nlohmann/json.hpp"
#include "tests/gateway/e2e_env.h"

namespace flotilla::gateway::testing {
namespace {

using namespace std::chrono_literals;
using json = nlohmann::json;
namespace wpb = flotilla::worker::v1;

class FailingWorker final : public wpb::Worker::Service {
 public:
  enum class Mode { kFailBeforeFirstToken, kFailAfterTwoTokens };

  explicit FailingWorker(std::string real) : real_(wpb::Worker::NewStub(grpc::CreateChannel(real, grpc::InsecureChannelCredentials()))) {}

  std::atomic<Mode> mode{Mode::kFailBeforeFirstToken};
  std::atomic<int> generate_calls{0};

  grpc::Status Generate(grpc::ServerContext*, const wpb::GenerateRequest*, grpc::ServerWriter<wpb::GenerateResponse>* w) override {
    ++generate_calls;
    if (mode.load() == Mode::kFailAfterTwoTokens) {
      for (int i = 0; i < 2; ++i) {
        wpb::GenerateResponse r;
        r.add_token_ids(300 + i);
        r.set_text("x");
        w->Write(r);
      }
    }
    return grpc::Status(grpc::StatusCode::UNAVAILABLE, "injected failure");
  }
  grpc::Status Info(grpc::ServerContext*, const wpb::InfoRequest* req, wpb::InfoResponse* resp) override {
    grpc::ClientContext ctx;
    grpc::Status st = real_->Info(&ctx, *req, resp);
    resp->set_worker_id("failing");
    return st;
  }
  grpc::Status GetTokenizer(grpc::ServerContext*, const wpb::GetTokenizerRequest* req, wpb::TokenizerResponse* resp) override {
    grpc::ClientContext ctx;
    return real_->GetTokenizer(&ctx, *req, resp);
  }
  grpc::Status WatchLoad(grpc::ServerContext* ctx, const wpb::WatchLoadRequest*, grpc::ServerWriter<wpb::LoadReport>* w) override {
    while (!ctx->IsCancelled()) {
      wpb::LoadReport r;
      r.set_worker_id("failing");
      r.set_model(kModel);
      r.set_max_num_seqs(8);
      r.set_healthy(true);
      if (!w->Write(r)) break;
      std::this_thread::sleep_for(100ms);
    }
    return grpc::Status::OK;
  }
  grpc::Status GetLoad(grpc::ServerContext*, const wpb::GetLoadRequest*, wpb::LoadReport* r) override {
    r->set_max_num_seqs(8);
    return grpc::Status::OK;
  }

 private:
  std::unique_ptr<wpb::Worker::Stub> real_;
};

class GatewayFailoverTest : public ::testing::Test {
 protected:
  void SetUp() override {
    real_ = env_.StartWorker();
    ASSERT_TRUE(real_);
    fake_ = std::make_unique<FailingWorker>(real_->address);
    grpc::EnableDefaultHealthCheckService(true);
    grpc::ServerBuilder b;
    b.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &fake_port_);
    b.RegisterService(fake_.get());
    server_ = b.BuildAndStart();
    ASSERT_TRUE(server_);
    server_->GetHealthCheckService()->SetServingStatus(true);
  }
  void TearDown() override {
    if (server_) server_->Shutdown(std::chrono::system_clock::now() + 1s);
    if (HasFailure()) std::cerr << env_.Logs();
  }
  std::string fake_address() const { return "127.0.0.1:" + std::to_string(fake_port_); }
  double GatewayMetric(const GatewayProcess& g, const std::string& name,
                       const std::vector<std::pair<std::string, std::string>>& labels = {}) {
    return MetricValue(HttpGet(g.http(), "/metrics").body, name, labels);
  }

  E2eEnv env_;
  std::unique_ptr<WorkerProcess> real_;
  std::unique_ptr<FailingWorker> fake_;
  std::unique_ptr<grpc::Server> server_;
  int fake_port_ = 0;
};

TEST_F(GatewayFailoverTest, RetriedBeforeFirstTokenAndTheBadWorkerIsEjected) {
  auto g = env_.StartGateway({"--no-auth", "--workers", real_->address + "," + fake_address(), "--routing",
                              "round_robin", "--max-attempts", "3"});
  ASSERT_TRUE(g);
  ASSERT_TRUE(WaitFor([&] { return GatewayMetric(*g, "flotilla_gateway_healthy_workers", {{"model", kModel}}) == 2; }, 20s));
  const std::string body = json{{"model", kModel}, {"prompt", "Once upon a time"}, {"max_tokens", 8}, {"temperature", 0}}.dump();
  for (int i = 0; i < 20; ++i) {
    auto r = HttpPost(g->http(), "/v1/completions", body);
    ASSERT_EQ(r.status, 200) << "request " << i << ": " << r.body;
    EXPECT_EQ(r.Header("x-flotilla-worker"), real_->address);
  }
  EXPECT_GE(GatewayMetric(*g, "flotilla_gateway_retries_total"), 1);
  EXPECT_EQ(GatewayMetric(*g, "flotilla_gateway_worker_ejections_total", {{"worker", fake_address()}}), 1);
  // Ejected after 3 consecutive failures: the failing worker saw exactly those (no more requests
  // reach it while it is out, base ejection 2 s).
  EXPECT_EQ(fake_->generate_calls.load(), 3);
  // The gauge is refreshed every 250 ms; the ejection lasts 2 s.
  EXPECT_TRUE(WaitFor([&] { return GatewayMetric(*g, "flotilla_gateway_healthy_workers", {{"model", kModel}}) == 1; }, 1500ms));
  // Its health check says SERVING, so after the ejection it is probed back in...
  EXPECT_TRUE(WaitFor([&] { return GatewayMetric(*g, "flotilla_gateway_healthy_workers", {{"model", kModel}}) == 2; }, 10s));
  // ...and the next failure ejects it again at once (a failed probe), for twice as long.
  for (int i = 0; i < 4; ++i) ASSERT_EQ(HttpPost(g->http(), "/v1/completions", body).status, 200);
  EXPECT_EQ(fake_->generate_calls.load(), 4);
  EXPECT_EQ(GatewayMetric(*g, "flotilla_gateway_worker_ejections_total", {{"worker", fake_address()}}), 2);
}

TEST_F(GatewayFailoverTest, FailureAfterTheFirstTokenEndsWithUnavailableAndPartialUsage) {
  fake_->mode = FailingWorker::Mode::kFailAfterTwoTokens;
  // Only the failing worker: nothing to retry on, and retrying after tokens went out is not allowed anyway.
  auto g = env_.StartGateway({"--no-auth", "--workers", fake_address()});
  ASSERT_TRUE(g);
  ASSERT_TRUE(WaitFor([&] { return GatewayMetric(*g, "flotilla_gateway_healthy_workers", {{"model", kModel}}) == 1; }, 20s));
  auto stub = flotilla::v1::Inference::NewStub(grpc::CreateChannel(g->grpc(), grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  flotilla::v1::GenerateRequest req;
  req.set_model(kModel);
  req.set_prompt("Once upon a time");
  req.set_max_tokens(16);
  auto reader = stub->Generate(&ctx, req);
  flotilla::v1::GenerateResponse msg, last;
  int tokens = 0;
  while (reader->Read(&msg)) {
    tokens += msg.token_ids_size();
    last = msg;
  }
  grpc::Status st = reader->Finish();
  EXPECT_EQ(st.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_NE(st.error_message().find("incomplete"), std::string::npos) << st.error_message();
  EXPECT_EQ(tokens, 2);
  EXPECT_EQ(last.finish_reason(), flotilla::v1::FINISH_REASON_ERROR);
  EXPECT_EQ(last.usage().completion_tokens(), 2u);
  EXPECT_EQ(last.usage().prompt_tokens(), 5u);
  EXPECT_EQ(fake_->generate_calls.load(), 1);  // not retried

  // Over HTTP streaming: the tokens, then an error event (no [DONE]).
  std::string out;
  RunCommand({"curl", "-sN", "-d",
              json{{"model", kModel}, {"prompt", "Once upon a time"}, {"max_tokens", 16}, {"stream", true}}.dump(),
              "http://" + g->http() + "/v1/completions"},
             &out, 20s);
  EXPECT_NE(out.find("\"text\":\"x\""), std::string::npos) << out;
  EXPECT_NE(out.find("\"error\""), std::string::npos) << out;
  EXPECT_EQ(out.find("[DONE]"), std::string::npos) << out;
}

}  // namespace
}  // namespace flotilla::gateway::testing
