#include "model/synthetic.h"

#include <algorithm>
#include <atomic>
#include <random>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/status_macros.h"
#include "kernels/quant.h"
#include "model/gguf.h"
#include "model/gguf_writer.h"

namespace flotilla {
namespace {

using kernels::DType;

// Types for each tensor, as llama.cpp's quantizer chooses: rows whose length is not a multiple
// of the block size fall back to F16; Q4_0 models keep a Q8_0 output matrix; norms stay F32.
DType MatrixType(DType want, int64_t row_len) {
  if (kernels::IsBlockQuantized(want) && row_len % 32 != 0) return DType::kF16;
  return want;
}

struct VocabData {
  std::vector<std::string> tokens;
  std::vector<float> scores;
  std::vector<int32_t> types;
};

VocabData MakeSyntheticVocab(int n) {
  VocabData v;
  auto add = [&](std::string t, float score, int32_t type) {
    v.tokens.push_back(std::move(t));
    v.scores.push_back(score);
    v.types.push_back(type);
  };
  add("<unk>", 0, 2);
  add("<s>", 0, 3);
  add("</s>", 0, 3);
  for (int b = 0; b < 256 && static_cast<int>(v.tokens.size()) < n; ++b) {
    char buf[8];
    std::snprintf(buf, sizeof(buf), "<0x%02X>", b);
    add(buf, 0, 6);
  }
  const std::string letters = "etaoinshrdlucmfwypvbgkqjxz";
  const std::string space = "\xe2\x96\x81";
  // Single letters, then space+letter, then letter pairs; earlier pieces score higher.
  std::vector<std::string> pieces;
  pieces.push_back(space);
  for (char c : letters) pieces.push_back(std::string(1, c));
  for (char c : letters) pieces.push_back(space + c);
  for (char a : letters)
    for (char b : letters) pieces.push_back(std::string(1, a) + b);
  for (size_t i = 0; static_cast<int>(v.tokens.size()) < n; ++i) {
    std::string p = i < pieces.size() ? pieces[i] : absl::StrCat(space, "w", i);
    add(p, -static_cast<float>(i), 1);
  }
  return v;
}

absl::StatusOr<VocabData> DonorVocab(const std::string& path, int n) {
  ASSIGN_OR_RETURN(auto g, GgufFile::Open(path));
  VocabData v;
  ASSIGN_OR_RETURN(v.tokens, g->GetStringArray("tokenizer.ggml.tokens"));
  ASSIGN_OR_RETURN(v.scores, g->GetFloatArray("tokenizer.ggml.scores"));
  ASSIGN_OR_RETURN(v.types, g->GetIntArray("tokenizer.ggml.token_type"));
  if (static_cast<int>(v.tokens.size()) != n) {
    return absl::InvalidArgumentError(absl::StrCat("vocabulary in '", path, "' has ", v.tokens.size(), " tokens, the shape wants ", n));
  }
  return v;
}

// Rows are filled in chunks of kChunkRows, each from its own generator seeded by (seed, chunk), on
// up to four threads: the bytes depend on the seed only, not on the thread count.
GgufWriter::Fill RandomFill(DType type, int64_t row_len, uint64_t seed, float scale) {
  return [=](uint8_t* dst, size_t n_bytes) {
    constexpr int64_t kChunkRows = 64;
    const int64_t row_bytes = kernels::RowBytes(type, row_len);
    const int64_t rows = static_cast<int64_t>(n_bytes) / row_bytes;
    const int64_t chunks = (rows + kChunkRows - 1) / kChunkRows;
    std::atomic<int64_t> next{0};
    auto work = [&] {
      std::vector<float> row(row_len);
      for (int64_t c; (c = next.fetch_add(1)) < chunks;) {
        std::mt19937_64 rng(seed * 0x9e3779b97f4a7c15ull + static_cast<uint64_t>(c));
        std::normal_distribution<float> d(0.0f, scale);
        for (int64_t r = c * kChunkRows; r < std::min(rows, (c + 1) * kChunkRows); ++r) {
          for (auto& x : row) x = d(rng);
          kernels::QuantizeRow(type, row.data(), dst + r * row_bytes, row_len);
        }
      }
    };
    const int n_threads = static_cast<int>(std::min<int64_t>({4, chunks, std::max(1u, std::thread::hardware_concurrency())}));
    std::vector<std::thread> threads;
    for (int i = 1; i < n_threads; ++i) threads.emplace_back(work);
    work();
    for (auto& t : threads) t.join();
  };
}

GgufWriter::Fill OnesFill() {
  return [](uint8_t* dst, size_t n) {
    const float one = 1.0f;
    for (size_t i = 0; i + 4 <= n; i += 4) std::memcpy(dst + i, &one, 4);
  };
}

}  // namespace

absl::StatusOr<SyntheticShape> ParseSyntheticShape(const std::string& spec) {
  SyntheticShape s;
  if (spec == "110m") return SyntheticShape{768, 12, 12, 12, 2048, 32000, 2048, false};
  if (spec == "1b") return SyntheticShape{2048, 22, 32, 4, 5632, 32000, 2048, false};
  if (spec == "8b") return SyntheticShape{4096, 32, 32, 8, 14336, 128256, 8192, false};
  std::vector<std::string> parts = absl::StrSplit(spec, ',');
  if (parts.size() != 6) {
    return absl::InvalidArgumentError("shape '" + spec + "' is not 110m, 1b, 8b or DIM,LAYERS,HEADS,KV_HEADS,FFN,VOCAB");
  }
  int v[6];
  for (int i = 0; i < 6; ++i) {
    if (!absl::SimpleAtoi(parts[i], &v[i]) || v[i] <= 0) {
      return absl::InvalidArgumentError("shape '" + spec + "': '" + parts[i] + "' is not a positive integer");
    }
  }
  s = SyntheticShape{v[0], v[1], v[2], v[3], v[4], v[5], 2048, false};
  if (s.dim % s.n_heads != 0 || s.n_heads % s.n_kv_heads != 0 || (s.dim / s.n_heads) % 2 != 0) {
    return absl::InvalidArgumentError("shape '" + spec + "': heads must divide dim into even head sizes and KV heads must divide heads");
  }
  if (s.vocab_size < 259) return absl::InvalidArgumentError("shape '" + spec + "': vocabulary must hold at least 259 tokens");
  return s;
}

int64_t SyntheticModelBytes(const SyntheticShape& s, DType type) {
  const int64_t hd = s.dim / s.n_heads;
  auto m = [&](int64_t rows, int64_t cols, DType t) { return rows * kernels::RowBytes(MatrixType(t, cols), cols); };
  const DType out_type = type == DType::kQ4_0 ? DType::kQ8_0 : type;
  int64_t per_layer = m(s.dim, s.dim, type) + 2 * m(s.n_kv_heads * hd, s.dim, type) + m(s.dim, s.dim, type) +
                      2 * m(s.ffn_dim, s.dim, type) + m(s.dim, s.ffn_dim, type) + 2 * s.dim * 4;
  return s.n_layers * per_layer + m(s.vocab_size, s.dim, type) + (s.tied_output ? 0 : m(s.vocab_size, s.dim, out_type)) + s.dim * 4;
}

absl::Status WriteSyntheticModel(const SyntheticShape& s, const SynthOptions& o, const std::string& path) {
  if (o.type != DType::kF32 && o.type != DType::kF16 && o.type != DType::kBF16 && o.type != DType::kQ8_0 &&
      o.type != DType::kQ4_0) {
    return absl::InvalidArgumentError("synthetic models are F32, F16, BF16, Q8_0 or Q4_0");
  }
  VocabData vocab;
  if (!o.vocab_from.empty()) {
    ASSIGN_OR_RETURN(vocab, DonorVocab(o.vocab_from, s.vocab_size));
  } else {
    vocab = MakeSyntheticVocab(s.vocab_size);
  }
  GgufWriter w;
  w.SetString("general.architecture", "llama");
  w.SetString("general.name", absl::StrCat("synthetic-llama-", s.dim, "x", s.n_layers, "-", kernels::Info(o.type).name));
  w.SetUint32("general.file_type", o.type == DType::kF32 ? 0 : o.type == DType::kF16 ? 1 : o.type == DType::kQ4_0 ? 2 : o.type == DType::kQ8_0 ? 7 : 32);
  w.SetUint32("general.quantization_version", 2);
  w.SetUint32("llama.context_length", s.context_length);
  w.SetUint32("llama.embedding_length", s.dim);
  w.SetUint32("llama.block_count", s.n_layers);
  w.SetUint32("llama.feed_forward_length", s.ffn_dim);
  w.SetUint32("llama.attention.head_count", s.n_heads);
  w.SetUint32("llama.attention.head_count_kv", s.n_kv_heads);
  w.SetUint32("llama.rope.dimension_count", s.dim / s.n_heads);
  w.SetFloat32("llama.attention.layer_norm_rms_epsilon", 1e-5f);
  w.SetFloat32("llama.rope.freq_base", 10000.0f);
  w.SetString("tokenizer.ggml.model", "llama");
  w.SetStringArray("tokenizer.ggml.tokens", vocab.tokens);
  w.SetFloatArray("tokenizer.ggml.scores", vocab.scores);
  w.SetInt32Array("tokenizer.ggml.token_type", vocab.types);
  w.SetUint32("tokenizer.ggml.bos_token_id", 1);
  w.SetUint32("tokenizer.ggml.eos_token_id", 2);
  w.SetUint32("tokenizer.ggml.unknown_token_id", 0);
  w.SetBool("tokenizer.ggml.add_bos_token", true);

  const uint64_t D = s.dim, F = s.ffn_dim, V = s.vocab_size, KV = static_cast<uint64_t>(s.n_kv_heads) * (s.dim / s.n_heads);
  uint64_t seed = o.seed * 1000003;
  auto matrix = [&](const std::string& name, uint64_t rows, uint64_t cols, DType want) {
    const DType t = MatrixType(want, cols);
    return w.AddTensor(name, {cols, rows}, t, RandomFill(t, cols, ++seed, o.weight_scale));
  };
  auto norm = [&](const std::string& name) { return w.AddTensor(name, {D}, DType::kF32, OnesFill()); };
  RETURN_IF_ERROR(matrix("token_embd.weight", V, D, o.type));
  for (int l = 0; l < s.n_layers; ++l) {
    const std::string p = absl::StrCat("blk.", l, ".");
    RETURN_IF_ERROR(norm(p + "attn_norm.weight"));
    RETURN_IF_ERROR(matrix(p + "attn_q.weight", D, D, o.type));
    RETURN_IF_ERROR(matrix(p + "attn_k.weight", KV, D, o.type));
    RETURN_IF_ERROR(matrix(p + "attn_v.weight", KV, D, o.type));
    RETURN_IF_ERROR(matrix(p + "attn_output.weight", D, D, o.type));
    RETURN_IF_ERROR(norm(p + "ffn_norm.weight"));
    RETURN_IF_ERROR(matrix(p + "ffn_gate.weight", F, D, o.type));
    RETURN_IF_ERROR(matrix(p + "ffn_up.weight", F, D, o.type));
    RETURN_IF_ERROR(matrix(p + "ffn_down.weight", D, F, o.type));
  }
  RETURN_IF_ERROR(norm("output_norm.weight"));
  if (!s.tied_output) RETURN_IF_ERROR(matrix("output.weight", V, D, o.type == DType::kQ4_0 ? DType::kQ8_0 : o.type));
  return w.WriteFile(path);
}

}  // namespace flotilla
