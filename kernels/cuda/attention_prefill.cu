// Prefill attention, flash style, over the same paged KV cache as decode. A block takes a tile
// of up to BQ consecutive batch tokens of one sequence and one head, and walks that sequence's
// keys in chunks of BK: scores S = Q K^T for the chunk (masked per query by its own position,
// so tokens need not be contiguous in position), an online softmax per query row, O += P V.
// Q, the K/V chunk and P live in shared memory as f32; the arithmetic is on CUDA cores.
#include "kernels/cuda/device_utils.cuh"

namespace flotilla::kernels::cuda {
namespace {

constexpr int kThreads = 128;

template <int HD>
struct Tile {
  static constexpr int BQ = HD > 128 ? 8 : 16;   // query rows
  static constexpr int BK = HD > 128 ? 16 : 32;  // keys per chunk
  static constexpr int OPT = BQ * HD / kThreads;  // output elements per thread
};

template <class KT, int HD>
__global__ void __launch_bounds__(kThreads) PrefillKernel(AttentionArgs a, const int32_t* tiles) {
  constexpr int BQ = Tile<HD>::BQ, BK = Tile<HD>::BK, OPT = Tile<HD>::OPT;
  static_assert(BQ * HD % kThreads == 0 && BK <= 32);
  __shared__ float q_s[BQ][HD];
  __shared__ float k_s[BK][HD + 1];  // +1: rows on distinct banks for the score loop
  __shared__ float v_s[BK][HD];
  __shared__ float p_s[BQ][BK];
  __shared__ float m_s[BQ], l_s[BQ], alpha_s[BQ];
  __shared__ int pos_s[BQ];

  const int tile = blockIdx.x, h = blockIdx.y;
  const int t0 = tiles[2 * tile], cnt = tiles[2 * tile + 1];
  const int32_t* table = a.tokens.blocks + a.tokens.table_start[a.tokens.seq[t0]];
  const int nkv = a.kv.n_kv_heads, bs = a.kv.block_size;
  const int kvh = h / (a.n_heads / nkv);
  const KT* kc = static_cast<const KT*>(a.kv.k);
  const KT* vc = static_cast<const KT*>(a.kv.v);

  for (int idx = threadIdx.x; idx < BQ * HD; idx += kThreads) {
    const int r = idx / HD, d = idx % HD;
    q_s[r][d] = r < cnt ? a.q[static_cast<int64_t>(t0 + r) * a.ldq + h * HD + d] : 0.0f;
  }
  if (threadIdx.x < BQ) {
    const int r = threadIdx.x;
    pos_s[r] = r < cnt ? a.tokens.positions[t0 + r] : -1;
    m_s[r] = -INFINITY;
    l_s[r] = 0.0f;
  }
  __syncthreads();
  int max_pos = 0;
  for (int r = 0; r < cnt; ++r) max_pos = max(max_pos, pos_s[r]);

  float o[OPT];
#pragma unroll
  for (int k = 0; k < OPT; ++k) o[k] = 0.0f;

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  for (int kb = 0; kb <= max_pos; kb += BK) {
    const int nk = min(BK, max_pos + 1 - kb);
    for (int idx = threadIdx.x; idx < BK * HD; idx += kThreads) {
      const int j = idx / HD, d = idx % HD;
      float kv = 0.0f, vv = 0.0f;
      if (j < nk) {
        const int key = kb + j;
        const int64_t base = ((static_cast<int64_t>(table[key / bs]) * nkv + kvh) * bs + key % bs) * HD;
        kv = ToFloat(kc[base + d]);
        vv = ToFloat(vc[base + d]);
      }
      k_s[j][d] = kv;
      v_s[j][d] = vv;
    }
    __syncthreads();
    for (int e = threadIdx.x; e < BQ * BK; e += kThreads) {
      const int r = e / BK, j = e % BK;
      float s = -INFINITY;
      if (j < nk && kb + j <= pos_s[r]) {
        float dot = 0.0f;
#pragma unroll 8
        for (int d = 0; d < HD; ++d) dot = fmaf(q_s[r][d], k_s[j][d], dot);
        s = dot * a.scale;
      }
      p_s[r][j] = s;
    }
    __syncthreads();
    for (int r = warp; r < BQ; r += kThreads / 32) {
      const float s = lane < BK ? p_s[r][lane] : -INFINITY;
      const float m_old = m_s[r];
      const float m_new = fmaxf(m_old, WarpMax(s));
      float p = 0.0f, alpha = 1.0f;
      if (m_new != -INFINITY) {
        p = expf(s - m_new);
        alpha = expf(m_old - m_new);
      }
      const float sum = WarpSum(p);
      if (lane < BK) p_s[r][lane] = p;
      if (lane == 0) {
        l_s[r] = l_s[r] * alpha + sum;
        m_s[r] = m_new;
        alpha_s[r] = alpha;
      }
    }
    __syncthreads();
#pragma unroll
    for (int k = 0; k < OPT; ++k) {
      const int idx = threadIdx.x + k * kThreads;
      const int r = idx / HD, d = idx % HD;
      float acc = 0.0f;
      for (int j = 0; j < nk; ++j) acc = fmaf(p_s[r][j], v_s[j][d], acc);
      o[k] = o[k] * alpha_s[r] + acc;
    }
    __syncthreads();
  }

#pragma unroll
  for (int k = 0; k < OPT; ++k) {
    const int idx = threadIdx.x + k * kThreads;
    const int r = idx / HD, d = idx % HD;
    if (r < cnt) a.out[static_cast<int64_t>(t0 + r) * a.ldo + h * HD + d] = o[k] / l_s[r];
  }
}

template <class KT, int HD>
Error Launch(const AttentionArgs& a, const int32_t* tiles, int n_tiles, Stream s) {
  PrefillKernel<KT, HD><<<dim3(n_tiles, a.n_heads), kThreads, 0, s>>>(a, tiles);
  return LastLaunchError();
}

template <class KT>
Error LaunchKv(const AttentionArgs& a, const int32_t* tiles, int n_tiles, Stream s) {
  switch (a.kv.head_dim) {
    case 8: return Launch<KT, 8>(a, tiles, n_tiles, s);
    case 16: return Launch<KT, 16>(a, tiles, n_tiles, s);
    case 32: return Launch<KT, 32>(a, tiles, n_tiles, s);
    case 64: return Launch<KT, 64>(a, tiles, n_tiles, s);
    case 128: return Launch<KT, 128>(a, tiles, n_tiles, s);
    case 256: return Launch<KT, 256>(a, tiles, n_tiles, s);
    default: return kInvalidValue;
  }
}

}  // namespace

int PrefillTileTokens(int head_dim) { return head_dim > 128 ? Tile<256>::BQ : Tile<128>::BQ; }

Error AttentionPrefill(const AttentionArgs& a, const int32_t* tiles, int n_tiles, Stream s) {
  if (n_tiles < 1) return 0;
  if (n_tiles > INT32_MAX / 2 || a.n_heads < 1 || a.n_heads > 65535 || a.kv.n_kv_heads < 1 ||
      a.n_heads % a.kv.n_kv_heads != 0) {
    return kInvalidValue;
  }
  return a.kv.type == KvType::kF16 ? LaunchKv<__half>(a, tiles, n_tiles, s) : LaunchKv<float>(a, tiles, n_tiles, s);
}

}  // namespace flotilla::kernels::cuda
