// Loading a model file: GGUF (v2/v3) or a llama2.c checkpoint with its tokenizer.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "model/weights.h"

namespace flotilla {

struct LoadOptions {
  // llama2.c only: the tokenizer file. Empty: tok<vocab>.bin or tokenizer.bin beside the checkpoint.
  std::string tokenizer_path;
  // Overrides the context length from the file (0 keeps it). The shared GGUFs understate theirs.
  int context_length = 0;
};

absl::StatusOr<std::unique_ptr<LoadedModel>> LoadModel(const std::string& path, const LoadOptions& options = {});

}  // namespace flotilla
