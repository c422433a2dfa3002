// Serving benchmark for one worker: N concurrent clients each send 128-token requests (greedy,
// or sampled with --temperature / --top-p) back to back for a fixed time over gRPC. Prints
// requests/s, generated tokens/s, TTFT and inter-token latency percentiles, and the worker's
// peak resident memory (VmHWM).
//
//   worker_bench --model stories260K-q8_0.gguf --concurrency 1,4,16,64 --seconds 10
//   worker_bench --address 127.0.0.1:50051 --concurrency 16   (an already running worker)
//   worker_bench --model 110m-q8_0.gguf --concurrency 16 --temperature 0.8 --top-p 0.95
#include <grpcpp/grpcpp.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "bench/bin_dir.h"
#include "flotilla/worker/v1/worker.grpc.pb.h"
#include "tests/common/subprocess.h"
#include "tests/common/temp_dir.h"

namespace {

namespace wv1 = flotilla::worker::v1;
using Clock = std::chrono::steady_clock;

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t i = std::min(v.size() - 1, static_cast<size_t>(p / 100.0 * v.size()));
  return v[i];
}

long ReadKb(int pid, const char* field) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(field, 0) == 0) return std::stol(line.substr(std::strlen(field)));
  }
  return -1;
}

struct RunResult {
  int requests = 0;
  int64_t tokens = 0;
  int errors = 0;
  double seconds = 0;
  std::vector<double> ttft, itl, e2e;
};

// Sampling of every request: greedy by default; --temperature/--top-p measure the sampled path.
struct Sampling {
  float temperature = 0.0f;
  float top_p = 1.0f;
};

RunResult RunLoad(wv1::Worker::Stub& stub, int concurrency, double seconds, int max_tokens, const std::string& prompt,
                  const Sampling& sampling) {
  RunResult total;
  std::mutex mu;
  const auto start = Clock::now();
  const auto until = start + std::chrono::duration<double>(seconds);
  std::vector<std::thread> threads;
  for (int c = 0; c < concurrency; ++c) {
    threads.emplace_back([&, c] {
      RunResult mine;
      int n = 0;
      while (Clock::now() < until) {
        wv1::GenerateRequest req;
        // Distinct prompts per client so the prefix cache does not make the figures look better.
        req.set_prompt(prompt + " " + std::to_string(c) + " " + std::to_string(n++));
        req.set_max_tokens(max_tokens);
        req.set_ignore_eos(true);
        req.mutable_sampling()->set_temperature(sampling.temperature);
        if (sampling.top_p < 1.0f) req.mutable_sampling()->set_top_p(sampling.top_p);
        grpc::ClientContext ctx;
        const auto t0 = Clock::now();
        auto reader = stub.Generate(&ctx, req);
        wv1::GenerateResponse msg;
        auto last = t0;
        bool first = true;
        int64_t toks = 0;
        while (reader->Read(&msg)) {
          if (msg.token_ids_size() == 0) continue;
          const auto now = Clock::now();
          if (first) {
            mine.ttft.push_back(std::chrono::duration<double>(now - t0).count());
            first = false;
          } else {
            // Several tokens in one message share the gap.
            const double gap = std::chrono::duration<double>(now - last).count() / msg.token_ids_size();
            for (int k = 0; k < msg.token_ids_size(); ++k) mine.itl.push_back(gap);
          }
          last = now;
          toks += msg.token_ids_size();
        }
        if (!reader->Finish().ok()) {
          mine.errors++;
          continue;
        }
        mine.e2e.push_back(std::chrono::duration<double>(Clock::now() - t0).count());
        mine.requests++;
        mine.tokens += toks;
      }
      std::lock_guard<std::mutex> l(mu);
      total.requests += mine.requests;
      total.tokens += mine.tokens;
      total.errors += mine.errors;
      total.ttft.insert(total.ttft.end(), mine.ttft.begin(), mine.ttft.end());
      total.itl.insert(total.itl.end(), mine.itl.begin(), mine.itl.end());
      total.e2e.insert(total.e2e.end(), mine.e2e.begin(), mine.e2e.end());
    });
  }
  for (auto& t : threads) t.join();
  total.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  return total;
}

}  // namespace

