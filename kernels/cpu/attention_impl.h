// Paged attention written once over a variant's vector primitives (Dot, Axpy, Softmax).
// Included only by the variant .cc files; everything here has internal linkage so that each
// variant's instantiation keeps its own instruction set.
//
// The group kernel computes every query head of one KV head with the same arithmetic as the
// single-head kernel (same dot products, same softmax, values summed in the same order), so the
// two agree bit for bit; it only reads each K and V row from memory once for the whole group.
//
// The vector variants sum the values per KV block in registers (PagedAttentionVecImpl): for each
// block and head, sum_s p_s * v_s over the block's slots is accumulated in vector registers and
// then added to the output once, instead of a read-modify-write of the output per position.
#pragma once

#include <algorithm>
#include <cstring>
#include <type_traits>

#include "kernels/cpu/kernel_table.h"
#include "kernels/fp16.h"
#include "kernels/quant.h"

#ifndef FLOTILLA_ATTN_INLINE
#define FLOTILLA_ATTN_INLINE inline
#endif

namespace flotilla::kernels::cpu {
namespace {

// The KV cache holds f32 elements, IEEE half elements (uint16_t) or ggml's Q8_0 blocks of 32
// (BlockQ8_0; rows start on whole blocks, head_dim being a multiple of 32). Offsets are counted
// in elements everywhere; KvAt turns one into an address. The plain paths read a row through
// RowF32, which converts it into `tmp`; the vector path converts inside its loads
// (V::LoadKv(row, element, n)). A Q8_0 value is read as float(q) * float(d), the same product
// DequantizeRow forms, so attention over a Q8_0 cache equals attention over an f32 cache holding
// its dequantized values, bit for bit.
template <class KvT>
constexpr int64_t kKvPerUnit = std::is_same_v<KvT, BlockQ8_0> ? kQK : 1;
template <class KvT>
FLOTILLA_ATTN_INLINE const KvT* KvAt(const void* base, int64_t elems) {
  return static_cast<const KvT*>(base) + elems / kKvPerUnit<KvT>;
}

template <class KvT>
FLOTILLA_ATTN_INLINE const float* RowF32(const void* base, int64_t off, int n, float* tmp) {
  if constexpr (std::is_same_v<KvT, float>) {
    return static_cast<const float*>(base) + off;
  } else if constexpr (std::is_same_v<KvT, BlockQ8_0>) {
    DequantizeRow(DType::kQ8_0, KvAt<KvT>(base, off), tmp, n);
    return tmp;
  } else {
    const uint16_t* h = static_cast<const uint16_t*>(base) + off;
    for (int i = 0; i < n; ++i) tmp[i] = F16ToF32(h[i]);
    return tmp;
  }
}

template <class KvT, float (*Dot)(const float*, const float*, int), void (*Axpy)(float, const float*, float*, int),
          void (*Softmax)(float*, int64_t)>
void PagedAttentionImplT(const PagedAttentionArgs& a, int64_t t, int h, float* scores) {
  const int group = a.n_heads / a.n_kv_heads;
  const int kvh = h / group;
  const int hd = a.head_dim;
  const int bs = a.block_size;
  const float* q = a.q + t * a.q_stride + static_cast<int64_t>(h) * hd;
  const int n = a.positions[t] + 1;
  const int32_t* table = a.block_tables[t];
  const int64_t block_stride = static_cast<int64_t>(a.n_kv_heads) * bs * hd;
  const int64_t head_off = static_cast<int64_t>(kvh) * bs * hd;
  float tmp[1024];  // one converted row (head_dim <= 1024, checked by the loader)

  for (int j = 0, b = 0; j < n; j += bs, ++b) {
    const int64_t kb = table[b] * block_stride + head_off;
    const int cnt = std::min(bs, n - j);
    for (int s = 0; s < cnt; ++s) {
      scores[j + s] = Dot(q, RowF32<KvT>(a.k_cache, kb + static_cast<int64_t>(s) * hd, hd, tmp), hd) * a.scale;
    }
  }
  Softmax(scores, n);
  float* o = a.out + t * a.out_stride + static_cast<int64_t>(h) * hd;
  std::memset(o, 0, sizeof(float) * hd);
  for (int j = 0, b = 0; j < n; j += bs, ++b) {
    const int64_t vb = table[b] * block_stride + head_off;
    const int cnt = std::min(bs, n - j);
    for (int s = 0; s < cnt; ++s) Axpy(scores[j + s], RowF32<KvT>(a.v_cache, vb + static_cast<int64_t>(s) * hd, hd, tmp), o, hd);
  }
}

template <float (*Dot)(const float*, const float*, int), void (*Axpy)(float, const float*, float*, int),
          void (*Softmax)(float*, int64_t)>
void PagedAttentionImpl(const PagedAttentionArgs& a, int64_t t, int h, float* scores) {
  if (a.kv == KvElem::kQ8_0) return PagedAttentionImplT<BlockQ8_0, Dot, Axpy, Softmax>(a, t, h, scores);
  if (a.kv == KvElem::kF16) return PagedAttentionImplT<uint16_t, Dot, Axpy, Softmax>(a, t, h, scores);
  PagedAttentionImplT<float, Dot, Axpy, Softmax>(a, t, h, scores);
}

template <class KvT, float (*Dot)(const float*, const float*, int), void (*Axpy)(float, const float*, float*, int),
          void (*Softmax)(float*, int64_t)>
void PagedAttentionGroupImplT(const PagedAttentionArgs& a, int64_t t, int kvh, float* scratch) {
  const int group = a.n_heads / a.n_kv_heads;
  const int hd = a.head_dim;
  const int bs = a.block_size;
  const int n = a.positions[t] + 1;
  const int64_t stride = (n + 15) / 16 * 16;
  const float* q = a.q + t * a.q_stride + static_cast<int64_t>(kvh) * group * hd;
  const int32_t* table = a.block_tables[t];
  const int64_t block_stride = static_cast<int64_t>(a.n_kv_heads) * bs * hd;
  const int64_t head_off = static_cast<int64_t>(kvh) * bs * hd;
  float tmp[1024];

  for (int j = 0, b = 0; j < n; j += bs, ++b) {
    const int64_t kb = table[b] * block_stride + head_off;
    const int cnt = std::min(bs, n - j);
    for (int s = 0; s < cnt; ++s) {
      const float* k = RowF32<KvT>(a.k_cache, kb + static_cast<int64_t>(s) * hd, hd, tmp);
      for (int g = 0; g < group; ++g) scratch[g * stride + j + s] = Dot(q + g * hd, k, hd) * a.scale;
    }
  }
  for (int g = 0; g < group; ++g) Softmax(scratch + g * stride, n);
  float* o = a.out + t * a.out_stride + static_cast<int64_t>(kvh) * group * hd;
  std::memset(o, 0, sizeof(float) * hd * group);
  for (int j = 0, b = 0; j < n; j += bs, ++b) {
    const int64_t vb = table[b] * block_stride + head_off;
    const int cnt = std::min(bs, n - j);
    for (int s = 0; s < cnt; ++s) {
      const float* v = RowF32<KvT>(a.v_cache, vb + static_cast<int64_t>(s) * hd, hd, tmp);
      for (int g = 0; g < group; ++g) Axpy(scratch[g * stride + j + s], v, o + g * hd, hd);
    }
  }
}

template <float (*Dot)(const float*, const float*, int), void (*Axpy)(float, const float*, float*, int),
          void (*Softmax)(float*, int64_t)>
void PagedAttentionGroupImpl(const PagedAttentionArgs& a, int64_t t, int kvh, float* scratch) {
  if (a.kv == KvElem::kQ8_0) return PagedAttentionGroupImplT<BlockQ8_0, Dot, Axpy, Softmax>(a, t, kvh, scratch);
  if (a.kv == KvElem::kF16) return PagedAttentionGroupImplT<uint16_t, Dot, Axpy, Softmax>(a, t, kvh, scratch);
  PagedAttentionGroupImplT<float, Dot, Axpy, Softmax>(a, t, kvh, scratch);
}

// Asks for `elems` contiguous KV elements (one block's rows of one KV head) ahead of use: the
// values of each block are requested while its keys are scored, so they arrive by the time the
// weighted sum reads them. In a batched step the weights streamed since the sequence's last step
// have evicted its cache blocks, and the value loads of that sum stalled on every block (about
// half of attention's time at short contexts). The next block's keys are requested the same way.
// Measured: a 110M batch-16 step +3-8 % (attention 9.6 -> ~6 % of it); with the whole cache
// already in L1/L2 (kernels_bench BM_Attention) the prefetches cost 10-25 %, a case a serving
// step with weights streaming through the caches does not meet.
template <class KvT>
inline void PrefetchKvRows(const KvT* p, int64_t elems) {
  const char* c = reinterpret_cast<const char*>(p);
  const int64_t bytes = elems / kKvPerUnit<KvT> * static_cast<int64_t>(sizeof(KvT));
  for (int64_t o = 0; o < bytes; o += 64) __builtin_prefetch(c + o);
}

// V: the variant's vector policy (Reg, kWidth, Zero, Load(p, n), Store(p, v, n), Fmadd(a, x, acc),
// Add, Reduce). kRegs = ceil(head_dim / kWidth) is a compile-time constant so that the query,
// the kWidth score accumulators and the value accumulators are all indexed by constants and stay
// in registers (with a run-time count they were spilled to the stack, and every multiply-add
// waited on a store-to-load round trip: attention took 12 % of a batch-16 step that it should
// take 2 % of). `heads` consecutive query heads of KV head kvh starting at query head h0 (a
// whole group, or one head).
template <class V, class KvT, int kRegs, void (*Softmax)(float*, int64_t)>
void PagedAttentionVecFixed(const PagedAttentionArgs& a, int64_t t, int kvh, int h0, int heads, float* scratch) {
  constexpr int kW = V::kWidth;
  const int hd = a.head_dim;
  const int bs = a.block_size;
  const int n = a.positions[t] + 1;
  const int64_t stride = (n + 15) / 16 * 16;
  const float* q = a.q + t * a.q_stride + static_cast<int64_t>(h0) * hd;
  const int32_t* table = a.block_tables[t];
  const int64_t block_stride = static_cast<int64_t>(a.n_kv_heads) * bs * hd;
  const int64_t head_off = static_cast<int64_t>(kvh) * bs * hd;
  const int last = hd - (kRegs - 1) * kW;  // elements in the last register (1..kW)
  auto load_kv = [&](const KvT* row, int i) { return V::LoadKv(row, i * kW, i + 1 < kRegs ? kW : last); };
  auto row_at = [&](const KvT* block_rows, int s) { return block_rows + static_cast<int64_t>(s) * hd / kKvPerUnit<KvT>; };

  // Scores: kW positions at a time, each a full-width dot product accumulated in its own
  // register, then all of them summed across lanes together by V::Reduce (one horizontal sum per
  // position costs more than the multiply-adds at these head sizes).
  for (int g = 0; g < heads; ++g) {
    typename V::Reg qv[kRegs];
#pragma GCC unroll 8
    for (int i = 0; i < kRegs; ++i) qv[i] = V::Load(q + g * hd + i * kW, i + 1 < kRegs ? kW : last);
    float* sc = scratch + g * stride;
    for (int j = 0, b = 0; j < n; j += bs, ++b) {
      const KvT* kb = KvAt<KvT>(a.k_cache, table[b] * block_stride + head_off);
      const int cnt = std::min(bs, n - j);
      if (g == 0) {
        PrefetchKvRows(KvAt<KvT>(a.v_cache, table[b] * block_stride + head_off), int64_t{cnt} * hd);
        if (j + bs < n) {
          PrefetchKvRows(KvAt<KvT>(a.k_cache, table[b + 1] * block_stride + head_off),
                         static_cast<int64_t>(std::min(bs, n - j - bs)) * hd);
        }
      }
      for (int s0 = 0; s0 < cnt; s0 += kW) {
        const int m = std::min(kW, cnt - s0);
        typename V::Reg acc[kW];
#pragma GCC unroll 16
        for (int s = 0; s < kW; ++s) {
          acc[s] = V::Zero();
          if (s < m) {
            const KvT* k = row_at(kb, s0 + s);
#pragma GCC unroll 8
            for (int i = 0; i < kRegs; ++i) acc[s] = V::FmaddV(qv[i], load_kv(k, i), acc[s]);
          }
        }
        V::Store(sc + j + s0, V::Scale(V::Reduce(acc), a.scale), m);
      }
    }
  }
  for (int g = 0; g < heads; ++g) Softmax(scratch + g * stride, n);
  float* o = a.out + t * a.out_stride + static_cast<int64_t>(h0) * hd;
  std::memset(o, 0, sizeof(float) * hd * heads);
  for (int j = 0, b = 0; j < n; j += bs, ++b) {
    const KvT* vb = KvAt<KvT>(a.v_cache, table[b] * block_stride + head_off);
    const int cnt = std::min(bs, n - j);
    for (int g = 0; g < heads; ++g) {
      const float* p = scratch + g * stride + j;
      // Even and odd slots in separate accumulators: two multiply-add chains in flight, not one
      // waiting on the latency of the last.
      typename V::Reg even[kRegs], odd[kRegs];
#pragma GCC unroll 8
      for (int i = 0; i < kRegs; ++i) even[i] = odd[i] = V::Zero();
      int s = 0;
      for (; s + 2 <= cnt; s += 2) {
        const KvT* v0 = row_at(vb, s);
        const KvT* v1 = row_at(vb, s + 1);
#pragma GCC unroll 8
        for (int i = 0; i < kRegs; ++i) {
          even[i] = V::Fmadd(p[s], load_kv(v0, i), even[i]);
          odd[i] = V::Fmadd(p[s + 1], load_kv(v1, i), odd[i]);
        }
      }
      if (s < cnt) {
        const KvT* v0 = row_at(vb, s);
#pragma GCC unroll 8
        for (int i = 0; i < kRegs; ++i) even[i] = V::Fmadd(p[s], load_kv(v0, i), even[i]);
      }
      float* og = o + g * hd;
#pragma GCC unroll 8
      for (int i = 0; i < kRegs; ++i) {
        const int rest = i + 1 < kRegs ? kW : last;
        V::Store(og + i * kW, V::Add(V::Load(og + i * kW, rest), V::Add(even[i], odd[i])), rest);
      }
    }
  }
}

// Head sizes up to 8 registers (128 with AVX-512, 64 with AVX2) take the vector kernel.
constexpr int kAttnMaxRegs = 8;

template <class V, class KvT, void (*Softmax)(float*, int64_t)>
void PagedAttentionVecImpl(const PagedAttentionArgs& a, int64_t t, int kvh, int h0, int heads, float* scratch) {
  switch ((a.head_dim + V::kWidth - 1) / V::kWidth) {
    case 1: return PagedAttentionVecFixed<V, KvT, 1, Softmax>(a, t, kvh, h0, heads, scratch);
    case 2: return PagedAttentionVecFixed<V, KvT, 2, Softmax>(a, t, kvh, h0, heads, scratch);
    case 3: return PagedAttentionVecFixed<V, KvT, 3, Softmax>(a, t, kvh, h0, heads, scratch);
    case 4: return PagedAttentionVecFixed<V, KvT, 4, Softmax>(a, t, kvh, h0, heads, scratch);
    case 5: return PagedAttentionVecFixed<V, KvT, 5, Softmax>(a, t, kvh, h0, heads, scratch);
    case 6: return PagedAttentionVecFixed<V, KvT, 6, Softmax>(a, t, kvh, h0, heads, scratch);
    case 7: return PagedAttentionVecFixed<V, KvT, 7, Softmax>(a, t, kvh, h0, heads, scratch);
    default: return PagedAttentionVecFixed<V, KvT, kAttnMaxRegs, Softmax>(a, t, kvh, h0, heads, scratch);
  }
}

template <class V, float (*Dot)(const float*, const float*, int), void (*Axpy)(float, const float*, float*, int),
          void (*Softmax)(float*, int64_t)>
void PagedAttentionHeadVec(const PagedAttentionArgs& a, int64_t t, int h, float* scratch) {
  if (a.head_dim > kAttnMaxRegs * V::kWidth) return PagedAttentionImpl<Dot, Axpy, Softmax>(a, t, h, scratch);
  const int kvh = h / (a.n_heads / a.n_kv_heads);
  if (a.kv == KvElem::kQ8_0) return PagedAttentionVecImpl<V, BlockQ8_0, Softmax>(a, t, kvh, h, 1, scratch);
  if (a.kv == KvElem::kF16) return PagedAttentionVecImpl<V, uint16_t, Softmax>(a, t, kvh, h, 1, scratch);
  PagedAttentionVecImpl<V, float, Softmax>(a, t, kvh, h, 1, scratch);
}

template <class V, float (*Dot)(const float*, const float*, int), void (*Axpy)(float, const float*, float*, int),
          void (*Softmax)(float*, int64_t)>
void PagedAttentionGroupVec(const PagedAttentionArgs& a, int64_t t, int kvh, float* scratch) {
  if (a.head_dim > kAttnMaxRegs * V::kWidth) return PagedAttentionGroupImpl<Dot, Axpy, Softmax>(a, t, kvh, scratch);
  const int group = a.n_heads / a.n_kv_heads;
  if (a.kv == KvElem::kQ8_0) return PagedAttentionVecImpl<V, BlockQ8_0, Softmax>(a, t, kvh, kvh * group, group, scratch);
  if (a.kv == KvElem::kF16) return PagedAttentionVecImpl<V, uint16_t, Softmax>(a, t, kvh, kvh * group, group, scratch);
  PagedAttentionVecImpl<V, float, Softmax>(a, t, kvh, kvh * group, group, scratch);
}

}  // namespace
}  // namespace flotilla::kernels::cpu
