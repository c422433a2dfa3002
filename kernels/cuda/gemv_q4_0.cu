// The matrix-vector kernels for Q4_0 weights (every activation type, M = 1..8).
#include "kernels/cuda/gemv.cuh"

namespace flotilla::kernels::cuda {
template Error LaunchMatVec<DType::kQ4_0>(const MatVecArgs& a, Stream s);
}  // namespace flotilla::kernels::cuda
