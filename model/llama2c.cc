// llama2.c checkpoints: a 7 x int32 header (dim, hidden_dim, n_layers, n_heads, n_kv_heads,
// vocab_size, seq_len; a negative vocab_size means a separate classifier), then f32 weights in
// a fixed order. Tokenizers: int32 max_token_length, then per token f32 score, int32 length, bytes.
#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "model/loader_internal.h"

namespace flotilla::internal {
namespace {

using kernels::DType;

absl::Status LoadLlama2cTokenizer(const std::string& path, int vocab_size, Vocab& v) {
  ASSIGN_OR_RETURN(std::unique_ptr<MappedFile> f, MappedFile::Open(path));
  const uint8_t* p = f->data();
  const size_t size = f->size();
  size_t pos = 0;
  auto need = [&](size_t n, const char* what) -> absl::Status {
    if (size - pos < n) {
      return absl::DataLossError(absl::StrCat("tokenizer '", path, "' truncated reading ", what, " at byte ", pos));
    }
    return absl::OkStatus();
  };
  int32_t max_len = 0;
  RETURN_IF_ERROR(need(4, "max token length"));
  std::memcpy(&max_len, p, 4);
  pos = 4;
  if (max_len <= 0 || max_len > 4096) return absl::DataLossError(absl::StrCat("tokenizer max token length ", max_len, " is invalid"));
  v.pieces.resize(vocab_size);
  v.scores.resize(vocab_size);
  v.types.assign(vocab_size, TokenType::kNormal);
  static const std::string kSpace = "\xe2\x96\x81";  // llama2.c exports spaces as ' '; we keep U+2581
  for (int i = 0; i < vocab_size; ++i) {
    int32_t len = 0;
    RETURN_IF_ERROR(need(8, "token header"));
    std::memcpy(&v.scores[i], p + pos, 4);
    std::memcpy(&len, p + pos + 4, 4);
    pos += 8;
    if (len < 0 || len > max_len) return absl::DataLossError(absl::StrCat("tokenizer token ", i, " has length ", len));
    RETURN_IF_ERROR(need(len, "token bytes"));
    std::string piece(reinterpret_cast<const char*>(p + pos), len);
    pos += len;
    std::string sp;
    for (char c : piece) {
      if (c == ' ') sp += kSpace; else sp += c;
    }
    v.pieces[i] = std::move(sp);
    const std::string& s = v.pieces[i];
    if (s.size() == 6 && s.compare(0, 3, "<0x") == 0 && s[5] == '>') v.types[i] = TokenType::kByte;
  }
  v.unk_id = 0;
  v.bos_id = 1;
  v.eos_id = 2;
  // llama2.c's models were trained on stories separated by BOS and its run.c stops there; they
  // rarely emit EOS at all.
  v.extra_end_ids = {1};
  v.types[0] = TokenType::kUnknown;
  v.types[1] = TokenType::kControl;
  v.types[2] = TokenType::kControl;
  v.add_bos = true;
  v.add_space_prefix = true;
  return absl::OkStatus();
}

std::string FindTokenizer(const std::string& model_path, int vocab_size) {
  namespace fs = std::filesystem;
  const fs::path dir = fs::path(model_path).parent_path();
  for (const std::string& name : {absl::StrCat("tok", vocab_size, ".bin"), std::string("tokenizer.bin")}) {
    std::error_code ec;
    if (fs::is_regular_file(dir / name, ec)) return (dir / name).string();
  }
  return "";
}

}  // namespace

absl::StatusOr<std::unique_ptr<LoadedModel>> LoadLlama2c(const std::string& path, const LoadOptions& options) {
  ASSIGN_OR_RETURN(std::shared_ptr<MappedFile> file, MappedFile::Open(path));
  if (file->size() < 28) return absl::DataLossError("llama2.c checkpoint '" + path + "' is shorter than its header");
  int32_t h[7];
  std::memcpy(h, file->data(), sizeof(h));
  auto m = std::make_unique<LoadedModel>();
  m->path = path;
  m->format = "llama2c";
  m->file = file;
  LlamaConfig& c = m->config;
  c.name = std::filesystem::path(path).stem().string();
  c.dim = h[0];
  c.ffn_dim = h[1];
  c.n_layers = h[2];
  c.n_heads = h[3];
  c.n_kv_heads = h[4];
  c.tied_output = h[5] > 0;
  c.vocab_size = h[5] > 0 ? h[5] : -h[5];
  c.file_context_length = h[6];
  c.context_length = h[6];
  c.head_dim = c.n_heads > 0 ? c.dim / c.n_heads : 0;
  RETURN_IF_ERROR(ValidateConfig(c));
  RETURN_IF_ERROR(ApplyContextOverride(c, options.context_length));

  // Sizes in floats, in file order.
  const int64_t dim = c.dim, hid = c.ffn_dim, L = c.n_layers, V = c.vocab_size, hs = c.head_dim;
  const int64_t kv = c.kv_dim(), qd = c.q_dim();
  const int64_t seq = h[6];
  int64_t expected = V * dim + L * dim + L * dim * qd + 2 * L * dim * kv + L * qd * dim + L * dim +
                     2 * L * dim * hid + L * hid * dim + dim + seq * hs;  // freq_cis real + imag
  if (!c.tied_output) expected += V * dim;
  const int64_t have = static_cast<int64_t>((file->size() - 28) / 4);
  if (have != expected) {
    return absl::DataLossError(absl::StrCat("llama2.c checkpoint '", path, "' holds ", have, " floats after its header; its shape needs ",
                                            expected));
  }
  const float* p = reinterpret_cast<const float*>(file->data() + 28);
  auto take = [&](int64_t n) {
    const float* r = p;
    p += n;
    return r;
  };
  auto mat = [](const float* data, int64_t rows, int64_t cols) {
    WeightMatrix w;
    w.type = DType::kF32;
    w.data = data;
    w.rows = rows;
    w.cols = cols;
    w.row_bytes = cols * 4;
    return w;
  };
  LlamaWeights& w = m->weights;
  w.layers.resize(L);
  w.token_embd = mat(take(V * dim), V, dim);
  for (auto& l : w.layers) l.attn_norm = take(dim);
  for (auto& l : w.layers) l.wq = mat(take(qd * dim), qd, dim);
  for (auto& l : w.layers) l.wk = mat(take(kv * dim), kv, dim);
  for (auto& l : w.layers) l.wv = mat(take(kv * dim), kv, dim);
  for (auto& l : w.layers) l.wo = mat(take(dim * qd), dim, qd);
  for (auto& l : w.layers) l.ffn_norm = take(dim);
  for (auto& l : w.layers) l.w_gate = mat(take(hid * dim), hid, dim);
  for (auto& l : w.layers) l.w_down = mat(take(dim * hid), dim, hid);
  for (auto& l : w.layers) l.w_up = mat(take(hid * dim), hid, dim);
  w.output_norm = take(dim);
  take(seq * hs);  // freq_cis_real and freq_cis_imag (seq * hs / 2 each): recomputed at load
  w.output = c.tied_output ? w.token_embd : mat(take(V * dim), V, dim);
  c.weight_type = DType::kF32;

  std::string tok = options.tokenizer_path.empty() ? FindTokenizer(path, c.vocab_size) : options.tokenizer_path;
  if (tok.empty()) {
    return absl::NotFoundError(absl::StrCat("no tokenizer for llama2.c checkpoint '", path, "': pass --tokenizer, or put tok",
                                            c.vocab_size, ".bin beside it"));
  }
  RETURN_IF_ERROR(LoadLlama2cTokenizer(tok, c.vocab_size, m->vocab));
  return m;
}

}  // namespace flotilla::internal
