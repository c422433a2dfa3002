// Random-weight Llama-shaped GGUF files for benchmarks and tests (`flotilla synth`). Weights
// are quantized with our own ggml-exact quantizers; the tokenizer is copied from a donor GGUF
// (e.g. the Llama 2 vocabulary in llama2-vocab-tiny-f16.gguf) when its size matches the shape,
// otherwise a small synthetic SentencePiece-style vocabulary (controls, 256 bytes, pieces) is made.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "kernels/dtype.h"

namespace flotilla {

struct SyntheticShape {
  int dim = 0;
  int n_layers = 0;
  int n_heads = 0;
  int n_kv_heads = 0;
  int ffn_dim = 0;
  int vocab_size = 0;
  int context_length = 2048;
  bool tied_output = false;
};

// "110m", "1b" (TinyLlama-1.1B), "8b" (Llama-3-8B), or "DIM,LAYERS,HEADS,KV_HEADS,FFN,VOCAB".
absl::StatusOr<SyntheticShape> ParseSyntheticShape(const std::string& spec);

struct SynthOptions {
  kernels::DType type = kernels::DType::kQ8_0;  // F32, F16, BF16, Q8_0 or Q4_0
  uint64_t seed = 1;
  std::string vocab_from;  // a GGUF to take the tokenizer from; "" for the synthetic vocabulary
  float weight_scale = 0.02f;
};

// Bytes the file will hold (approximately: tensors only).
int64_t SyntheticModelBytes(const SyntheticShape& s, kernels::DType type);

absl::Status WriteSyntheticModel(const SyntheticShape& shape, const SynthOptions& options, const std::string& path);

}  // namespace flotilla
