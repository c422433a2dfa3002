// cuBLAS loaded on first use (dlopen) instead of linked. Linking it put libcublas and
// libcublasLt in every worker process, GPU or not: 134 MB of resident memory (84 MB of it
// cublasLt's static data, touched at load) for a CPU worker that never calls them, over the
// worker's memory bound (model file + KV cache + 100 MB). Only the functions the GEMM path uses
// are resolved; the toolkit's headers still give their types.
#pragma once

#include <cublas_v2.h>

namespace flotilla::kernels::cuda {

// cuBLAS statuses travel as Error values (cuda_kernels.h) kBlasBase + status; kBlasUnavailable
// means the library could not be loaded (ErrorString then says why).
inline constexpr int kBlasBase = 0x10000;
inline constexpr int kBlasUnavailable = 0x20000;

struct CublasApi {
  cublasStatus_t (*create)(cublasHandle_t*);
  cublasStatus_t (*destroy)(cublasHandle_t);
  cublasStatus_t (*set_math_mode)(cublasHandle_t, cublasMath_t);
  cublasStatus_t (*set_pointer_mode)(cublasHandle_t, cublasPointerMode_t);
  cublasStatus_t (*set_stream)(cublasHandle_t, cudaStream_t);
  cublasStatus_t (*set_workspace)(cublasHandle_t, void*, size_t);
  cublasStatus_t (*gemm_ex)(cublasHandle_t, cublasOperation_t, cublasOperation_t, int, int, int, const void*, const void*,
                            cudaDataType, int, const void*, cudaDataType, int, const void*, void*, cudaDataType, int,
                            cublasComputeType_t, cublasGemmAlgo_t);
  const char* (*status_name)(cublasStatus_t);
  const char* (*status_string)(cublasStatus_t);
};

// The library's file name for this toolkit's major version (libcublas.so.13).
const char* CublasLibraryName();

// The loaded functions, or nullptr when the library or one of them is missing; then
// CublasLoadError() says which. Loaded once, on the first call (thread-safe).
const CublasApi* Cublas();
const char* CublasLoadError();

}  // namespace flotilla::kernels::cuda
