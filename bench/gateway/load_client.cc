#include "bench/gateway/load_client.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "flotilla/v1/inference.grpc.pb.h"
#include "flotilla/worker/v1/worker.grpc.pb.h"

namespace flotilla::gateway::bench {
namespace {

template <typename Resp>
class StreamCall final : public grpc::ClientReadReactor<Resp> {
 public:
  explicit StreamCall(std::function<void(const CallResult&)> done) : done_(std::move(done)) {
    r_.sent = r_.first_token = Clock::now();
  }
  grpc::ClientContext ctx;

  void Begin() {
    this->StartRead(&resp_);
    this->StartCall();
  }
  void OnReadDone(bool ok) override {
    if (!ok) return;
    if (resp_.token_ids_size() > 0 && r_.tokens == 0) r_.first_token = Clock::now();
    r_.tokens += resp_.token_ids_size();
    this->StartRead(&resp_);
  }
  void OnDone(const grpc::Status& s) override {
    r_.done = Clock::now();
    r_.code = s.error_code();
    r_.has_retry_hint = ctx.GetServerTrailingMetadata().count("retry-after-ms") > 0;
    done_(r_);
    delete this;
  }

 private:
  Resp resp_;
  CallResult r_;
  std::function<void(const CallResult&)> done_;
};

}  // namespace

struct Target::Impl {
  std::vector<std::unique_ptr<flotilla::v1::Inference::Stub>> gw;
  std::vector<std::unique_ptr<flotilla::worker::v1::Worker::Stub>> worker;
  std::atomic<uint64_t> next{0};
};

Target::Target(const std::string& address, bool gateway, int channels) : impl_(new Impl), gateway_(gateway) {
  for (int i = 0; i < channels; ++i) {
    grpc::ChannelArguments args;
    args.SetInt("grpc.channel_id", i);  // distinct channels, not one shared subchannel
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    auto ch = grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args);
    if (gateway) {
      impl_->gw.push_back(flotilla::v1::Inference::NewStub(ch));
    } else {
      impl_->worker.push_back(flotilla::worker::v1::Worker::NewStub(ch));
    }
  }
}

Target::~Target() = default;

void Target::Call(const RequestSpec& spec, std::function<void(const CallResult&)> done) {
  const uint64_t n = impl_->next.fetch_add(1);
  if (gateway_) {
    auto* call = new StreamCall<flotilla::v1::GenerateResponse>(std::move(done));
    flotilla::v1::GenerateRequest req;
    req.set_model(spec.model);
    req.set_prompt(spec.prompt);
    req.set_max_tokens(spec.max_tokens);
    req.set_ignore_eos(spec.ignore_eos);
    if (spec.greedy) req.mutable_sampling()->set_temperature(0);
    call->ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(120));
    impl_->gw[n % impl_->gw.size()]->async()->Generate(&call->ctx, &req, call);
    call->Begin();
  } else {
    auto* call = new StreamCall<flotilla::worker::v1::GenerateResponse>(std::move(done));
    flotilla::worker::v1::GenerateRequest req;
    req.set_prompt(spec.prompt);
    req.set_max_tokens(spec.max_tokens);
    req.set_ignore_eos(spec.ignore_eos);
    if (spec.greedy) req.mutable_sampling()->set_temperature(0);
    call->ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(120));
    impl_->worker[n % impl_->worker.size()]->async()->Generate(&call->ctx, &req, call);
    call->Begin();
  }
}

std::vector<CallResult> RunClosedLoop(Target& target, const std::vector<RequestSpec>& specs, int streams,
                                      std::chrono::milliseconds duration) {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<CallResult> results;
  int open = 0;
  uint64_t next = 0;
  const auto end = Clock::now() + duration;
  std::function<void()> start_one;
  start_one = [&] {
    const RequestSpec& spec = specs[next++ % specs.size()];
    ++open;
    target.Call(spec, [&](const CallResult& r) {
      std::lock_guard<std::mutex> lock(mu);
      results.push_back(r);
      --open;
      if (Clock::now() < end) start_one();
      cv.notify_all();
    });
  };
  {
    std::lock_guard<std::mutex> lock(mu);
    for (int i = 0; i < streams; ++i) start_one();
  }
  std::unique_lock<std::mutex> lock(mu);
  cv.wait(lock, [&] { return open == 0 && Clock::now() >= end; });
  return results;
}

std::vector<CallResult> RunOpenLoop(Target& target, const std::vector<RequestSpec>& specs, double rate,
                                    std::chrono::milliseconds duration, const std::function<void(int)>& on_tick) {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<CallResult> results;
  int64_t sent = 0;
  const auto start = Clock::now();
  const auto end = start + duration;
  const auto gap = std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(1.0 / rate));
  auto next_send = start;
  auto next_tick = start + std::chrono::seconds(1);
  int tick = 0;
  while (Clock::now() < end) {
    const auto now = Clock::now();
    if (now >= next_tick) {
      if (on_tick) on_tick(++tick);
      next_tick += std::chrono::seconds(1);
    }
    // Catch up if the sender fell behind, so the offered rate is the configured one.
    while (next_send <= now && next_send < end) {
      const RequestSpec& spec = specs[static_cast<size_t>(sent) % specs.size()];
      {
        std::lock_guard<std::mutex> lock(mu);
        ++sent;
      }
      target.Call(spec, [&](const CallResult& r) {
        std::lock_guard<std::mutex> lock(mu);
        results.push_back(r);
        cv.notify_all();
      });
      next_send += gap;
    }
    std::this_thread::sleep_until(std::min(next_send, next_tick));
  }
  // Every call has a deadline, so every call ends (a call that never got an answer ends with
  // DEADLINE_EXCEEDED and counts as lost).
  std::unique_lock<std::mutex> lock(mu);
  cv.wait(lock, [&] { return static_cast<int64_t>(results.size()) == sent; });
  return results;
}

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const double idx = p / 100.0 * static_cast<double>(v.size() - 1);
  const size_t lo = static_cast<size_t>(idx);
  const size_t hi = std::min(lo + 1, v.size() - 1);
  return v[lo] + (v[hi] - v[lo]) * (idx - static_cast<double>(lo));
}

}  // namespace flotilla::gateway::bench
