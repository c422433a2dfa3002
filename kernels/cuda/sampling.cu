// Sampling helpers over rows of logits: greedy argmax and top-k (the k largest, sorted), so that
// only k values per row, not the vocabulary, need to cross to the host. Ties go to the lower id,
// as in the CPU sampler.
#include <climits>

#include "kernels/cuda/device_utils.cuh"

namespace flotilla::kernels::cuda {
namespace {

constexpr int kThreads = 256;

__device__ __forceinline__ bool Better(float v1, int i1, float v2, int i2) {
  return v1 > v2 || (v1 == v2 && i1 < i2);
}

// Every thread gets the block's best (value, id).
__device__ __forceinline__ void BlockBest(float& v, int& id, float* sv, int* si) {
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) {
    const float ov = __shfl_xor_sync(kFullMask, v, off);
    const int oi = __shfl_xor_sync(kFullMask, id, off);
    if (Better(ov, oi, v, id)) v = ov, id = oi;
  }
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  __syncthreads();
  if (lane == 0) sv[warp] = v, si[warp] = id;
  __syncthreads();
  v = lane < kThreads / 32 ? sv[lane] : -INFINITY;
  id = lane < kThreads / 32 ? si[lane] : INT_MAX;
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) {
    const float ov = __shfl_xor_sync(kFullMask, v, off);
    const int oi = __shfl_xor_sync(kFullMask, id, off);
    if (Better(ov, oi, v, id)) v = ov, id = oi;
  }
}

__global__ void __launch_bounds__(kThreads) ArgmaxKernel(const float* logits, int64_t ld, int V, int32_t* ids,
                                                         float* values) {
  __shared__ float sv[32];
  __shared__ int si[32];
  const float* row = logits + blockIdx.x * ld;
  float best = -INFINITY;
  int best_id = INT_MAX;
  for (int i = threadIdx.x; i < V; i += kThreads) {
    if (Better(row[i], i, best, best_id)) best = row[i], best_id = i;
  }
  BlockBest(best, best_id, sv, si);
  if (threadIdx.x == 0) {
    ids[blockIdx.x] = best_id;
    if (values) values[blockIdx.x] = best;
  }
}

// Each thread keeps its own sorted top-KMAX of a strided slice; k rounds of a block-wide best
// over the heads of those lists then emit the row's top k in order.
template <int KMAX>
__global__ void __launch_bounds__(kThreads) TopKKernel(const float* logits, int64_t ld, int V, int k, float* values,
                                                       int32_t* ids) {
  __shared__ float sv[32];
  __shared__ int si[32];
  const float* row = logits + blockIdx.x * ld;
  float vals[KMAX];
  int idx[KMAX];
  int cnt = 0;
  for (int i = threadIdx.x; i < V; i += kThreads) {
    const float v = row[i];
    if (cnt == k && !(v > vals[k - 1])) continue;  // later ids lose ties
    int j = cnt < k ? cnt++ : k - 1;
    while (j > 0 && v > vals[j - 1]) {
      vals[j] = vals[j - 1];
      idx[j] = idx[j - 1];
      --j;
    }
    vals[j] = v;
    idx[j] = i;
  }
  int head = 0;
  for (int r = 0; r < k; ++r) {
    float v = head < cnt ? vals[head] : -INFINITY;
    int id = head < cnt ? idx[head] : INT_MAX;
    const int mine = id;
    BlockBest(v, id, sv, si);
    if (head < cnt && mine == id) ++head;
    if (threadIdx.x == 0) {
      values[blockIdx.x * k + r] = v;
      ids[blockIdx.x * k + r] = id;
    }
  }
}

}  // namespace

Error ArgmaxRows(const float* logits, int64_t ld, int M, int V, int32_t* ids, float* values, Stream s) {
  if (M < 1 || V < 1 || ld < V || !logits || !ids) return kInvalidValue;
  ArgmaxKernel<<<M, kThreads, 0, s>>>(logits, ld, V, ids, values);
  return LastLaunchError();
}

Error TopKRows(const float* logits, int64_t ld, int M, int V, int k, float* values, int32_t* ids, Stream s) {
  if (M < 1 || V < 1 || ld < V || k < 1 || k > kMaxTopK || k > V || !logits || !values || !ids) return kInvalidValue;
  if (k <= 8) {
    TopKKernel<8><<<M, kThreads, 0, s>>>(logits, ld, V, k, values, ids);
  } else if (k <= 16) {
    TopKKernel<16><<<M, kThreads, 0, s>>>(logits, ld, V, k, values, ids);
  } else if (k <= 32) {
    TopKKernel<32><<<M, kThreads, 0, s>>>(logits, ld, V, k, values, ids);
  } else {
    TopKKernel<64><<<M, kThreads, 0, s>>>(logits, ld, V, k, values, ids);
  }
  return LastLaunchError();
}

}  // namespace flotilla::kernels::cuda
