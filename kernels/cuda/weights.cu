// Weight upload: ggml rows -> the repacked device layout (formats.h), and random weights made
// on the device for benchmark shapes that no file holds.
#include "kernels/cuda/device_utils.cuh"

namespace flotilla::kernels::cuda {
namespace {

// ggml's bytes per row, for the types the kernels take.
__host__ __device__ inline int64_t GgmlRowBytes(DType t, int64_t cols) {
  switch (t) {
    case DType::kF32: return cols * 4;
    case DType::kF16:
    case DType::kBF16: return cols * 2;
    case DType::kQ8_0: return cols / kQBlock * 34;
    case DType::kQ4_0: return cols / kQBlock * 18;
  }
  return 0;
}

// One thread per output 16-byte chunk (float types: padding included) or per ggml block.
__global__ void RepackKernel(const uint8_t* src, int64_t nrows, DeviceWeight dst, int64_t row0) {
  const int64_t r = blockIdx.y;
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const uint8_t* s = src + r * GgmlRowBytes(dst.type, dst.cols);
  uint8_t* d = static_cast<uint8_t*>(dst.data) + (row0 + r) * dst.row_bytes;
  if (dst.type == DType::kQ8_0 || dst.type == DType::kQ4_0) {
    const int64_t nb = dst.cols / kQBlock;
    if (i >= nb) return;
    const bool q8 = dst.type == DType::kQ8_0;
    const uint8_t* blk = s + i * (q8 ? 34 : 18);
    dst.scales[(row0 + r) * nb + i] = static_cast<uint16_t>(blk[0] | (blk[1] << 8));
    const int n = q8 ? 32 : 16;
    for (int j = 0; j < n; ++j) d[i * n + j] = blk[2 + j];
    return;
  }
  if (i * kChunkBytes >= dst.row_bytes) return;
  const int64_t elem = dst.type == DType::kF32 ? 4 : 2;
  const int64_t have = dst.cols * elem;
  for (int j = 0; j < kChunkBytes; ++j) {
    const int64_t b = i * kChunkBytes + j;
    d[b] = b < have ? s[b] : 0;
  }
}

__device__ __forceinline__ uint64_t SplitMix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// Uniform in [-1, 1).
__device__ __forceinline__ float UnitRandom(uint64_t seed, uint64_t i) {
  return static_cast<float>(SplitMix(seed ^ SplitMix(i)) >> 40) * (2.0f / 16777216.0f) - 1.0f;
}

// One thread per data byte group of 4 (a 32-bit word) and per scale.
__global__ void FillRandomKernel(DeviceWeight w, uint64_t seed, float scale) {
  const int64_t words = w.rows * w.row_bytes / 4;
  const int64_t nb = IsQuantized(w.type) ? w.rows * (w.cols / kQBlock) : 0;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < words + nb; i += stride) {
    if (i >= words) {
      const float d = w.type == DType::kQ8_0 ? scale / 127.0f : scale / 8.0f;
      w.scales[i - words] = __half_as_ushort(__float2half_rn(d));
      continue;
    }
    const uint64_t h = SplitMix(seed ^ SplitMix(static_cast<uint64_t>(i)));
    uint32_t word = 0;
    if (w.type == DType::kQ8_0) {
      for (int j = 0; j < 4; ++j) {
        const int q = static_cast<int>((h >> (16 * j)) % 255) - 127;
        word |= static_cast<uint32_t>(static_cast<uint8_t>(q)) << (8 * j);
      }
    } else if (w.type == DType::kQ4_0) {
      word = static_cast<uint32_t>(h);
    } else {
      const int64_t row = i * 4 / w.row_bytes;
      const int64_t col_byte = i * 4 - row * w.row_bytes;
      if (w.type == DType::kF32) {
        const int64_t col = col_byte / 4;
        word = col < w.cols ? __float_as_uint(UnitRandom(seed, row * w.cols + col) * scale) : 0u;
      } else {
        for (int j = 0; j < 2; ++j) {
          const int64_t col = col_byte / 2 + j;
          uint16_t bits = 0;
          if (col < w.cols) {
            const float v = UnitRandom(seed, row * w.cols + col) * scale;
            bits = w.type == DType::kF16 ? __half_as_ushort(__float2half_rn(v))
                                         : __bfloat16_as_ushort(__float2bfloat16_rn(v));
          }
          word |= static_cast<uint32_t>(bits) << (16 * j);
        }
      }
    }
    static_cast<uint32_t*>(w.data)[i] = word;
  }
}

}  // namespace

Error RepackRows(const void* ggml_rows, int64_t nrows, const DeviceWeight& dst, int64_t row0, Stream s) {
  if (nrows < 1 || row0 < 0 || row0 + nrows > dst.rows || nrows > 65535 || !WeightShapeSupported(dst.type, dst.cols)) {
    return kInvalidValue;
  }
  const int64_t units = IsQuantized(dst.type) ? dst.cols / kQBlock : dst.row_bytes / kChunkBytes;
  const dim3 grid(CeilDiv(units, 128), static_cast<unsigned>(nrows));
  RepackKernel<<<grid, 128, 0, s>>>(static_cast<const uint8_t*>(ggml_rows), nrows, dst, row0);
  return LastLaunchError();
}

Error FillRandom(const DeviceWeight& w, uint64_t seed, float scale, Stream s) {
  if (!w.data || w.rows < 1 || !WeightShapeSupported(w.type, w.cols)) return kInvalidValue;
  FillRandomKernel<<<132 * 16, 256, 0, s>>>(w, seed, scale);
  return LastLaunchError();
}

}  // namespace flotilla::kernels::cuda
