// Element-wise kernels: RMSNorm (optionally quantizing its output for the next matrix product),
// SiLU*mul (likewise), activation quantization and conversion, embedding lookup, rotary
// embedding with the KV-cache store. Arithmetic follows kernels/cpu/elementwise_impl.h and
// scalar_kernels.cc operation for operation (the rotation avoids fused multiply-adds so that it
// rounds as the CPU does).
#include "kernels/cuda/device_utils.cuh"

namespace flotilla::kernels::cuda {
namespace {

constexpr int kNormThreads = 256;

__global__ void __launch_bounds__(kNormThreads) RmsNormKernel(RmsNormArgs a, Q8Activations q8, bool quantize) {
  __shared__ float shared[32];
  const int m = blockIdx.x;
  const int64_t row = a.rows ? a.rows[m] : m;
  const float* x = a.x + row * a.ldx;
  float ss = 0.0f;
  for (int64_t i = threadIdx.x; i < a.n; i += kNormThreads) ss += x[i] * x[i];
  ss = BlockSum<kNormThreads>(ss, shared);
  const float scale = 1.0f / sqrtf(ss / static_cast<float>(a.n) + a.eps);
  float* out = a.out + static_cast<int64_t>(m) * a.ldo;
  if (!quantize) {
    for (int64_t i = threadIdx.x; i < a.n; i += kNormThreads) out[i] = a.weight[i] * (scale * x[i]);
    return;
  }
  // One warp per 32-element block: lane j holds element j of the block.
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t nb = a.n / kQBlock;
  for (int64_t b = warp; b < nb; b += kNormThreads / 32) {
    const int64_t i = b * kQBlock + lane;
    const float v = a.weight[i] * (scale * x[i]);
    out[i] = v;
    QuantizeBlockWarp(v, q8.qs + m * q8.K + b * kQBlock, q8.scales + m * nb + b);
  }
}

constexpr int kEltThreads = 256;

__global__ void __launch_bounds__(kEltThreads)
    SiluMulKernel(const float* gate, const float* up, int64_t ld_in, int64_t n, float* out, int64_t ldo,
                  Q8Activations q8, bool quantize) {
  const int m = blockIdx.y;
  const int64_t i = static_cast<int64_t>(blockIdx.x) * kEltThreads + threadIdx.x;
  if (i >= n) return;  // with quantization n % 32 == 0: whole warps leave together
  const float g = gate[m * ld_in + i];
  const float v = g / (1.0f + expf(-g)) * up[m * ld_in + i];
  out[m * ldo + i] = v;
  if (quantize) {
    const int64_t b = i / kQBlock;
    QuantizeBlockWarp(v, q8.qs + m * q8.K + b * kQBlock, q8.scales + m * (n / kQBlock) + b);
  }
}

__global__ void __launch_bounds__(kEltThreads)
    QuantizeKernel(const float* x, int64_t ldx, int64_t K, Q8Activations q8) {
  const int m = blockIdx.y;
  const int64_t i = static_cast<int64_t>(blockIdx.x) * kEltThreads + threadIdx.x;
  if (i >= K) return;
  const int64_t b = i / kQBlock;
  QuantizeBlockWarp(x[m * ldx + i], q8.qs + m * q8.K + b * kQBlock, q8.scales + m * (K / kQBlock) + b);
}

template <class T>
__global__ void __launch_bounds__(kEltThreads)
    ConvertKernel(const float* x, int64_t ldx, int64_t K, T* out, int64_t ldo) {
  const int m = blockIdx.y;
  const int64_t i = static_cast<int64_t>(blockIdx.x) * kEltThreads + threadIdx.x;
  if (i < K) out[m * ldo + i] = FromFloat<T>(x[m * ldx + i]);
}

// One thread per 16-byte chunk of the token's row.
template <DType W>
__global__ void __launch_bounds__(128) EmbedKernel(DeviceWeight table, const int32_t* tokens, float* x, int64_t ldx) {
  constexpr int E = ChunkElems(W);
  const int t = blockIdx.y;
  const int64_t c = static_cast<int64_t>(blockIdx.x) * 128 + threadIdx.x;
  if (c * E >= table.cols) return;
  const int64_t row = tokens[t];
  const uint8_t* src = static_cast<const uint8_t*>(table.data) + row * table.row_bytes + c * kChunkBytes;
  float* dst = x + t * ldx + c * E;
  const uint4 v = *reinterpret_cast<const uint4*>(src);
  if constexpr (W == DType::kQ8_0 || W == DType::kQ4_0) {
    const int64_t nb = table.cols / kQBlock;
    const int64_t b = W == DType::kQ8_0 ? c / 2 : c;
    const float d = HalfBitsToFloat(table.scales[row * nb + b]);
    const uint8_t* q = reinterpret_cast<const uint8_t*>(&v);
    if constexpr (W == DType::kQ8_0) {
#pragma unroll
      for (int j = 0; j < 16; ++j) dst[j] = static_cast<float>(static_cast<int8_t>(q[j])) * d;
    } else {
#pragma unroll
      for (int j = 0; j < 16; ++j) {
        dst[j] = static_cast<float>((q[j] & 0x0f) - 8) * d;
        dst[j + 16] = static_cast<float>((q[j] >> 4) - 8) * d;
      }
    }
  } else {
    const int64_t left = table.cols - c * E;
    if constexpr (W == DType::kF32) {
      const float* f = reinterpret_cast<const float*>(&v);
      for (int j = 0; j < E && j < left; ++j) dst[j] = f[j];
    } else {
      const uint16_t* h = reinterpret_cast<const uint16_t*>(&v);
      for (int j = 0; j < E && j < left; ++j) {
        dst[j] = W == DType::kF16 ? HalfBitsToFloat(h[j]) : Bf16BitsToFloat(h[j]);
      }
    }
  }
}

__device__ __forceinline__ int32_t BlockOf(const TokenTable& tt, int t, int32_t pos, int bs) {
  return tt.blocks[tt.table_start[tt.seq[t]] + pos / bs];
}

template <class KT>
__global__ void __launch_bounds__(128) RopeKvKernel(RopeKvArgs a) {
  const int t = blockIdx.x;
  const int hd = a.kv.head_dim, half = hd / 2, bs = a.kv.block_size, nkv = a.kv.n_kv_heads;
  const int32_t pos = a.tokens.positions[t];
  const float2* cs = reinterpret_cast<const float2*>(a.rope) + static_cast<int64_t>(pos) * half;
  const int64_t block = BlockOf(a.tokens, t, pos, bs);
  const int off = pos % bs;
  float* q = a.q + t * a.ldq;
  for (int idx = threadIdx.x; idx < a.n_heads * half; idx += blockDim.x) {
    const int h = idx / half, i = idx % half;
    float* v = q + h * hd + 2 * i;
    const float x0 = v[0], x1 = v[1], c = cs[i].x, s = cs[i].y;
    v[0] = __fsub_rn(__fmul_rn(x0, c), __fmul_rn(x1, s));
    v[1] = __fadd_rn(__fmul_rn(x0, s), __fmul_rn(x1, c));
  }
  KT* kc = static_cast<KT*>(a.kv.k);
  KT* vc = static_cast<KT*>(a.kv.v);
  const float* k = a.k + t * a.ldkv;
  const float* vv = a.v + t * a.ldkv;
  for (int idx = threadIdx.x; idx < nkv * half; idx += blockDim.x) {
    const int h = idx / half, i = idx % half;
    const float x0 = k[h * hd + 2 * i], x1 = k[h * hd + 2 * i + 1], c = cs[i].x, s = cs[i].y;
    const int64_t dst = ((block * nkv + h) * bs + off) * hd + 2 * i;
    kc[dst] = FromFloat<KT>(__fsub_rn(__fmul_rn(x0, c), __fmul_rn(x1, s)));
    kc[dst + 1] = FromFloat<KT>(__fadd_rn(__fmul_rn(x0, s), __fmul_rn(x1, c)));
  }
  for (int idx = threadIdx.x; idx < nkv * hd; idx += blockDim.x) {
    const int h = idx / hd, d = idx % hd;
    vc[((block * nkv + h) * bs + off) * hd + d] = FromFloat<KT>(vv[idx]);
  }
}

__global__ void FillKernel(float* p, int64_t n, float value) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) p[i] = value;
}

}  // namespace

