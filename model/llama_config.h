// Shape and hyper-parameters of a Llama-family model, as read from its file.
#pragma once

#include <string>

#include "kernels/dtype.h"

namespace flotilla {

struct LlamaConfig {
  std::string architecture = "llama";
  std::string name;
  int dim = 0;
  int n_layers = 0;
  int n_heads = 0;
  int n_kv_heads = 0;
  int head_dim = 0;
  int ffn_dim = 0;
  int vocab_size = 0;
  int context_length = 0;       // what serving uses (the file's value unless overridden)
  int file_context_length = 0;  // what the file says
  float norm_eps = 1e-5f;
  float rope_theta = 10000.0f;
  bool tied_output = false;
  // The type of most weight bytes (what users call the model's quantization).
  kernels::DType weight_type = kernels::DType::kF32;
  std::string chat_template;  // tokenizer.chat_template, when the file has one

  int kv_dim() const { return n_kv_heads * head_dim; }
  int q_dim() const { return n_heads * head_dim; }
};

}  // namespace flotilla
