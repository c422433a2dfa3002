// Small device helpers shared by the kernel files: warp reductions, 16-byte loads, conversions,
// and the launch-result check. Included only by .cu files.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/cuda/cuda_kernels.h"

namespace flotilla::kernels::cuda {

inline constexpr unsigned kFullMask = 0xffffffffu;

__device__ __forceinline__ float WarpSum(float v) {
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(kFullMask, v, off);
  return v;
}
__device__ __forceinline__ int WarpSumInt(int v) {
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(kFullMask, v, off);
  return v;
}
__device__ __forceinline__ float WarpMax(float v) {
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) v = fmaxf(v, __shfl_xor_sync(kFullMask, v, off));
  return v;
}

// Sum over a block of kThreads threads (a multiple of 32); every thread gets the result.
// `shared` holds at least 32 floats; the function synchronises the block.
template <int kThreads>
__device__ __forceinline__ float BlockSum(float v, float* shared) {
  v = WarpSum(v);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  __syncthreads();
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  float t = lane < kThreads / 32 ? shared[lane] : 0.0f;
  return WarpSum(t);
}
template <int kThreads>
__device__ __forceinline__ float BlockMax(float v, float* shared) {
  v = WarpMax(v);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  __syncthreads();
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  float t = lane < kThreads / 32 ? shared[lane] : -INFINITY;
  return WarpMax(t);
}

// Weights are read once per step: stream them past the caches (evict-first).
__device__ __forceinline__ uint4 LoadStreaming(const void* p) { return __ldcs(static_cast<const uint4*>(p)); }
__device__ __forceinline__ uint4 LoadCached(const void* p) { return __ldg(static_cast<const uint4*>(p)); }

__device__ __forceinline__ float HalfBitsToFloat(uint16_t h) { return __half2float(__ushort_as_half(h)); }
__device__ __forceinline__ float Bf16BitsToFloat(uint16_t h) { return __uint_as_float(static_cast<uint32_t>(h) << 16); }

template <class T>
__device__ __forceinline__ float ToFloat(T v);
template <>
__device__ __forceinline__ float ToFloat<float>(float v) {
  return v;
}
template <>
__device__ __forceinline__ float ToFloat<__half>(__half v) {
  return __half2float(v);
}
template <>
__device__ __forceinline__ float ToFloat<__nv_bfloat16>(__nv_bfloat16 v) {
  return __bfloat162float(v);
}

template <class T>
__device__ __forceinline__ T FromFloat(float v);
template <>
__device__ __forceinline__ float FromFloat<float>(float v) {
  return v;
}
template <>
__device__ __forceinline__ __half FromFloat<__half>(float v) {
  return __float2half_rn(v);
}
template <>
__device__ __forceinline__ __nv_bfloat16 FromFloat<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}

// The element type of an ActType / KvType.
template <ActType A>
struct ActElem;
template <>
struct ActElem<ActType::kF32> {
  using T = float;
};
template <>
struct ActElem<ActType::kF16> {
  using T = __half;
};
template <>
struct ActElem<ActType::kBF16> {
  using T = __nv_bfloat16;
};
template <KvType K>
struct KvElem;
template <>
struct KvElem<KvType::kF16> {
  using T = __half;
};
template <>
struct KvElem<KvType::kF32> {
  using T = float;
};

// Quantizes one 32-element block held one element per lane, exactly as QuantizeRowQ8_0:
// d = amax / 127, q = roundf(x / d) computed as x * (1 / d), d stored as f16.
__device__ __forceinline__ void QuantizeBlockWarp(float v, int8_t* qs, Q8Scale* scale) {
  const int lane = threadIdx.x % 32;
  const float amax = WarpMax(fabsf(v));
  const float d = amax / 127.0f;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  const int q = static_cast<int>(roundf(v * id));
  qs[lane] = static_cast<int8_t>(q);
  const int sum = WarpSumInt(q);
  if (lane == 0) {
    scale->d = __half2float(__float2half_rn(d));
    scale->sum = sum;
  }
}

inline Error LastLaunchError() { return static_cast<Error>(cudaGetLastError()); }

inline unsigned CeilDiv(int64_t a, int64_t b) { return static_cast<unsigned>((a + b - 1) / b); }

}  // namespace flotilla::kernels::cuda
