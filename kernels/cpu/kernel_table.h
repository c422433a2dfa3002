// The CPU kernel table: one set of function pointers per instruction-set variant.
// The scalar table is the reference every other variant is tested against; the fast
// variants live in their own files compiled with their own -m flags and are picked
// at start-up from the probed CPU features.
//
// All kernels are pure functions of their arguments (no globals, no allocation), safe to
// call from any thread on disjoint outputs. Every matmul computes each output element with
// arithmetic that depends only on its weight row and activation row, never on which other
// rows or tokens are in the same call or on how a caller split the rows: a token's results
// are the same alone or in any batch, on any number of threads.
#pragma once

#include <cstdint>

#include "kernels/dtype.h"

namespace flotilla::kernels::cpu {

// Y[m * ldy + n] = dot(W row n, X row m) for n in [n0, n1) and every m in [0, M).
// X is in the activation form the table wants for the weight type: f32 rows for float weights,
// and for Q8_0/Q4_0 weights the rows that table's quantize_act wrote (x_row_bytes apart).
struct MatMulArgs {
  const void* w;
  int64_t w_row_bytes;
  const void* x;
  int64_t x_row_bytes;
  int64_t K;  // inner dimension (elements)
  int64_t M;  // number of activation rows (tokens)
  float* y;
  int64_t ldy;
  int64_t N;  // rows of the whole weight matrix (a packed layout may group rows)
};
using MatMulFn = void (*)(const MatMulArgs& args, int64_t n0, int64_t n1);
// See KernelTable::pack_rows.
constexpr int64_t kPackRowAlign = 16;

// Elements of a KV cache: f32, IEEE half, or ggml Q8_0 blocks of 32 (head_dim a multiple of 32,
// each row head_dim / 32 blocks).
enum class KvElem : uint8_t { kF32, kF16, kQ8_0 };

// Attention of query heads of one token over its sequence's paged KV cache.
// Cache layout per layer: [block][kv_head][slot][head_dim] f32.
struct PagedAttentionArgs {
  const float* q;  // [T][n_heads * head_dim]
  int64_t q_stride;
  float* out;  // [T][n_heads * head_dim]
  int64_t out_stride;
  // Layout per layer: [block][kv_head][slot][head_dim], elements as `kv` says.
  const void* k_cache;
  const void* v_cache;
  KvElem kv = KvElem::kF32;
  int n_heads;
  int n_kv_heads;
  int head_dim;
  int block_size;
  const int32_t* positions;              // [T]; token t attends to positions 0..positions[t]
  const int32_t* const* block_tables;    // [T]; the block table of token t's sequence
  float scale;                           // 1 / sqrt(head_dim)
};
// One query head; scratch holds at least positions[t] + 1 floats.
using AttentionFn = void (*)(const PagedAttentionArgs& args, int64_t t, int head, float* scratch);
// Every query head of one KV head (the GQA group), reading each K and V row once for the whole
// group; scratch holds at least AttentionGroupScratch(args, positions[t] + 1) floats.
using AttentionGroupFn = void (*)(const PagedAttentionArgs& args, int64_t t, int kv_head, float* scratch);

inline int64_t AttentionGroupScratch(int n_heads, int n_kv_heads, int head_dim, int64_t n_positions) {
  const int64_t group = n_heads / n_kv_heads;
  return group * ((n_positions + 15) / 16 * 16) + group * head_dim + 64;
}

struct KernelTable {
  const char* isa;
  // Indexed by DType; nullptr where the type has no matmul.
  MatMulFn matmul[32];
  // Bytes of one activation row of K elements in the form matmul[w] reads; for float weights,
  // K f32 values. Rows a caller lays out back to back must be this far apart.
  int64_t (*act_row_bytes)(DType w, int64_t K);
  // Converts one f32 row of K elements to the activation form matmul[w] reads (Q8_0 blocks in
  // a layout of this variant's choosing; the quantized values are bit-exact with ggml's
  // quantize_row_q8_0). Only for block-quantized w; float weights read f32 rows directly.
  void (*quantize_act)(DType w, const float* x, void* out, int64_t K);
  // The inverse view, for tests: the ggml Q8_0 blocks an activation row holds.
  void (*act_to_q8_0)(DType w, const void* act, void* q8_0, int64_t K);
  // ggml's Q8_0 layout (BlockQ8_0 rows), bit-exact with quantize_row_q8_0_ref.
  void (*quantize_q8_0)(const float* x, void* y, int64_t n);
  void (*rms_norm)(const float* x, const float* w, float* out, int64_t n, float eps);
  // Rotates adjacent pairs (x[2i], x[2i+1]) of each of n_heads heads by angles with
  // cos/sin given per pair (head_dim / 2 values each).
  void (*rope)(float* x, int n_heads, int head_dim, const float* cos, const float* sin);
  void (*softmax)(float* x, int64_t n);
  void (*silu_mul)(const float* gate, const float* up, float* out, int64_t n);
  void (*add)(const float* a, const float* b, float* out, int64_t n);
  AttentionFn attention;
  AttentionGroupFn attention_group;
  // f32 -> IEEE half, round to nearest even (bit-exact across variants): storing K/V in an f16 cache.
  void (*f32_to_f16)(const float* x, uint16_t* y, int64_t n);

  // Optional (nullptr where the variant reads every weight as stored): a layout of the
  // variant's own for some weight types, made once when a model is loaded, that
  // matmul_packed[w] reads faster: block-quantized rows with aligned loads instead of
  // regrouping ggml's blocks on every step; float rows interleaved in groups of four, so that a
  // tile of four rows reads one sequential stream instead of four. Its results equal
  // matmul[w]'s on the original rows bit for bit, except where packed_same_bits says otherwise
  // (a layout that sums in another order: equal to rounding).
  // Bytes per packed row of K elements (a matrix of N rows takes N times that); 0: type w is not
  // packed at this K.
  int64_t (*packed_row_bytes)(DType w, int64_t K);
  // Packs `rows` ggml rows (src_row_bytes apart) into dst, which must be 64-byte aligned. A
  // matrix may be packed in pieces, each piece starting at a multiple of kPackRowAlign rows of
  // the matrix, at dst = matrix start + first row x packed_row_bytes; only the last piece may
  // end elsewhere than on such a multiple.
  void (*pack_rows)(DType w, const void* src, int64_t src_row_bytes, int64_t rows, int64_t K, void* dst);
  MatMulFn matmul_packed[32];
  // Whether matmul_packed[w] at K gives matmul[w]'s bits (nullptr: always).
  bool (*packed_same_bits)(DType w, int64_t K) = nullptr;
};

// The form activations must take for a weight type: F32 or Q8_0.
inline DType ActivationType(DType w) { return IsBlockQuantized(w) ? DType::kQ8_0 : DType::kF32; }

const KernelTable& ScalarKernels();
// nullptr when the variant was not compiled in.
const KernelTable* Avx2Kernels();
const KernelTable* AvxVnniKernels();
const KernelTable* Avx512Kernels();
// The best variant this CPU supports, chosen once (avx512, then avxvnni, then avx2).
// FLOTILLA_ISA=scalar|avx2|avxvnni|avx512 forces one (when this CPU can run it).
const KernelTable& BestKernels();
// A variant by name ("scalar", "avx2", "avxvnni", "avx512"); nullptr if unknown or this CPU
// cannot run it.
const KernelTable* KernelsByName(const char* isa);

}  // namespace flotilla::kernels::cpu
