// One GPU's share of a CUDA executor: its weights (a tensor-parallel shard, or everything), its
// activation buffers, its part of the paged KV cache, its stream, cuBLAS handle and captured
// decode graphs. Every device allocation happens in Init / AllocateKv / CaptureGraphs; Run
// launches work and copies results only. A Rank is driven by one thread at a time, which must
// be the thread that will call Run (the device is made current on each call).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "kernels/cuda/cuda_kernels.h"
#include "model/cuda/cuda_executor.h"
#include "model/cuda/nccl_comm.h"
#include "model/cuda/plan.h"
#include "model/cuda/weight_source.h"

struct CUgraphExec_st;

namespace flotilla::cuda_internal {

struct DevicePart {
  kernels::cuda::DeviceWeight w;
  int64_t y_offset = 0;  // first output column this part writes
};
// A linear layer: one matrix, or several written side by side when fused inputs differ in type.
struct DeviceLinear {
  std::vector<DevicePart> parts;
  bool AnyQuantized() const;
  int64_t Bytes() const;
};
struct DeviceLayer {
  float* attn_norm = nullptr;
  DeviceLinear qkv, o;
  float* ffn_norm = nullptr;
  DeviceLinear gate_up, down;
};

class Rank {
 public:
  // comm: null for a single GPU. The first rank (shard.rank 0) computes the logits.
  Rank(int device, const Shard& shard, const LlamaConfig& c, const CudaExecutorOptions& o, Communicator* comm);
  ~Rank();
  Rank(const Rank&) = delete;
  Rank& operator=(const Rank&) = delete;

  // Makes the stream, checks that weights and buffers fit, uploads the weights, allocates buffers.
  absl::Status Init(WeightSource& source);
  // Device memory still free, less a reserve for the CUDA context, cuBLAS and graphs.
  absl::StatusOr<int64_t> FreeBytesForKv() const;
  // The KV cache: num_blocks for the caller plus one trash block (id num_blocks) for padding.
  absl::Status AllocateKv(int num_blocks);
  absl::Status CaptureGraphs(StepPlanner& planner, int32_t* words);

  // Runs one planned step whose words are in pinned host memory. The first rank writes the
  // asked-for logits rows to `logits`.
  absl::Status Run(const StepPlan& p, const int32_t* words, std::span<float> logits);

  int device() const { return device_; }
  const std::string& device_name() const { return device_name_; }
  int sm_count() const { return sm_count_; }
  int64_t weight_bytes() const { return weight_bytes_; }
  int64_t weight_bytes_per_token() const;
  int64_t buffer_bytes() const { return buffer_bytes_; }
  int64_t kv_block_bytes() const;
  std::vector<int> graph_sizes() const;
  // "GPU 0 (NVIDIA H200)"
  std::string Where() const;

 private:
  struct Act;  // an activation and the converted forms made of it this step
  absl::Status PlanWeights(WeightSource& source);
  absl::Status PlanBuffers();
  absl::Status Enqueue(int T, int n_decode, int n_tiles, int n_logits);
  absl::Status RunLinear(const DeviceLinear& lin, Act& a, float* y, int64_t ldy, bool accumulate);
  absl::Status EnsureQ8(Act& a);
  absl::Status CopyLogits(const StepPlan& p, std::span<float> logits);
  kernels::cuda::Q8Activations Q8View(int64_t K) const;
  kernels::cuda::TokenTable Tokens() const;
  kernels::cuda::KvLayer KvLayerAt(int layer) const;

  const int device_;
  const Shard shard_;
  const LlamaConfig c_;
  const CudaExecutorOptions o_;
  Communicator* const comm_;
  const int tcap_;
  const int gemv_max_;
  std::string device_name_;
  int sm_count_ = 0;
  kernels::cuda::Stream stream_ = nullptr;
  kernels::cuda::Blas* blas_ = nullptr;

  // Weights: one allocation carved into matrices.
  void* weight_mem_ = nullptr;
  int64_t weight_bytes_ = 0;
  kernels::cuda::DeviceWeight embedding_;
  DeviceLinear output_;  // first rank only
  float* output_norm_ = nullptr;
  std::vector<DeviceLayer> layers_;

  // Buffers: one allocation carved into these.
  void* buffer_mem_ = nullptr;
  int64_t buffer_bytes_ = 0;
  int64_t ld_x_ = 0, ld_xb_ = 0, ld_qkv_ = 0, ld_att_ = 0, ld_gu_ = 0;
  float *x_ = nullptr, *xb_ = nullptr, *qkv_ = nullptr, *att_ = nullptr, *gu_ = nullptr;
  int64_t q8_bytes_ = 0, act16_bytes_ = 0, logits_bytes_ = 0, partial_bytes_ = 0;
  void* q8_ = nullptr;
  void* act16_ = nullptr;
  void* tile_ = nullptr;
  int64_t tile_bytes_ = 0;
  void* blas_ws_ = nullptr;
  int64_t blas_ws_bytes_ = 0;
  float* logits_ = nullptr;
  float* partial_ = nullptr;
  float* rope_ = nullptr;
  int32_t* step_ = nullptr;
  StepLayout step_layout_;

  void* kv_mem_ = nullptr;
  int kv_blocks_ = 0;  // including the trash block

  std::map<int, CUgraphExec_st*> graphs_;
};

}  // namespace flotilla::cuda_internal