Error RmsNorm(const RmsNormArgs& a, Stream s) {
  if (a.M < 1 || a.n < 1 || !a.x || !a.out || !a.weight) return kInvalidValue;
  const bool quantize = a.q8 != nullptr;
  if (quantize && (a.n % kQBlock != 0 || a.q8->K != a.n)) return kInvalidValue;
  RmsNormKernel<<<a.M, kNormThreads, 0, s>>>(a, quantize ? *a.q8 : Q8Activations{}, quantize);
  return LastLaunchError();
}

Error SiluMul(const float* gate, const float* up, int64_t ld_in, int M, int64_t n, float* out, int64_t ldo,
              const Q8Activations* q8, Stream s) {
  if (M < 1 || n < 1) return kInvalidValue;
  if (q8 && (n % kQBlock != 0 || q8->K != n)) return kInvalidValue;
  const dim3 grid(CeilDiv(n, kEltThreads), M);
  SiluMulKernel<<<grid, kEltThreads, 0, s>>>(gate, up, ld_in, n, out, ldo, q8 ? *q8 : Q8Activations{}, q8 != nullptr);
  return LastLaunchError();
}

Error QuantizeActivations(const float* x, int64_t ldx, int M, int64_t K, const Q8Activations& out, Stream s) {
  if (M < 1 || K % kQBlock != 0 || out.K != K) return kInvalidValue;
  const dim3 grid(CeilDiv(K, kEltThreads), M);
  QuantizeKernel<<<grid, kEltThreads, 0, s>>>(x, ldx, K, out);
  return LastLaunchError();
}

