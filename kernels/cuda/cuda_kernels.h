// The CUDA kernels as a plain C++ API: callers need no CUDA headers. Pointers are device
// pointers unless said otherwise; `Stream` is the same type as cudaStream_t (nullptr: the legacy
// default stream). Every function that launches work returns 0 (cudaSuccess) or the cudaError_t
// value of the failure; launches are asynchronous, so a kernel's own fault surfaces at the next
// synchronisation. Nothing here allocates device memory or synchronises, so every launcher may be
// captured into a CUDA graph. Functions are thread-safe for disjoint outputs.
//
// Numerics (what the tests hold each kernel to, against kernels/cpu ScalarKernels()):
//  - float weights (F32/F16/BF16) multiply float activations with f32 accumulation;
//  - Q8_0/Q4_0 weights multiply activations quantized to Q8_0 per 32 elements (exactly the CPU
//    reference's quantizer), integer block sums scaled by both block scales, f32 accumulation;
//  - cuBLAS GEMM (prefill, more than kMaxMatVecRows rows) runs F32 weights in strict f32, F16/BF16
//    weights as stored, Q8_0/Q4_0 weights dequantized to F16 tiles, with f16/bf16 activations.
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels/cuda/formats.h"
#include "kernels/dtype.h"

struct CUstream_st;

