// The matrix-vector kernels for BF16 weights (every activation type, M = 1..8).
#include "kernels/cuda/gemv.cuh"

namespace flotilla::kernels::cuda {
template Error LaunchMatVec<DType::kBF16>(const MatVecArgs& a, Stream s);
}  // namespace flotilla::kernels::cuda
