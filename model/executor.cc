// The executor interface's backend-independent helpers: KV cache element types and their row
// sizes, and the checks every backend runs on a batch before a forward pass.
#include "model/executor.h"

#include "absl/strings/str_cat.h"
#include "kernels/quant.h"

namespace flotilla {

absl::StatusOr<KvDType> ParseKvDType(const std::string& name) {
  if (name == "f16") return KvDType::kF16;
  if (name == "f32") return KvDType::kF32;
  if (name == "q8_0") return KvDType::kQ8_0;
  return absl::InvalidArgumentError("KV cache type '" + name + "' is not f16, f32 or q8_0");
}

const char* KvDTypeName(KvDType t) {
  switch (t) {
    case KvDType::kF16: return "f16";
    case KvDType::kF32: return "f32";
    case KvDType::kQ8_0: return "q8_0";
  }
  return "?";
}

int64_t KvRowBytes(KvDType kv_type, int head_dim) {
  switch (kv_type) {
    case KvDType::kF16: return 2LL * head_dim;
    case KvDType::kF32: return 4LL * head_dim;
    case KvDType::kQ8_0: return head_dim / kernels::kQK * static_cast<int64_t>(sizeof(kernels::BlockQ8_0));
  }
  return 4LL * head_dim;
}

absl::Status CheckKvDType(const LlamaConfig& c, KvDType kv_type) {
  if (kv_type == KvDType::kQ8_0 && (c.head_dim <= 0 || c.head_dim % kernels::kQK != 0)) {
    return absl::InvalidArgumentError(absl::StrCat("a q8_0 KV cache needs a head size that is a multiple of ", kernels::kQK,
                                                   "; this model's is ", c.head_dim, " (use f16)"));
  }
  return absl::OkStatus();
}

int64_t CpuKvBytesPerBlock(const LlamaConfig& c, int block_size, KvDType kv_type) {
  return 2LL * c.n_layers * c.n_kv_heads * block_size * KvRowBytes(kv_type, c.head_dim);
}

absl::Status ValidateBatch(const ForwardBatch& b, const LlamaConfig& c, int num_kv_blocks, int block_size,
                           int max_batch_tokens, size_t logits_size) {
  const size_t T = b.tokens.size();
  if (b.positions.size() != T || b.seq.size() != T || b.want_logits.size() != T) {
    return absl::InvalidArgumentError("batch arrays differ in length");
  }
  if (T > static_cast<size_t>(max_batch_tokens)) {
    return absl::InvalidArgumentError(absl::StrCat("batch of ", T, " tokens exceeds the limit of ", max_batch_tokens));
  }
  size_t n_logits = 0;
  for (size_t t = 0; t < T; ++t) {
    if (b.tokens[t] < 0 || b.tokens[t] >= c.vocab_size) {
      return absl::InvalidArgumentError(absl::StrCat("token id ", b.tokens[t], " is outside the vocabulary of ", c.vocab_size));
    }
    const int32_t pos = b.positions[t];
    if (pos < 0 || pos >= c.context_length) {
      return absl::InvalidArgumentError(absl::StrCat("position ", pos, " is outside the context of ", c.context_length));
    }
    if (b.seq[t] < 0 || static_cast<size_t>(b.seq[t]) >= b.block_tables.size()) {
      return absl::InvalidArgumentError(absl::StrCat("token ", t, " names sequence ", b.seq[t], " which the batch lacks"));
    }
    const auto& table = b.block_tables[b.seq[t]];
    const size_t need = static_cast<size_t>(pos) / block_size + 1;
    if (table.size() < need) {
      return absl::InvalidArgumentError(absl::StrCat("position ", pos, " needs ", need, " KV blocks; the table has ", table.size()));
    }
    for (size_t i = 0; i < need; ++i) {
      if (table[i] < 0 || table[i] >= num_kv_blocks) {
        return absl::InvalidArgumentError(absl::StrCat("KV block id ", table[i], " is outside the pool of ", num_kv_blocks));
      }
    }
    n_logits += b.want_logits[t] ? 1 : 0;
  }
  if (logits_size < n_logits * static_cast<size_t>(c.vocab_size)) {
    return absl::InvalidArgumentError(absl::StrCat("logits buffer of ", logits_size, " floats is too small for ", n_logits, " rows"));
  }
  return absl::OkStatus();
}

}  // namespace flotilla