Error ConvertActivations(const float* x, int64_t ldx, int M, int64_t K, void* out, ActType t, int64_t ldo, Stream s) {
  if (M < 1 || K < 1) return kInvalidValue;
  const dim3 grid(CeilDiv(K, kEltThreads), M);
  switch (t) {
    case ActType::kF32: ConvertKernel<float><<<grid, kEltThreads, 0, s>>>(x, ldx, K, static_cast<float*>(out), ldo); break;
    case ActType::kF16: ConvertKernel<__half><<<grid, kEltThreads, 0, s>>>(x, ldx, K, static_cast<__half*>(out), ldo); break;
    case ActType::kBF16:
      ConvertKernel<__nv_bfloat16><<<grid, kEltThreads, 0, s>>>(x, ldx, K, static_cast<__nv_bfloat16*>(out), ldo);
      break;
  }
  return LastLaunchError();
}

Error EmbedTokens(const DeviceWeight& table, const int32_t* tokens, int T, float* x, int64_t ldx, Stream s) {
  if (T < 1 || !table.data) return kInvalidValue;
  const int64_t chunks = table.row_bytes / kChunkBytes;
  const dim3 grid(CeilDiv(chunks, 128), T);
  switch (table.type) {
    case DType::kF32: EmbedKernel<DType::kF32><<<grid, 128, 0, s>>>(table, tokens, x, ldx); break;
    case DType::kF16: EmbedKernel<DType::kF16><<<grid, 128, 0, s>>>(table, tokens, x, ldx); break;
    case DType::kBF16: EmbedKernel<DType::kBF16><<<grid, 128, 0, s>>>(table, tokens, x, ldx); break;
    case DType::kQ8_0: EmbedKernel<DType::kQ8_0><<<grid, 128, 0, s>>>(table, tokens, x, ldx); break;
    case DType::kQ4_0: EmbedKernel<DType::kQ4_0><<<grid, 128, 0, s>>>(table, tokens, x, ldx); break;
  }
  return LastLaunchError();
}

Error RopeAndStoreKv(const RopeKvArgs& a, Stream s) {
  if (a.T < 1 || a.kv.head_dim < 2 || a.kv.head_dim % 2 != 0 || a.kv.block_size < 1 || !a.rope) return kInvalidValue;
  if (a.kv.type == KvType::kF16) {
    RopeKvKernel<__half><<<a.T, 128, 0, s>>>(a);
  } else {
    RopeKvKernel<float><<<a.T, 128, 0, s>>>(a);
  }
  return LastLaunchError();
}

Error FillF32(float* p, int64_t n, float value, Stream s) {
  if (n < 1) return 0;
  FillKernel<<<CeilDiv(n, 256), 256, 0, s>>>(p, n, value);
  return LastLaunchError();
}

}  // namespace flotilla::kernels::cuda
