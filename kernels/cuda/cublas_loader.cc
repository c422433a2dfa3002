#include "kernels/cuda/cublas_loader.h"

#include <dlfcn.h>

#include <string>

namespace flotilla::kernels::cuda {
namespace {

#define FLOTILLA_STR2(x) #x
#define FLOTILLA_STR(x) FLOTILLA_STR2(x)

struct Loaded {
  CublasApi api{};
  bool ok = false;
  std::string error;
};

template <class Fn>
bool Resolve(void* lib, const char* name, Fn& fn, std::string& error) {
  fn = reinterpret_cast<Fn>(dlsym(lib, name));
  if (fn == nullptr) error = std::string(CublasLibraryName()) + " has no " + name;
  return fn != nullptr;
}

Loaded Load() {
  Loaded l;
  // Never closed: handles and their kernels live until the process ends.
  void* lib = dlopen(CublasLibraryName(), RTLD_NOW | RTLD_LOCAL);
  std::string why;
  if (lib == nullptr) {
    const char* e = dlerror();
    why = e ? e : "unknown reason";
  }
#ifdef FLOTILLA_CUBLAS_DIR
  if (lib == nullptr) lib = dlopen((std::string(FLOTILLA_CUBLAS_DIR) + "/" + CublasLibraryName()).c_str(), RTLD_NOW | RTLD_LOCAL);
#endif
  if (lib == nullptr) {
    l.error = std::string("the CUDA backend's matrix products need cuBLAS, but ") + CublasLibraryName() +
              " could not be loaded (" + why + "); add its folder to LD_LIBRARY_PATH";
    return l;
  }
  CublasApi& a = l.api;
  l.ok = Resolve(lib, "cublasCreate_v2", a.create, l.error) && Resolve(lib, "cublasDestroy_v2", a.destroy, l.error) &&
         Resolve(lib, "cublasSetMathMode", a.set_math_mode, l.error) &&
         Resolve(lib, "cublasSetPointerMode_v2", a.set_pointer_mode, l.error) &&
         Resolve(lib, "cublasSetStream_v2", a.set_stream, l.error) &&
         Resolve(lib, "cublasSetWorkspace_v2", a.set_workspace, l.error) &&
         Resolve(lib, "cublasGemmEx", a.gemm_ex, l.error) &&
         Resolve(lib, "cublasGetStatusName", a.status_name, l.error) &&
         Resolve(lib, "cublasGetStatusString", a.status_string, l.error);
  return l;
}

const Loaded& Get() {
  static const Loaded loaded = Load();
  return loaded;
}

}  // namespace

const char* CublasLibraryName() { return "libcublas.so." FLOTILLA_STR(CUBLAS_VER_MAJOR); }

const CublasApi* Cublas() { return Get().ok ? &Get().api : nullptr; }

const char* CublasLoadError() { return Get().ok ? "" : Get().error.c_str(); }

}  // namespace flotilla::kernels::cuda
