#include "kernels/cpu/matmul.h"

#include <algorithm>

namespace flotilla::kernels::cpu {
namespace {

// Below this many multiply-adds a second thread costs more in synchronisation than it saves.
constexpr int64_t kMinParallelWork = 16 * 1024;

}  // namespace

int64_t MatMulScratchBytes(DType w, int64_t M, int64_t K) {
  if (ActivationType(w) == DType::kQ8_0) return M * RowBytes(DType::kQ8_0, K);
  return 0;
}

void MatMul(const KernelTable& kt, ThreadPool& pool, const WeightMatrix& w, const float* x, int64_t M,
            float* y, int64_t ldy, void* scratch) {
  MatMulArgs a{};
  a.w = w.data;
  a.w_row_bytes = w.row_bytes;
  a.K = w.cols;
  a.M = M;
  a.y = y;
  a.ldy = ldy;
  if (ActivationType(w.type) == DType::kQ8_0) {
    const int64_t qrow = RowBytes(DType::kQ8_0, w.cols);
    char* q = static_cast<char*>(scratch);
    auto quantize = [&](int64_t b, int64_t e) {
      for (int64_t m = b; m < e; ++m) kt.quantize_q8_0(x + m * w.cols, q + m * qrow, w.cols);
    };
    if (M >= 4) {
      pool.ParallelFor(M, 1, quantize);
    } else {
      quantize(0, M);
    }
    a.x = q;
    a.x_row_bytes = qrow;
  } else {
    a.x = x;
    a.x_row_bytes = w.cols * static_cast<int64_t>(sizeof(float));
  }
  const MatMulFn fn = kt.matmul[static_cast<int>(w.type)];
  if (w.rows * w.cols * M < kMinParallelWork || pool.size() == 1) {
    fn(a, 0, w.rows);
    return;
  }
  pool.ParallelFor(w.rows, 4, [&](int64_t b, int64_t e) { fn(a, b, e); });
}

void PagedAttention(const KernelTable& kt, ThreadPool& pool, const PagedAttentionArgs& args, int64_t T,
                    float* scratch, int64_t scratch_stride) {
  const int64_t units = T * args.n_heads;
  int64_t work = 0;
  for (int64_t t = 0; t < T; ++t) work += (args.positions[t] + 1) * args.n_heads * args.head_dim;
  if (work < kMinParallelWork || pool.size() == 1) {
    for (int64_t u = 0; u < units; ++u) kt.attention(args, u / args.n_heads, u % args.n_heads, scratch);
    return;
  }
  pool.Run([&](int tid, int nt) {
    float* s = scratch + tid * scratch_stride;
    for (int64_t u = tid; u < units; u += nt) kt.attention(args, u / args.n_heads, u % args.n_heads, s);
  });
}

}  // namespace flotilla::kernels::cpu
