// Test helpers that talk to real flotilla-worker processes: one Generate call, and a load
// generator that picks workers from the fleet file before every request, as a gateway
// watching that file would.
#pragma once

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "autoscaler/fleet_file.h"
#include "common/model_path.h"
#include "flotilla/worker/v1/worker.grpc.pb.h"

namespace flotilla::autoscaler::testing {

// The stories260K model from the project's model search path, or "" when absent.
inline std::string TestModelPath() {
  absl::StatusOr<std::string> p = ResolveModelPath(kDefaultModel);
  return p.ok() ? std::filesystem::absolute(*p).string() : "";
}

// flotilla-worker from this build, or "" when it has not been built.
inline std::string TestWorkerBinary() {
  if (const char* dir = std::getenv("FLOTILLA_BIN_DIR")) {
    std::filesystem::path p = std::filesystem::path(dir) / "flotilla-worker";
    if (std::filesystem::exists(p)) return p.string();
  }
  return "";
}

// One greedy completion; OK when the stream ended with a finish reason.
inline grpc::Status GenerateOn(const std::shared_ptr<grpc::Channel>& channel, int max_tokens) {
  auto stub = flotilla::worker::v1::Worker::NewStub(channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  flotilla::worker::v1::GenerateRequest req;
  req.set_prompt("Once upon a time");
  req.set_max_tokens(static_cast<uint32_t>(max_tokens));
  req.set_ignore_eos(true);
  auto reader = stub->Generate(&ctx, req);
  flotilla::worker::v1::GenerateResponse resp;
  int tokens = 0;
  while (reader->Read(&resp)) tokens += resp.token_ids_size();
  grpc::Status st = reader->Finish();
  if (st.ok() && tokens == 0) return grpc::Status(grpc::StatusCode::INTERNAL, "no tokens");
  return st;
}

inline grpc::Status GenerateOnce(const std::string& address, int max_tokens) {
  return GenerateOn(grpc::CreateChannel(address, grpc::InsecureChannelCredentials()), max_tokens);
}

// `threads` clients, each sending requests back to back to a worker picked at random from the
// fleet file (re-read before every request). Counts successes and failures.
class FleetLoad {
 public:
  FleetLoad(std::string fleet_file, int max_tokens) : fleet_file_(std::move(fleet_file)), max_tokens_(max_tokens) {}
  ~FleetLoad() { SetThreads(0); }

  void SetThreads(int n) {
    while (static_cast<int>(threads_.size()) > n) {
      stops_.back()->store(true);
      threads_.back().join();
      threads_.pop_back();
      stops_.pop_back();
    }
    while (static_cast<int>(threads_.size()) < n) {
      stops_.push_back(std::make_unique<std::atomic<bool>>(false));
      std::atomic<bool>* stop = stops_.back().get();
      threads_.emplace_back([this, stop, seed = threads_.size()] { Loop(stop, static_cast<unsigned>(seed)); });
    }
  }
  int ok() const { return ok_.load(); }
  int failed() const { return failed_.load(); }
  std::vector<std::string> failures() {
    std::lock_guard<std::mutex> lock(mu_);
    return failures_;
  }

 private:
  void Loop(std::atomic<bool>* stop, unsigned seed) {
    std::mt19937 rng(seed);
    std::map<std::string, std::shared_ptr<grpc::Channel>> channels;
    while (!stop->load()) {
      absl::StatusOr<std::vector<FleetEntry>> fleet = ReadFleetFile(fleet_file_);
      if (!fleet.ok() || fleet->empty()) {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
        continue;
      }
      const FleetEntry& e = (*fleet)[rng() % fleet->size()];
      // One channel per worker and client, kept like a gateway keeps its connections.
      std::shared_ptr<grpc::Channel>& channel = channels[e.address];
      if (!channel) channel = grpc::CreateChannel(e.address, grpc::InsecureChannelCredentials());
      grpc::Status st = GenerateOn(channel, max_tokens_);
      if (st.ok()) {
        ok_.fetch_add(1);
      } else {
        failed_.fetch_add(1);
        std::lock_guard<std::mutex> lock(mu_);
        failures_.push_back(absl::StrCat(e.id, ": ", st.error_message()));
      }
    }
  }

  std::string fleet_file_;
  int max_tokens_;
  std::vector<std::thread> threads_;
  std::vector<std::unique_ptr<std::atomic<bool>>> stops_;
  std::atomic<int> ok_{0};
  std::atomic<int> failed_{0};
  std::mutex mu_;
  std::vector<std::string> failures_;
};

}  // namespace flotilla::autoscaler::testing
