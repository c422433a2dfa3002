// Building a Llama-family model from a GGUF file: hyper-parameters from `<arch>.*` keys,
// tensors by their llama.cpp names, vocabulary from `tokenizer.ggml.*`.
#include <spdlog/spdlog.h>

#include <map>
#include <optional>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "kernels/fp16.h"
#include "kernels/quant.h"
#include "model/gguf.h"
#include "model/loader_internal.h"

namespace flotilla::internal {
namespace {

using kernels::DType;

absl::StatusOr<int> GetInt(const GgufFile& g, const std::string& key, std::optional<int> fallback = std::nullopt) {
  if (!g.Find(key) && fallback) return *fallback;
  ASSIGN_OR_RETURN(uint64_t v, g.GetUint(key));
  if (v > (1u << 30)) return absl::InvalidArgumentError(absl::StrCat("GGUF key '", key, "' = ", v, " is out of range"));
  return static_cast<int>(v);
}

class TensorBinder {
 public:
  TensorBinder(const GgufFile& g, LoadedModel& m) : g_(g), m_(m) {}

  absl::StatusOr<WeightMatrix> Matrix(const std::string& name, int64_t rows, int64_t cols) {
    const GgufTensorInfo* t = g_.FindTensor(name);
    if (!t) return absl::NotFoundError("GGUF tensor '" + name + "' is missing");
    if (t->dims.size() != 2 || static_cast<int64_t>(t->dims[0]) != cols || static_cast<int64_t>(t->dims[1]) != rows) {
      return absl::InvalidArgumentError(absl::StrCat("GGUF tensor '", name, "' has shape ", ShapeString(*t),
                                                     ", want [", cols, ", ", rows, "]"));
    }
    WeightMatrix w;
    w.type = static_cast<DType>(t->ggml_type);
    w.data = t->data;
    w.rows = rows;
    w.cols = cols;
    w.row_bytes = kernels::RowBytes(w.type, cols);
    bytes_by_type_[w.type] += t->n_bytes;
    return w;
  }

  absl::StatusOr<const float*> Vector(const std::string& name, int64_t n) {
    const GgufTensorInfo* t = g_.FindTensor(name);
    if (!t) return absl::NotFoundError("GGUF tensor '" + name + "' is missing");
    if (t->dims.size() != 1 || static_cast<int64_t>(t->dims[0]) != n) {
      return absl::InvalidArgumentError(absl::StrCat("GGUF tensor '", name, "' has shape ", ShapeString(*t), ", want [", n, "]"));
    }
    const auto type = static_cast<DType>(t->ggml_type);
    if (type == DType::kF32 && reinterpret_cast<uintptr_t>(t->data) % alignof(float) == 0) {
      return reinterpret_cast<const float*>(t->data);
    }
    auto& v = m_.owned.emplace_back(n);
    kernels::DequantizeRow(type, t->data, v.data(), n);
    return v.data();
  }

  DType DominantType() const {
    DType best = DType::kF32;
    uint64_t most = 0;
    for (auto [t, b] : bytes_by_type_) {
      if (b > most) {
        most = b;
        best = t;
      }
    }
    return best;
  }