int main(int argc, char** argv) {
  flotilla::bench::UseOwnBinDir();
  CLI::App app{"worker serving benchmark"};
  std::string model = "stories260K-q8_0.gguf", address, conc = "1,4,16,64", extra;
  double seconds = 10;
  int max_tokens = 128, ctx = 512, threads = 2;
  std::string prompt = "Once upon a time";
  app.add_option("--model", model);
  app.add_option("--address", address, "Use a running worker instead of starting one");
  app.add_option("--concurrency", conc);
  app.add_option("--seconds", seconds);
  app.add_option("--max-tokens", max_tokens);
  app.add_option("--ctx-size", ctx);
  app.add_option("--threads", threads);
  app.add_option("--prompt", prompt);
  app.add_option("--worker-args", extra, "Extra flags for the worker, space-separated");
  Sampling sampling;
  app.add_option("--temperature", sampling.temperature, "Sampling temperature of every request (0: greedy)")->check(CLI::Range(0.0, 100.0));
  app.add_option("--top-p", sampling.top_p, "Nucleus sampling of every request (1: off)")->check(CLI::Range(0.01, 1.0));
  CLI11_PARSE(app, argc, argv);

  flotilla::testing::TempDir dir;
  flotilla::testing::Subprocess worker;
  int pid = -1;
  if (address.empty()) {
    std::vector<std::string> args = {flotilla::testing::BinDir() + "/flotilla-worker", "--model", model, "--ctx-size",
                                     std::to_string(ctx), "--threads", std::to_string(threads), "--ready-file",
                                     dir.File("ready.json"), "--max-num-seqs", "64", "--log-level", "warn"};
    for (auto& a : absl::StrSplit(extra, ' ', absl::SkipEmpty())) args.emplace_back(a);
    if (!worker.Start(args, dir.File("worker.log"))) return 1;
    auto ready = worker.WaitReady(dir.File("ready.json"), std::chrono::seconds(600));
    if (ready.is_null()) {
      std::fprintf(stderr, "worker did not start:\n%s\n", worker.Log().c_str());
      return 1;
    }
    address = "127.0.0.1:" + std::to_string(ready["grpc_port"].get<int>());
    pid = ready["pid"].get<int>();
  }
  auto stub = wv1::Worker::NewStub(grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
  std::string info_model_path;  // as the worker resolved it
  {
    grpc::ClientContext ctx;
    wv1::InfoResponse info;
    if (!stub->Info(&ctx, {}, &info).ok()) return 1;
    std::printf("model %s (%s), %s, %u KV blocks x %u\n", info.model().c_str(), info.quantization().c_str(),
                info.backend().c_str(), info.num_kv_blocks(), info.block_size());
    info_model_path = info.model_path();
  }
  if (pid > 0) std::printf("worker RSS after start: %.1f MB\n", ReadKb(pid, "VmRSS:") / 1024.0);
  if (sampling.temperature > 0) {
    std::printf("sampling: temperature %.2f, top-p %.2f\n", sampling.temperature, sampling.top_p);
  } else {
    std::printf("sampling: greedy\n");
  }
  std::printf("%-11s %9s %10s %10s %10s %10s %10s %10s %6s\n", "concurrency", "req/s", "tok/s", "ttft p50", "ttft p99",
              "itl p50", "itl p99", "e2e p50", "errors");
  for (auto& c : absl::StrSplit(conc, ',', absl::SkipEmpty())) {
    int n = 0;
    if (!absl::SimpleAtoi(c, &n) || n <= 0) continue;
    const RunResult r = RunLoad(*stub, n, seconds, max_tokens, prompt, sampling);
    std::printf("%-11d %9.1f %10.0f %8.1fms %8.1fms %8.2fms %8.2fms %8.0fms %6d\n", n, r.requests / r.seconds,
                r.tokens / r.seconds, 1e3 * Percentile(r.ttft, 50), 1e3 * Percentile(r.ttft, 99), 1e3 * Percentile(r.itl, 50),
                1e3 * Percentile(r.itl, 99), 1e3 * Percentile(r.e2e, 50), r.errors);
    std::fflush(stdout);
  }
  if (pid > 0) {
    const double peak_mb = ReadKb(pid, "VmHWM:") / 1024.0;
    std::printf("worker peak RSS (VmHWM): %.1f MB\n", peak_mb);
    // The memory goal: model file + configured KV memory + 100 MB (when the KV budget was given).
    std::vector<std::string> words = absl::StrSplit(extra, ' ', absl::SkipEmpty());
    auto kv = std::find(words.begin(), words.end(), "--kv-memory-mb");
    double kv_mb = 0;
    std::error_code ec;
    const auto file_bytes = std::filesystem::file_size(info_model_path, ec);
    if (kv != words.end() && kv + 1 != words.end() && absl::SimpleAtod(*(kv + 1), &kv_mb) && !ec) {
      const double bound = static_cast<double>(file_bytes) / (1024.0 * 1024.0) + kv_mb + 100;
      std::printf("bound (MiB, as the RSS above): model file %.1f + KV %.0f + 100 = %.1f -> %s\n",
                  static_cast<double>(file_bytes) / (1024.0 * 1024.0), kv_mb, bound, peak_mb <= bound ? "within" : "OVER");
    }
  }
  return 0;
}
