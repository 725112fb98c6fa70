// The smallest C surface over libtorch's c10d that data-parallel DINO needs: a TCPStore
// rendezvous, a Gloo (CPU) or NCCL (CUDA) process group, and in-place all-reduce (sum),
// broadcast and barrier on tensors tch hands over as `at::Tensor*`. Every C++ exception is
// caught here and returned as its message, so Rust sees errors, never an abort.
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <chrono>
#include "../shim_guard.hpp"

#include <cstring>
#include <mutex>
#include <string>
#include <vector>

namespace {

struct Group {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::Backend> backend;
  bool is_gloo = false;
};

std::vector<at::Tensor> tensors_of(void** ptrs, size_t n) {
  std::vector<at::Tensor> v;
  v.reserve(n);
  for (size_t i = 0; i < n; ++i) v.push_back(*static_cast<at::Tensor*>(ptrs[i]));
  return v;
}

// libtorch's flight recorder (a process-wide singleton, on by default) registers a group in a
// std::map the first time it records one of the group's collectives, before it takes its own lock
// (FlightRecorderDetail.hpp, `recordWithResetEnabled`). Two groups of one process enqueueing their
// first collectives at once corrupt that map: the SIGSEGV in `_Rb_tree_insert_and_rebalance` that
// tests/dist.rs (ranks as threads) hit under load. Gloo collectives are therefore enqueued under
// one lock. Enqueueing only queues the work, so the lock is held for microseconds and never across
// the wait. NCCL is left out: its first collective may create the communicator, which blocks until
// every rank joins, and the product runs one NCCL rank per process anyway.
std::mutex gloo_enqueue;

template <typename Enqueue>
c10::intrusive_ptr<c10d::Work> enqueued(const Group& g, Enqueue&& enqueue) {
  if (!g.is_gloo) return enqueue(*g.backend);
  std::lock_guard<std::mutex> hold(gloo_enqueue);
  return enqueue(*g.backend);
}

template <typename F>
int guarded(char* err, size_t len, F&& f) {
  return dino_shim::guarded("c10d", err, len, std::forward<F>(f));
}

}  // namespace

extern "C" {

// nccl.cpp's `dino_nccl_new`: the NCCL group lives in libtorch_cuda, which this binary does not
// link (src/model/cuda_backend.rs), so it comes from a shared object opened at run time.
typedef void* (*NcclNew)(void* store, int rank, int world, int timeout_ms, char* err, size_t err_len);

// `backend` is "gloo" or "nccl". Rank 0 hosts the store unless `store_is_external` (torchrun's
// agent already runs one; then every rank connects as a client). `listen_fd` >= 0: rank 0's store
// serves on this socket, already bound to `port` and listening (the store takes it over).
// `nccl_new`: nccl.cpp's constructor, null where this build has no NCCL.
void* dino_dist_new(const char* backend, const char* host, int port, int rank, int world,
                    int store_is_external, int listen_fd, int timeout_ms, void* nccl_new, char* err,
                    size_t err_len) {
  Group* g = nullptr;
  int rc = guarded(err, err_len, [&] {
    std::chrono::milliseconds timeout(timeout_ms);
    c10d::TCPStoreOptions so;
    so.port = static_cast<std::uint16_t>(port);
    so.isServer = rank == 0 && !store_is_external;
    so.numWorkers = store_is_external ? std::nullopt : std::optional<std::size_t>(world);
    so.waitWorkers = !store_is_external;
    so.timeout = timeout;
    if (listen_fd >= 0 && so.isServer) so.masterListenFd = listen_fd;
    auto store = c10::make_intrusive<c10d::TCPStore>(std::string(host), so);
    auto out = std::make_unique<Group>();
    out->store = store;
    std::string b(backend);
    if (b == "gloo") {
      auto opts = c10d::ProcessGroupGloo::Options::create(timeout);
      opts->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
      out->backend = c10::make_intrusive<c10d::ProcessGroupGloo>(store, rank, world, opts);
      out->is_gloo = true;
    } else if (b == "nccl") {
      if (nccl_new == nullptr) {
        throw std::runtime_error(
            "this build of dino has no NCCL support (NCCL's or the CUDA runtime's headers were missing at build "
            "time, or compiling src/dist/nccl.cpp failed: see the build's warnings)");
      }
      char why[1024] = {0};
      c10d::Store* base = out->store.get();  // as nccl.cpp casts it back: a Store*, not a TCPStore*
      void* pg = reinterpret_cast<NcclNew>(nccl_new)(base, rank, world, timeout_ms, why, sizeof why);
      if (pg == nullptr) throw std::runtime_error(why);
      out->backend = c10::intrusive_ptr<c10d::Backend>::reclaim(static_cast<c10d::Backend*>(pg));
    } else {
      throw std::runtime_error("unknown backend " + b + " (use gloo or nccl)");
    }
    g = out.release();
  });
  return rc == 0 ? g : nullptr;
}

int dino_dist_all_reduce_sum(void* group, void** tensors, size_t n, char* err, size_t err_len) {
  return guarded(err, err_len, [&] {
    auto v = tensors_of(tensors, n);
    enqueued(*static_cast<Group*>(group), [&](c10d::Backend& b) { return b.allreduce(v); })->wait();
  });
}

int dino_dist_broadcast(void* group, void** tensors, size_t n, int root, char* err, size_t err_len) {
  return guarded(err, err_len, [&] {
    auto v = tensors_of(tensors, n);
    c10d::BroadcastOptions o;
    o.rootRank = root;
    enqueued(*static_cast<Group*>(group), [&](c10d::Backend& b) { return b.broadcast(v, o); })->wait();
  });
}

int dino_dist_barrier(void* group, char* err, size_t err_len) {
  return guarded(err, err_len, [&] {
    enqueued(*static_cast<Group*>(group), [](c10d::Backend& b) { return b.barrier(); })->wait();
  });
}

void dino_dist_free(void* group) { delete static_cast<Group*>(group); }

}  // extern "C"
