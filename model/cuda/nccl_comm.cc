#include "model/cuda/nccl_comm.h"

#include <cuda_runtime.h>
#include <dlfcn.h>

#include <atomic>
#include <mutex>

#include "absl/strings/str_cat.h"

#if FLOTILLA_HAVE_NCCL_HEADER
#include <nccl.h>
#endif

namespace flotilla::cuda_internal {

#if FLOTILLA_HAVE_NCCL_HEADER
namespace {

// The few NCCL entry points the executor uses, resolved once.
struct NcclApi {
  ncclResult_t (*comm_init_all)(ncclComm_t*, int, const int*) = nullptr;
  ncclResult_t (*all_reduce)(const void*, void*, size_t, ncclDataType_t, ncclRedOp_t, ncclComm_t,
                             cudaStream_t) = nullptr;
  ncclResult_t (*comm_destroy)(ncclComm_t) = nullptr;
  ncclResult_t (*comm_abort)(ncclComm_t) = nullptr;
  const char* (*error_string)(ncclResult_t) = nullptr;
};

absl::StatusOr<const NcclApi*> LoadNccl() {
  static std::once_flag once;
  static NcclApi api;
  static std::string error;
  std::call_once(once, [] {
    void* lib = dlopen("libnccl.so.2", RTLD_NOW | RTLD_LOCAL);
    if (!lib) lib = dlopen("libnccl.so", RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
      const char* why = dlerror();
      error = absl::StrCat("tensor parallelism needs NCCL, but libnccl.so.2 could not be loaded (",
                           why ? why : "unknown reason", "); add its folder to LD_LIBRARY_PATH");
      return;
    }
    auto sym = [&](const char* name) { return dlsym(lib, name); };
    api.comm_init_all = reinterpret_cast<decltype(api.comm_init_all)>(sym("ncclCommInitAll"));
    api.all_reduce = reinterpret_cast<decltype(api.all_reduce)>(sym("ncclAllReduce"));
    api.comm_destroy = reinterpret_cast<decltype(api.comm_destroy)>(sym("ncclCommDestroy"));
    api.comm_abort = reinterpret_cast<decltype(api.comm_abort)>(sym("ncclCommAbort"));
    api.error_string = reinterpret_cast<decltype(api.error_string)>(sym("ncclGetErrorString"));
    if (!api.comm_init_all || !api.all_reduce || !api.comm_destroy || !api.comm_abort || !api.error_string) {
      error = "libnccl.so.2 lacks ncclCommInitAll/ncclAllReduce/ncclCommDestroy/ncclCommAbort/ncclGetErrorString";
    }
  });
  if (!error.empty()) return absl::FailedPreconditionError(error);
  return &api;
}

class NcclCommunicator final : public Communicator {
 public:
  NcclCommunicator(const NcclApi* api, ncclComm_t comm) : api_(api), comm_(comm) {}
  ~NcclCommunicator() override {
    if (aborted_.load()) return;  // ncclCommAbort already freed it
    api_->comm_destroy(comm_);
  }

  absl::Status AllReduceSum(float* buf, int64_t count, kernels::cuda::Stream s) override {
    if (aborted_.load()) return absl::AbortedError("NCCL communicator was aborted after an error on another GPU");
    const ncclResult_t r = api_->all_reduce(buf, buf, static_cast<size_t>(count), ncclFloat32, ncclSum, comm_,
                                            reinterpret_cast<cudaStream_t>(s));
    if (r != ncclSuccess) return absl::InternalError(absl::StrCat("ncclAllReduce failed: ", api_->error_string(r)));
    return absl::OkStatus();
  }

  void Abort() override {
    bool expected = false;
    if (aborted_.compare_exchange_strong(expected, true)) api_->comm_abort(comm_);
  }

 private:
  const NcclApi* api_;
  ncclComm_t comm_;
  std::atomic<bool> aborted_{false};
};

}  // namespace

absl::StatusOr<std::vector<std::unique_ptr<Communicator>>> MakeNcclCommunicators(const std::vector<int>& devices) {
  auto api = LoadNccl();
  if (!api.ok()) return api.status();
  std::vector<ncclComm_t> comms(devices.size());
  const ncclResult_t r = (*api)->comm_init_all(comms.data(), static_cast<int>(devices.size()), devices.data());
  if (r != ncclSuccess) {
    return absl::InternalError(absl::StrCat("ncclCommInitAll over ", devices.size(), " GPUs failed: ",
                                            (*api)->error_string(r)));
  }
  std::vector<std::unique_ptr<Communicator>> out;
  for (ncclComm_t c : comms) out.push_back(std::make_unique<NcclCommunicator>(*api, c));
  return out;
}

#else

absl::StatusOr<std::vector<std::unique_ptr<Communicator>>> MakeNcclCommunicators(const std::vector<int>&) {
  return absl::FailedPreconditionError("tensor parallelism needs NCCL, and this build found no nccl.h");
}

#endif

}  // namespace flotilla::cuda_internal
