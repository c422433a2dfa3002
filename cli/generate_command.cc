// `flotilla generate PROMPT`: one generation through the gateway, printed as it streams.
// Ctrl-C cancels the request (the worker frees its KV cache) and exits 130.
#include <CLI/CLI.hpp>

#include <chrono>
#include <cstdio>
#include <mutex>

#include <nlohmann/json.hpp>

#include "cli/client_flags.h"
#include "cli/commands.h"
#include "cli/signal_watch.h"
#include "flotilla/sdk/client.h"

namespace flotilla::cli {
namespace {

struct GenerateArgs {
  ClientFlags client;
  std::string prompt;
  std::string model;
  bool chat = false;
  std::string system;
  int max_tokens = 128;
  float temperature = 0;
  int top_k = 0;
  float top_p = 1;
  float min_p = 0;
  float repetition_penalty = 1;
  float presence_penalty = 0;
  float frequency_penalty = 0;
  uint64_t seed = 0;
  int logprobs = 0;
  std::vector<std::string> stop;
  bool ignore_eos = false;
  int priority = 0;
  double timeout_s = 0;
  int retries = 3;
  bool json = false;
  // Which sampling flags were given: unset ones are left to the server's defaults.
  CLI::Option* temperature_opt = nullptr;
  CLI::Option* top_k_opt = nullptr;
  CLI::Option* top_p_opt = nullptr;
  CLI::Option* min_p_opt = nullptr;
  CLI::Option* repetition_opt = nullptr;
  CLI::Option* presence_opt = nullptr;
  CLI::Option* frequency_opt = nullptr;
  CLI::Option* seed_opt = nullptr;
};

flotilla::v1::GenerateRequest BuildRequest(const GenerateArgs& a, const std::string& model) {
  flotilla::v1::GenerateRequest req;
  req.set_model(model);
  if (a.chat) {
    if (!a.system.empty()) {
      auto* m = req.add_messages();
      m->set_role("system");
      m->set_content(a.system);
    }
    auto* m = req.add_messages();
    m->set_role("user");
    m->set_content(a.prompt);
  } else {
    req.set_prompt(a.prompt);
  }
  req.set_max_tokens(a.max_tokens);
  for (const std::string& s : a.stop) req.add_stop(s);
  req.set_ignore_eos(a.ignore_eos);
  req.set_priority(a.priority);
  flotilla::v1::SamplingParams* s = req.mutable_sampling();
  if (a.temperature_opt->count() > 0) s->set_temperature(a.temperature);
  if (a.top_k_opt->count() > 0) s->set_top_k(a.top_k);
  if (a.top_p_opt->count() > 0) s->set_top_p(a.top_p);
  if (a.min_p_opt->count() > 0) s->set_min_p(a.min_p);
  if (a.repetition_opt->count() > 0) s->set_repetition_penalty(a.repetition_penalty);
  if (a.presence_opt->count() > 0) s->set_presence_penalty(a.presence_penalty);
  if (a.frequency_opt->count() > 0) s->set_frequency_penalty(a.frequency_penalty);
  if (a.seed_opt->count() > 0) s->set_seed(a.seed);
  s->set_logprobs(static_cast<uint32_t>(a.logprobs));
  return req;
}

int RunGenerate(GenerateArgs& a) {
  std::mutex mu;
  sdk::GenerationStream* active = nullptr;
  bool interrupted = false;
  SignalWatch signals([&](int) {
    std::lock_guard<std::mutex> lock(mu);
    interrupted = true;
    if (active != nullptr) active->Cancel();
  });

  absl::StatusOr<sdk::ClientOptions> options = MakeClientOptions(a.client);
  if (!options.ok()) {
    std::fprintf(stderr, "error: %s\n", std::string(options.status().message()).c_str());
    return 1;
  }
  options->retry.max_attempts = 1 + std::max(0, a.retries);
  if (a.timeout_s > 0) options->timeout = absl::Seconds(a.timeout_s);
  absl::StatusOr<std::unique_ptr<sdk::Client>> client = sdk::Client::Create(*options);
  if (!client.ok()) {
    std::fprintf(stderr, "error: %s\n", std::string(client.status().message()).c_str());
    return 1;
  }
  absl::StatusOr<std::string> model = ResolveModel(**client, a.model);
  if (!model.ok()) {
    std::fprintf(stderr, "error: %s\n", std::string(model.status().message()).c_str());
    return 1;
  }

  const auto start = std::chrono::steady_clock::now();
  double ttft_s = -1;
  std::unique_ptr<sdk::GenerationStream> stream = (*client)->StartGenerate(BuildRequest(a, *model));
  {
    std::lock_guard<std::mutex> lock(mu);
    active = stream.get();
    if (interrupted) stream->Cancel();
  }
  sdk::Completion completion;
  flotilla::v1::GenerateResponse chunk;
  while (stream->Next(&chunk)) {
    if (ttft_s < 0 && chunk.token_ids_size() > 0) {
      ttft_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    }
    sdk::Accumulate(chunk, &completion);
    if (!a.json) {
      std::fwrite(chunk.text().data(), 1, chunk.text().size(), stdout);
      std::fflush(stdout);
    }
  }
  const absl::Status status = stream->Finish();
  {
    std::lock_guard<std::mutex> lock(mu);
    active = nullptr;
  }
  completion.attempts = stream->attempts();
  const double e2e_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  if (a.json) {
    nlohmann::json j = {
        {"ok", status.ok()},
        {"request_id", completion.request_id},
        {"model", completion.model.empty() ? *model : completion.model},
        {"text", completion.text},
        {"token_ids", completion.token_ids},
        {"finish_reason", sdk::FinishReasonName(completion.finish_reason)},
        {"usage",
         {{"prompt_tokens", completion.usage.prompt_tokens()},
          {"completion_tokens", completion.usage.completion_tokens()},
          {"cached_tokens", completion.usage.cached_tokens()}}},
        {"time_to_first_token_s", ttft_s},
        {"server_time_to_first_token_s", completion.time_to_first_token_s},
        {"e2e_s", e2e_s},
        {"attempts", completion.attempts},
    };
    if (!status.ok()) {
      j["error"] = {{"code", absl::StatusCodeToString(status.code())}, {"message", std::string(status.message())}};
    }
    std::printf("%s\n", j.dump(2).c_str());
  } else {
    std::printf("\n");
    std::fflush(stdout);  // the text, then the summary on stderr
    if (status.ok()) {
      // Over the whole call: the gateway may merge tokens into few messages, so gaps between
      // messages would overstate the decode speed.
      const double tps = e2e_s > 0 ? completion.usage.completion_tokens() / e2e_s : 0;
      std::fprintf(stderr, "[%s; %u prompt + %u completion tokens (%u cached); ttft %.1f ms; %.1f ms total, %.0f tok/s; %s]\n",
                   sdk::FinishReasonName(completion.finish_reason), completion.usage.prompt_tokens(),
                   completion.usage.completion_tokens(), completion.usage.cached_tokens(), ttft_s * 1e3, e2e_s * 1e3,
                   tps, completion.model.c_str());
    }
  }
  if (!status.ok()) {
    if (interrupted) {
      std::fprintf(stderr, "cancelled\n");
      return 130;
    }
    std::fprintf(stderr, "error: %s: %s\n", absl::StatusCodeToString(status.code()).c_str(),
                 std::string(status.message()).c_str());
    return 1;
  }
  return 0;
}

}  // namespace

void RegisterGenerate(CLI::App& app, int* exit_code) {
  auto args = std::make_shared<GenerateArgs>();
  CLI::App* cmd = app.add_subcommand("generate", "Generate text through the gateway, streamed as it comes");
  cmd->add_option("prompt", args->prompt, "The prompt (with --chat: the user message)")->required();
  cmd->add_option("-m,--model", args->model, "Model name (default: the only one served)");
  cmd->add_flag("--chat", args->chat, "Send the prompt as a chat user message (the model's chat template applies)");
  cmd->add_option("--system", args->system, "System message for --chat");
  cmd->add_option("-n,--max-tokens", args->max_tokens, "Tokens to generate at most")->capture_default_str();
  args->temperature_opt = cmd->add_option("--temperature", args->temperature, "0 is greedy (server default 1.0)");
  args->top_k_opt = cmd->add_option("--top-k", args->top_k, "Sample from the k most likely tokens (0: off)");
  args->top_p_opt = cmd->add_option("--top-p", args->top_p, "Nucleus sampling mass (1: off)");
  args->min_p_opt = cmd->add_option("--min-p", args->min_p, "Drop tokens below min_p x the top probability");
  args->repetition_opt = cmd->add_option("--repetition-penalty", args->repetition_penalty, "Over prompt and output (1: off)");
  args->presence_opt = cmd->add_option("--presence-penalty", args->presence_penalty, "OpenAI's presence penalty");
  args->frequency_opt = cmd->add_option("--frequency-penalty", args->frequency_penalty, "OpenAI's frequency penalty");
  args->seed_opt = cmd->add_option("--seed", args->seed, "Same seed and request: same output");
  cmd->add_option("--logprobs", args->logprobs, "Top alternatives per token to return (0..20; shown with --json)")
      ->check(CLI::Range(0, 20));
  cmd->add_option("--stop", args->stop, "Stop sequence (repeatable)")->allow_extra_args(false);
  cmd->add_flag("--ignore-eos", args->ignore_eos, "Keep generating past the end-of-sequence token");
  cmd->add_option("--priority", args->priority, "Request priority (capped by the tenant's)");
  cmd->add_option("--timeout", args->timeout_s, "Seconds for the whole request, retries included (0: none)");
  cmd->add_option("--retries", args->retries, "Retries of UNAVAILABLE before the first token")->capture_default_str();
  cmd->add_flag("--json", args->json, "Print one JSON object with text, token ids, usage and timings at the end");
  AddClientFlags(*cmd, &args->client);
  cmd->callback([args, exit_code] { *exit_code = RunGenerate(*args); });
}

}  // namespace flotilla::cli
