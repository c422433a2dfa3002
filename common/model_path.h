// Finding model files: --model, then $FLOTILLA_MODEL_DIR, then ./models, then ../shared/models
// (relative to the working directory and to the source tree).
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace flotilla {

// The directories searched for a bare model name, in order.
std::vector<std::string> ModelSearchPath();

// Resolves `name`: an existing path is returned as is; otherwise each search directory is tried.
// The error lists every place that was tried.
absl::StatusOr<std::string> ResolveModelPath(const std::string& name);

// The model `make run` and the tests use when none is given.
inline constexpr const char* kDefaultModel = "stories260K-q8_0.gguf";

}  // namespace flotilla
