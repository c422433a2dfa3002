// CUDA runtime and kernel-launcher results as absl::Status, naming the failed call.
#pragma once

#include <cuda_runtime.h>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "kernels/cuda/cuda_kernels.h"

namespace flotilla::cuda_internal {

inline absl::Status CudaStatus(int e, const char* what) {
  if (e == 0) return absl::OkStatus();
  return absl::InternalError(absl::StrCat("CUDA error ", kernels::cuda::ErrorName(e), " (", e,
                                          "): ", kernels::cuda::ErrorString(e), " in ", what));
}

}  // namespace flotilla::cuda_internal

// Returns an INTERNAL status naming the call when a CUDA runtime call or a kernel launcher fails.
#define CUDA_RETURN_IF_ERROR(expr)                                                            \
  do {                                                                                        \
    const int _flotilla_cuda_e = static_cast<int>(expr);                                      \
    if (_flotilla_cuda_e != 0) return ::flotilla::cuda_internal::CudaStatus(_flotilla_cuda_e, #expr); \
  } while (0)
