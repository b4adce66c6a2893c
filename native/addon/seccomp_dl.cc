#include "seccomp_dl.h"

#include <dlfcn.h>

#include <mutex>

namespace mg {

namespace {
Libseccomp lib;
const Libseccomp *loaded = nullptr;
std::string load_error;
std::once_flag once;

template <typename T>
bool Sym(void *handle, const char *name, T *out) {
  *out = reinterpret_cast<T>(dlsym(handle, name));
  if (*out == nullptr) {
    load_error = std::string("dlsym(") + name + "): not found in libseccomp.so.2";
    return false;
  }
  return true;
}

void Load() {
  void *h = dlopen("libseccomp.so.2", RTLD_NOW | RTLD_LOCAL);
  if (h == nullptr) {
    const char *e = dlerror();
    load_error = std::string("dlopen(libseccomp.so.2): ") + (e ? e : "failed");
    return;
  }
  if (!Sym(h, "seccomp_init", &lib.init) || !Sym(h, "seccomp_release", &lib.release) ||
      !Sym(h, "seccomp_arch_add", &lib.arch_add) || !Sym(h, "seccomp_arch_native", &lib.arch_native) ||
      !Sym(h, "seccomp_rule_add_array", &lib.rule_add_array) || !Sym(h, "seccomp_attr_set", &lib.attr_set) ||
      !Sym(h, "seccomp_export_bpf", &lib.export_bpf) ||
      !Sym(h, "seccomp_syscall_resolve_name", &lib.syscall_resolve_name) ||
      !Sym(h, "seccomp_syscall_resolve_num_arch", &lib.syscall_resolve_num_arch) ||
      !Sym(h, "seccomp_version", &lib.version) || !Sym(h, "seccomp_api_get", &lib.api_get)) {
    dlclose(h);
    return;
  }
  loaded = &lib;
}
}  // namespace

const Libseccomp *LoadLibseccomp(std::string *error) {
  std::call_once(once, Load);
  if (loaded == nullptr && error != nullptr) *error = load_error;
  return loaded;
}

}  // namespace mg