 private:
  static std::string ShapeString(const GgufTensorInfo& t) {
    std::string s = "[";
    for (size_t i = 0; i < t.dims.size(); ++i) absl::StrAppend(&s, i ? ", " : "", t.dims[i]);
    return s + "]";
  }
  const GgufFile& g_;
  LoadedModel& m_;
  std::map<DType, uint64_t> bytes_by_type_;
};

absl::Status LoadVocab(const GgufFile& g, int vocab_size, Vocab& v) {
  ASSIGN_OR_RETURN(std::string model, g.GetString("tokenizer.ggml.model"));
  if (model != "llama") {
    return absl::UnimplementedError("tokenizer model '" + model + "' is not supported (Flotilla reads 'llama', SentencePiece-style BPE)");
  }
  ASSIGN_OR_RETURN(v.pieces, g.GetStringArray("tokenizer.ggml.tokens"));
  if (static_cast<int>(v.pieces.size()) != vocab_size) {
    return absl::InvalidArgumentError(absl::StrCat("tokenizer has ", v.pieces.size(), " tokens but the embedding has ",
                                                   vocab_size, " rows"));
  }
  if (g.Find("tokenizer.ggml.scores")) {
    ASSIGN_OR_RETURN(v.scores, g.GetFloatArray("tokenizer.ggml.scores"));
  } else {
    v.scores.assign(vocab_size, 0.0f);
  }
  std::vector<int32_t> types;
  if (g.Find("tokenizer.ggml.token_type")) {
    ASSIGN_OR_RETURN(types, g.GetIntArray("tokenizer.ggml.token_type"));
  } else {
    types.assign(vocab_size, static_cast<int32_t>(TokenType::kNormal));
  }
  if (static_cast<int>(v.scores.size()) != vocab_size || static_cast<int>(types.size()) != vocab_size) {
    return absl::InvalidArgumentError("tokenizer scores or token types do not match the number of tokens");
  }
  v.types.resize(vocab_size);
  for (int i = 0; i < vocab_size; ++i) {
    if (types[i] < 0 || types[i] > 6) {
      return absl::InvalidArgumentError(absl::StrCat("token ", i, " has unknown token type ", types[i]));
    }
    v.types[i] = static_cast<TokenType>(types[i]);
  }
  auto id = [&](const char* key, int fallback) -> absl::StatusOr<int32_t> {
    if (!g.Find(key)) return fallback;
    ASSIGN_OR_RETURN(uint64_t x, g.GetUint(key));
    if (x >= static_cast<uint64_t>(vocab_size)) {
      return absl::InvalidArgumentError(absl::StrCat("GGUF key '", key, "' = ", x, " is not a token id"));
    }
    return static_cast<int32_t>(x);
  };
  ASSIGN_OR_RETURN(v.bos_id, id("tokenizer.ggml.bos_token_id", 1));
  ASSIGN_OR_RETURN(v.eos_id, id("tokenizer.ggml.eos_token_id", 2));
  ASSIGN_OR_RETURN(v.unk_id, id("tokenizer.ggml.unknown_token_id", 0));
  if (g.Find("tokenizer.ggml.add_bos_token")) {
    ASSIGN_OR_RETURN(v.add_bos, g.GetBool("tokenizer.ggml.add_bos_token"));
  }
  if (g.Find("tokenizer.ggml.add_space_prefix")) {
    ASSIGN_OR_RETURN(v.add_space_prefix, g.GetBool("tokenizer.ggml.add_space_prefix"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<LoadedModel>> LoadGguf(const std::string& path, const LoadOptions& options) {
  ASSIGN_OR_RETURN(std::unique_ptr<GgufFile> g, GgufFile::Open(path));
  auto m = std::make_unique<LoadedModel>();
  m->path = path;
  m->format = "gguf";
  m->file = g->file();
  LlamaConfig& c = m->config;
  ASSIGN_OR_RETURN(c.architecture, g->GetString("general.architecture"));
  if (c.architecture != "llama") {
    return absl::UnimplementedError("model architecture '" + c.architecture + "' is not supported (Flotilla runs 'llama')");
  }
  if (g->Find("general.name")) {
    ASSIGN_OR_RETURN(c.name, g->GetString("general.name"));
  }
  const std::string a = c.architecture + ".";
  ASSIGN_OR_RETURN(c.dim, GetInt(*g, a + "embedding_length"));
  ASSIGN_OR_RETURN(c.n_layers, GetInt(*g, a + "block_count"));
  ASSIGN_OR_RETURN(c.n_heads, GetInt(*g, a + "attention.head_count"));
  ASSIGN_OR_RETURN(c.n_kv_heads, GetInt(*g, a + "attention.head_count_kv", c.n_heads));
  ASSIGN_OR_RETURN(c.ffn_dim, GetInt(*g, a + "feed_forward_length"));
  ASSIGN_OR_RETURN(c.file_context_length, GetInt(*g, a + "context_length"));
  c.context_length = c.file_context_length;
  if (c.n_heads <= 0 || c.dim % c.n_heads != 0) {
    return absl::InvalidArgumentError(absl::StrCat("embedding length ", c.dim, " is not divisible by head count ", c.n_heads));
  }
  c.head_dim = c.dim / c.n_heads;
  ASSIGN_OR_RETURN(int rope_dims, GetInt(*g, a + "rope.dimension_count", c.head_dim));
  if (rope_dims != c.head_dim) {
    return absl::UnimplementedError(absl::StrCat("partial rotary embeddings (", rope_dims, " of ", c.head_dim,
                                                 " dimensions) are not supported"));
  }
  if (g->Find(a + "attention.layer_norm_rms_epsilon")) {
    ASSIGN_OR_RETURN(double eps, g->GetFloat(a + "attention.layer_norm_rms_epsilon"));
    c.norm_eps = static_cast<float>(eps);
  }
  if (g->Find(a + "rope.freq_base")) {
    ASSIGN_OR_RETURN(double theta, g->GetFloat(a + "rope.freq_base"));
    c.rope_theta = static_cast<float>(theta);
  }
  if (const GgufValue* t = g->Find("tokenizer.chat_template"); t && t->type == GgufType::kString) c.chat_template = t->s;
  const GgufTensorInfo* embd = g->FindTensor("token_embd.weight");
  if (!embd) return absl::NotFoundError("GGUF tensor 'token_embd.weight' is missing");
  if (embd->dims.size() != 2 || embd->dims[1] > (1u << 22)) {
    return absl::InvalidArgumentError("GGUF tensor 'token_embd.weight' is not a [dim, vocab] matrix");
  }
  c.vocab_size = static_cast<int>(embd->dims[1]);
  RETURN_IF_ERROR(ApplyContextOverride(c, options.context_length));
  RETURN_IF_ERROR(ValidateConfig(c));

  TensorBinder bind(*g, *m);
  LlamaWeights& w = m->weights;
  ASSIGN_OR_RETURN(w.token_embd, bind.Matrix("token_embd.weight", c.vocab_size, c.dim));
  if (g->FindTensor("output.weight")) {
    ASSIGN_OR_RETURN(w.output, bind.Matrix("output.weight", c.vocab_size, c.dim));
  } else {
    w.output = w.token_embd;
    c.tied_output = true;
  }
  ASSIGN_OR_RETURN(w.output_norm, bind.Vector("output_norm.weight", c.dim));
  w.layers.resize(c.n_layers);
  for (int l = 0; l < c.n_layers; ++l) {
    const std::string p = absl::StrCat("blk.", l, ".");
    LayerWeights& L = w.layers[l];
    ASSIGN_OR_RETURN(L.attn_norm, bind.Vector(p + "attn_norm.weight", c.dim));
    ASSIGN_OR_RETURN(L.wq, bind.Matrix(p + "attn_q.weight", c.q_dim(), c.dim));
    ASSIGN_OR_RETURN(L.wk, bind.Matrix(p + "attn_k.weight", c.kv_dim(), c.dim));
    ASSIGN_OR_RETURN(L.wv, bind.Matrix(p + "attn_v.weight", c.kv_dim(), c.dim));
    ASSIGN_OR_RETURN(L.wo, bind.Matrix(p + "attn_output.weight", c.dim, c.q_dim()));
    ASSIGN_OR_RETURN(L.ffn_norm, bind.Vector(p + "ffn_norm.weight", c.dim));
    ASSIGN_OR_RETURN(L.w_gate, bind.Matrix(p + "ffn_gate.weight", c.ffn_dim, c.dim));
    ASSIGN_OR_RETURN(L.w_up, bind.Matrix(p + "ffn_up.weight", c.ffn_dim, c.dim));
    ASSIGN_OR_RETURN(L.w_down, bind.Matrix(p + "ffn_down.weight", c.dim, c.ffn_dim));
  }
  c.weight_type = bind.DominantType();
  RETURN_IF_ERROR(LoadVocab(*g, c.vocab_size, m->vocab));
  return m;
}

}  // namespace flotilla::internal
