#include "model/cuda/weight_source.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "model/cuda/cuda_status.h"

namespace flotilla::cuda_internal {
namespace {

namespace kc = kernels::cuda;
using kernels::DType;

// A view of rows [row0, row0 + rows) of a repacked matrix.
kc::DeviceWeight SubRows(const kc::DeviceWeight& w, int64_t row0, int64_t rows) {
  kc::DeviceWeight v = w;
  v.rows = rows;
  v.data = static_cast<char*>(w.data) + row0 * w.row_bytes;
  if (w.scales) v.scales = w.scales + row0 * (w.cols / kc::kQBlock);
  return v;
}

class FileSource final : public WeightSource {
 public:
  explicit FileSource(const LoadedModel& m) : m_(m) {}
  ~FileSource() override {
    if (host_) cudaFreeHost(host_);
    if (dev_) cudaFree(dev_);
  }

  const LlamaConfig& config() const override { return m_.config; }
  DType Type(MatrixId id, int layer) const override { return Matrix(id, layer).type; }
  bool OutputIsEmbedding() const override {
    return m_.weights.output.data == m_.weights.token_embd.data && m_.weights.output.type == m_.weights.token_embd.type;
  }

  absl::Status Fill(const SourceRect& r, const kc::DeviceWeight& dst, int64_t dst_row0, kc::Stream s) override {
    const WeightMatrix& w = Matrix(r.id, r.layer);
    if (r.row0 + r.rows > w.rows || r.col0 + r.cols > w.cols || r.cols != dst.cols) {
      return absl::InternalError("weight rectangle outside its matrix");
    }
    if (!host_) {
      CUDA_RETURN_IF_ERROR(cudaHostAlloc(&host_, kStagingBytes, cudaHostAllocPortable));
      CUDA_RETURN_IF_ERROR(cudaMalloc(&dev_, kStagingBytes));
    }
    const int64_t sub = kernels::RowBytes(w.type, r.cols);
    const int64_t skip = kernels::RowBytes(w.type, r.col0);
    const int64_t per_chunk = std::max<int64_t>(1, std::min<int64_t>(kStagingBytes / sub, 65535));
    if (sub > kStagingBytes) return absl::InternalError("weight row larger than the staging buffer");
    const char* src = static_cast<const char*>(w.data);
    for (int64_t done = 0; done < r.rows; done += per_chunk) {
      const int64_t n = std::min(per_chunk, r.rows - done);
      for (int64_t i = 0; i < n; ++i) {
        std::memcpy(static_cast<char*>(host_) + i * sub, src + (r.row0 + done + i) * w.row_bytes + skip, sub);
      }
      CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(dev_, host_, n * sub, cudaMemcpyHostToDevice, s));
      CUDA_RETURN_IF_ERROR(kc::RepackRows(dev_, n, dst, dst_row0 + done, s));
      CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(s));  // the staging buffers are reused
    }
    return absl::OkStatus();
  }

  absl::Status FillNorm(NormId id, int layer, float* dst, kc::Stream s) override {
    const float* src = id == NormId::kOutput      ? m_.weights.output_norm
                       : id == NormId::kAttention ? m_.weights.layers[layer].attn_norm
                                                  : m_.weights.layers[layer].ffn_norm;
    CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(dst, src, sizeof(float) * m_.config.dim, cudaMemcpyHostToDevice, s));
    CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(s));
    return absl::OkStatus();
  }

 private:
  static constexpr int64_t kStagingBytes = 64ll << 20;

  const WeightMatrix& Matrix(MatrixId id, int layer) const {
    const LlamaWeights& w = m_.weights;
    switch (id) {
      case MatrixId::kEmbedding: return w.token_embd;
      case MatrixId::kOutput: return w.output;
      case MatrixId::kQ: return w.layers[layer].wq;
      case MatrixId::kK: return w.layers[layer].wk;
      case MatrixId::kV: return w.layers[layer].wv;
      case MatrixId::kO: return w.layers[layer].wo;
      case MatrixId::kGate: return w.layers[layer].w_gate;
      case MatrixId::kUp: return w.layers[layer].w_up;
      case MatrixId::kDown: return w.layers[layer].w_down;
    }
    return w.token_embd;
  }

  const LoadedModel& m_;
  void* host_ = nullptr;
  void* dev_ = nullptr;
};

class RandomSource final : public WeightSource {
 public:
  RandomSource(const LlamaConfig& c, DType t, uint64_t seed) : c_(c), type_(t), seed_(seed) {}

  const LlamaConfig& config() const override { return c_; }
  DType Type(MatrixId, int) const override { return type_; }
  bool OutputIsEmbedding() const override { return c_.tied_output; }

  absl::Status Fill(const SourceRect& r, const kc::DeviceWeight& dst, int64_t dst_row0, kc::Stream s) override {
    // Embeddings of unit scale; products keep the activation scale (variance 1/inputs).
    const float scale = r.id == MatrixId::kEmbedding ? 1.0f : std::sqrt(3.0f / static_cast<float>(r.cols));
    const uint64_t seed = seed_ * 1000003ull + static_cast<uint64_t>(r.id) * 7919ull + r.layer * 104729ull + r.row0 +
                          r.col0 * 31ull;
    CUDA_RETURN_IF_ERROR(kc::FillRandom(SubRows(dst, dst_row0, r.rows), seed, scale, s));
    return absl::OkStatus();
  }

  absl::Status FillNorm(NormId, int, float* dst, kc::Stream s) override {
    CUDA_RETURN_IF_ERROR(kc::FillF32(dst, c_.dim, 1.0f, s));
    return absl::OkStatus();
  }

 private:
  LlamaConfig c_;
  DType type_;
  uint64_t seed_;
};

}  // namespace

std::unique_ptr<WeightSource> MakeFileWeightSource(const LoadedModel& model) {
  return std::make_unique<FileSource>(model);
}

std::unique_ptr<WeightSource> MakeRandomWeightSource(const LlamaConfig& config, DType type, uint64_t seed) {
  return std::make_unique<RandomSource>(config, type, seed);
}

}  // namespace flotilla::cuda_internal
