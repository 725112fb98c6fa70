// The NCCL process group, in a shared object of its own (build.rs): ProcessGroupNCCL lives in
// libtorch_cuda, which dino loads only on a machine with a GPU (src/model/cuda_backend.rs), so
// the main binary may not reference it. src/dist/nccl.rs opens this object when a run asks for
// NCCL and hands `dino_nccl_new` to the c10d shim (shim.cpp).
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>

#include <chrono>
#include "../shim_guard.hpp"

extern "C" {

// A ProcessGroupNCCL on `store` (a c10d::Store*, borrowed: this takes its own reference). Returns
// the c10d::Backend* with one reference for the caller to reclaim, or null with the message in `err`.
void* dino_nccl_new(void* store, int rank, int world, int timeout_ms, char* err, size_t err_len) {
  c10d::Backend* out = nullptr;
  dino_shim::guarded("nccl", err, err_len, [&] {
    auto s = c10::intrusive_ptr<c10d::Store>::reclaim_copy(static_cast<c10d::Store*>(store));
    auto opts = c10d::ProcessGroupNCCL::Options::create();
    opts->timeout = std::chrono::milliseconds(timeout_ms);
    c10::intrusive_ptr<c10d::Backend> pg = c10::make_intrusive<c10d::ProcessGroupNCCL>(s, rank, world, opts);
    out = pg.release();
  });
  return out;
}

}  // extern "C"
