// Error names, weight and activation layouts.
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "kernels/cuda/cublas_loader.h"
#include "kernels/cuda/cuda_kernels.h"

namespace flotilla::kernels::cuda {

// cuBLAS statuses are carried as kBlasBase + status (gemm.cu); a status exists only once the
// library has loaded.
const char* ErrorName(Error e) {
  if (e == kBlasUnavailable) return "CUBLAS_LIBRARY_UNAVAILABLE";
  if (e >= kBlasBase) return Cublas()->status_name(static_cast<cublasStatus_t>(e - kBlasBase));
  return cudaGetErrorName(static_cast<cudaError_t>(e));
}
const char* ErrorString(Error e) {
  if (e == kBlasUnavailable) return CublasLoadError();
  if (e >= kBlasBase) return Cublas()->status_string(static_cast<cublasStatus_t>(e - kBlasBase));
  return cudaGetErrorString(static_cast<cudaError_t>(e));
}

bool WeightShapeSupported(DType t, int64_t cols) {
  if (cols < 1) return false;
  switch (t) {
    case DType::kF32:
    case DType::kF16:
    case DType::kBF16:
      return true;
    case DType::kQ8_0:
    case DType::kQ4_0:
      return cols % kQBlock == 0;
  }
  return false;
}

DeviceWeight MakeDeviceWeight(DType t, int64_t rows, int64_t cols, void* base) {
  DeviceWeight w;
  w.type = t;
  w.rows = rows;
  w.cols = cols;
  w.row_bytes = RowDataBytes(t, cols);
  w.data = base;
  if (IsQuantized(t)) w.scales = reinterpret_cast<uint16_t*>(static_cast<char*>(base) + ScaleOffset(t, rows, cols));
  return w;
}

int64_t Q8ActivationBytes(int64_t M, int64_t K) {
  return AlignUp(M * K, 256) + AlignUp(M * (K / kQBlock) * static_cast<int64_t>(sizeof(Q8Scale)), 256);
}

Q8Activations MakeQ8Activations(void* base, int64_t M, int64_t K) {
  Q8Activations q;
  q.qs = static_cast<int8_t*>(base);
  q.scales = reinterpret_cast<Q8Scale*>(static_cast<char*>(base) + AlignUp(M * K, 256));
  q.K = K;
  return q;
}

}  // namespace flotilla::kernels::cuda
