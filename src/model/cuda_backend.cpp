// Where libtorch_cpu was loaded from, and whether libtorch's CUDA backend has registered itself.
// libtorch_cpu holds a stub of the CUDA hooks until libtorch_cuda is loaded (its static
// initialisers register the real ones); the stub's `versionCUDART` throws.
// src/model/cuda_backend.rs opens libtorch_cuda beside libtorch_cpu at run time and asks here.
#include <ATen/detail/CUDAHooksInterface.h>
#include <dlfcn.h>

#include <cstring>

extern "C" {

// The CUDA runtime version libtorch was built with (13000: 13.0), or -1 with only the stub.
long dino_cuda_runtime_version() {
  try {
    return at::detail::getCUDAHooks().versionCUDART();
  } catch (...) {
    return -1;
  }
}

// The file libtorch_cpu was loaded from (the folder libtorch_cuda must come from too, whatever
// LD_LIBRARY_PATH or the rpath chose), into `buf`; 0 when found.
int dino_libtorch_cpu_file(char* buf, size_t len) {
  Dl_info info;
  if (len == 0 || dladdr(reinterpret_cast<void*>(&at::detail::getCUDAHooks), &info) == 0 || info.dli_fname == nullptr) return 1;
  std::strncpy(buf, info.dli_fname, len - 1);
  buf[len - 1] = '\0';
  return 0;
}

}  // extern "C"
