// The CPU kernel table: one set of function pointers per instruction-set variant.
// The scalar table is the reference every other variant is tested against; the fast
// variants live in their own files compiled with their own -m flags and are picked
// at start-up from the probed CPU features.
//
// All kernels are pure functions of their arguments (no globals, no allocation), safe to
// call from any thread on disjoint outputs.
#pragma once

#include <cstdint>

#include "kernels/dtype.h"

namespace flotilla::kernels::cpu {

// Y[m * ldy + n] = dot(W row n, X row m) for n in [n0, n1) and every m in [0, M).
// X is in the activation form the weight type wants (see ActivationType): f32 rows or
// Q8_0 rows quantized once per step and shared by every output row.
struct MatMulArgs {
  const void* w;
  int64_t w_row_bytes;
  const void* x;
  int64_t x_row_bytes;
  int64_t K;  // inner dimension (elements)
  int64_t M;  // number of activation rows (tokens)
  float* y;
  int64_t ldy;
};
using MatMulFn = void (*)(const MatMulArgs& args, int64_t n0, int64_t n1);

// Attention of one query head of one token over its sequence's paged KV cache.
// Cache layout per layer: [block][kv_head][slot][head_dim] f32.
struct PagedAttentionArgs {
  const float* q;  // [T][n_heads * head_dim]
  int64_t q_stride;
  float* out;  // [T][n_heads * head_dim]
  int64_t out_stride;
  const float* k_cache;
  const float* v_cache;
  int n_heads;
  int n_kv_heads;
  int head_dim;
  int block_size;
  const int32_t* positions;              // [T]; token t attends to positions 0..positions[t]
  const int32_t* const* block_tables;    // [T]; the block table of token t's sequence
  float scale;                           // 1 / sqrt(head_dim)
};
// scratch holds at least positions[t] + 1 floats.
using AttentionFn = void (*)(const PagedAttentionArgs& args, int64_t t, int head, float* scratch);

struct KernelTable {
  const char* isa;
  // Indexed by DType; nullptr where the type has no matmul.
  MatMulFn matmul[32];
  void (*quantize_q8_0)(const float* x, void* y, int64_t n);
  void (*rms_norm)(const float* x, const float* w, float* out, int64_t n, float eps);
  // Rotates adjacent pairs (x[2i], x[2i+1]) of each of n_heads heads by angles with
  // cos/sin given per pair (head_dim / 2 values each).
  void (*rope)(float* x, int n_heads, int head_dim, const float* cos, const float* sin);
  void (*softmax)(float* x, int64_t n);
  void (*silu_mul)(const float* gate, const float* up, float* out, int64_t n);
  void (*add)(const float* a, const float* b, float* out, int64_t n);
  AttentionFn attention;
};

// The form activations must take for a weight type: F32 or Q8_0.
inline DType ActivationType(DType w) { return IsBlockQuantized(w) ? DType::kQ8_0 : DType::kF32; }

const KernelTable& ScalarKernels();
// nullptr when the variant was not compiled in.
const KernelTable* Avx2Kernels();
// The best variant this CPU supports, chosen once. FLOTILLA_ISA=scalar forces the reference.
const KernelTable& BestKernels();
// A variant by name ("scalar", "avx2"); nullptr if unknown or this CPU cannot run it.
const KernelTable* KernelsByName(const char* isa);

}  // namespace flotilla::kernels::cpu
