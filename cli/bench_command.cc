// `flotilla bench`: a load generator against the gateway over gRPC or the OpenAI HTTP API.
// Scenarios, distributions and the report are in cli/bench/; this file is flags and wiring.
#include <CLI/CLI.hpp>
#include <unistd.h>

#include <cstdio>

#include "cli/bench/progress.h"
#include "cli/bench/runner.h"
#include "cli/bench/sender.h"
#include "cli/bench/stats.h"
#include "cli/bench/workload.h"
#include "cli/client_flags.h"
#include "cli/commands.h"
#include "cli/fleet_state.h"
#include "cli/signal_watch.h"
#include "flotilla/sdk/client.h"

namespace flotilla::cli {
namespace {

struct BenchArgs {
  ClientFlags client;
  std::string api = "grpc";
  std::string http_url;
  std::string model;
  std::string scenario = "concurrency";
  int concurrency = 8;
  double rate = 10;
  double burst_rate = 0;
  double burst_start_s = -1;
  double burst_duration_s = -1;
  double ramp_from = 0;
  std::string arrivals = "poisson";
  double duration_s = 30;
  size_t requests = 0;
  std::string prompt_len = "uniform:16:64";
  std::string output_len = "128";
  int max_context = -1;
  double temperature = 0;
  bool no_ignore_eos = false;
  double slo_ttft_ms = 0;
  double slo_tpot_ms = 0;
  double slo_e2e_ms = 0;
  double timeout_s = 120;
  int retries = 0;
  int max_inflight = 1024;
  uint64_t seed = 1;
  bool json = false;
  bool progress = false;
  bool no_progress = false;
  bool fail_on_error = false;
};

void Fail(const absl::Status& st) { std::fprintf(stderr, "error: %s\n", std::string(st.message()).c_str()); }

int RunBench(const BenchArgs& a) {
  std::atomic<bool> stop{false};
  SignalWatch signals([&](int) {
    if (stop.exchange(true)) return;
    std::fprintf(stderr, "\ninterrupted: cancelling requests in flight and reporting what was measured\n");
  });

  bench::LoadShape shape;
  absl::StatusOr<bench::Scenario> scenario = bench::ParseScenario(a.scenario);
  if (!scenario.ok()) return Fail(scenario.status()), 2;
  shape.scenario = *scenario;
  shape.concurrency = a.concurrency;
  shape.rate = a.rate;
  shape.burst_rate = a.burst_rate;
  shape.burst_start_s = a.burst_start_s;
  shape.burst_duration_s = a.burst_duration_s;
  shape.ramp_from = a.ramp_from;
  shape.poisson = a.arrivals == "poisson";
  if (absl::Status st = bench::ValidateShape(shape, a.duration_s); !st.ok()) return Fail(st), 2;
  absl::StatusOr<bench::LengthDist> prompt_len = bench::LengthDist::Parse(a.prompt_len);
  if (!prompt_len.ok()) return Fail(prompt_len.status()), 2;
  absl::StatusOr<bench::LengthDist> output_len = bench::LengthDist::Parse(a.output_len);
  if (!output_len.ok()) return Fail(output_len.status()), 2;

  // gRPC is used for model discovery in both modes (the gateway serves both APIs).
  absl::StatusOr<sdk::ClientOptions> options = MakeClientOptions(a.client);
  if (!options.ok()) return Fail(options.status()), 1;
  options->retry.max_attempts = 1 + std::max(0, a.retries);
  absl::StatusOr<std::unique_ptr<sdk::Client>> client = sdk::Client::Create(*options);
  if (!client.ok()) return Fail(client.status()), 1;
  if (!(*client)->WaitForConnected(absl::Seconds(10))) {
    return Fail(absl::UnavailableError("cannot connect to the gateway at " + options->target)), 1;
  }
  sdk::CallOptions list_call;
  list_call.timeout = absl::Seconds(10);
  absl::StatusOr<std::vector<flotilla::v1::ModelInfo>> models = (*client)->ListModels(list_call);
  if (!models.ok()) return Fail(models.status()), 1;
  absl::StatusOr<std::string> model = ResolveModel(**client, a.model);
  if (!model.ok()) return Fail(model.status()), 1;
  int max_context = a.max_context;
  if (max_context < 0) {
    max_context = 0;
    for (const auto& m : *models) {
      if (m.id() == *model) max_context = static_cast<int>(m.context_length());
    }
  }

  bench::SenderOptions so;
  so.model = *model;
  so.temperature = a.temperature;
  so.ignore_eos = !a.no_ignore_eos;
  so.timeout_s = a.timeout_s;
  so.retries = a.retries;
  so.api_key = options->api_key;
  std::unique_ptr<bench::RequestSender> sender;
  if (a.api == "grpc") {
    sender = bench::MakeGrpcSender(client->get(), so);
  } else {
    std::string url = a.http_url;
    if (url.empty()) {
      absl::StatusOr<FleetState> state = ReadFleetState(StateFilePath(a.client.state_dir));
      if (!state.ok() || state->gateway_http.empty()) {
        return Fail(absl::InvalidArgumentError("--api openai needs --http-url (or a running `flotilla up`)")), 2;
      }
      url = "http://" + state->gateway_http;
    }
    absl::StatusOr<std::unique_ptr<bench::RequestSender>> s = bench::MakeOpenAiSender(url, so);
    if (!s.ok()) return Fail(s.status()), 2;
    sender = *std::move(s);
  }

  bench::RequestFactory factory(*prompt_len, *output_len, max_context, a.seed);
  bench::RunOptions ro;
  ro.shape = shape;
  ro.duration_s = a.duration_s;
  ro.max_requests = a.requests;
  ro.max_inflight = a.max_inflight;
  ro.seed = a.seed;
  bench::RunProgress progress;
  const bool draw = !a.no_progress && (a.progress || isatty(STDERR_FILENO));
  const bench::SteadyTime epoch = std::chrono::steady_clock::now();
  std::vector<bench::RequestRecord> records;
  {
    bench::ProgressBar bar(&progress, epoch, a.duration_s, a.requests, draw);
    records = bench::RunLoad(ro, factory, *sender, epoch, &progress, &stop);
  }
  sender.reset();  // waits for HTTP request threads

  bench::Slo slo{a.slo_ttft_ms, a.slo_tpot_ms, a.slo_e2e_ms};
  bench::BenchReport report = bench::BuildReport(records, slo);
  report.api = a.api;
  report.model = *model;
  report.scenario = bench::ScenarioName(shape.scenario);
  report.prompt_len = a.prompt_len;
  report.output_len = a.output_len;
  switch (shape.scenario) {
    case bench::Scenario::kConcurrency:
      report.shape["concurrency"] = shape.concurrency;
      break;
    case bench::Scenario::kRate:
      report.shape["rate"] = shape.rate;
      break;
    case bench::Scenario::kBurst:
      report.shape["rate"] = shape.rate;
      report.shape["burst_rate"] = shape.burst_rate;
      report.shape["burst_start_s"] = shape.burst_start_s >= 0 ? shape.burst_start_s : a.duration_s / 3;
      report.shape["burst_duration_s"] = shape.burst_duration_s >= 0 ? shape.burst_duration_s : a.duration_s / 3;
      break;
    case bench::Scenario::kRamp:
      report.shape["ramp_from"] = shape.ramp_from;
      report.shape["rate"] = shape.rate;
      break;
  }
  report.shape["duration_s"] = a.duration_s;
  report.shape["max_context"] = max_context;
  std::fputs((a.json ? bench::ReportToJson(report) : bench::ReportToText(report)).c_str(), stdout);
  if (stop.load()) return 130;
  return a.fail_on_error && report.failed > 0 ? 3 : 0;
}

}  // namespace

void RegisterBench(CLI::App& app, int* exit_code) {
  auto a = std::make_shared<BenchArgs>();
  CLI::App* cmd = app.add_subcommand("bench", "Load-test the gateway: TTFT, inter-token and end-to-end latency, throughput, goodput");
  cmd->add_option("--api", a->api, "grpc (flotilla.v1) or openai (HTTP /v1/completions, streamed)")
      ->check(CLI::IsMember({"grpc", "openai"}))->capture_default_str();
  cmd->add_option("--http-url", a->http_url, "Gateway HTTP base URL for --api openai (default: the running `flotilla up`)");
  cmd->add_option("-m,--model", a->model, "Model (default: the only one served)");
  cmd->add_option("--scenario", a->scenario, "concurrency (closed loop), rate (Poisson), burst (spike) or ramp (growth)")
      ->capture_default_str();
  cmd->add_option("-c,--concurrency", a->concurrency, "concurrency: requests in flight")->capture_default_str();
  cmd->add_option("-r,--rate", a->rate, "rate: requests/s; burst: the base rate; ramp: the final rate")->capture_default_str();
  cmd->add_option("--burst-rate", a->burst_rate, "burst: requests/s during the spike");
  cmd->add_option("--burst-start", a->burst_start_s, "burst: seconds into the run the spike starts (default duration/3)");
  cmd->add_option("--burst-duration", a->burst_duration_s, "burst: seconds the spike lasts (default duration/3)");
  cmd->add_option("--ramp-from", a->ramp_from, "ramp: requests/s at the start")->capture_default_str();
  cmd->add_option("--arrivals", a->arrivals, "poisson or uniform (evenly spaced) arrivals")
      ->check(CLI::IsMember({"poisson", "uniform"}))->capture_default_str();
  cmd->add_option("-d,--duration", a->duration_s, "Seconds of sending (in-flight requests then finish)")->capture_default_str();
  cmd->add_option("-n,--requests", a->requests, "Stop sending after this many requests (0: no limit)");
  cmd->add_option("--prompt-len", a->prompt_len,
                  "Prompt tokens: N, fixed:N, uniform:LO:HI, normal:MEAN:SD, lognormal:MEDIAN:SIGMA, or a weighted "
                  "mix W*DIST,W*DIST (e.g. 0.8*uniform:16:64,0.2*uniform:300:400)")
      ->capture_default_str();
  cmd->add_option("--output-len", a->output_len, "Output tokens (max_tokens), same syntax")->capture_default_str();
  cmd->add_option("--max-context", a->max_context, "Shrink requests to fit this context (default: the model's; 0: off)");
  cmd->add_option("--temperature", a->temperature, "Sampling temperature")->capture_default_str();
  cmd->add_flag("--no-ignore-eos", a->no_ignore_eos, "Let the model stop at end-of-sequence (outputs get shorter)");
  cmd->add_option("--slo-ttft-ms", a->slo_ttft_ms, "Goodput SLO: time to first token (0: unchecked)");
  cmd->add_option("--slo-tpot-ms", a->slo_tpot_ms, "Goodput SLO: time per output token after the first");
  cmd->add_option("--slo-e2e-ms", a->slo_e2e_ms, "Goodput SLO: end-to-end latency");
  cmd->add_option("--timeout", a->timeout_s, "Seconds per request (the gRPC deadline; 0: none)")->capture_default_str();
  cmd->add_option("--retries", a->retries, "SDK retries of UNAVAILABLE before the first token (gRPC)")->capture_default_str();
  cmd->add_option("--max-inflight", a->max_inflight, "Open loop: arrivals wait while this many are in flight")
      ->capture_default_str();
  cmd->add_option("--seed", a->seed, "Seed of arrivals, lengths and prompts")->capture_default_str();
  cmd->add_flag("--json", a->json, "Print the report as JSON");
  cmd->add_flag("--progress", a->progress, "Draw the progress bar even when stderr is not a terminal");
  cmd->add_flag("--no-progress", a->no_progress, "No progress bar");
  cmd->add_flag("--fail-on-error", a->fail_on_error, "Exit 3 when any request failed");
  AddClientFlags(*cmd, &a->client);
  cmd->callback([a, exit_code] { *exit_code = RunBench(*a); });
}

}  // namespace flotilla::cli
