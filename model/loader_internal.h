// Shared pieces of the format-specific loaders.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "model/loader.h"

namespace flotilla::internal {

absl::StatusOr<std::unique_ptr<LoadedModel>> LoadGguf(const std::string& path, const LoadOptions& options);
absl::StatusOr<std::unique_ptr<LoadedModel>> LoadLlama2c(const std::string& path, const LoadOptions& options);

// Checks that the hyper-parameters describe a model we can run, with sane bounds.
absl::Status ValidateConfig(const LlamaConfig& c);

// Applies the operator's context-length override, warning when it exceeds the file's value.
absl::Status ApplyContextOverride(LlamaConfig& c, int override_len);

}  // namespace flotilla::internal
