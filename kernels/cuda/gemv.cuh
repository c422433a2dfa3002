// The matrix-vector (and up-to-8-row matrix) kernel, written once for every weight type.
//
// A block is 4 warps; each warp owns R consecutive output rows and walks their 16-byte chunks
// with its 32 lanes (lane l: chunks l, l + 32, ...), so each lane keeps R independent 16-byte
// weight loads in flight per iteration and the loop is unrolled for more. Activation chunks are
// loaded once per iteration and reused for the R rows. Lane sums are combined by a butterfly;
// the order of every (row, m) sum is independent of M and R, so a token's result does not depend
// on what else is in the batch.
//
// Runtime values become template parameters in LaunchMatVec<W> (activation type, M, R,
// accumulate); each weight type's instantiation lives in its own gemv_<type>.cu file.
#pragma once

#include "kernels/cuda/device_utils.cuh"

namespace flotilla::kernels::cuda {

inline constexpr int kMatVecWarps = 4;

struct MatVecParams {
  const uint8_t* w;
  const uint16_t* scales;
  int64_t row_bytes;
  int64_t rows;
  int64_t K;
  const void* x;
  int64_t ldx;
  const int8_t* xq;
  const Q8Scale* xs;
  float* y;
  int64_t ldy;
};

// Loads the E activations of chunk c of row m as floats; the last chunk of a row whose width is
// not a multiple of E is loaded element by element and zero-filled.
template <class T, int E>
__device__ __forceinline__ void LoadActChunk(const T* xrow, int64_t c, int64_t K, float (&out)[E]) {
  const int64_t k0 = c * E;
  if (k0 + E <= K) {
    if constexpr (sizeof(T) * E == 32) {  // f32 x 8
      const float4 a = __ldg(reinterpret_cast<const float4*>(xrow + k0));
      const float4 b = __ldg(reinterpret_cast<const float4*>(xrow + k0) + 1);
      out[0] = a.x, out[1] = a.y, out[2] = a.z, out[3] = a.w;
      out[4] = b.x, out[5] = b.y, out[6] = b.z, out[7] = b.w;
    } else if constexpr (sizeof(T) * E == 16) {
      const uint4 v = __ldg(reinterpret_cast<const uint4*>(xrow + k0));
      const T* e = reinterpret_cast<const T*>(&v);
#pragma unroll
      for (int i = 0; i < E; ++i) out[i] = ToFloat(e[i]);
    } else {  // 16-bit x 4
      const uint2 v = __ldg(reinterpret_cast<const uint2*>(xrow + k0));
      const T* e = reinterpret_cast<const T*>(&v);
#pragma unroll
      for (int i = 0; i < E; ++i) out[i] = ToFloat(e[i]);
    }
  } else {
#pragma unroll
    for (int i = 0; i < E; ++i) out[i] = k0 + i < K ? ToFloat(xrow[k0 + i]) : 0.0f;
  }
}

// The weights of one chunk as floats (float types only).
template <DType W, int E>
__device__ __forceinline__ void ChunkToFloat(const uint4& v, float (&out)[E]) {
  if constexpr (W == DType::kF32) {
    out[0] = __uint_as_float(v.x), out[1] = __uint_as_float(v.y);
    out[2] = __uint_as_float(v.z), out[3] = __uint_as_float(v.w);
  } else {
    const uint16_t* h = reinterpret_cast<const uint16_t*>(&v);
#pragma unroll
    for (int i = 0; i < E; ++i) out[i] = W == DType::kF16 ? HalfBitsToFloat(h[i]) : Bf16BitsToFloat(h[i]);
  }
}

template <DType W, class XT, int M, int R, bool kAccumulate>
__global__ void __launch_bounds__(kMatVecWarps * 32) MatVecKernel(MatVecParams p) {
  constexpr int E = ChunkElems(W);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t row0 = (static_cast<int64_t>(blockIdx.x) * kMatVecWarps + warp) * R;
  if (row0 >= p.rows) return;
  const int64_t chunks = p.row_bytes / kChunkBytes;
  const int64_t blocks_per_row = p.K / kQBlock;

  // Rows past the end repeat the last row (valid memory); their sums are never written.
  const uint8_t* wrow[R];
  int64_t rowi[R];
#pragma unroll
  for (int r = 0; r < R; ++r) {
    rowi[r] = min(row0 + r, p.rows - 1);
    wrow[r] = p.w + rowi[r] * p.row_bytes;
  }

  float acc[R][M];
#pragma unroll
  for (int r = 0; r < R; ++r)
#pragma unroll
    for (int m = 0; m < M; ++m) acc[r][m] = 0.0f;

#pragma unroll 2
  for (int64_t c = lane; c < chunks; c += 32) {
    uint4 wv[R];
#pragma unroll
    for (int r = 0; r < R; ++r) wv[r] = LoadStreaming(wrow[r] + c * kChunkBytes);

    if constexpr (W == DType::kQ8_0) {
      const int64_t b = c >> 1;
      float dw[R];
#pragma unroll
      for (int r = 0; r < R; ++r) dw[r] = HalfBitsToFloat(p.scales[rowi[r] * blocks_per_row + b]);
#pragma unroll
      for (int m = 0; m < M; ++m) {
        const uint4 xv = LoadCached(p.xq + m * p.K + c * 16);
        const float dx = p.xs[m * blocks_per_row + b].d;
        const int32_t xi[4] = {static_cast<int32_t>(xv.x), static_cast<int32_t>(xv.y), static_cast<int32_t>(xv.z),
                               static_cast<int32_t>(xv.w)};
#pragma unroll
        for (int r = 0; r < R; ++r) {
          const int32_t wi[4] = {static_cast<int32_t>(wv[r].x), static_cast<int32_t>(wv[r].y),
                                 static_cast<int32_t>(wv[r].z), static_cast<int32_t>(wv[r].w)};
          acc[r][m] += static_cast<float>(DotChunkQ8(wi, xi)) * (dw[r] * dx);
        }
      }
    } else if constexpr (W == DType::kQ4_0) {
      float dw[R];
#pragma unroll
      for (int r = 0; r < R; ++r) dw[r] = HalfBitsToFloat(p.scales[rowi[r] * blocks_per_row + c]);
#pragma unroll
      for (int m = 0; m < M; ++m) {
        const uint4 lo = LoadCached(p.xq + m * p.K + c * 32);
        const uint4 hi = LoadCached(p.xq + m * p.K + c * 32 + 16);
        const Q8Scale xs = p.xs[m * blocks_per_row + c];
        const int32_t xl[4] = {static_cast<int32_t>(lo.x), static_cast<int32_t>(lo.y), static_cast<int32_t>(lo.z),
                               static_cast<int32_t>(lo.w)};
        const int32_t xh[4] = {static_cast<int32_t>(hi.x), static_cast<int32_t>(hi.y), static_cast<int32_t>(hi.z),
                               static_cast<int32_t>(hi.w)};
#pragma unroll
        for (int r = 0; r < R; ++r) {
          const int32_t wi[4] = {static_cast<int32_t>(wv[r].x), static_cast<int32_t>(wv[r].y),
                                 static_cast<int32_t>(wv[r].z), static_cast<int32_t>(wv[r].w)};
          acc[r][m] += static_cast<float>(DotChunkQ4(wi, xl, xh, xs.sum)) * (dw[r] * xs.d);
        }
      }
    } else {
      float wf[R][E];
#pragma unroll
      for (int r = 0; r < R; ++r) ChunkToFloat<W, E>(wv[r], wf[r]);
      const XT* x = static_cast<const XT*>(p.x);
#pragma unroll
      for (int m = 0; m < M; ++m) {
        float xf[E];
        LoadActChunk<XT, E>(x + m * p.ldx, c, p.K, xf);
#pragma unroll
        for (int r = 0; r < R; ++r)
#pragma unroll
          for (int i = 0; i < E; ++i) acc[r][m] = fmaf(wf[r][i], xf[i], acc[r][m]);
      }
    }
  }

#pragma unroll
  for (int r = 0; r < R; ++r) {
#pragma unroll
    for (int m = 0; m < M; ++m) {
      const float v = WarpSum(acc[r][m]);
      if (lane == 0 && row0 + r < p.rows) {
        float* out = p.y + m * p.ldy + row0 + r;
        *out = kAccumulate ? *out + v : v;
      }
    }
  }
}

// Rows per warp: more rows reuse each activation chunk more, fewer keep more warps busy.
template <int M>
inline constexpr int kRowsPerWarp = M <= 2 ? 1 : 2;

template <DType W, class XT, int M>
Error LaunchMatVecM(const MatVecParams& p, bool accumulate, Stream s) {
  constexpr int R = kRowsPerWarp<M>;
  const unsigned grid = CeilDiv(p.rows, kMatVecWarps * R);
  if (accumulate) {
    MatVecKernel<W, XT, M, R, true><<<grid, kMatVecWarps * 32, 0, s>>>(p);
  } else {
    MatVecKernel<W, XT, M, R, false><<<grid, kMatVecWarps * 32, 0, s>>>(p);
  }
  return LastLaunchError();
}

template <DType W, class XT>
Error LaunchMatVecX(const MatVecParams& p, int M, bool accumulate, Stream s) {
  switch (M) {
    case 1: return LaunchMatVecM<W, XT, 1>(p, accumulate, s);
    case 2: return LaunchMatVecM<W, XT, 2>(p, accumulate, s);
    case 3: return LaunchMatVecM<W, XT, 3>(p, accumulate, s);
    case 4: return LaunchMatVecM<W, XT, 4>(p, accumulate, s);
    case 5: return LaunchMatVecM<W, XT, 5>(p, accumulate, s);
    case 6: return LaunchMatVecM<W, XT, 6>(p, accumulate, s);
    case 7: return LaunchMatVecM<W, XT, 7>(p, accumulate, s);
    case 8: return LaunchMatVecM<W, XT, 8>(p, accumulate, s);
    default: return kInvalidValue;
  }
}

// The dispatch for one weight type; instantiated in gemv_<type>.cu.
template <DType W>
Error LaunchMatVec(const MatVecArgs& a, Stream s) {
  MatVecParams p{};
  p.w = static_cast<const uint8_t*>(a.w.data);
  p.scales = a.w.scales;
  p.row_bytes = a.w.row_bytes;
  p.rows = a.w.rows;
  p.K = a.w.cols;
  p.y = a.y;
  p.ldy = a.ldy;
  if constexpr (IsQuantized(W)) {
    p.xq = a.xq.qs;
    p.xs = a.xq.scales;
    return LaunchMatVecX<W, int8_t>(p, a.M, a.accumulate, s);
  } else {
    p.x = a.x;
    p.ldx = a.ldx;
    switch (a.x_type) {
      case ActType::kF32: return LaunchMatVecX<W, float>(p, a.M, a.accumulate, s);
      case ActType::kF16: return LaunchMatVecX<W, __half>(p, a.M, a.accumulate, s);
      case ActType::kBF16: return LaunchMatVecX<W, __nv_bfloat16>(p, a.M, a.accumulate, s);
    }
    return kInvalidValue;
  }
}

}  // namespace flotilla::kernels::cuda
