// Host-side planning for the CUDA executor, in plain C++ so that it builds and is tested without
// CUDA: how a model is split across tensor-parallel ranks, how much memory it needs, how big the
// KV cache can be (with start-up errors that name the numbers), and how one ForwardBatch is
// packed into the step buffer the kernels read (sequence block tables, decode list, prefill
// tiles, logit rows, padding to a captured graph's batch size).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "model/cuda/cuda_executor.h"
#include "model/executor.h"
#include "model/llama_config.h"

namespace flotilla::cuda_internal {

// --- tensor-parallel shards -----------------------------------------------------------------

// The part of the model one rank holds: query heads [q_head0, q_head0 + q_heads), KV heads
// likewise, FFN columns [ffn0, ffn0 + ffn). Column-parallel: QKV, gate, up (rows of those
// ranges); row-parallel: O, down (columns of those ranges).
struct Shard {
  int rank = 0;
  int ranks = 1;
  int q_head0 = 0, q_heads = 0;
  int kv_head0 = 0, kv_heads = 0;
  int64_t ffn0 = 0, ffn = 0;
};

// Checks that heads, KV heads and the FFN width divide among `ranks` (and that row-parallel
// slices keep 32-element blocks whole when `quantized`).
absl::StatusOr<Shard> MakeShard(const LlamaConfig& c, int ranks, int rank, bool quantized);

// --- memory ---------------------------------------------------------------------------------

int64_t KvBlockBytes(const LlamaConfig& c, int kv_heads, int block_size, KvCacheType t);

struct KvPlan {
  int num_blocks = 0;
  int64_t bytes = 0;
};

// Sizes the KV cache from the options and the bytes free after weights and buffers.
// `where` names the device in errors ("GPU 0 (NVIDIA H200)").
absl::StatusOr<KvPlan> PlanKvCache(const CudaExecutorOptions& o, const LlamaConfig& c, int64_t block_bytes,
                                   int64_t free_bytes, const std::string& where);

// Error when weights + buffers exceed the free memory.
absl::Status CheckModelFits(int64_t weight_bytes, int64_t buffer_bytes, int64_t free_bytes, int64_t total_bytes,
                            const std::string& where);

std::string GiB(int64_t bytes);

// --- one step -------------------------------------------------------------------------------

// int32 offsets of the arrays in the step buffer. The block ids come last and are the only
// variable-length part, so one copy of words [0, blocks + used) uploads a step.
struct StepLayout {
  int tokens = 0, positions = 0, seq = 0, decode_list = 0, tiles = 0, logit_rows = 0, table_start = 0, blocks = 0;
  int64_t total = 0;  // words
};
StepLayout MakeStepLayout(int max_tokens, int max_blocks_per_seq);

struct StepPlan {
  int T = 0;         // tokens the kernels run (batch size, or the graph's size when padded)
  int real_T = 0;    // tokens of the batch
  int n_decode = 0;  // entries of decode_list
  int n_tiles = 0;
  int n_logits = 0;  // rows the LM head computes
  int graph_size = 0;  // > 0: replay the graph of this size
  int64_t upload_words = 0;
  // For each logits row the caller asked for, in order: the computed row holding it.
  std::vector<int32_t> logits_from;
};

class StepPlanner {
 public:
  // trash_block: a KV block outside the caller's pool that padded tokens write to.
  StepPlanner(int max_tokens, int max_blocks_per_seq, int block_size, int tile_tokens, int trash_block,
              std::vector<int> graph_sizes);

  const StepLayout& layout() const { return layout_; }
  const std::vector<int>& graph_sizes() const { return graph_sizes_; }

  // Packs a validated batch into `words` (layout().total int32). allow_graph: pad decode-only
  // batches to the next captured size.
  // The plan stays valid until the next call.
  const StepPlan& Plan(const ForwardBatch& b, bool allow_graph, int32_t* words);

  // A decode-only batch of n padding tokens (graph warm-up and capture).
  const StepPlan& PlanPadding(int n, int32_t* words);

 private:
  StepLayout layout_;
  int block_size_;
  int tile_tokens_;
  int trash_block_;
  std::vector<int> graph_sizes_;
  std::vector<int32_t> seq_map_;  // batch sequence index -> packed index, -1 unused
  std::vector<int32_t> packed_;   // packed index -> batch sequence index
  std::vector<int32_t> need_;     // blocks each packed sequence needs
  std::vector<int32_t> count_;    // tokens of each packed sequence
  StepPlan plan_;
};

}  // namespace flotilla::cuda_internal
