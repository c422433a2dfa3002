// gateway_bench: what the gateway costs and how it behaves under overload.
//   1. Throughput at N streams (default 16), straight to the worker vs through the gateway,
//      alternating runs to cancel drift; the overhead in tokens/s.
//   2. Added latency: single requests alternating direct/gateway; p50/p99 of time to first
//      token and of the whole request, and the differences.
//   3. Overload: an open-loop request rate of F x (default 10) the capacity measured in (1), for
//      D seconds (default 60): how fast the excess is refused and whether with a retry hint,
//      accepted requests' p99 TTFT against the unloaded p99 from (2), the gateway's resident
//      memory every second, and lost requests (anything but OK or a refusal, or an accepted
//      request that did not get all its tokens).
// It starts its own flotilla-worker and flotilla-gateway (from the build's bin directory).
#include <sched.h>
#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>
#include <thread>

#include "CLI/CLI.hpp"
#include "bench/bin_dir.h"
#include "bench/gateway/load_client.h"
#include "nlohmann/json.hpp"
#include "tests/gateway/process_util.h"

namespace fb = flotilla::gateway::bench;
namespace ft = flotilla::gateway::testing;
using json = nlohmann::json;
using namespace std::chrono_literals;

namespace {

struct Proc {
  ft::Subprocess p;
  json ready;
};

bool StartProc(Proc& proc, std::vector<std::string> argv, const std::string& dir, const std::string& name) {
  const std::string ready = dir + "/" + name + ".ready";
  argv.push_back("--ready-file");
  argv.push_back(ready);
  if (!proc.p.Start(argv, dir + "/" + name + ".log")) return false;
  if (!ft::WaitFor([&] { return !ft::ReadFileOr(ready).empty() || !proc.p.Running(); }, 60s) || !proc.p.Running()) {
    std::string cmd;
    for (const std::string& a : argv) cmd += (cmd.empty() ? "" : " ") + a;
    std::cerr << name << " did not start (" << cmd << "):\n" << ft::ReadFileOr(dir + "/" + name + ".log");
    return false;
  }
  proc.ready = json::parse(ft::ReadFileOr(ready));
  return true;
}

// User + system CPU seconds a process has used so far.
double CpuSeconds(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string content((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  // Fields after the command name (which may contain spaces) start after the last ')'.
  std::istringstream rest(content.substr(content.rfind(')') + 2));
  std::string field;
  double ticks = 0;
  for (int i = 3; i <= 15 && rest >> field; ++i) {
    if (i == 14 || i == 15) ticks += std::stod(field);
  }
  return ticks / static_cast<double>(sysconf(_SC_CLK_TCK));
}

double RssMb(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stod(line.substr(6)) / 1024.0;
  }
  return 0;
}

std::string Cpu() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
  }
  return "unknown";
}

struct Throughput {
  double tokens_per_s = 0;
  double requests_per_s = 0;
  int errors = 0;
  std::map<int, int> codes;  // non-OK status codes seen
  double ttft_p99_ms = 0;
};

