// `flotilla run`: local generation with no server, like llama-cli.
#include <spdlog/spdlog.h>

#include <cstdio>
#include <iostream>

#include "cli/commands.h"
#include "common/model_path.h"
#include "model/executor.h"
#include "model/generate.h"
#include "model/loader.h"
#include "model/tokenizer.h"

namespace flotilla::cli {
namespace {

struct RunArgs {
  std::string model = kDefaultModel;
  std::string tokenizer;
  std::string prompt = "Once upon a time";
  int n = 128;
  float temperature = 0.8f;
  int top_k = 40;
  float top_p = 0.95f;
  float min_p = 0.0f;
  float repeat_penalty = 1.0f;
  int64_t seed = -1;
  bool ids = false;
  int threads = 0;
  int ctx_size = 0;
  bool ignore_eos = false;
};

int Run(const RunArgs& a) {
  auto path = ResolveModelPath(a.model);
  if (!path.ok()) {
    std::fprintf(stderr, "error: %s\n", std::string(path.status().message()).c_str());
    return 1;
  }
  LoadOptions lo;
  lo.tokenizer_path = a.tokenizer;
  lo.context_length = a.ctx_size;
  auto loaded = LoadModel(*path, lo);
  if (!loaded.ok()) {
    std::fprintf(stderr, "error: %s\n", std::string(loaded.status().message()).c_str());
    return 1;
  }
  std::shared_ptr<const LoadedModel> model = std::move(*loaded);
  Tokenizer tok(model->vocab);
  const std::vector<int32_t> prompt = tok.Encode(a.prompt, tok.add_bos());
  const int ctx = model->config.context_length;
  ExecutorOptions eo;
  eo.threads = a.threads;
  eo.block_size = 16;
  eo.num_kv_blocks = (ctx + eo.block_size - 1) / eo.block_size;
  auto ex = MakeCpuExecutor(model, eo);
  if (!ex.ok()) {
    std::fprintf(stderr, "error: %s\n", std::string(ex.status().message()).c_str());
    return 1;
  }
  GenerateOptions go;
  go.max_tokens = a.n;
  go.stop_at_eos = !a.ignore_eos;
  go.sampling.temperature = a.temperature;
  go.sampling.top_k = a.top_k;
  go.sampling.top_p = a.top_p;
  go.sampling.min_p = a.min_p;
  go.sampling.repetition_penalty = a.repeat_penalty;
  if (a.seed >= 0) {
    go.sampling.seed = static_cast<uint64_t>(a.seed);
    go.sampling.has_seed = true;
  }
  std::fprintf(stderr, "model %s (%s, %d layers, dim %d, vocab %d, context %d) on %s\n", path->c_str(),
               kernels::Info(model->config.weight_type).name, model->config.n_layers, model->config.dim,
               model->config.vocab_size, ctx, (*ex)->Describe().c_str());
  if (!a.ids) {
    std::fputs(a.prompt.c_str(), stdout);
    std::fflush(stdout);
  }
  auto on_text = [&](std::string_view t) {
    if (a.ids) return;
    std::fwrite(t.data(), 1, t.size(), stdout);
    std::fflush(stdout);
  };
  auto r = GenerateSingle(**ex, tok, prompt, go, on_text);
  if (!r.ok()) {
    std::fprintf(stderr, "\nerror: %s\n", std::string(r.status().message()).c_str());
    return 1;
  }
  if (a.ids) {
    for (size_t i = 0; i < r->tokens.size(); ++i) std::printf("%s%d", i ? " " : "", r->tokens[i]);
  }
  std::printf("\n");
  std::fflush(stdout);
  std::fprintf(stderr, "prompt: %zu tokens in %.3f s (%.1f tokens/s); generation: %zu tokens in %.3f s (%.1f tokens/s)\n",
               prompt.size(), r->prefill_seconds, prompt.size() / std::max(r->prefill_seconds, 1e-9), r->tokens.size(),
               r->decode_seconds, r->tokens.size() / std::max(r->decode_seconds, 1e-9));
  return 0;
}

}  // namespace

void RegisterRun(CLI::App& app, int* exit_code) {
  auto args = std::make_shared<RunArgs>();
  CLI::App* cmd = app.add_subcommand("run", "Generate text locally, without a server");
  cmd->add_option("-m,--model", args->model, "Model file or name on the model search path")->capture_default_str();
  cmd->add_option("--tokenizer", args->tokenizer, "Tokenizer file (llama2.c checkpoints only)");
  cmd->add_option("-p,--prompt", args->prompt, "Prompt text")->capture_default_str();
  cmd->add_option("-n,--n-predict", args->n, "Tokens to generate")->capture_default_str()->check(CLI::Range(0, 1 << 20));
  cmd->add_option("--temperature,--temp", args->temperature, "Sampling temperature (0: greedy)")->capture_default_str();
  cmd->add_option("--top-k", args->top_k, "Top-k (0: off)")->capture_default_str();
  cmd->add_option("--top-p", args->top_p, "Top-p (1: off)")->capture_default_str();
  cmd->add_option("--min-p", args->min_p, "Min-p (0: off)")->capture_default_str();
  cmd->add_option("--repeat-penalty", args->repeat_penalty, "Repetition penalty (1: off)")->capture_default_str();
  cmd->add_option("-s,--seed", args->seed, "Random seed (-1: random)")->capture_default_str();
  cmd->add_flag("--ids", args->ids, "Print the generated token ids instead of text");
  cmd->add_option("-t,--threads", args->threads, "CPU threads (0: one per core)")->capture_default_str();
  cmd->add_option("-c,--ctx-size", args->ctx_size, "Context length (0: the model file's)")->capture_default_str();
  cmd->add_flag("--ignore-eos", args->ignore_eos, "Keep generating past the end-of-sequence token");
  cmd->callback([args, exit_code] { *exit_code = Run(*args); });
}

}  // namespace flotilla::cli
