// Driving the per-type matmul kernels over a thread pool: activations are converted once to the
// form the weight type wants, then output rows are split across threads so each weight row is
// read once per step for the whole batch.
#pragma once

#include <cstdint>

#include "kernels/cpu/kernel_table.h"
#include "kernels/cpu/thread_pool.h"
#include "kernels/dtype.h"

namespace flotilla::kernels::cpu {

// A row-major weight matrix [rows = outputs][cols = inputs], rows stored back to back.
struct WeightMatrix {
  DType type = DType::kF32;
  const void* data = nullptr;
  int64_t rows = 0;
  int64_t cols = 0;
  int64_t row_bytes = 0;
};

// Scratch bytes MatMul needs to hold M activation rows of K elements for weights of type w.
int64_t MatMulScratchBytes(DType w, int64_t M, int64_t K);

// y[m * ldy + n] = sum_k W[n, k] * x[m * K + k]. scratch must hold MatMulScratchBytes bytes.
void MatMul(const KernelTable& kt, ThreadPool& pool, const WeightMatrix& w, const float* x, int64_t M,
            float* y, int64_t ldy, void* scratch);

// Runs attention for T tokens and every head, spread over the pool. scratch holds
// pool.size() * scratch_stride floats, scratch_stride >= the longest attended span.
void PagedAttention(const KernelTable& kt, ThreadPool& pool, const PagedAttentionArgs& args, int64_t T,
                    float* scratch, int64_t scratch_stride);

}  // namespace flotilla::kernels::cpu
