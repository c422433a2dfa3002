// Prompt-sized matrix products through cuBLAS. F32 weights run in strict f32 (no TF32), F16/BF16
// weights are used as stored (rows padded to 16 bytes, which is only a leading dimension), and
// Q8_0/Q4_0 weights are dequantized to F16 a tile of rows at a time: the tile is sized to stay in
// L2, so the GEMM reads it back from cache and the matrix crosses DRAM about once in its quantized
// form.
#include <cublas_v2.h>

#include <algorithm>

#include "kernels/cuda/cublas_loader.h"
#include "kernels/cuda/device_utils.cuh"

namespace flotilla::kernels::cuda {

struct Blas {
  cublasHandle_t handle = nullptr;
  void* workspace = nullptr;
  size_t workspace_bytes = 0;
};

namespace {

Error FromBlas(cublasStatus_t st) { return st == CUBLAS_STATUS_SUCCESS ? 0 : kBlasBase + static_cast<int>(st); }

// One thread per 16-byte data chunk.
template <DType W>
__global__ void __launch_bounds__(128) DequantF16Kernel(DeviceWeight w, int64_t row0, __half* out) {
  constexpr int E = ChunkElems(W);
  const int64_t r = blockIdx.y;
  const int64_t c = static_cast<int64_t>(blockIdx.x) * 128 + threadIdx.x;
  if (c * kChunkBytes >= w.row_bytes) return;
  const int64_t row = row0 + r;
  const uint4 v = *reinterpret_cast<const uint4*>(static_cast<const uint8_t*>(w.data) + row * w.row_bytes + c * kChunkBytes);
  __half* dst = out + r * w.cols + c * E;
  if constexpr (W == DType::kQ8_0 || W == DType::kQ4_0) {
    const int64_t b = W == DType::kQ8_0 ? c / 2 : c;
    const float d = HalfBitsToFloat(w.scales[row * (w.cols / kQBlock) + b]);
    const uint8_t* q = reinterpret_cast<const uint8_t*>(&v);
    __align__(16) __half h[E];
    if constexpr (W == DType::kQ8_0) {
#pragma unroll
      for (int j = 0; j < 16; ++j) h[j] = __float2half_rn(static_cast<float>(static_cast<int8_t>(q[j])) * d);
    } else {
#pragma unroll
      for (int j = 0; j < 16; ++j) {
        h[j] = __float2half_rn(static_cast<float>((q[j] & 0x0f) - 8) * d);
        h[j + 16] = __float2half_rn(static_cast<float>((q[j] >> 4) - 8) * d);
      }
    }
#pragma unroll
    for (int j = 0; j < E / 8; ++j) reinterpret_cast<uint4*>(dst)[j] = reinterpret_cast<const uint4*>(h)[j];
  } else {
    const int64_t left = w.cols - c * E;
    if constexpr (W == DType::kF32) {
      const float* f = reinterpret_cast<const float*>(&v);
      for (int j = 0; j < E && j < left; ++j) dst[j] = __float2half_rn(f[j]);
    } else {
      const uint16_t* h = reinterpret_cast<const uint16_t*>(&v);
      for (int j = 0; j < E && j < left; ++j) {
        dst[j] = W == DType::kF16 ? __ushort_as_half(h[j]) : __float2half_rn(Bf16BitsToFloat(h[j]));
      }
    }
  }
}

cudaDataType_t CudaType(ActType t) {
  return t == ActType::kF32 ? CUDA_R_32F : t == ActType::kF16 ? CUDA_R_16F : CUDA_R_16BF;
}

}  // namespace

Error CreateBlas(Blas** out, void* workspace, size_t workspace_bytes) {
  const CublasApi* blas = Cublas();
  if (!blas) return kBlasUnavailable;
  auto* b = new Blas;
  if (Error e = FromBlas(blas->create(&b->handle)); e != 0) {
    delete b;
    return e;
  }
  // Strict f32 for F32 weights; tensor cores for the 16-bit types.
  blas->set_math_mode(b->handle, CUBLAS_DEFAULT_MATH);
  blas->set_pointer_mode(b->handle, CUBLAS_POINTER_MODE_HOST);
  b->workspace = workspace;
  b->workspace_bytes = workspace_bytes;
  *out = b;
  return 0;
}

void DestroyBlas(Blas* b) {
  if (!b) return;
  if (b->handle) Cublas()->destroy(b->handle);  // a handle exists only if the library loaded
  delete b;
}

ActType GemmActivationType(DType w) {
  return w == DType::kF32 ? ActType::kF32 : w == DType::kBF16 ? ActType::kBF16 : ActType::kF16;
}

int64_t GemmTileBytes(int64_t rows_per_tile, int64_t cols) { return AlignUp(rows_per_tile * cols * 2, 256); }

Error DequantizeRowsF16(const DeviceWeight& w, int64_t row0, int64_t rows, void* out, Stream s) {
  if (rows < 1 || row0 < 0 || row0 + rows > w.rows || rows > 65535 || !out) return kInvalidValue;
  const dim3 grid(CeilDiv(w.row_bytes / kChunkBytes, 128), static_cast<unsigned>(rows));
  auto* o = static_cast<__half*>(out);
  switch (w.type) {
    case DType::kF32: DequantF16Kernel<DType::kF32><<<grid, 128, 0, s>>>(w, row0, o); break;
    case DType::kF16: DequantF16Kernel<DType::kF16><<<grid, 128, 0, s>>>(w, row0, o); break;
    case DType::kBF16: DequantF16Kernel<DType::kBF16><<<grid, 128, 0, s>>>(w, row0, o); break;
    case DType::kQ8_0: DequantF16Kernel<DType::kQ8_0><<<grid, 128, 0, s>>>(w, row0, o); break;
    case DType::kQ4_0: DequantF16Kernel<DType::kQ4_0><<<grid, 128, 0, s>>>(w, row0, o); break;
  }
  return LastLaunchError();
}

Error Gemm(Blas* b, const GemmArgs& a, Stream s) {
  const DeviceWeight& w = a.w;
  if (!b || a.M < 1 || !a.x || !a.y || w.rows < 1 || a.ldy < w.rows || a.ldx < w.cols) return kInvalidValue;
  if (w.rows > INT32_MAX || w.cols > INT32_MAX) return kInvalidValue;
  // cublasSetStream resets the workspace to cuBLAS's own pool, which graph capture must not use.
  const CublasApi& blas = *Cublas();  // a Blas exists only if the library loaded
  if (Error e = FromBlas(blas.set_stream(b->handle, s)); e != 0) return e;
  if (b->workspace) {
    if (Error e = FromBlas(blas.set_workspace(b->handle, b->workspace, b->workspace_bytes)); e != 0) return e;
  }
  const float alpha = 1.0f, beta = a.accumulate ? 1.0f : 0.0f;
  const int M = a.M, K = static_cast<int>(w.cols);
  const ActType xt = GemmActivationType(w.type);
  // Column-major view: C (rows x M, ld ldy) = A^T (A: K x rows, ld lda) * B (K x M, ld ldx).
  auto gemm = [&](const void* A, cudaDataType_t at, int64_t lda, int64_t rows, float* C) {
    return FromBlas(blas.gemm_ex(b->handle, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(rows), M, K, &alpha, A, at,
                                 static_cast<int>(lda), a.x, CudaType(xt), static_cast<int>(a.ldx), &beta, C,
                                 CUDA_R_32F, static_cast<int>(a.ldy), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
  };
  if (!IsQuantized(w.type)) {
    const int64_t elem = w.type == DType::kF32 ? 4 : 2;
    return gemm(w.data, CudaType(xt), w.row_bytes / elem, w.rows, a.y);
  }
  const int64_t tile_rows = std::min<int64_t>({w.rows, a.tile_bytes / (w.cols * 2), 65535});
  if (!a.tile || tile_rows < 1) return kInvalidValue;
  for (int64_t r0 = 0; r0 < w.rows; r0 += tile_rows) {
    const int64_t rows = std::min(tile_rows, w.rows - r0);
    if (Error e = DequantizeRowsF16(w, r0, rows, a.tile, s); e != 0) return e;
    if (Error e = gemm(a.tile, CUDA_R_16F, w.cols, rows, a.y + r0); e != 0) return e;
  }
  return 0;
}

}  // namespace flotilla::kernels::cuda
