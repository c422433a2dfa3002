// The CUDA executor: validation and planning on the calling thread, the step itself on one Rank
// per GPU. With tensor parallelism the ranks other than the first run on their own threads (one
// per GPU, started here and fed one step at a time), so the scheduler sees one executor.
#include "model/cuda/cuda_executor.h"

#include <cuda_runtime.h>

#include <atomic>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"
#include "model/cuda/cuda_status.h"
#include "model/cuda/nccl_comm.h"
#include "model/cuda/plan.h"
#include "model/cuda/rank.h"
#include "model/cuda/weight_source.h"

namespace flotilla {
namespace {

using cuda_internal::Communicator;
using cuda_internal::Rank;
using cuda_internal::StepPlan;
using cuda_internal::StepPlanner;
using cuda_internal::WeightSource;

// A thread that runs one task at a time for a rank, and waits for the next.
class RankThread {
 public:
  RankThread() : thread_([this] { Loop(); }) {}
  ~RankThread() {
    {
      std::lock_guard<std::mutex> l(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
  void Post(std::function<absl::Status()> task) {
    {
      std::lock_guard<std::mutex> l(mu_);
      task_ = std::move(task);
      done_ = false;
    }
    cv_.notify_all();
  }
  absl::Status Wait() {
    std::unique_lock<std::mutex> l(mu_);
    cv_.wait(l, [&] { return done_; });
    return result_;
  }

 private:
  void Loop() {
    std::unique_lock<std::mutex> l(mu_);
    for (;;) {
      cv_.wait(l, [&] { return stop_ || task_ != nullptr; });
      if (stop_) return;
      auto task = std::move(task_);
      task_ = nullptr;
      l.unlock();
      absl::Status st = task();
      l.lock();
      result_ = std::move(st);
      done_ = true;
      cv_.notify_all();
    }
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::function<absl::Status()> task_;
  absl::Status result_;
  bool done_ = true;
  bool stop_ = false;
  std::thread thread_;
};

class CudaExecutor final : public Executor {
 public:
  using SourceFactory = std::function<std::unique_ptr<WeightSource>()>;

  static absl::StatusOr<std::unique_ptr<Executor>> Create(std::shared_ptr<const LoadedModel> model,
                                                          const LlamaConfig& c, const SourceFactory& make_source,
                                                          const CudaExecutorOptions& o);
  ~CudaExecutor() override {
    threads_.clear();
    ranks_.clear();  // before the communicators they use
    comms_.clear();
    if (words_) cudaFreeHost(words_);
  }

  const LlamaConfig& config() const override { return c_; }
  int num_kv_blocks() const override { return num_blocks_; }
  int block_size() const override { return o_.block_size; }
  int max_batch_tokens() const override { return o_.max_batch_tokens; }
  std::string Describe() const override;
  absl::Status Forward(const ForwardBatch& batch, std::span<float> logits) override;

  CudaExecutorInfo Info() const;

 private:
  CudaExecutor(std::shared_ptr<const LoadedModel> model, const LlamaConfig& c, const CudaExecutorOptions& o)
      : model_(std::move(model)), c_(c), o_(o) {}
  absl::Status RunAll(const StepPlan& p, std::span<float> logits);

  std::shared_ptr<const LoadedModel> model_;  // may be null (random weights)
  const LlamaConfig c_;
  const CudaExecutorOptions o_;
  kernels::DType weight_type_ = kernels::DType::kF32;
  std::vector<std::unique_ptr<Communicator>> comms_;
  std::vector<std::unique_ptr<Rank>> ranks_;
  std::vector<std::unique_ptr<RankThread>> threads_;  // ranks 1..N-1
  std::unique_ptr<StepPlanner> planner_;
  int32_t* words_ = nullptr;  // pinned, portable: every rank uploads the step from here
  int num_blocks_ = 0;
  bool graphs_ = false;  // decode steps replay captured graphs
  absl::Status broken_;  // set by the first failed step; the executor refuses work after it
};

absl::Status ValidateOptions(const LlamaConfig& c, const CudaExecutorOptions& o) {
  if (o.block_size <= 0 || o.block_size > 1024) {
    return absl::InvalidArgumentError(absl::StrCat("KV block size ", o.block_size, " must be in [1, 1024]"));
  }
  if (o.max_batch_tokens <= 0 || o.max_batch_tokens > 65535) {  // a grid dimension per token
    return absl::InvalidArgumentError(absl::StrCat("max batch tokens ", o.max_batch_tokens, " must be in [1, 65535]"));
  }
  if (o.tensor_parallel < 1 || o.tensor_parallel > 64) {
    return absl::InvalidArgumentError(absl::StrCat("tensor parallel ", o.tensor_parallel, " must be in [1, 64]"));
  }
  if (o.device < 0) return absl::InvalidArgumentError(absl::StrCat("GPU index ", o.device, " is negative"));
  if (o.num_kv_blocks < 0) return absl::InvalidArgumentError("KV block count must not be negative");
  if (!kernels::cuda::AttentionHeadDimSupported(c.head_dim)) {
    return absl::InvalidArgumentError(
        absl::StrCat("the CUDA attention kernels take head sizes 8, 16, 32, 64, 128, 256; this model has ", c.head_dim));
  }
  if (c.dim <= 0 || c.n_layers <= 0 || c.n_heads <= 0 || c.n_kv_heads <= 0 || c.n_heads % c.n_kv_heads != 0 ||
      c.ffn_dim <= 0 || c.vocab_size <= 0 || c.context_length <= 0) {
    return absl::InvalidArgumentError("model shape is not a valid Llama shape");
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<Executor>> CudaExecutor::Create(std::shared_ptr<const LoadedModel> model,
                                                               const LlamaConfig& c, const SourceFactory& make_source,
                                                               const CudaExecutorOptions& o) {
  RETURN_IF_ERROR(ValidateOptions(c, o));
  ASSIGN_OR_RETURN(const int count, CudaDeviceCount());
  if (o.device + o.tensor_parallel > count) {
    return absl::InvalidArgumentError(absl::StrCat("GPUs ", o.device, "..", o.device + o.tensor_parallel - 1,
                                                   " were asked for, but ", count, " GPU", count == 1 ? " is" : "s are",
                                                   " visible"));
  }
  std::unique_ptr<CudaExecutor> ex(new CudaExecutor(std::move(model), c, o));
  const int N = o.tensor_parallel;
  std::vector<std::unique_ptr<WeightSource>> sources;
  bool quantized = false;
  for (int r = 0; r < N; ++r) sources.push_back(make_source());
  for (int l = 0; l < c.n_layers; ++l) {
    for (auto id : {cuda_internal::MatrixId::kO, cuda_internal::MatrixId::kDown}) {
      quantized = quantized || kernels::cuda::IsQuantized(sources[0]->Type(id, l));
    }
  }
  ex->weight_type_ = c.weight_type;
  std::vector<int> devices;
  for (int r = 0; r < N; ++r) devices.push_back(o.device + r);
  if (N > 1) {
    ASSIGN_OR_RETURN(ex->comms_, cuda_internal::MakeNcclCommunicators(devices));
  }
  for (int r = 0; r < N; ++r) {
    ASSIGN_OR_RETURN(const cuda_internal::Shard shard, cuda_internal::MakeShard(c, N, r, quantized));
    auto rank = std::make_unique<Rank>(devices[r], shard, c, o, N > 1 ? ex->comms_[r].get() : nullptr);
    RETURN_IF_ERROR(rank->Init(*sources[r]));
    ex->ranks_.push_back(std::move(rank));
  }
  sources.clear();  // frees upload staging

  int64_t free_bytes = INT64_MAX;
  for (auto& r : ex->ranks_) {
    ASSIGN_OR_RETURN(const int64_t f, r->FreeBytesForKv());
    free_bytes = std::min(free_bytes, f);
  }
  Rank& first = *ex->ranks_[0];
  ASSIGN_OR_RETURN(const cuda_internal::KvPlan kv,
                   cuda_internal::PlanKvCache(o, c, first.kv_block_bytes(), free_bytes, first.Where()));
  for (auto& r : ex->ranks_) RETURN_IF_ERROR(r->AllocateKv(kv.num_blocks));
  ex->num_blocks_ = kv.num_blocks;

  std::vector<int> graph_sizes;
  if (o.cuda_graphs && N == 1) graph_sizes = o.graph_batch_sizes;
  ex->planner_ = std::make_unique<StepPlanner>(o.max_batch_tokens, (c.context_length + o.block_size - 1) / o.block_size,
                                               o.block_size, kernels::cuda::PrefillTileTokens(c.head_dim),
                                               kv.num_blocks, graph_sizes);
  void* words = nullptr;
  CUDA_RETURN_IF_ERROR(cudaHostAlloc(&words, ex->planner_->layout().total * 4, cudaHostAllocPortable));
  ex->words_ = static_cast<int32_t*>(words);
  if (!ex->planner_->graph_sizes().empty()) {
    RETURN_IF_ERROR(first.CaptureGraphs(*ex->planner_, ex->words_));
    ex->graphs_ = true;
  }
  for (int r = 1; r < N; ++r) ex->threads_.push_back(std::make_unique<RankThread>());
  return std::unique_ptr<Executor>(std::move(ex));
}

std::string CudaExecutor::Describe() const {
  const Rank& r = *ranks_[0];
  int64_t weights = 0;
  for (const auto& rk : ranks_) weights += rk->weight_bytes();
  return absl::StrCat("cuda ", r.device_name(), " x", ranks_.size(), ", weights ", cuda_internal::GiB(weights), " (",
                      kernels::Info(weight_type_).name, "), KV ", o_.kv_type == KvCacheType::kF32 ? "f32 " : "f16 ",
                      num_blocks_, " blocks x ", o_.block_size, " tokens, graphs [",
                      absl::StrJoin(r.graph_sizes(), ","), "]");
}

CudaExecutorInfo CudaExecutor::Info() const {
  CudaExecutorInfo info;
  const Rank& r = *ranks_[0];
  info.device_name = r.device_name();
  info.sm_count = r.sm_count();
  info.tensor_parallel = static_cast<int>(ranks_.size());
  for (const auto& rk : ranks_) {
    info.weight_bytes += rk->weight_bytes();
    info.weight_bytes_per_token += rk->weight_bytes_per_token();
  }
  info.kv_block_bytes = r.kv_block_bytes();
  info.buffer_bytes = r.buffer_bytes();
  info.graph_batch_sizes = r.graph_sizes();
  return info;
}

absl::Status CudaExecutor::RunAll(const StepPlan& p, std::span<float> logits) {
  if (ranks_.size() == 1) return ranks_[0]->Run(p, words_, logits);
  std::atomic<bool> failed{false};
  auto run = [&](size_t r) {
    absl::Status st = ranks_[r]->Run(p, words_, logits);
    // A rank that fails would leave the others waiting in an all-reduce: abort them all.
    if (!st.ok() && !failed.exchange(true)) {
      for (auto& c : comms_) c->Abort();
    }
    return st;
  };
  for (size_t r = 1; r < ranks_.size(); ++r) threads_[r - 1]->Post([&run, r] { return run(r); });
  absl::Status result = run(0);
  for (size_t r = 1; r < ranks_.size(); ++r) {
    absl::Status st = threads_[r - 1]->Wait();
    if (result.ok() || (absl::IsAborted(result) && !absl::IsAborted(st) && !st.ok())) result = st;
  }
  return result;
}

absl::Status CudaExecutor::Forward(const ForwardBatch& b, std::span<float> logits) {
  if (!broken_.ok()) return broken_;
  RETURN_IF_ERROR(ValidateBatch(b, c_, num_blocks_, o_.block_size, o_.max_batch_tokens, logits.size()));
  if (b.size() == 0) return absl::OkStatus();
  const StepPlan& p = planner_->Plan(b, graphs_, words_);
  absl::Status st = RunAll(p, logits);
  if (!st.ok()) {
    broken_ = absl::InternalError(absl::StrCat("the CUDA executor on ", ranks_[0]->Where(),
                                               " failed a step and cannot be used again: ", st.message()));
    return broken_;
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<int> CudaDeviceCount() {
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    int runtime = 0;
    cudaRuntimeGetVersion(&runtime);
    std::string why;
    if (e == cudaErrorInsufficientDriver) {
      why = absl::StrCat("no NVIDIA driver is loaded, or it is older than this CUDA runtime (", runtime / 1000, ".",
                         runtime % 1000 / 10, ")");
    } else if (e == cudaErrorNoDevice) {
      why = "the driver sees no GPU (check CUDA_VISIBLE_DEVICES)";
    } else {
      why = "the CUDA runtime could not start";
    }
    cudaGetLastError();  // not sticky: leave no error behind for later calls
    return absl::FailedPreconditionError(absl::StrCat("no usable CUDA GPU: cudaGetDeviceCount returned ", e, " (",
                                                      cudaGetErrorName(e), ": ", cudaGetErrorString(e), "); ", why));
  }
  if (n == 0) return absl::FailedPreconditionError("no usable CUDA GPU: the driver reports 0 devices");
  return n;
}

absl::StatusOr<std::unique_ptr<Executor>> MakeCudaExecutor(std::shared_ptr<const LoadedModel> model,
                                                           const CudaExecutorOptions& options) {
  if (!model) return absl::InvalidArgumentError("no model");
  const LoadedModel* m = model.get();
  return CudaExecutor::Create(
      model, m->config, [m] { return cuda_internal::MakeFileWeightSource(*m); }, options);
}

absl::StatusOr<std::unique_ptr<Executor>> MakeCudaExecutorRandom(const LlamaConfig& config, kernels::DType weight_type,
                                                                 uint64_t seed, const CudaExecutorOptions& options) {
  LlamaConfig c = config;
  c.weight_type = weight_type;
  if (c.head_dim == 0 && c.n_heads > 0) c.head_dim = c.dim / c.n_heads;
  return CudaExecutor::Create(
      nullptr, c, [c, weight_type, seed] { return cuda_internal::MakeRandomWeightSource(c, weight_type, seed); },
      options);
}

absl::StatusOr<CudaExecutorInfo> GetCudaExecutorInfo(const Executor& executor) {
  const auto* ex = dynamic_cast<const CudaExecutor*>(&executor);
  if (!ex) return absl::InvalidArgumentError("not a CUDA executor");
  return ex->Info();
}

}  // namespace flotilla
