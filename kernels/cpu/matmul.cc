#include "kernels/cpu/matmul.h"

#include <algorithm>

namespace flotilla::kernels::cpu {
namespace {

// Below this many multiply-adds a second thread costs more in synchronisation than it saves.
constexpr int64_t kMinParallelWork = 16 * 1024;

}  // namespace

int64_t MatMulScratchBytes(const KernelTable& kt, DType w, int64_t M, int64_t K) {
  return IsBlockQuantized(w) ? M * kt.act_row_bytes(w, K) : 0;
}

void QuantizeActivations(const KernelTable& kt, DType w, const float* x, int64_t ldx, int64_t K, int64_t m0,
                         int64_t m1, void* out) {
  if (!IsBlockQuantized(w)) return;
  const int64_t row = kt.act_row_bytes(w, K);
  for (int64_t m = m0; m < m1; ++m) kt.quantize_act(w, x + m * ldx, static_cast<char*>(out) + m * row, K);
}

MatMulArgs MakeMatMulArgs(const KernelTable& kt, const WeightMatrix& w, const void* act, int64_t ldx, int64_t M,
                          float* y, int64_t ldy) {
  MatMulArgs a{};
  a.w = w.data;
  a.w_row_bytes = w.row_bytes;
  a.x = act;
  a.x_row_bytes = IsBlockQuantized(w.type) ? kt.act_row_bytes(w.type, w.cols) : ldx * static_cast<int64_t>(sizeof(float));
  a.K = w.cols;
  a.M = M;
  a.y = y;
  a.ldy = ldy;
  a.N = w.rows;
  return a;
}

void MatMul(const KernelTable& kt, ThreadPool& pool, const WeightMatrix& w, const float* x, int64_t M,
            float* y, int64_t ldy, void* scratch) {
  const bool quant = IsBlockQuantized(w.type);
  const MatMulArgs a = MakeMatMulArgs(kt, w, quant ? scratch : x, w.cols, M, y, ldy);
  const MatMulFn fn = MatMulFor(kt, w);
  if (w.rows * w.cols * M < kMinParallelWork || pool.size() == 1) {
    QuantizeActivations(kt, w.type, x, w.cols, w.cols, 0, M, scratch);
    fn(a, 0, w.rows);
    return;
  }
  // One region: rows of x quantized by token, a barrier, then output rows in chunks claimed
  // dynamically (a thread slowed by the host does not hold the others up for its whole share).
  const int64_t chunk = std::max<int64_t>(16, (w.rows / (8 * pool.size()) + 15) / 16 * 16);
  const int64_t chunks = (w.rows + chunk - 1) / chunk;
  pool.Run([&](int tid, int nt) {
    if (quant) {
      QuantizeActivations(kt, w.type, x, w.cols, w.cols, M * tid / nt, M * (tid + 1) / nt, scratch);
      pool.Barrier(tid);
    }
    pool.ForEach(tid, chunks, [&](int64_t c) { fn(a, c * chunk, std::min(w.rows, (c + 1) * chunk)); });
  });
}

void PagedAttention(const KernelTable& kt, ThreadPool& pool, const PagedAttentionArgs& args, int64_t T,
                    float* scratch, int64_t scratch_stride) {
  const int64_t units = T * args.n_kv_heads;
  int64_t work = 0;
  for (int64_t t = 0; t < T; ++t) work += (args.positions[t] + 1) * args.n_heads * args.head_dim;
  if (work < kMinParallelWork || pool.size() == 1) {
    for (int64_t u = 0; u < units; ++u) kt.attention_group(args, u / args.n_kv_heads, u % args.n_kv_heads, scratch);
    return;
  }
  pool.Run([&](int tid, int) {
    float* s = scratch + tid * scratch_stride;
    pool.ForEach(tid, units, [&](int64_t u) { kt.attention_group(args, u / args.n_kv_heads, u % args.n_kv_heads, s); });
  });
}

}  // namespace flotilla::kernels::cpu
