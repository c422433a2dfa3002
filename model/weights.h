// Weights of a Llama-family model as views into the memory-mapped file. Tensors are used
// where they lie in the file; only small norm vectors in other types than F32 are converted.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "kernels/cpu/matmul.h"
#include "model/llama_config.h"
#include "model/mapped_file.h"
#include "model/vocab.h"

namespace flotilla {

using kernels::cpu::WeightMatrix;

struct LayerWeights {
  const float* attn_norm = nullptr;  // [dim]
  WeightMatrix wq, wk, wv, wo;       // [q_dim][dim], [kv_dim][dim] x2, [dim][q_dim]
  const float* ffn_norm = nullptr;   // [dim]
  WeightMatrix w_gate, w_up, w_down;  // [ffn][dim] x2, [dim][ffn]
};

struct LlamaWeights {
  WeightMatrix token_embd;  // [vocab][dim]
  WeightMatrix output;      // [vocab][dim]; the same memory as token_embd when tied
  const float* output_norm = nullptr;
  std::vector<LayerWeights> layers;

  int64_t TotalBytes() const;  // bytes of every matrix (what one decode step reads)
};

// A loaded model: config, weights, vocabulary and what keeps the weight memory alive.
struct LoadedModel {
  std::string path;
  std::string format;  // "gguf" or "llama2c"
  LlamaConfig config;
  LlamaWeights weights;
  Vocab vocab;
  std::shared_ptr<MappedFile> file;
  std::vector<std::vector<float>> owned;  // converted norm vectors
};

}  // namespace flotilla
