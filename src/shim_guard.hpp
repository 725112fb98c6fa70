// The C boundary of the C++ shims (src/dist/shim.cpp, src/model/autocast.cpp): every C++
// exception is caught here and handed to Rust as its message in `err`, so Rust sees errors, never
// an abort.
#pragma once

#include <cstring>
#include <exception>
#include <string>
#include <utility>

namespace dino_shim {

inline void set_error(char* err, size_t len, const std::string& msg) {
  if (err == nullptr || len == 0) return;
  std::strncpy(err, msg.c_str(), len - 1);
  err[len - 1] = '\0';
}

// Runs `f`: 0 when it returned, 1 with the exception's message in `err` when it threw. `unit`
// names the shim in the message of an exception that is not a std::exception.
template <typename F>
int guarded(const char* unit, char* err, size_t len, F&& f) {
  try {
    std::forward<F>(f)();
    return 0;
  } catch (const std::exception& e) {
    set_error(err, len, e.what());
  } catch (...) {
    set_error(err, len, std::string("unknown C++ exception in ") + unit);
  }
  return 1;
}

}  // namespace dino_shim
