// The gRPC sender: SDK GenerateAsync, timing each chunk as its callback runs.
#include <map>
#include <mutex>
#include <set>

#include "absl/strings/str_cat.h"
#include "cli/bench/sender.h"
#include "flotilla/sdk/client.h"

namespace flotilla::cli::bench {

void RecordTokens(RequestRecord* r, SteadyTime start, SteadyTime* last, SteadyTime now, int tokens) {
  if (tokens <= 0) return;
  if (r->ttft_s < 0) {
    // Tokens that arrive with the first one are covered by the TTFT: no inter-token gaps.
    r->ttft_s = std::chrono::duration<double>(now - start).count();
  } else {
    const double gap = std::chrono::duration<double>(now - *last).count() / tokens;
    for (int i = 0; i < tokens; ++i) r->itl_s.push_back(gap);
  }
  r->output_tokens += tokens;
  *last = now;
}

namespace {

class GrpcSender final : public RequestSender {
 public:
  GrpcSender(sdk::Client* client, SenderOptions options) : client_(client), options_(std::move(options)) {}

  void Send(const RequestSpec& spec, std::function<void(RequestRecord)> done) override {
    flotilla::v1::GenerateRequest req;
    req.set_model(options_.model);
    req.set_prompt(spec.prompt);
    req.set_max_tokens(spec.max_tokens);
    req.set_ignore_eos(options_.ignore_eos);
    req.mutable_sampling()->set_temperature(static_cast<float>(options_.temperature));

    struct State {
      RequestRecord record;
      SteadyTime start;
      SteadyTime last;
      std::function<void(RequestRecord)> done;
    };
    auto state = std::make_shared<State>();
    state->start = std::chrono::steady_clock::now();
    state->record.start_s = std::chrono::duration<double>(state->start - options_.epoch).count();
    state->record.requested_tokens = spec.max_tokens;
    state->done = std::move(done);

    sdk::AsyncCallbacks cb;
    cb.on_chunk = [state](const flotilla::v1::GenerateResponse& chunk) {
      RecordTokens(&state->record, state->start, &state->last, std::chrono::steady_clock::now(),
                   chunk.token_ids_size());
      if (chunk.has_usage()) state->record.prompt_tokens = static_cast<int>(chunk.usage().prompt_tokens());
    };
    cb.on_done = [this, state](const absl::Status& status, int attempts) {
      RequestRecord& r = state->record;
      r.e2e_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - state->start).count();
      r.attempts = attempts;
      r.ok = status.ok();
      if (!status.ok()) {
        r.error = absl::StatusCodeToString(status.code());
        r.message = std::string(status.message());
      }
      Forget(state.get());
      state->done(std::move(r));
    };
    sdk::CallOptions call;
    if (options_.timeout_s > 0) call.timeout = absl::Seconds(options_.timeout_s);
    // Registered before the call starts, so CancelAll can reach it; on_done may run before
    // GenerateAsync returns (an immediate failure), hence the check under the lock.
    std::shared_ptr<sdk::AsyncGeneration> handle = client_->GenerateAsync(req, std::move(cb), call);
    std::lock_guard<std::mutex> lock(mu_);
    if (!finished_.erase(state.get())) inflight_[state.get()] = handle;
  }

  void CancelAll() override {
    std::map<const void*, std::shared_ptr<sdk::AsyncGeneration>> all;
    {
      std::lock_guard<std::mutex> lock(mu_);
      all = inflight_;
    }
    for (auto& [key, h] : all) h->Cancel();
  }

 private:
  void Forget(const void* key) {
    std::lock_guard<std::mutex> lock(mu_);
    if (!inflight_.erase(key)) finished_.insert(key);
  }

  sdk::Client* client_;
  SenderOptions options_;
  std::mutex mu_;
  std::map<const void*, std::shared_ptr<sdk::AsyncGeneration>> inflight_;
  std::set<const void*> finished_;  // done before Send registered them
};

}  // namespace

std::unique_ptr<RequestSender> MakeGrpcSender(sdk::Client* client, SenderOptions options) {
  return std::make_unique<GrpcSender>(client, std::move(options));
}

}  // namespace flotilla::cli::bench
