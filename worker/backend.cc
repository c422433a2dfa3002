#include "worker/backend.h"

#include <spdlog/spdlog.h>

#include "absl/strings/str_cat.h"
#include "model/cuda/cuda_executor.h"

namespace flotilla::worker {

absl::StatusOr<std::unique_ptr<Executor>> MakeBackend(std::shared_ptr<const LoadedModel> model, const WorkerOptions& o) {
  const LlamaConfig& c = model->config;
  auto kv_type = ParseKvDType(o.kv_cache_type);
  if (!kv_type.ok()) return kv_type.status();
  ExecutorOptions eo;
  eo.kv_type = *kv_type;
  eo.block_size = o.block_size;
  eo.max_batch_tokens = o.max_tokens_per_step;
  eo.threads = o.threads;
  if (o.backend == "cpu") {
    if (absl::Status st = CheckKvDType(c, eo.kv_type); !st.ok()) return st;
    const int64_t per_block = CpuKvBytesPerBlock(c, o.block_size, eo.kv_type);
    int64_t blocks = o.num_kv_blocks > 0 ? o.num_kv_blocks : (static_cast<int64_t>(o.kv_memory_mb) << 20) / per_block;
    // More blocks than every sequence at full context (twice, for the prefix cache) buys nothing.
    const int64_t useful = 2LL * o.max_num_seqs * ((c.context_length + o.block_size - 1) / o.block_size);
    if (o.num_kv_blocks == 0 && blocks > useful) blocks = useful;
    if (blocks < 1) {
      return absl::InvalidArgumentError(absl::StrCat("--kv-memory-mb ", o.kv_memory_mb, " holds no KV block of ", per_block, " bytes"));
    }
    eo.num_kv_blocks = static_cast<int>(blocks);
    spdlog::info("KV cache: {} blocks x {} tokens = {:.1f} MiB ({})", blocks, o.block_size, blocks * per_block / 1048576.0,
                 o.kv_cache_type);
    return MakeCpuExecutor(std::move(model), eo);
  }
  if (o.backend == "cuda") {
    CudaExecutorOptions co;
    co.device = o.device;
    co.tensor_parallel = o.tensor_parallel;
    co.block_size = o.block_size;
    co.max_batch_tokens = o.max_tokens_per_step;
    co.num_kv_blocks = o.num_kv_blocks;
    co.kv_memory_fraction = o.gpu_memory_fraction;
    if (*kv_type == KvDType::kQ8_0) {
      return absl::InvalidArgumentError("--kv-cache-type q8_0 is for the cpu backend; the cuda backend takes f16 or f32");
    }
    co.kv_type = *kv_type == KvDType::kF16 ? KvCacheType::kF16 : KvCacheType::kF32;
    // Builds without CUDA, and machines without a GPU or driver, get FAILED_PRECONDITION naming why.
    return MakeCudaExecutor(std::move(model), co);
  }
  return absl::InvalidArgumentError("unknown backend '" + o.backend + "' (want cpu or cuda)");
}

absl::Status WarmUp(Executor& ex) {
  ForwardBatch b;
  std::vector<int32_t> table = {0};
  const int32_t s = b.AddSequence(table);
  b.Add(ex.config().vocab_size > 1 ? 1 : 0, 0, s, true);
  std::vector<float> logits(ex.config().vocab_size);
  return ex.Forward(b, logits);
}

}  // namespace flotilla::worker
