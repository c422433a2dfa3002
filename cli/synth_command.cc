// `flotilla synth`: writes a random-weight Llama-shaped GGUF for benchmarks and tests.
#include <chrono>
#include <cstdio>
#include <string>

#include "cli/commands.h"
#include "common/model_path.h"
#include "kernels/dtype.h"
#include "model/synthetic.h"

namespace flotilla::cli {
namespace {

// The donor of the Llama 2 tokenizer (32,000 tokens), found on the model search path.
constexpr const char* kLlama2VocabDonor = "llama2-vocab-tiny-f16.gguf";

struct SynthArgs {
  std::string shape = "110m";
  std::string type = "q8_0";
  uint64_t seed = 1;
  std::string vocab_from;  // "" : the donor when the vocabulary is 32,000, else synthetic; "none": synthetic
  std::string out;
};

bool ParseType(const std::string& s, kernels::DType* t) {
  if (s == "f32") *t = kernels::DType::kF32;
  else if (s == "f16") *t = kernels::DType::kF16;
  else if (s == "bf16") *t = kernels::DType::kBF16;
  else if (s == "q8_0") *t = kernels::DType::kQ8_0;
  else if (s == "q4_0") *t = kernels::DType::kQ4_0;
  else return false;
  return true;
}

int Synth(const SynthArgs& a) {
  auto shape = ParseSyntheticShape(a.shape);
  if (!shape.ok()) {
    std::fprintf(stderr, "error: %s\n", std::string(shape.status().message()).c_str());
    return 2;
  }
  SynthOptions o;
  if (!ParseType(a.type, &o.type)) {
    std::fprintf(stderr, "error: type '%s' is not f32, f16, bf16, q8_0 or q4_0\n", a.type.c_str());
    return 2;
  }
  o.seed = a.seed;
  if (a.vocab_from == "none") {
    o.vocab_from.clear();
  } else if (!a.vocab_from.empty()) {
    auto p = ResolveModelPath(a.vocab_from);
    if (!p.ok()) {
      std::fprintf(stderr, "error: %s\n", std::string(p.status().message()).c_str());
      return 1;
    }
    o.vocab_from = *p;
  } else if (shape->vocab_size == 32000) {
    auto p = ResolveModelPath(kLlama2VocabDonor);
    if (p.ok()) {
      o.vocab_from = *p;
    } else {
      std::fprintf(stderr, "warning: %s not found on the model search path; writing a synthetic vocabulary\n",
                   kLlama2VocabDonor);
    }
  }
  const auto t0 = std::chrono::steady_clock::now();
  const absl::Status s = WriteSyntheticModel(*shape, o, a.out);
  if (!s.ok()) {
    std::fprintf(stderr, "error: %s\n", std::string(s.message()).c_str());
    return 1;
  }
  const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::fprintf(stderr, "wrote %s: dim %d, %d layers, %d heads / %d KV, FFN %d, vocab %d (%s), %s, %.1f MB in %.1f s\n",
               a.out.c_str(), shape->dim, shape->n_layers, shape->n_heads, shape->n_kv_heads, shape->ffn_dim,
               shape->vocab_size, o.vocab_from.empty() ? "synthetic tokenizer" : o.vocab_from.c_str(), a.type.c_str(),
               SyntheticModelBytes(*shape, o.type) / 1e6, sec);
  return 0;
}

}  // namespace

void RegisterSynth(CLI::App& app, int* exit_code) {
  auto args = std::make_shared<SynthArgs>();
  CLI::App* cmd = app.add_subcommand("synth", "Write a random-weight Llama-shaped GGUF model (for benchmarks)");
  cmd->add_option("--shape", args->shape, "110m, 1b, 8b or DIM,LAYERS,HEADS,KV_HEADS,FFN,VOCAB")->capture_default_str();
  cmd->add_option("--type", args->type, "Weight type: f16, q8_0, q4_0 (also f32, bf16)")->capture_default_str();
  cmd->add_option("--seed", args->seed, "Random seed")->capture_default_str();
  cmd->add_option("--vocab-from", args->vocab_from,
                  "GGUF to copy the tokenizer from (default: llama2-vocab-tiny-f16.gguf from the model search path "
                  "when the vocabulary is 32000; 'none' for a synthetic one)");
  cmd->add_option("-o,--output", args->out, "Output file")->required();
  cmd->callback([args, exit_code] { *exit_code = Synth(*args); });
}

}  // namespace flotilla::cli
