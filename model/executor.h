// The batched forward interface every backend implements and the scheduler drives.
//
// One call runs one step: tokens from several sequences at once (prefill chunks and single
// decode tokens mixed). Each token names its sequence, its position, and through the sequence
// the table of KV-cache blocks that holds positions 0.. of that sequence (block ids are chosen
// by the caller, who owns allocation). The K/V of every token in the batch are written to its
// slot before attention runs, so tokens of one sequence in one batch see each other causally.
// An executor is used by one thread at a time (the engine thread).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "model/weights.h"

namespace flotilla {

struct ForwardBatch {
  std::vector<int32_t> tokens;
  std::vector<int32_t> positions;
  std::vector<int32_t> seq;          // index into block_tables
  std::vector<uint8_t> want_logits;  // 1: return logits for this token
  std::vector<std::span<const int32_t>> block_tables;

  void Clear() {
    tokens.clear();
    positions.clear();
    seq.clear();
    want_logits.clear();
    block_tables.clear();
  }
  // Adds a sequence; returns its index for Add().
  int32_t AddSequence(std::span<const int32_t> block_table) {
    block_tables.push_back(block_table);
    return static_cast<int32_t>(block_tables.size()) - 1;
  }
  void Add(int32_t token, int32_t position, int32_t seq_index, bool logits) {
    tokens.push_back(token);
    positions.push_back(position);
    seq.push_back(seq_index);
    want_logits.push_back(logits ? 1 : 0);
  }
  size_t size() const { return tokens.size(); }
  int NumLogits() const {
    int n = 0;
    for (uint8_t w : want_logits) n += w;
    return n;
  }
};

// Element type of the KV cache. F16 halves the cache's memory and the bytes attention reads
// per step; the reference outputs are unchanged with it (tested). Q8_0 (CPU only; ggml's blocks
// of 32 int8 values and an f16 scale, head_dim a multiple of 32) holds 1.9x the tokens of F16 in
// the same memory and attention reads 0.53x the bytes, faster once contexts reach the hundreds;
// its rounding of K and V moves the logits slightly (as llama.cpp's q8_0 cache does).
enum class KvDType { kF16, kF32, kQ8_0 };
absl::StatusOr<KvDType> ParseKvDType(const std::string& name);  // "f16", "f32" or "q8_0"
const char* KvDTypeName(KvDType t);
// Bytes of one cached row of head_dim elements.
int64_t KvRowBytes(KvDType kv_type, int head_dim);
// INVALID_ARGUMENT when the model cannot use the cache type (Q8_0: head_dim not a multiple of 32).
absl::Status CheckKvDType(const LlamaConfig& c, KvDType kv_type);

struct ExecutorOptions {
  int num_kv_blocks = 0;  // 0: enough for one full context plus a margin
  int block_size = 16;    // tokens per KV block
  int max_batch_tokens = 512;
  int threads = 0;  // CPU: 0 means one per core
  std::string isa;  // CPU: "" picks the best variant; "scalar" or "avx2" force one (tests, benchmarks)
  KvDType kv_type = KvDType::kF16;
  // CPU: copy the weights of the products once into the executor's memory (huge pages), in the
  // kernel variant's own row layout where it has one (AVX-512: Q8_0, Q4_0), releasing the
  // file's pages; same results, faster products. false reads them in the file map.
  bool pack_weights = true;
};

class Executor {
 public:
  virtual ~Executor() = default;
  virtual const LlamaConfig& config() const = 0;
  virtual int num_kv_blocks() const = 0;
  virtual int block_size() const = 0;
  virtual int max_batch_tokens() const = 0;
  // "cpu avx2 2 threads", "cuda H200 ..."
  virtual std::string Describe() const = 0;

  // Runs one step. `logits` receives batch.NumLogits() rows of vocab_size floats, in the order
  // of the tokens that asked for them. Invalid input (ids, positions, block ids out of range)
  // is INVALID_ARGUMENT; nothing is written to the KV cache then.
  virtual absl::Status Forward(const ForwardBatch& batch, std::span<float> logits) = 0;

  // Calls f(i) for every i in [0, n), each exactly once, possibly several at a time on the
  // backend's own CPU threads (which sit idle between forward passes); returns when all are
  // done. The engine samples a step's sequences through it. One at a time here by default.
  virtual void ParallelFor(int64_t n, const std::function<void(int64_t)>& f) {
    for (int64_t i = 0; i < n; ++i) f(i);
  }
};

// Bytes of KV cache one block takes on the CPU backend (K and V, every layer).
int64_t CpuKvBytesPerBlock(const LlamaConfig& c, int block_size, KvDType kv_type = KvDType::kF16);

// Checks a batch against the executor's limits; shared by every backend.
absl::Status ValidateBatch(const ForwardBatch& b, const LlamaConfig& c, int num_kv_blocks, int block_size,
                           int max_batch_tokens, size_t logits_size);

absl::StatusOr<std::unique_ptr<Executor>> MakeCpuExecutor(std::shared_ptr<const LoadedModel> model,
                                                          const ExecutorOptions& options);

}  // namespace flotilla
