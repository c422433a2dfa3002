// Where a rank's weights come from: a loaded model file (host rows, repacked on the device) or
// random values generated on the device. Upload runs at start-up only.
#pragma once

#include <cstdint>
#include <memory>

#include "absl/status/status.h"
#include "kernels/cuda/cuda_kernels.h"
#include "model/llama_config.h"
#include "model/weights.h"

namespace flotilla::cuda_internal {

enum class MatrixId { kEmbedding, kOutput, kQ, kK, kV, kO, kGate, kUp, kDown };
enum class NormId { kAttention, kFfn, kOutput };

// The source rectangle of one matrix: rows [row0, row0 + rows), columns [col0, col0 + cols).
struct SourceRect {
  MatrixId id;
  int layer = 0;
  int64_t row0 = 0, rows = 0;
  int64_t col0 = 0, cols = 0;
};

class WeightSource {
 public:
  virtual ~WeightSource() = default;
  virtual const LlamaConfig& config() const = 0;
  virtual kernels::DType Type(MatrixId id, int layer) const = 0;
  // Whether the output matrix is the embedding (one copy on the device).
  virtual bool OutputIsEmbedding() const = 0;
  // Writes the rectangle into rows [dst_row0, dst_row0 + rect.rows) of dst (on the current device).
  virtual absl::Status Fill(const SourceRect& rect, const kernels::cuda::DeviceWeight& dst, int64_t dst_row0,
                            kernels::cuda::Stream s) = 0;
  // Writes a norm vector (config().dim floats) to device memory.
  virtual absl::Status FillNorm(NormId id, int layer, float* dst, kernels::cuda::Stream s) = 0;
};

// Reads the model's memory-mapped rows through a pinned staging buffer. The model must outlive it.
std::unique_ptr<WeightSource> MakeFileWeightSource(const LoadedModel& model);

// Uniform random weights scaled by 1/sqrt(inputs), unit norms; seed decides every value.
std::unique_ptr<WeightSource> MakeRandomWeightSource(const LlamaConfig& config, kernels::DType type, uint64_t seed);

}  // namespace flotilla::cuda_internal
