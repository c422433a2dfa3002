// The CUDA backend of the batched forward interface (model/executor.h).
//
// MakeCudaExecutor uploads a loaded model's weights to the GPU once (repacked for 16-byte loads),
// sizes the paged KV cache from the device memory left, and captures CUDA graphs for decode steps
// of common batch sizes. Forward allocates nothing. With tensor_parallel = N > 1 the executor
// drives N GPUs with one thread each (NCCL all-reduce after the attention output and FFN down
// projections); callers see one executor either way.
//
// This header needs no CUDA: in a build without the CUDA backend every factory returns
// FAILED_PRECONDITION. Like every Executor, an instance is used by one thread at a time.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "kernels/dtype.h"
#include "model/executor.h"
#include "model/llama_config.h"
#include "model/weights.h"

namespace flotilla {

enum class KvCacheType { kF16, kF32 };

struct CudaExecutorOptions {
  int device = 0;           // first GPU; tensor parallel ranks use device .. device + N - 1
  int tensor_parallel = 1;  // GPUs, one thread each
  int block_size = 16;      // tokens per KV block
  int max_batch_tokens = 512;
  // KV cache size, first that applies: num_kv_blocks > 0 blocks exactly; kv_cache_bytes > 0 bytes
  // per GPU; else kv_memory_fraction of the device memory free after weights and buffers.
  int num_kv_blocks = 0;
  int64_t kv_cache_bytes = 0;
  double kv_memory_fraction = 0.90;
  KvCacheType kv_type = KvCacheType::kF16;
  // Decode steps of these many sequences (one token each; smaller batches are padded up to the
  // next size) replay a captured CUDA graph. Empty: no graphs.
  std::vector<int> graph_batch_sizes = {1, 2, 4, 8, 16, 32, 64};
  bool cuda_graphs = true;  // single GPU only; tensor-parallel steps run eagerly
  // Matrix products with more token rows than this use cuBLAS; fewer use the GEMV kernels.
  int gemv_max_rows = 8;
  int64_t dequant_tile_bytes = 32ll << 20;  // F16 tile for quantized weights under cuBLAS
};

// Why this build or machine cannot run the CUDA backend, or the number of visible GPUs.
absl::StatusOr<int> CudaDeviceCount();

absl::StatusOr<std::unique_ptr<Executor>> MakeCudaExecutor(std::shared_ptr<const LoadedModel> model,
                                                           const CudaExecutorOptions& options);

// An executor for a model shape with random weights generated on the device (no file, no host
// copy): for benchmarks at shapes like Llama-3-8B. Every matrix has weight_type (the norms are
// ones); the output matrix is separate from the embedding unless config.tied_output.
absl::StatusOr<std::unique_ptr<Executor>> MakeCudaExecutorRandom(const LlamaConfig& config, kernels::DType weight_type,
                                                                 uint64_t seed, const CudaExecutorOptions& options);

// Figures of a CUDA executor, for logs and benchmarks.
struct CudaExecutorInfo {
  std::string device_name;
  int sm_count = 0;
  int tensor_parallel = 1;
  int64_t weight_bytes = 0;         // on the device, all GPUs together
  int64_t weight_bytes_per_token = 0;  // what one decode step reads (every matrix but the embedding)
  int64_t kv_block_bytes = 0;       // per GPU
  int64_t buffer_bytes = 0;         // activations and scratch, per GPU
  std::vector<int> graph_batch_sizes;  // captured
};
absl::StatusOr<CudaExecutorInfo> GetCudaExecutorInfo(const Executor& executor);

// Llama 3 8B's shape (dim 4096, 32 layers, 32 heads, 8 KV heads, FFN 14336, vocab 128256).
LlamaConfig Llama3_8BConfig(int context_length = 8192);

}  // namespace flotilla
