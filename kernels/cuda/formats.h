// Device layouts of weights and quantized activations, and the per-chunk arithmetic of the
// matrix-vector kernels. Everything here is plain C++ usable from host code (tests emulate the
// kernels with it on the CPU) and from device code (the kernels call the same functions), so a
// layout or nibble-order mistake shows up in a CPU test, not only on a GPU.
//
// Weights are repacked once at upload from ggml's block layout into a layout where every row
// starts 16-byte aligned and is read in 16-byte chunks:
//   F32 / F16 / BF16: rows of `cols` rounded up to 16 bytes, the padding zero.
//   Q8_0: int8 quants [rows][cols] (one chunk = 16 quants = half a ggml block), then the f16
//         scales [rows][cols / 32] in a separate array.
//   Q4_0: packed nibbles [rows][cols / 2] (one chunk = the 16 bytes of one ggml block, same nibble
//         order: element j < 16 is the low nibble of byte j, element j + 16 the high nibble),
//         then the f16 scales [rows][cols / 32].
// Quantized activations (what Q8_0/Q4_0 weights multiply with, as in ggml and the CPU reference):
// int8 quants [M][K] and per 32 elements {float d (the f16-rounded scale), int32 sum of quants}.
#pragma once

#include <cstdint>
#include <cstring>

#include "kernels/dtype.h"

#if defined(__CUDACC__)
#define FLOTILLA_HD __host__ __device__ __forceinline__
#else
#define FLOTILLA_HD inline
#endif

