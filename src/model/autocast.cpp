// Autocast for any device and dtype. tch's `autocast` switches CUDA's only, and only to its default
// float16; CPU autocast in bfloat16 (and CUDA autocast in bfloat16) needs the device-typed calls
// of `ATen/autocast_mode.h`, which have no C binding in tch. Every C++ exception is caught here
// and returned as its message, so Rust sees errors, never an abort.
#include <ATen/autocast_mode.h>

#include "../shim_guard.hpp"

#include <cstring>
#include <string>

namespace {

at::DeviceType device_of(int device) { return device == 1 ? at::kCUDA : at::kCPU; }

at::ScalarType dtype_of(int dtype) { return dtype == 1 ? at::kHalf : at::kBFloat16; }

int code_of(at::ScalarType t) {
  if (t == at::kHalf) return 1;
  if (t == at::kBFloat16) return 0;
  return 2;
}

at::ScalarType scalar_of(int code, at::ScalarType fallback) {
  if (code == 0) return at::kBFloat16;
  if (code == 1) return at::kHalf;
  return fallback;
}

template <typename F>
int guarded(char* err, size_t len, F&& f) {
  return dino_shim::guarded("autocast", err, len, std::forward<F>(f));
}

}  // namespace

extern "C" {

// `device`: 0 CPU, 1 CUDA; `dtype`: 0 bfloat16, 1 float16. Saves the thread's previous state in
// `prev_enabled`/`prev_dtype` for `dino_autocast_exit`.
int dino_autocast_enter(int device, int dtype, int* prev_enabled, int* prev_dtype, char* err, size_t err_len) {
  return guarded(err, err_len, [&] {
    auto d = device_of(device);
    *prev_enabled = at::autocast::is_autocast_enabled(d) ? 1 : 0;
    *prev_dtype = code_of(at::autocast::get_autocast_dtype(d));
    at::autocast::set_autocast_dtype(d, dtype_of(dtype));
    at::autocast::set_autocast_enabled(d, true);
    at::autocast::increment_nesting();
  });
}

// Undoes `dino_autocast_enter`; the outermost exit drops the cache of cast weights, which the
// next optimizer step makes stale.
int dino_autocast_exit(int device, int prev_enabled, int prev_dtype, char* err, size_t err_len) {
  return guarded(err, err_len, [&] {
    auto d = device_of(device);
    if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
    at::autocast::set_autocast_enabled(d, prev_enabled != 0);
    at::autocast::set_autocast_dtype(d, scalar_of(prev_dtype, at::autocast::get_autocast_dtype(d)));
  });
}

// Sets whether autocast is on for `device` on this thread and returns whether it was (1/0): one op
// that needs float32 inside an autocast region runs between two calls. Flipping a thread-local
// flag cannot throw.
int dino_autocast_set_enabled(int device, int enabled) {
  auto d = device_of(device);
  int was = at::autocast::is_autocast_enabled(d) ? 1 : 0;
  at::autocast::set_autocast_enabled(d, enabled != 0);
  return was;
}

// Whether autocast is on for `device` on this thread (1/0), for tests.
int dino_autocast_is_enabled(int device) { return at::autocast::is_autocast_enabled(device_of(device)) ? 1 : 0; }

}  // extern "C"