Throughput Measure(fb::Target& t, const std::vector<fb::RequestSpec>& specs, int streams, std::chrono::milliseconds d) {
  // Let the worker's load reports catch up with the end of the previous run first: the gateway
  // would otherwise (rightly) see the last run's direct load as someone else's and refuse.
  std::this_thread::sleep_for(500ms);
  auto t0 = fb::Clock::now();
  auto rs = fb::RunClosedLoop(t, specs, streams, d);
  const double secs = std::chrono::duration<double>(fb::Clock::now() - t0).count();
  Throughput out;
  int64_t tokens = 0, ok = 0;
  std::vector<double> ttfts;
  for (const auto& r : rs) {
    tokens += r.tokens;
    if (r.code != grpc::StatusCode::OK) {
      ++out.errors;
      ++out.codes[r.code];
    } else {
      ++ok;
      ttfts.push_back(r.ttft_ms());
    }
  }
  out.tokens_per_s = tokens / secs;
  out.requests_per_s = ok / secs;
  out.ttft_p99_ms = fb::Percentile(ttfts, 99);
  for (auto [code, n] : out.codes) std::fprintf(stderr, "  status %d: %d calls\n", code, n);
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  flotilla::bench::UseOwnBinDir();
  CLI::App app{"gateway_bench: throughput, added latency and overload behaviour of flotilla-gateway"};
  std::string model = "stories260K-q8_0.gguf";
  int streams = 16, max_tokens = 128, worker_threads = 1, max_num_seqs = 16, latency_requests = 300, rounds = 2;
  double duration_s = 10, overload_s = 60, overload_factor = 10;
  std::string bin_dir = ft::BinDir(), json_out;
  bool skip_overload = false;
  std::string gateway_log_level = "warn";
  bool pin = false;
  bool keep_dir = false;
  app.add_option("--model", model, "Model file or name on the search path");
  app.add_option("--streams", streams, "Concurrent streams for the throughput runs");
  app.add_option("--max-tokens", max_tokens, "Tokens per request (greedy, EOS ignored)");
  app.add_option("--duration-s", duration_s, "Length of each throughput run");
  app.add_option("--rounds", rounds, "Direct/gateway throughput pairs");
  app.add_option("--latency-requests", latency_requests, "Single requests per side for the latency comparison");
  app.add_option("--overload-s", overload_s, "Length of the overload run (the issue asks 60 s)");
  app.add_option("--overload-factor", overload_factor, "Offered rate as a multiple of measured capacity");
  app.add_flag("--skip-overload", skip_overload, "Only throughput and latency");
  app.add_option("--worker-threads", worker_threads, "flotilla-worker --threads");
  app.add_option("--max-num-seqs", max_num_seqs, "flotilla-worker --max-num-seqs");
  app.add_option("--bin-dir", bin_dir, "Where flotilla-worker and flotilla-gateway are");
  app.add_option("--json", json_out, "Also write the results as JSON here");
  app.add_option("--gateway-log-level", gateway_log_level, "flotilla-gateway --log-level (info logs every request)");
  app.add_flag("--keep-dir", keep_dir, "Keep the logs and ready files (the folder is printed)");
  app.add_flag("--pin", pin,
               "Worker on CPU 0, gateway and this client on the others (as when the gateway runs on its own "
               "machine); without it all three share every CPU");
  CLI11_PARSE(app, argc, argv);

 const std::string dir = ft::MakeTempDir("flotilla-gw-bench");
  const int ncpu = static_cast<int>(sysconf(_SC_NPROCESSORS_ONLN));
  std::vector<std::string> worker_pin, rest_pin;
  if (pin && ncpu >= 2) {
    worker_pin = {"taskset", "-c", "0"};
    rest_pin = {"taskset", "-c", "1-" + std::to_string(ncpu - 1)};
    cpu_set_t set;
    CPU_ZERO(&set);
    for (int c = 1; c < ncpu; ++c) CPU_SET(c, &set);
    sched_setaffinity(0, sizeof(set), &set);  // this client
  }
  auto with = [](std::vector<std::string> prefix, std::vector<std::string> argv) {
    prefix.insert(prefix.end(), argv.begin(), argv.end());
    return prefix;
  };
  Proc worker, gateway;
  if (!StartProc(worker, with(worker_pin,
                 {bin_dir + "/flotilla-worker", "--model", model, "--ctx-size", "512", "--threads",
                  std::to_string(worker_threads), "--max-num-seqs", std::to_string(max_num_seqs), "--log-level", "warn"}),
                 dir, "worker")) {
    return 1;
  }
  const std::string worker_addr = "127.0.0.1:" + std::to_string(worker.ready["grpc_port"].get<int>());
  // No gateway queue and no extra waiting on the worker: beyond its slots, refuse at once.
  if (!StartProc(gateway, with(rest_pin,
                 {bin_dir + "/flotilla-gateway", "--no-auth", "--workers", worker_addr, "--queue-size", "0",
                  "--queue-depth", "0", "--log-level", gateway_log_level}),
                 dir, "gateway")) {
    return 1;
  }
  const std::string gw_addr = "127.0.0.1:" + std::to_string(gateway.ready["grpc_port"].get<int>());
  const pid_t gw_pid = gateway.p.pid();
  std::string served = model.substr(0, model.rfind('.'));
  if (served.find('/') != std::string::npos) served = served.substr(served.rfind('/') + 1);

  std::vector<fb::RequestSpec> specs;
  const char* prompts[] = {"Once upon a time", "The little dog", "One day a girl named Lily", "Tom had a big red ball",
                           "In the park there was", "The sun was shining and", "A cat sat on the mat", "Mom said"};
  for (const char* p : prompts) specs.push_back({served, p, static_cast<uint32_t>(max_tokens), true, true});

  // One channel to the worker, as the gateway has; four to the gateway, as a pool of clients would.
  fb::Target direct(worker_addr, false, 1), through(gw_addr, true, 4);
  // Wait until the gateway routes to the worker.
  if (!ft::WaitFor(
          [&] {
            std::vector<fb::CallResult> r = fb::RunClosedLoop(through, {{served, "Hi", 1, true, true}}, 1, 1ms);
            return !r.empty() && r[0].code == grpc::StatusCode::OK;
          },
          20s)) {
    std::cerr << "gateway never served a request\n" << ft::ReadFileOr(dir + "/gateway.log");
    return 1;
  }
  Measure(direct, specs, streams, 1500ms);  // warm-up
  Measure(through, specs, streams, 1500ms);

  json out;
  out["machine"] = {{"cpu", Cpu()}, {"cores", static_cast<int>(sysconf(_SC_NPROCESSORS_ONLN))}};
  out["config"] = {{"model", model}, {"streams", streams}, {"max_tokens", max_tokens}, {"worker_threads", worker_threads},
                   {"max_num_seqs", max_num_seqs}, {"pinned", pin}};

  // 1. Throughput.
  double d_tok = 0, g_tok = 0, g_rps = 0, g_ttft99 = 0, gw_cpu = 0, gw_tokens = 0;
  int errors = 0;
  for (int round = 0; round < rounds; ++round) {
    auto d = Measure(direct, specs, streams, std::chrono::milliseconds(static_cast<int64_t>(duration_s * 1000)));
    const double cpu0 = CpuSeconds(gw_pid);
    auto g = Measure(through, specs, streams, std::chrono::milliseconds(static_cast<int64_t>(duration_s * 1000)));
    gw_cpu += CpuSeconds(gw_pid) - cpu0;
    gw_tokens += g.tokens_per_s * duration_s;
    g_ttft99 += g.ttft_p99_ms / rounds;
    std::printf("throughput round %d: direct %.0f tok/s, gateway %.0f tok/s (%.1f req/s)\n", round + 1, d.tokens_per_s,
                g.tokens_per_s, g.requests_per_s);
    d_tok += d.tokens_per_s / rounds;
    g_tok += g.tokens_per_s / rounds;
    g_rps += g.requests_per_s / rounds;
    errors += d.errors + g.errors;
  }
  const double overhead = 100.0 * (d_tok - g_tok) / d_tok;
  std::printf("\n== throughput at %d streams, %d tokens/request\n", streams, max_tokens);
  std::printf("direct to worker   %10.0f tokens/s\nthrough gateway    %10.0f tokens/s\noverhead           %10.2f %%  (errors: %d)\n",
              d_tok, g_tok, overhead, errors);
  const double us_per_token = gw_cpu / gw_tokens * 1e6;
  std::printf("gateway CPU        %10.2f us per streamed token (%.2f ms per request)\n", us_per_token,
              us_per_token * max_tokens / 1000);
  std::printf("TTFT p99 at %d streams through the gateway: %.3f ms\n", streams, g_ttft99);
  out["throughput"] = {{"direct_tokens_per_s", d_tok}, {"gateway_tokens_per_s", g_tok}, {"overhead_percent", overhead},
                       {"gateway_requests_per_s", g_rps}, {"errors", errors}, {"gateway_cpu_us_per_token", us_per_token},
                       {"gateway_ttft_p99_ms_at_capacity", g_ttft99}};

  // 2. Added latency, one request at a time, alternating.
  std::vector<double> dt, gt, dtot, gtot;
  std::vector<fb::RequestSpec> short_specs;
  for (auto s : specs) {
    s.max_tokens = 16;
    short_specs.push_back(s);
  }
  for (int i = 0; i < latency_requests; ++i) {
    for (fb::Target* t : {&direct, &through}) {
      auto r = fb::RunClosedLoop(*t, {short_specs[i % short_specs.size()]}, 1, 1ms);
      if (r.empty() || r[0].code != grpc::StatusCode::OK) continue;
      (t == &direct ? dt : gt).push_back(r[0].ttft_ms());
      (t == &direct ? dtot : gtot).push_back(r[0].total_ms());
    }
  }
  const double d50 = fb::Percentile(dt, 50), d99 = fb::Percentile(dt, 99), g50 = fb::Percentile(gt, 50), g99 = fb::Percentile(gt, 99);
  const double dt50 = fb::Percentile(dtot, 50), dt99 = fb::Percentile(dtot, 99), gt50 = fb::Percentile(gtot, 50),
               gt99 = fb::Percentile(gtot, 99);
  std::printf("\n== added latency (%d single requests each side, 16 tokens)\n", latency_requests);
  std::printf("                   p50 ms    p99 ms\n");
  std::printf("TTFT direct      %8.3f  %8.3f\nTTFT gateway     %8.3f  %8.3f\nadded            %8.3f  %8.3f\n", d50, d99, g50,
              g99, g50 - d50, g99 - d99);
  std::printf("request direct   %8.3f  %8.3f\nrequest gateway  %8.3f  %8.3f\nadded            %8.3f  %8.3f\n", dt50, dt99,
              gt50, gt99, gt50 - dt50, gt99 - dt99);
  out["latency"] = {{"ttft_direct_p50_ms", d50},      {"ttft_direct_p99_ms", d99},      {"ttft_gateway_p50_ms", g50},
                    {"ttft_gateway_p99_ms", g99},     {"ttft_added_p50_ms", g50 - d50}, {"ttft_added_p99_ms", g99 - d99},
                    {"request_added_p50_ms", gt50 - dt50}, {"request_added_p99_ms", gt99 - dt99}};

  // 3. Overload.
  if (!skip_overload) {
    const double rate = overload_factor * g_rps;
    std::printf("\n== overload: %.0f requests/s (%.0fx the measured %.1f req/s) for %.0f s\n", rate, overload_factor, g_rps,
                overload_s);
    std::vector<double> rss;
    rss.push_back(RssMb(gw_pid));
    auto results = fb::RunOpenLoop(through, specs, rate, std::chrono::milliseconds(static_cast<int64_t>(overload_s * 1000)),
                                   [&](int tick) {
                                     rss.push_back(RssMb(gw_pid));
                                     if (tick % 10 == 0) std::printf("  t=%3ds gateway RSS %.1f MB\n", tick, rss.back());
                                     std::fflush(stdout);
                                   });
    rss.push_back(RssMb(gw_pid));
    std::vector<double> reject_ms, accept_ttft;
    int accepted = 0, rejected = 0, with_hint = 0, lost = 0;
    for (const auto& r : results) {
      if (r.code == grpc::StatusCode::OK && r.tokens == max_tokens) {
        ++accepted;
        accept_ttft.push_back(r.ttft_ms());
      } else if (r.code == grpc::StatusCode::RESOURCE_EXHAUSTED && !r.got_token()) {
        ++rejected;
        reject_ms.push_back(r.total_ms());
        with_hint += r.has_retry_hint;
      } else {
        ++lost;
      }
    }
    const double rss_min = *std::min_element(rss.begin(), rss.end());
    const double rss_max = *std::max_element(rss.begin(), rss.end());
    std::printf("sent %zu: accepted %d, refused %d (%d with retry-after), lost %d\n", results.size(), accepted, rejected,
                with_hint, lost);
    std::printf("refusal latency   p50 %.3f ms  p99 %.3f ms  max %.3f ms\n", fb::Percentile(reject_ms, 50),
                fb::Percentile(reject_ms, 99), fb::Percentile(reject_ms, 100));
    std::printf("accepted TTFT     p50 %.3f ms  p99 %.3f ms  (vs p99 %.3f ms at 1 stream: %.2fx; vs %.3f ms at %d streams: %.2fx)\n",
                fb::Percentile(accept_ttft, 50), fb::Percentile(accept_ttft, 99), g99,
                fb::Percentile(accept_ttft, 99) / g99, g_ttft99, streams, fb::Percentile(accept_ttft, 99) / g_ttft99);
    std::printf("gateway RSS       start %.1f MB, end %.1f MB, min %.1f, max %.1f (spread %.1f MB)\n", rss.front(),
                rss.back(), rss_min, rss_max, rss_max - rss_min);
    out["overload"] = {{"offered_rate", rate},
                       {"seconds", overload_s},
                       {"sent", results.size()},
                       {"accepted", accepted},
                       {"refused", rejected},
                       {"refused_with_retry_after", with_hint},
                       {"lost", lost},
                       {"refusal_p50_ms", fb::Percentile(reject_ms, 50)},
                       {"refusal_p99_ms", fb::Percentile(reject_ms, 99)},
                       {"refusal_max_ms", fb::Percentile(reject_ms, 100)},
                       {"accepted_ttft_p50_ms", fb::Percentile(accept_ttft, 50)},
                       {"accepted_ttft_p99_ms", fb::Percentile(accept_ttft, 99)},
                       {"unloaded_ttft_p99_ms", g99},
                       {"capacity_ttft_p99_ms", g_ttft99},
                       {"rss_mb", rss},
                       {"rss_spread_mb", rss_max - rss_min}};
  }
  std::cout << "\nJSON " << out.dump() << "\n";
  if (!json_out.empty()) std::ofstream(json_out) << out.dump(2) << "\n";
  gateway.p.Stop();
  worker.p.Stop();
  if (keep_dir) {
    std::cout << "logs in " << dir << "\n";
  } else {
    ft::RemoveTree(dir);
  }
  return 0;
}
