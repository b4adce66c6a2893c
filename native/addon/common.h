#pragma once
#include <napi.h>

#include <string>

namespace mg {

// Throws the error class TypeScript handed to init() (NativeError: code, syscall, errno),
// or a plain Error before init. `what` names the call and its target.
[[noreturn]] void ThrowSystem(Napi::Env env, const std::string &syscall, int err, const std::string &target = "");
[[noreturn]] void ThrowUsage(Napi::Env env, const std::string &function, const std::string &message);

// RAII file descriptor.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(const Fd &) = delete;
  Fd &operator=(const Fd &) = delete;
  Fd(Fd &&o) noexcept : fd_(o.release()) {}
  Fd &operator=(Fd &&o) noexcept {
    reset(o.release());
    return *this;
  }
  ~Fd() { reset(); }
  int get() const { return fd_; }
  bool ok() const { return fd_ >= 0; }
  int release() {
    int f = fd_;
    fd_ = -1;
    return f;
  }
  void reset(int f = -1);

 private:
  int fd_ = -1;
};

}  // namespace mg
