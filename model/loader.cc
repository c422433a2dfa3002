#include "model/loader.h"

#include <spdlog/spdlog.h>

#include <cstring>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "model/loader_internal.h"

namespace flotilla {

int64_t LlamaWeights::TotalBytes() const {
  auto bytes = [](const WeightMatrix& m) { return m.rows * m.row_bytes; };
  int64_t total = bytes(output);
  for (const auto& l : layers) {
    total += bytes(l.wq) + bytes(l.wk) + bytes(l.wv) + bytes(l.wo) + bytes(l.w_gate) + bytes(l.w_up) + bytes(l.w_down);
  }
  return total;
}

namespace internal {

absl::Status ValidateConfig(const LlamaConfig& c) {
  auto bad = [](const std::string& what) { return absl::InvalidArgumentError("model config: " + what); };
  if (c.dim <= 0 || c.dim > 65536) return bad(absl::StrCat("embedding length ", c.dim, " out of range"));
  if (c.n_layers <= 0 || c.n_layers > 1024) return bad(absl::StrCat("layer count ", c.n_layers, " out of range"));
  if (c.n_heads <= 0 || c.n_heads > 1024) return bad(absl::StrCat("head count ", c.n_heads, " out of range"));
  if (c.n_kv_heads <= 0 || c.n_kv_heads > c.n_heads || c.n_heads % c.n_kv_heads != 0) {
    return bad(absl::StrCat("KV head count ", c.n_kv_heads, " must divide head count ", c.n_heads));
  }
  if (c.dim % c.n_heads != 0) return bad(absl::StrCat("embedding length ", c.dim, " not divisible by ", c.n_heads, " heads"));
  if (c.head_dim <= 0 || c.head_dim % 2 != 0 || c.head_dim > 1024) return bad(absl::StrCat("head size ", c.head_dim, " must be even"));
  if (c.ffn_dim <= 0 || c.ffn_dim > 1 << 20) return bad(absl::StrCat("feed-forward length ", c.ffn_dim, " out of range"));
  if (c.vocab_size <= 3 || c.vocab_size > 1 << 22) return bad(absl::StrCat("vocabulary size ", c.vocab_size, " out of range"));
  if (c.context_length <= 0 || c.context_length > 1 << 20) return bad(absl::StrCat("context length ", c.context_length, " out of range"));
  if (!(c.norm_eps > 0 && c.norm_eps < 1)) return bad(absl::StrCat("RMSNorm epsilon ", c.norm_eps, " out of range"));
  if (!(c.rope_theta > 0)) return bad(absl::StrCat("RoPE base ", c.rope_theta, " must be positive"));
  return absl::OkStatus();
}

absl::Status ApplyContextOverride(LlamaConfig& c, int override_len) {
  if (override_len < 0 || override_len > 1 << 20) {
    return absl::InvalidArgumentError(absl::StrCat("context length override ", override_len, " out of range"));
  }
  if (override_len == 0) return absl::OkStatus();
  if (override_len > c.file_context_length) {
    spdlog::warn("context length {} exceeds the {} the model file states; quality past it is not assured",
                 override_len, c.file_context_length);
  }
  c.context_length = override_len;
  return absl::OkStatus();
}

}  // namespace internal

absl::StatusOr<std::unique_ptr<LoadedModel>> LoadModel(const std::string& path, const LoadOptions& options) {
  FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) return absl::NotFoundError("cannot open model file '" + path + "'");
  char magic[4] = {};
  const size_t got = std::fread(magic, 1, 4, f);
  std::fclose(f);
  // Errors from inside the file name the file: an operator with several models must see which
  // one is corrupt.
  auto named = [&](absl::StatusOr<std::unique_ptr<LoadedModel>> r) -> absl::StatusOr<std::unique_ptr<LoadedModel>> {
    if (r.ok() || absl::StrContains(r.status().message(), path)) return r;
    return absl::Status(r.status().code(), absl::StrCat("'", path, "': ", r.status().message()));
  };
  if (got == 4 && std::memcmp(magic, "GGUF", 4) == 0) return named(internal::LoadGguf(path, options));
  if (path.size() > 4 && path.substr(path.size() - 4) == ".bin") return named(internal::LoadLlama2c(path, options));
  return absl::InvalidArgumentError("'" + path + "' is neither a GGUF file nor a llama2.c checkpoint (.bin)");
}

}  // namespace flotilla
