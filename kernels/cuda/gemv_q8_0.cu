// The matrix-vector kernels for Q8_0 weights (every activation type, M = 1..8).
#include "kernels/cuda/gemv.cuh"

namespace flotilla::kernels::cuda {
template Error LaunchMatVec<DType::kQ8_0>(const MatVecArgs& a, Stream s);
}  // namespace flotilla::kernels::cuda
