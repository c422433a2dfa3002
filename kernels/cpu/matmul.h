// Driving the per-type matmul kernels over a thread pool: activations are converted once to the
// form the weight type wants, then output rows are split across threads so each weight row is
// read once per step for the whole batch.
//
// MatMul and PagedAttention below are self-contained (one parallel region each). A caller that
// runs a whole forward pass in one region (model/cpu_executor.cc) uses the pieces instead:
// QuantizeActivations, MakeMatMulArgs and kt.matmul on row ranges it hands out itself.
#pragma once

#include <cstdint>

#include "kernels/cpu/kernel_table.h"
#include "kernels/cpu/thread_pool.h"
#include "kernels/dtype.h"

namespace flotilla::kernels::cpu {

// A row-major weight matrix [rows = outputs][cols = inputs], rows stored back to back: as in
// the model file, or, when `packed`, in the form a kernel table's pack_rows made (row_bytes is
// then that table's packed_row_bytes, and only that table may read it).
struct WeightMatrix {
  DType type = DType::kF32;
  const void* data = nullptr;
  int64_t rows = 0;
  int64_t cols = 0;
  int64_t row_bytes = 0;
  bool packed = false;
};

// The matmul kernel of kt for w (its packed kernel when w is packed).
inline MatMulFn MatMulFor(const KernelTable& kt, const WeightMatrix& w) {
  return (w.packed ? kt.matmul_packed : kt.matmul)[static_cast<int>(w.type)];
}

// Whether kt packs weights of w's type (and w is not packed yet).
inline bool CanPack(const KernelTable& kt, const WeightMatrix& w) {
  return !w.packed && kt.pack_rows != nullptr && kt.packed_row_bytes(w.type, w.cols) > 0 &&
         kt.matmul_packed[static_cast<int>(w.type)] != nullptr;
}

// Scratch bytes MatMul needs to hold M activation rows of K elements for weights of type w.
int64_t MatMulScratchBytes(const KernelTable& kt, DType w, int64_t M, int64_t K);

// y[m * ldy + n] = sum_k W[n, k] * x[m * K + k]. scratch must hold MatMulScratchBytes bytes
// (64-byte aligned is best).
void MatMul(const KernelTable& kt, ThreadPool& pool, const WeightMatrix& w, const float* x, int64_t M,
            float* y, int64_t ldy, void* scratch);

// Converts rows [m0, m1) of x (K floats each, ldx apart) to the activation form of weights of
// type w, act_row_bytes = kt.act_row_bytes(w, K) apart in `out`. A no-op for float weights (they
// read x itself).
void QuantizeActivations(const KernelTable& kt, DType w, const float* x, int64_t ldx, int64_t K, int64_t m0,
                         int64_t m1, void* out);

// Arguments for kt.matmul[w.type]: `act` is x itself for float weights (ldx floats apart), the
// output of QuantizeActivations otherwise.
MatMulArgs MakeMatMulArgs(const KernelTable& kt, const WeightMatrix& w, const void* act, int64_t ldx, int64_t M,
                          float* y, int64_t ldy);

// Runs attention for T tokens and every head, spread over the pool by (token, KV head).
// scratch holds pool.size() * scratch_stride floats, scratch_stride >=
// AttentionGroupScratch(..., longest attended span).
void PagedAttention(const KernelTable& kt, ThreadPool& pool, const PagedAttentionArgs& args, int64_t T,
                    float* scratch, int64_t scratch_stride);

}  // namespace flotilla::kernels::cpu