namespace flotilla::kernels::cuda {

inline constexpr int kChunkBytes = 16;
inline constexpr int kQBlock = 32;  // elements per Q8_0 / Q4_0 block

struct Q8Scale {
  float d;      // the block scale, already rounded to f16 and widened back
  int32_t sum;  // sum of the block's 32 quants (Q4_0 subtracts 8 * sum)
};

// Elements of the weight row covered by one 16-byte chunk.
FLOTILLA_HD constexpr int ChunkElems(DType t) {
  return t == DType::kF32 ? 4 : (t == DType::kF16 || t == DType::kBF16) ? 8 : t == DType::kQ8_0 ? 16 : 32;
}

FLOTILLA_HD constexpr bool IsQuantized(DType t) { return t == DType::kQ8_0 || t == DType::kQ4_0; }

// Bytes of one repacked data row (a multiple of 16).
FLOTILLA_HD constexpr int64_t RowDataBytes(DType t, int64_t cols) {
  switch (t) {
    case DType::kF32:
      return (cols + 3) / 4 * 16;
    case DType::kF16:
    case DType::kBF16:
      return (cols + 7) / 8 * 16;
    case DType::kQ8_0:
      return cols;
    case DType::kQ4_0:
      return cols / 2;
  }
  return 0;
}

FLOTILLA_HD constexpr int64_t AlignUp(int64_t n, int64_t a) { return (n + a - 1) / a * a; }

// Bytes a repacked matrix takes on the device: data, then (quantized types) scales, 256-aligned.
FLOTILLA_HD constexpr int64_t ScaleOffset(DType t, int64_t rows, int64_t cols) {
  return AlignUp(RowDataBytes(t, cols) * rows, 256);
}
FLOTILLA_HD constexpr int64_t RepackedBytes(DType t, int64_t rows, int64_t cols) {
  return IsQuantized(t) ? ScaleOffset(t, rows, cols) + AlignUp(rows * (cols / kQBlock) * 2, 256)
                        : AlignUp(RowDataBytes(t, cols) * rows, 256);
}

// --- integer dot products -------------------------------------------------------------------

// Four signed 8-bit products summed into c; __dp4a on the device.
FLOTILLA_HD int Dp4a(int a, int b, int c) {
#if defined(__CUDA_ARCH__)
  return __dp4a(a, b, c);
#else
  for (int i = 0; i < 4; ++i) {
    c += static_cast<int8_t>(static_cast<uint32_t>(a) >> (8 * i)) * static_cast<int8_t>(static_cast<uint32_t>(b) >> (8 * i));
  }
  return c;
#endif
}

// One Q8_0 chunk: 16 weight quants times 16 activation quants.
FLOTILLA_HD int DotChunkQ8(const int32_t w[4], const int32_t x[4]) {
  int s = Dp4a(w[0], x[0], 0);
  s = Dp4a(w[1], x[1], s);
  s = Dp4a(w[2], x[2], s);
  return Dp4a(w[3], x[3], s);
}

// One Q4_0 chunk (a whole block): sum over j of (q_j - 8) * x_j, with x_sum the block's quant sum.
FLOTILLA_HD int DotChunkQ4(const int32_t w[4], const int32_t xlo[4], const int32_t xhi[4], int x_sum) {
  int s = 0;
  for (int i = 0; i < 4; ++i) {
    const uint32_t v = static_cast<uint32_t>(w[i]);
    s = Dp4a(static_cast<int>(v & 0x0f0f0f0fu), xlo[i], s);
    s = Dp4a(static_cast<int>((v >> 4) & 0x0f0f0f0fu), xhi[i], s);
  }
  return s - 8 * x_sum;
}

// --- host-side repacking and emulation (tests; the device does the same per chunk) ----------

// Repacks one ggml row of `cols` elements into a row of the device layout.
// data_row: RowDataBytes bytes; scales_row: cols / 32 f16 values (quantized types only).
inline void RepackRowHost(DType t, const void* ggml_row, int64_t cols, void* data_row, uint16_t* scales_row) {
  const auto* src = static_cast<const uint8_t*>(ggml_row);
  auto* dst = static_cast<uint8_t*>(data_row);
  switch (t) {
    case DType::kF32:
    case DType::kF16:
    case DType::kBF16: {
      const int64_t elem = t == DType::kF32 ? 4 : 2;
      std::memcpy(dst, src, cols * elem);
      std::memset(dst + cols * elem, 0, RowDataBytes(t, cols) - cols * elem);
      return;
    }
    case DType::kQ8_0:
      for (int64_t b = 0; b < cols / kQBlock; ++b) {
        std::memcpy(&scales_row[b], src + b * 34, 2);
        std::memcpy(dst + b * 32, src + b * 34 + 2, 32);
      }
      return;
    case DType::kQ4_0:
      for (int64_t b = 0; b < cols / kQBlock; ++b) {
        std::memcpy(&scales_row[b], src + b * 18, 2);
        std::memcpy(dst + b * 16, src + b * 18 + 2, 16);
      }
      return;
  }
}

// The host float of an IEEE half / bfloat16 (kept here so this header stands alone).
inline float HostHalfToFloat(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000) << 16;
  uint32_t exp = (h >> 10) & 0x1f, mant = h & 0x3ff, bits;
  if (exp == 0x1f) {
    bits = sign | 0x7f800000 | (mant << 13);
  } else if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else {
      int e = -1;
      do {
        mant <<= 1;
        ++e;
      } while ((mant & 0x400) == 0);
      bits = sign | ((127 - 15 - e) << 23) | ((mant & 0x3ff) << 13);
    }
  } else {
    bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

// Emulates, on the host, what one warp of the matrix-vector kernel computes for output row n of
// activation row m: lane l handles chunks l, l + 32, ...; the 32 lane sums are combined by the
// same butterfly the kernel uses. Float weights take f32 activations here.
inline float EmulateMatVecRow(DType t, const void* data, const uint16_t* scales, int64_t row_bytes, int64_t cols,
                              int64_t n, const float* x_f32, const int8_t* xq, const Q8Scale* xs) {
  const int64_t chunks = row_bytes / kChunkBytes;
  const auto* row = static_cast<const uint8_t*>(data) + n * row_bytes;
  float lane_sum[32];
  for (int lane = 0; lane < 32; ++lane) {
    float acc = 0.0f;
    for (int64_t c = lane; c < chunks; c += 32) {
      int32_t w[4];
      std::memcpy(w, row + c * kChunkBytes, 16);
      if (t == DType::kQ8_0) {
        const int64_t b = c / 2;
        int32_t xv[4];
        std::memcpy(xv, xq + c * 16, 16);
        const float dw = HostHalfToFloat(scales[n * (cols / kQBlock) + b]);
        acc += static_cast<float>(DotChunkQ8(w, xv)) * (dw * xs[b].d);
      } else if (t == DType::kQ4_0) {
        int32_t lo[4], hi[4];
        std::memcpy(lo, xq + c * 32, 16);
        std::memcpy(hi, xq + c * 32 + 16, 16);
        const float dw = HostHalfToFloat(scales[n * (cols / kQBlock) + c]);
        acc += static_cast<float>(DotChunkQ4(w, lo, hi, xs[c].sum)) * (dw * xs[c].d);
      } else {
        const int e = ChunkElems(t);
        for (int i = 0; i < e; ++i) {
          const int64_t k = c * e + i;
          if (k >= cols) break;
          float wv;
          if (t == DType::kF32) {
            std::memcpy(&wv, row + c * 16 + i * 4, 4);
          } else {
            uint16_t h;
            std::memcpy(&h, row + c * 16 + i * 2, 2);
            if (t == DType::kF16) {
              wv = HostHalfToFloat(h);
            } else {
              const uint32_t bits = static_cast<uint32_t>(h) << 16;
              std::memcpy(&wv, &bits, 4);
            }
          }
          acc += wv * x_f32[k];
        }
      }
    }
    lane_sum[lane] = acc;
  }
  // Butterfly with xor offsets 16, 8, 4, 2, 1: lane 0 ends with this sum.
  for (int off = 16; off > 0; off >>= 1) {
    float next[32];
    for (int l = 0; l < 32; ++l) next[l] = lane_sum[l] + lane_sum[l ^ off];
    std::memcpy(lane_sum, next, sizeof(next));
  }
  return lane_sum[0];
}

}  // namespace flotilla::kernels::cuda
