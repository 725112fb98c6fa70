// Whether libtorch's CUDA backend has registered itself. libtorch_cpu holds a stub of the CUDA
// hooks until libtorch_cuda is loaded (its static initialisers register the real ones); the stub's
// `versionCUDART` throws. src/model/cuda_backend.rs loads libtorch_cuda at run time and asks here.
#include <ATen/detail/CUDAHooksInterface.h>

// The CUDA runtime version libtorch was built with (13000: 13.0), or -1 with only the stub.
extern "C" long dino_cuda_runtime_version() {
  try {
    return at::detail::getCUDAHooks().versionCUDART();
  } catch (...) {
    return -1;
  }
}
