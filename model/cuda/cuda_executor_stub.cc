// The CUDA executor's factories in a build without the CUDA backend: each says so.
#include "model/cuda/cuda_executor.h"

namespace flotilla {
namespace {

absl::Status NoCuda() {
  return absl::FailedPreconditionError(
      "this build has no CUDA backend: configure with -DFLOTILLA_CUDA=ON (or AUTO) where nvcc is installed");
}

}  // namespace

absl::StatusOr<int> CudaDeviceCount() { return NoCuda(); }

absl::StatusOr<std::unique_ptr<Executor>> MakeCudaExecutor(std::shared_ptr<const LoadedModel>,
                                                           const CudaExecutorOptions&) {
  return NoCuda();
}

absl::StatusOr<std::unique_ptr<Executor>> MakeCudaExecutorRandom(const LlamaConfig&, kernels::DType, uint64_t,
                                                                 const CudaExecutorOptions&) {
  return NoCuda();
}

absl::StatusOr<CudaExecutorInfo> GetCudaExecutorInfo(const Executor&) { return NoCuda(); }

}  // namespace flotilla