namespace flotilla::kernels::cuda {

using Stream = CUstream_st*;
using Error = int;  // a cudaError_t value; 0 is success

const char* ErrorName(Error e);
const char* ErrorString(Error e);
// Errors the launchers return for bad arguments (cudaErrorInvalidValue) are caught before launch.
inline constexpr Error kInvalidValue = 1;

enum class ActType : int { kF32 = 0, kF16 = 1, kBF16 = 2 };
enum class KvType : int { kF16 = 0, kF32 = 1 };

inline int64_t ActBytes(ActType t) { return t == ActType::kF32 ? 4 : 2; }
inline int64_t KvBytes(KvType t) { return t == KvType::kF32 ? 4 : 2; }

// --- weights --------------------------------------------------------------------------------

// A repacked weight matrix on the device [rows = outputs][cols = inputs] (layout: formats.h).
struct DeviceWeight {
  DType type = DType::kF32;
  int64_t rows = 0;
  int64_t cols = 0;
  int64_t row_bytes = 0;      // RowDataBytes(type, cols)
  void* data = nullptr;       // rows * row_bytes
  uint16_t* scales = nullptr;  // Q8_0/Q4_0: f16 [rows][cols / 32]
};

// Whether the kernels handle this type at this width; Q8_0/Q4_0 need cols % 32 == 0.
bool WeightShapeSupported(DType t, int64_t cols);
// Lays a matrix out in `base`, which holds RepackedBytes(t, rows, cols) bytes.
DeviceWeight MakeDeviceWeight(DType t, int64_t rows, int64_t cols, void* base);

// Converts `nrows` ggml rows (RowBytes(type, cols) each, back to back, in device memory) into
// rows [row0, row0 + nrows) of dst, including its zero padding.
Error RepackRows(const void* ggml_rows, int64_t nrows, const DeviceWeight& dst, int64_t row0, Stream s);
// Fills a matrix with uniform random values in [-scale, scale] (quantized types: random quants
// with scales chosen to give that range), from a counter-based hash of (seed, element).
Error FillRandom(const DeviceWeight& w, uint64_t seed, float scale, Stream s);
Error FillF32(float* p, int64_t n, float value, Stream s);

// --- activations ----------------------------------------------------------------------------

struct Q8Activations {
  int8_t* qs = nullptr;       // [M][K]
  Q8Scale* scales = nullptr;  // [M][K / 32]
  int64_t K = 0;              // multiple of 32
};
int64_t Q8ActivationBytes(int64_t M, int64_t K);
Q8Activations MakeQ8Activations(void* base, int64_t M, int64_t K);

// x [M][ldx] f32 -> Q8 blocks (K % 32 == 0).
Error QuantizeActivations(const float* x, int64_t ldx, int M, int64_t K, const Q8Activations& out, Stream s);
// x [M][ldx] f32 -> out [M][ldo] f16/bf16/f32.
Error ConvertActivations(const float* x, int64_t ldx, int M, int64_t K, void* out, ActType t, int64_t ldo, Stream s);

// --- matrix products ------------------------------------------------------------------------

inline constexpr int kMaxMatVecRows = 8;

// y[m * ldy + n] (+)= sum_k W[n][k] * x[m][k] for m < M <= kMaxMatVecRows. Float weights read
// `x` (x_type, row stride ldx elements, rows 16-byte aligned); quantized weights read `xq`.
// One warp per output row (several for M > 2), 16-byte loads of the weights.
struct MatVecArgs {
  DeviceWeight w;
  const void* x = nullptr;
  ActType x_type = ActType::kF32;
  int64_t ldx = 0;
  Q8Activations xq;
  int M = 1;
  float* y = nullptr;
  int64_t ldy = 0;
  bool accumulate = false;
};
Error MatVec(const MatVecArgs& a, Stream s);

struct Blas;  // a cuBLAS handle bound to one workspace
Error CreateBlas(Blas** out, void* workspace, size_t workspace_bytes);
void DestroyBlas(Blas* b);
// The activation form Gemm wants for a weight type: F32 for F32, BF16 for BF16, F16 otherwise.
ActType GemmActivationType(DType w);
// Bytes of F16 tile scratch that lets Gemm dequantize `rows_per_tile` rows of a quantized matrix.
int64_t GemmTileBytes(int64_t rows_per_tile, int64_t cols);

// y[m * ldy + n] (+)= W x for any M, through cuBLAS. x is in GemmActivationType(w.type) with row
// stride ldx. Quantized weights are dequantized tile by tile into `tile` (tile_bytes, at least
// one row) so that each tile is still in L2 when the GEMM reads it.
struct GemmArgs {
  DeviceWeight w;
  const void* x = nullptr;
  int64_t ldx = 0;
  int M = 0;
  float* y = nullptr;
  int64_t ldy = 0;
  bool accumulate = false;
  void* tile = nullptr;
  int64_t tile_bytes = 0;
};
Error Gemm(Blas* b, const GemmArgs& a, Stream s);
// Rows [row0, row0 + rows) of a quantized or F16 matrix as F16 [rows][cols].
Error DequantizeRowsF16(const DeviceWeight& w, int64_t row0, int64_t rows, void* out, Stream s);

// --- element-wise ---------------------------------------------------------------------------

// out[m] = w * x[row(m)] / rms(x[row(m)]) for m < M, row(m) = rows ? rows[m] : m. When q8 is
// given (n % 32 == 0) the result is also quantized into it.
struct RmsNormArgs {
  const float* x = nullptr;
  int64_t ldx = 0;
  const float* weight = nullptr;
  int64_t n = 0;
  float eps = 1e-5f;
  int M = 0;
  const int32_t* rows = nullptr;
  float* out = nullptr;
  int64_t ldo = 0;
  const Q8Activations* q8 = nullptr;
};
Error RmsNorm(const RmsNormArgs& a, Stream s);

// out = silu(gate) * up over [M][n] (out may alias gate); also quantized into q8 when given.
Error SiluMul(const float* gate, const float* up, int64_t ld_in, int M, int64_t n, float* out, int64_t ldo,
              const Q8Activations* q8, Stream s);

// x[t] = dequantized row tokens[t] of the embedding table.
Error EmbedTokens(const DeviceWeight& table, const int32_t* tokens, int T, float* x, int64_t ldx, Stream s);

// --- paged KV cache and attention -----------------------------------------------------------

// Per-layer cache layout: [block][kv_head][slot][head_dim] of KvType, K and V apart (the CPU
// layout). A token's sequence `seq[t]` owns block ids blocks[table_start[seq[t]] + i], i = 0..
struct TokenTable {
  const int32_t* positions = nullptr;    // [T]
  const int32_t* seq = nullptr;          // [T]
  const int32_t* table_start = nullptr;  // [sequences]
  const int32_t* blocks = nullptr;
};

struct KvLayer {
  void* k = nullptr;
  void* v = nullptr;
  KvType type = KvType::kF16;
  int n_kv_heads = 0;
  int head_dim = 0;
  int block_size = 0;
};

// Rotates q [T][ldq] (n_heads heads) in place and k (n_kv_heads heads) by the adjacent-pair
// rotary embedding with angles from rope [position][head_dim / 2] {cos, sin}, and stores the
// rotated k and v [T][ldkv] in each token's cache slot.
struct RopeKvArgs {
  float* q = nullptr;
  int64_t ldq = 0;
  const float* k = nullptr;
  const float* v = nullptr;
  int64_t ldkv = 0;
  int n_heads = 0;
  int T = 0;
  const float* rope = nullptr;  // float2 pairs
  TokenTable tokens;
  KvLayer kv;
};
Error RopeAndStoreKv(const RopeKvArgs& a, Stream s);

// Attention of the tokens in `list` (decode) or of `tiles` (prefill) over their sequences'
// cached keys 0..position. q [T][ldq] rotated, out [T][ldo].
struct AttentionArgs {
  const float* q = nullptr;
  int64_t ldq = 0;
  float* out = nullptr;
  int64_t ldo = 0;
  int n_heads = 0;
  float scale = 1.0f;
  TokenTable tokens;
  KvLayer kv;
};

// Supported head sizes: 8, 16, 32, 64, 128, 256.
bool AttentionHeadDimSupported(int head_dim);

// Decode-style: one token per list entry, keys split into `partitions` ranges per token that run
// in parallel and are merged by a second kernel. partial holds DecodeScratchFloats floats.
int DecodePartitions(int n_list, int n_heads, int max_context, int sm_count);
int64_t DecodeScratchFloats(int n_list, int n_heads, int head_dim, int partitions);
Error AttentionDecode(const AttentionArgs& a, const int32_t* list, int n_list, int partitions, float* partial,
                      Stream s);

// Flash-style: a tile is up to PrefillTileTokens(head_dim) consecutive batch tokens of one
// sequence; tiles holds {first token, token count} int32 pairs.
int PrefillTileTokens(int head_dim);
Error AttentionPrefill(const AttentionArgs& a, const int32_t* tiles, int n_tiles, Stream s);

// --- sampling helpers -----------------------------------------------------------------------

// ids[m] = argmax over v < V of logits[m * ld + v] (the lowest id among equal maxima).
Error ArgmaxRows(const float* logits, int64_t ld, int M, int V, int32_t* ids, float* values, Stream s);
inline constexpr int kMaxTopK = 64;
// The k <= kMaxTopK largest logits of each row, descending (ties: lower id first).
Error TopKRows(const float* logits, int64_t ld, int M, int V, int k, float* values, int32_t* ids, Stream s);

}  // namespace flotilla::kernels::cuda
