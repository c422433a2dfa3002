// Choosing and preparing the executor for --backend.
#pragma once

#include <memory>

#include "absl/status/statusor.h"
#include "model/executor.h"
#include "worker/options.h"

namespace flotilla::worker {

// Builds the executor for o.backend with the KV pool sized from the options.
absl::StatusOr<std::unique_ptr<Executor>> MakeBackend(std::shared_ptr<const LoadedModel> model, const WorkerOptions& o);

// Runs one step so that first requests do not pay for page faults and lazy initialisation.
absl::Status WarmUp(Executor& ex);

}  // namespace flotilla::worker
