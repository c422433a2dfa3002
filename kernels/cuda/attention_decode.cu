// Decode attention over the paged KV cache (one query token per list entry), split-K style: the
// keys of a token are cut into partitions of kPartition keys; block (head, token, z) runs the
// partitions z, z + P, ... with an online softmax and leaves {unnormalised output, max, sum};
// a second kernel merges the P partial results. The grid depends only on the list length and P,
// never on the sequence lengths (read from device memory), so a captured graph stays valid.
#include <algorithm>

#include "kernels/cuda/device_utils.cuh"

namespace flotilla::kernels::cuda {
namespace {

constexpr int kThreads = 128;
constexpr int kPartition = 256;

template <class KT, int HD>
__global__ void __launch_bounds__(kThreads)
    DecodeKernel(AttentionArgs a, const int32_t* list, int partitions, float* partial) {
  constexpr int VE = 16 / sizeof(KT);  // cache elements per 16-byte load
  constexpr int DPT = HD > kThreads ? HD / kThreads : 1;  // output dims per thread
  constexpr int TD = HD / DPT;                             // threads per key group
  constexpr int NG = kThreads / TD;                        // key groups
  __shared__ float q_s[HD];
  __shared__ float scores[kPartition];
  __shared__ float red[32];
  __shared__ float o_s[NG > 1 ? NG : 1][HD];

  const int h = blockIdx.x, i = blockIdx.y, z = blockIdx.z;
  const int t = list[i];
  const int n = a.tokens.positions[t] + 1;
  const int32_t* table = a.tokens.blocks + a.tokens.table_start[a.tokens.seq[t]];
  const int nkv = a.kv.n_kv_heads, bs = a.kv.block_size;
  const int kvh = h / (a.n_heads / nkv);
  const KT* kc = static_cast<const KT*>(a.kv.k);
  const KT* vc = static_cast<const KT*>(a.kv.v);
  for (int d = threadIdx.x; d < HD; d += kThreads) q_s[d] = a.q[t * a.ldq + h * HD + d];
  __syncthreads();

  const int g = threadIdx.x / TD, d0 = threadIdx.x % TD;
  float m_run = -INFINITY, l_run = 0.0f;
  float o[DPT];
#pragma unroll
  for (int k = 0; k < DPT; ++k) o[k] = 0.0f;

  for (int part = z; part * kPartition < n; part += partitions) {
    const int j0 = part * kPartition;
    const int cnt = min(kPartition, n - j0);
    float local_max = -INFINITY;
    for (int jj = threadIdx.x; jj < cnt; jj += kThreads) {
      const int j = j0 + jj;
      const int64_t base = ((static_cast<int64_t>(table[j / bs]) * nkv + kvh) * bs + j % bs) * HD;
      float dot = 0.0f;
#pragma unroll
      for (int v = 0; v < HD / VE; ++v) {
        const uint4 raw = *reinterpret_cast<const uint4*>(kc + base + v * VE);
        const KT* e = reinterpret_cast<const KT*>(&raw);
#pragma unroll
        for (int u = 0; u < VE; ++u) dot = fmaf(q_s[v * VE + u], ToFloat(e[u]), dot);
      }
      const float s = dot * a.scale;
      scores[jj] = s;
      local_max = fmaxf(local_max, s);
    }
    const float m_new = fmaxf(m_run, BlockMax<kThreads>(local_max, red));
    const float alpha = expf(m_run - m_new);  // 0 on the first partition (m_run = -inf)
    float local_sum = 0.0f;
    for (int jj = threadIdx.x; jj < cnt; jj += kThreads) {
      const float p = expf(scores[jj] - m_new);
      scores[jj] = p;
      local_sum += p;
    }
    l_run = l_run * alpha + BlockSum<kThreads>(local_sum, red);  // synchronises: scores visible
#pragma unroll
    for (int k = 0; k < DPT; ++k) {
      const int d = d0 + k * TD;
      float acc = 0.0f;
      for (int jj = g; jj < cnt; jj += NG) {
        const int j = j0 + jj;
        const int64_t base = ((static_cast<int64_t>(table[j / bs]) * nkv + kvh) * bs + j % bs) * HD;
        acc = fmaf(scores[jj], ToFloat(vc[base + d]), acc);
      }
      o[k] = o[k] * alpha + acc;
    }
    m_run = m_new;
    __syncthreads();  // scores are rewritten by the next partition
  }

  float* out = partial + ((static_cast<int64_t>(i) * a.n_heads + h) * partitions + z) * (HD + 2);
  if constexpr (NG > 1) {
#pragma unroll
    for (int k = 0; k < DPT; ++k) o_s[g][d0 + k * TD] = o[k];
    __syncthreads();
    if (g == 0) {
#pragma unroll
      for (int k = 0; k < DPT; ++k) {
        float sum = 0.0f;
        for (int gg = 0; gg < NG; ++gg) sum += o_s[gg][d0 + k * TD];
        out[d0 + k * TD] = sum;
      }
    }
  } else {
#pragma unroll
    for (int k = 0; k < DPT; ++k) out[d0 + k * TD] = o[k];
  }
  if (threadIdx.x == 0) {
    out[HD] = m_run;
    out[HD + 1] = l_run;
  }
}

template <int HD>
__global__ void __launch_bounds__(kThreads) MergeKernel(AttentionArgs a, const int32_t* list, int partitions,
                                                        const float* partial) {
  const int h = blockIdx.x, i = blockIdx.y;
  const int t = list[i];
  const float* p = partial + (static_cast<int64_t>(i) * a.n_heads + h) * partitions * (HD + 2);
  float m = -INFINITY;
  for (int z = 0; z < partitions; ++z) {
    if (p[z * (HD + 2) + HD + 1] > 0.0f) m = fmaxf(m, p[z * (HD + 2) + HD]);
  }
  float l = 0.0f;
  for (int z = 0; z < partitions; ++z) {
    const float lz = p[z * (HD + 2) + HD + 1];
    if (lz > 0.0f) l += lz * expf(p[z * (HD + 2) + HD] - m);
  }
  const float inv = 1.0f / l;
  for (int d = threadIdx.x; d < HD; d += kThreads) {
    float acc = 0.0f;
    for (int z = 0; z < partitions; ++z) {
      const float lz = p[z * (HD + 2) + HD + 1];
      if (lz > 0.0f) acc += p[z * (HD + 2) + d] * expf(p[z * (HD + 2) + HD] - m);
    }
    a.out[t * a.ldo + h * HD + d] = acc * inv;
  }
}

template <class KT, int HD>
Error Launch(const AttentionArgs& a, const int32_t* list, int n_list, int partitions, float* partial, Stream s) {
  DecodeKernel<KT, HD><<<dim3(a.n_heads, n_list, partitions), kThreads, 0, s>>>(a, list, partitions, partial);
  if (Error e = LastLaunchError(); e != 0) return e;
  MergeKernel<HD><<<dim3(a.n_heads, n_list), kThreads, 0, s>>>(a, list, partitions, partial);
  return LastLaunchError();
}

template <class KT>
Error LaunchKv(const AttentionArgs& a, const int32_t* list, int n_list, int partitions, float* partial, Stream s) {
  switch (a.kv.head_dim) {
    case 8: return Launch<KT, 8>(a, list, n_list, partitions, partial, s);
    case 16: return Launch<KT, 16>(a, list, n_list, partitions, partial, s);
    case 32: return Launch<KT, 32>(a, list, n_list, partitions, partial, s);
    case 64: return Launch<KT, 64>(a, list, n_list, partitions, partial, s);
    case 128: return Launch<KT, 128>(a, list, n_list, partitions, partial, s);
    case 256: return Launch<KT, 256>(a, list, n_list, partitions, partial, s);
    default: return kInvalidValue;
  }
}

}  // namespace

bool AttentionHeadDimSupported(int head_dim) {
  return head_dim == 8 || head_dim == 16 || head_dim == 32 || head_dim == 64 || head_dim == 128 || head_dim == 256;
}

int DecodePartitions(int n_list, int n_heads, int max_context, int sm_count) {
  const int most = std::max(1, (max_context + kPartition - 1) / kPartition);
  const int want = (2 * std::max(sm_count, 1) + n_list * n_heads - 1) / std::max(1, n_list * n_heads);
  return std::max(1, std::min(most, want));
}

int64_t DecodeScratchFloats(int n_list, int n_heads, int head_dim, int partitions) {
  return static_cast<int64_t>(n_list) * n_heads * partitions * (head_dim + 2);
}

Error AttentionDecode(const AttentionArgs& a, const int32_t* list, int n_list, int partitions, float* partial,
                      Stream s) {
  if (n_list < 1) return 0;
  if (partitions < 1 || partitions > 65535 || n_list > 65535 || !partial || a.n_heads < 1 || a.kv.n_kv_heads < 1 ||
      a.n_heads % a.kv.n_kv_heads != 0) {
    return kInvalidValue;
  }
  return a.kv.type == KvType::kF16 ? LaunchKv<__half>(a, list, n_list, partitions, partial, s)
                                   : LaunchKv<float>(a, list, n_list, partitions, partial, s);
}

}  // namespace flotilla::kernels::cuda
