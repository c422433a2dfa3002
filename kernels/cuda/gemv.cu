// MatVec: argument checks and the runtime weight type -> template dispatch. The kernels are
// instantiated in gemv_<type>.cu.
#include <cstdint>

#include "kernels/cuda/cuda_kernels.h"

namespace flotilla::kernels::cuda {

template <DType W>
Error LaunchMatVec(const MatVecArgs& a, Stream s);

namespace {

bool Aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

}  // namespace

Error MatVec(const MatVecArgs& a, Stream s) {
  const DeviceWeight& w = a.w;
  if (a.M < 1 || a.M > kMaxMatVecRows || w.rows < 1 || !w.data || !a.y || a.ldy < w.rows) return kInvalidValue;
  if (!WeightShapeSupported(w.type, w.cols) || w.row_bytes != RowDataBytes(w.type, w.cols) || !Aligned16(w.data)) {
    return kInvalidValue;
  }
  if (IsQuantized(w.type)) {
    if (!w.scales || !a.xq.qs || !a.xq.scales || a.xq.K != w.cols || !Aligned16(a.xq.qs)) return kInvalidValue;
  } else {
    if (!a.x || a.ldx < w.cols || !Aligned16(a.x) || (a.ldx * ActBytes(a.x_type)) % 16 != 0) return kInvalidValue;
  }
  switch (w.type) {
    case DType::kF32: return LaunchMatVec<DType::kF32>(a, s);
    case DType::kF16: return LaunchMatVec<DType::kF16>(a, s);
    case DType::kBF16: return LaunchMatVec<DType::kBF16>(a, s);
    case DType::kQ8_0: return LaunchMatVec<DType::kQ8_0>(a, s);
    case DType::kQ4_0: return LaunchMatVec<DType::kQ4_0>(a, s);
  }
  return kInvalidValue;
}

}  // namespace flotilla::kernels::cuda
