// All-reduce between the GPUs of one tensor-parallel executor, over NCCL.
//
// NCCL is opened with dlopen("libnccl.so.2") when the first tensor-parallel executor starts, so
// binaries neither link nor need NCCL (208 MB) unless --tensor-parallel > 1 is used. One
// communicator per GPU, all made by ncclCommInitAll in this process; each is then used by its
// rank's thread only.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "kernels/cuda/cuda_kernels.h"

namespace flotilla::cuda_internal {

class Communicator {
 public:
  virtual ~Communicator() = default;
  // In place, sum over ranks, f32, enqueued on the stream.
  virtual absl::Status AllReduceSum(float* buf, int64_t count, kernels::cuda::Stream s) = 0;
  // Makes pending and future operations fail instead of waiting for a rank that will not come.
  // Safe to call from another thread.
  virtual void Abort() = 0;
};

absl::StatusOr<std::vector<std::unique_ptr<Communicator>>> MakeNcclCommunicators(const std::vector<int>& devices);

}  // namespace flotilla::cuda_internal
