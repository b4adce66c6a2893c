// modelguard's native addon: compile a rule list to BPF with libseccomp, receive the listener fd
// from guard-exec (SCM_RIGHTS), run the notification supervisor, reap orphans as PID 1.
// Policy lives in TypeScript.
#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <sys/socket.h>
#include <poll.h>
#include <unistd.h>

#include <mutex>
#include <vector>

#include "common.h"
#include "read_ranges.h"
#include "seccomp_dl.h"
#include "supervisor.h"


namespace mg {

namespace {
Napi::FunctionReference *error_class = nullptr;

const char *ErrnoCode(int err) {
  switch (err) {
    case EPERM: return "EPERM";
    case ENOENT: return "ENOENT";
    case ESRCH: return "ESRCH";
    case EINTR: return "EINTR";
    case EBADF: return "EBADF";
    case EACCES: return "EACCES";
    case EFAULT: return "EFAULT";
    case EBUSY: return "EBUSY";
    case EEXIST: return "EEXIST";
    case EINVAL: return "EINVAL";
    case EMFILE: return "EMFILE";
    case ENOSYS: return "ENOSYS";
    case ENOMEM: return "ENOMEM";
    case EOPNOTSUPP: return "EOPNOTSUPP";
    case ECANCELED: return "ECANCELED";
    case ETIMEDOUT: return "ETIMEDOUT";
    case EPROTO: return "EPROTO";
    case ENXIO: return "ENXIO";
    case ECHILD: return "ECHILD";
    case EAGAIN: return "EAGAIN";
    case ENOTSOCK: return "ENOTSOCK";
    case ECONNREFUSED: return "ECONNREFUSED";
    case E2BIG: return "E2BIG";
    case ENOTDIR: return "ENOTDIR";
    case EISDIR: return "EISDIR";
    case ENOSPC: return "ENOSPC";
    case EROFS: return "EROFS";
    case EPIPE: return "EPIPE";
    case EIO: return "EIO";
    case ENFILE: return "ENFILE";
    default: return nullptr;
  }
}
}  // namespace

void Fd::reset(int f) {
  if (fd_ >= 0) close(fd_);
  fd_ = f;
}

void ThrowSystem(Napi::Env env, const std::string &syscall, int err, const std::string &target) {
  const char *code = ErrnoCode(err);
  std::string code_s = code ? code : "E" + std::to_string(err);
  std::string msg = syscall + (target.empty() ? "" : " " + target) + ": " + code_s + " (" + strerror(err) + ")";
  if (error_class != nullptr && !error_class->IsEmpty()) {
    Napi::Object opts = Napi::Object::New(env);
    opts.Set("code", code_s);
    opts.Set("syscall", syscall);
    opts.Set("errno", Napi::Number::New(env, err));
    Napi::Value e = error_class->New({Napi::String::New(env, msg), opts});
    throw Napi::Error(env, e);
  }
  Napi::Error e = Napi::Error::New(env, msg);
  e.Set("code", code_s);
  e.Set("syscall", syscall);
  e.Set("errno", Napi::Number::New(env, err));
  throw e;
}

void ThrowUsage(Napi::Env env, const std::string &function, const std::string &message) {
  throw Napi::TypeError::New(env, function + ": " + message);
}

namespace {

const Libseccomp *Lib(Napi::Env env) {
  std::string err;
  const Libseccomp *lib = LoadLibseccomp(&err);
  if (lib == nullptr) {
    Napi::Error e = Napi::Error::New(env, err);
    e.Set("code", "ELIBSECCOMP");
    throw e;
  }
  return lib;
}

Napi::Value Init(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsObject()) ThrowUsage(env, "init", "expects { NativeError }");
  Napi::Value cls = info[0].As<Napi::Object>().Get("NativeError");
  if (!cls.IsFunction()) ThrowUsage(env, "init", "`NativeError` must be a class");
  if (error_class == nullptr) error_class = new Napi::FunctionReference();
  *error_class = Napi::Persistent(cls.As<Napi::Function>());
  return env.Undefined();
}

Napi::Value Version(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  const Libseccomp *lib = Lib(env);
  const scmp_version *v = lib->version();
  Napi::Object o = Napi::Object::New(env);
  o.Set("libseccomp", std::to_string(v->major) + "." + std::to_string(v->minor) + "." + std::to_string(v->micro));
  o.Set("api", Napi::Number::New(env, lib->api_get()));
  o.Set("arch", Napi::Number::New(env, lib->arch_native()));
  return o;
}

Napi::Value ResolveSyscall(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) ThrowUsage(env, "resolveSyscall", "expects a syscall name");
  int nr = Lib(env)->syscall_resolve_name(info[0].As<Napi::String>().Utf8Value().c_str());
  return Napi::Number::New(env, nr);
}

// pathWriteSyscalls() → the syscall numbers the supervisor checks as path-changing writes.
Napi::Value PathWriteSyscallsJs(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  std::vector<int> nrs = PathWriteSyscalls();
  Napi::Array out = Napi::Array::New(env, nrs.size());
  for (uint32_t i = 0; i < nrs.size(); i++) out.Set(i, Napi::Number::New(env, nrs[i]));
  return out;
}

Napi::Value SyscallName(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber()) ThrowUsage(env, "syscallName", "expects a syscall number");
  const Libseccomp *lib = Lib(env);
  char *name = lib->syscall_resolve_num_arch(lib->arch_native(), info[0].As<Napi::Number>().Int32Value());
  if (name == nullptr) return env.Null();
  Napi::String s = Napi::String::New(env, name);
  free(name);
  return s;
}

uint32_t ActionOf(Napi::Env env, Napi::Object rule) {
  std::string action = rule.Get("action").ToString().Utf8Value();
  if (action == "allow") return SCMP_ACT_ALLOW;
  if (action == "notify") return SCMP_ACT_NOTIFY;
  if (action == "log") return SCMP_ACT_LOG;
  if (action == "trap") return SCMP_ACT_TRAP;
  if (action == "kill_process") return SCMP_ACT_KILL_PROCESS;
  if (action == "kill_thread") return SCMP_ACT_KILL_THREAD;
  if (action == "errno") return scmp_act_errno(rule.Get("errno").ToNumber().Uint32Value());
  ThrowUsage(env, "compileFilter", "unknown action `" + action + "`");
}

uint64_t Datum(Napi::Env env, Napi::Value v) {
  if (v.IsBigInt()) {
    bool lossless;
    return v.As<Napi::BigInt>().Uint64Value(&lossless);
  }
  if (v.IsNumber()) return static_cast<uint64_t>(v.As<Napi::Number>().Int64Value());
  if (v.IsUndefined()) return 0;
  ThrowUsage(env, "compileFilter", "argument values must be numbers or bigints");
}

scmp_compare OpOf(Napi::Env env, const std::string &op) {
  if (op == "ne") return SCMP_CMP_NE;
  if (op == "lt") return SCMP_CMP_LT;
  if (op == "le") return SCMP_CMP_LE;
  if (op == "eq") return SCMP_CMP_EQ;
  if (op == "ge") return SCMP_CMP_GE;
  if (op == "gt") return SCMP_CMP_GT;
  if (op == "masked_eq") return SCMP_CMP_MASKED_EQ;
  ThrowUsage(env, "compileFilter", "unknown comparison `" + op + "`");
}

struct CtxGuard {
  const Libseccomp *lib;
  scmp_filter_ctx ctx;
  ~CtxGuard() {
    if (ctx) lib->release(ctx);
  }
};

// compileFilter({ defaultAction: {action, errno}, rules: [{nr, action, errno, args: [{index, op, a, b}]}] })
//   → Buffer holding struct sock_filter[] for the native architecture only (others are killed).
Napi::Value CompileFilter(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsObject()) ThrowUsage(env, "compileFilter", "expects one options object");
  Napi::Object o = info[0].As<Napi::Object>();
  if (!o.Get("defaultAction").IsObject()) ThrowUsage(env, "compileFilter", "`defaultAction` must be an object");
  if (!o.Get("rules").IsArray()) ThrowUsage(env, "compileFilter", "`rules` must be an array");
  const Libseccomp *lib = Lib(env);
  CtxGuard g{lib, lib->init(ActionOf(env, o.Get("defaultAction").As<Napi::Object>()))};
  if (g.ctx == nullptr) ThrowSystem(env, "seccomp_init", EINVAL);
  // Calls through another architecture or the x32 ABI: killed, or (`badArchAction: "notify"`) handed
  // to the supervisor, which answers ENOSYS and reports them.
  uint32_t badarch = o.Get("badArchAction").IsString() && o.Get("badArchAction").ToString().Utf8Value() == "notify"
                         ? SCMP_ACT_NOTIFY
                         : SCMP_ACT_KILL_PROCESS;
  int rc = lib->attr_set(g.ctx, SCMP_FLTATR_ACT_BADARCH, badarch);
  if (rc < 0) ThrowSystem(env, "seccomp_attr_set(ACT_BADARCH)", -rc);
  // A binary tree keeps hot syscalls a few comparisons away even with hundreds of rules.
  if (o.Get("optimize").ToBoolean().Value()) lib->attr_set(g.ctx, SCMP_FLTATR_CTL_OPTIMIZE, 2);
  Napi::Array rules = o.Get("rules").As<Napi::Array>();
  for (uint32_t i = 0; i < rules.Length(); i++) {
    Napi::Object r = rules.Get(i).As<Napi::Object>();
    int nr = r.Get("nr").ToNumber().Int32Value();
    uint32_t action = ActionOf(env, r);
    std::vector<scmp_arg_cmp> cmps;
    Napi::Value args = r.Get("args");
    if (args.IsArray()) {
      Napi::Array aa = args.As<Napi::Array>();
      for (uint32_t j = 0; j < aa.Length(); j++) {
        Napi::Object c = aa.Get(j).As<Napi::Object>();
        scmp_arg_cmp cmp;
        cmp.arg = c.Get("index").ToNumber().Uint32Value();
        cmp.op = OpOf(env, c.Get("op").ToString().Utf8Value());
        cmp.datum_a = Datum(env, c.Get("a"));
        cmp.datum_b = Datum(env, c.Get("b"));
        cmps.push_back(cmp);
      }
    }
    rc = lib->rule_add_array(g.ctx, action, nr, static_cast<unsigned>(cmps.size()), cmps.data());
    if (rc < 0) {
      std::string name = r.Get("name").IsString() ? r.Get("name").ToString().Utf8Value() : std::to_string(nr);
      ThrowSystem(env, "seccomp_rule_add", -rc, name);
    }
  }
  int mfd = static_cast<int>(syscall(SYS_memfd_create, "modelguard-bpf", MFD_CLOEXEC));
  if (mfd < 0) ThrowSystem(env, "memfd_create", errno);
  Fd mem(mfd);
  rc = lib->export_bpf(g.ctx, mem.get());
  if (rc < 0) ThrowSystem(env, "seccomp_export_bpf", -rc);
  off_t size = lseek(mem.get(), 0, SEEK_END);
  if (size < 0) ThrowSystem(env, "lseek", errno);
  std::vector<uint8_t> buf(static_cast<size_t>(size));
  if (size > 0 && pread(mem.get(), buf.data(), buf.size(), 0) != size) ThrowSystem(env, "pread", errno ? errno : EIO);
  return Napi::Buffer<uint8_t>::Copy(env, buf.data(), buf.size());
}

// reapOrphans({ known: [pid…] }) → pids reaped. For guard as PID 1: reaps zombies that were
// reparented to this process, never one Node spawned itself (libuv reaps those by pid), so it
// does not race Node's own child handling. It peeks with WNOWAIT before reaping.
Napi::Value ReapOrphans(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsObject() || !info[0].As<Napi::Object>().Get("known").IsArray())
    ThrowUsage(env, "reapOrphans", "expects { known: number[] }");
  Napi::Array known_js = info[0].As<Napi::Object>().Get("known").As<Napi::Array>();
  std::vector<int> known;
  for (uint32_t i = 0; i < known_js.Length(); i++) known.push_back(known_js.Get(i).ToNumber().Int32Value());
  Napi::Array out = Napi::Array::New(env);
  for (uint32_t n = 0; n < 4096; n++) {
    siginfo_t si;
    memset(&si, 0, sizeof si);
    if (waitid(P_ALL, 0, &si, WEXITED | WNOHANG | WNOWAIT) != 0 || si.si_pid == 0) break;
    bool mine = false;
    for (int k : known)
      if (k == si.si_pid) mine = true;
    if (mine) break;  // Node's own child is first in line: leave it (and the rest) for now
    int status;
    pid_t r;
    do {
      r = waitpid(si.si_pid, &status, WNOHANG);
    } while (r < 0 && errno == EINTR);
    if (r <= 0) break;
    out.Set(out.Length(), Napi::Number::New(env, r));
  }
  return out;
}

// socketPair() → [parentEnd, childEnd]: both close-on-exec; the child end reaches guard-exec
// through the spawn's stdio array (dup2 clears the flag there).
Napi::Value SocketPair(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) ThrowSystem(env, "socketpair", errno);
  Napi::Array out = Napi::Array::New(env, 2);
  out.Set(0u, Napi::Number::New(env, sv[0]));
  out.Set(1u, Napi::Number::New(env, sv[1]));
  return out;
}

// recvFd({ fd, timeoutMs }) → the fd passed as SCM_RIGHTS on socket `fd`.
Napi::Value RecvFd(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsObject()) ThrowUsage(env, "recvFd", "expects { fd, timeoutMs }");
  Napi::Object o = info[0].As<Napi::Object>();
  if (!o.Get("fd").IsNumber()) ThrowUsage(env, "recvFd", "`fd` must be a number");
  int sock = o.Get("fd").As<Napi::Number>().Int32Value();
  int timeout = o.Get("timeoutMs").IsNumber() ? o.Get("timeoutMs").As<Napi::Number>().Int32Value() : 5000;
  struct pollfd pfd = {sock, POLLIN, 0};
  int pr;
  do {
    pr = poll(&pfd, 1, timeout);
  } while (pr < 0 && errno == EINTR);
  if (pr < 0) ThrowSystem(env, "poll", errno, "listener socket");
  if (pr == 0) ThrowSystem(env, "recvmsg", ETIMEDOUT, "listener socket");
  char byte;
  struct iovec iov = {&byte, 1};
  union {
    char buf[CMSG_SPACE(sizeof(int))];
    struct cmsghdr align;
  } u;
  struct msghdr mh;
  memset(&mh, 0, sizeof mh);
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  mh.msg_control = u.buf;
  mh.msg_controllen = sizeof u.buf;
  ssize_t n;
  do {
    n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);
  } while (n < 0 && errno == EINTR);
  if (n < 0) ThrowSystem(env, "recvmsg", errno, "listener socket");
  struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
  if (n == 0 || c == nullptr || c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
    ThrowSystem(env, "recvmsg", EPROTO, "listener socket: no SCM_RIGHTS");
  int fd;
  memcpy(&fd, CMSG_DATA(c), sizeof fd);
  return Napi::Number::New(env, fd);
}

Napi::Value CloseFd(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber()) ThrowUsage(env, "closeFd", "expects an fd");
  if (close(info[0].As<Napi::Number>().Int32Value()) != 0) ThrowSystem(env, "close", errno);
  return env.Undefined();
}

// Tensor memory: an anonymous mapping, asked to be backed by transparent huge pages. With THP in
// `madvise` mode this is what makes filling hundreds of MiB cost a few faults per 2 MiB instead of
// one per 4 KiB (the same thing PyTorch's CPU allocator does). The buffer owns the mapping.
// buffer.constants.MAX_LENGTH of Node 20 (v8::TypedArray::kMaxLength); later Node versions allow more.
constexpr uint64_t kMaxExternalBytes = uint64_t{1} << 32;
constexpr size_t kHugePage = size_t{2} << 20;

// Freed huge-page mappings kept for the next load (setPageCache; off until TypeScript sets a cap).
// A warm load then writes into pages that are already mapped instead of faulting in and zeroing
// fresh ones (measured: 393 MiB read into a fresh aligned mapping costs 125-180 ms of CPU on the
// 2-core machine, into a kept one 88-94 ms) -- what glibc's heap gives torch.load for free. Kept
// mappings are MADV_FREE'd, so under memory pressure the kernel takes them back without writing
// anything; handed out again only to callers that overwrite every byte (`uninitialized`).
struct Mapping {
  void *addr;
  size_t span;  // the mapping's length (page-rounded, at least the buffer's)
  bool huge;
};
std::mutex cache_mutex;
std::vector<Mapping> cache;  // oldest first
size_t cache_bytes = 0;
size_t cache_max = 0;

void TrimCache(std::vector<Mapping> *out) {
  while (cache_bytes > cache_max && !cache.empty()) {
    cache_bytes -= cache.front().span;
    out->push_back(cache.front());
    cache.erase(cache.begin());
  }
}

void FreeMapping(Napi::Env env, void *data, Mapping *m) {
  Napi::MemoryManagement::AdjustExternalMemory(env, -static_cast<int64_t>(m->span));
  std::vector<Mapping> drop;
  {
    std::lock_guard<std::mutex> lock(cache_mutex);
    if (m->huge && m->span <= cache_max && madvise(m->addr, m->span, MADV_FREE) == 0) {
      cache.push_back(*m);
      cache_bytes += m->span;
      TrimCache(&drop);
    } else {
      drop.push_back(*m);
    }
  }
  for (const Mapping &d : drop) munmap(d.addr, d.span);
  delete m;
}

// A kept mapping for `span` bytes: the smallest that fits, wasting at most a quarter.
bool TakeCached(size_t span, Mapping *out) {
  std::lock_guard<std::mutex> lock(cache_mutex);
  size_t best = cache.size();
  for (size_t i = 0; i < cache.size(); i++) {
    if (cache[i].span >= span && cache[i].span - span <= span / 4 && (best == cache.size() || cache[i].span < cache[best].span)) best = i;
  }
  if (best == cache.size()) return false;
  *out = cache[best];
  cache_bytes -= out->span;
  cache.erase(cache.begin() + static_cast<std::ptrdiff_t>(best));
  return true;
}

Napi::Value SetPageCache(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsObject() || !info[0].As<Napi::Object>().Get("maxBytes").IsNumber()) ThrowUsage(env, "setPageCache", "expects { maxBytes }");
  double max = info[0].As<Napi::Object>().Get("maxBytes").As<Napi::Number>().DoubleValue();
  if (!(max >= 0) || max > 9007199254740991.0) ThrowUsage(env, "setPageCache", "`maxBytes` must be a non-negative safe integer");
  std::vector<Mapping> drop;
  {
    std::lock_guard<std::mutex> lock(cache_mutex);
    cache_max = static_cast<size_t>(max);
    TrimCache(&drop);
  }
  for (const Mapping &d : drop) munmap(d.addr, d.span);
  return env.Undefined();
}

Napi::Value AllocPages(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsObject()) ThrowUsage(env, "allocPages", "expects { bytes, hugePages }");
  Napi::Object o = info[0].As<Napi::Object>();
  if (!o.Get("bytes").IsNumber()) ThrowUsage(env, "allocPages", "`bytes` must be a number");
  double want = o.Get("bytes").As<Napi::Number>().DoubleValue();
  if (!(want > 0) || want > 9007199254740991.0) ThrowUsage(env, "allocPages", "`bytes` must be a positive safe integer");
  // Node (through v20 at least) wraps an external ArrayBuffer in a Buffer; when it refuses the
  // length (above buffer.constants.MAX_LENGTH, 4 GiB on v20) it frees the data through the
  // finalizer, and node-addon-api then frees its finalizer record a second time: a double free
  // that aborts the process. So nothing above the smallest MAX_LENGTH of a supported Node is
  // mapped here; the caller allocates such tensors another way or refuses them.
  if (want > kMaxExternalBytes)
    ThrowUsage(env, "allocPages", "`bytes` " + std::to_string(static_cast<uint64_t>(want)) + " exceeds the largest external buffer (" + std::to_string(kMaxExternalBytes) + ")");
  size_t len = static_cast<size_t>(want);
  bool huge = o.Get("hugePages").ToBoolean().Value();
  bool uninitialized = o.Get("uninitialized").ToBoolean().Value();
  // Byte ranges the caller will not write ([offset, length] pairs): cleared in a kept mapping
  // only, since a fresh one is zero already and touching it here would fault its pages in on this
  // thread instead of on the reader threads.
  std::vector<std::pair<size_t, size_t>> clear;
  Napi::Value cv = o.Get("clear");
  if (!cv.IsUndefined()) {
    if (!cv.IsTypedArray() || cv.As<Napi::TypedArray>().TypedArrayType() != napi_float64_array || cv.As<Napi::Float64Array>().ElementLength() % 2 != 0)
      ThrowUsage(env, "allocPages", "`clear` must be a Float64Array of [offset, length] pairs");
    Napi::Float64Array c = cv.As<Napi::Float64Array>();
    for (size_t i = 0; i < c.ElementLength(); i += 2) {
      double off = c[i], n = c[i + 1];
      if (!(off >= 0) || !(n >= 0) || off != static_cast<double>(static_cast<uint64_t>(off)) || n != static_cast<double>(static_cast<uint64_t>(n)) || off > want || n > want - off)
        ThrowUsage(env, "allocPages", "`clear` range " + std::to_string(i / 2) + " is not inside the buffer");
      clear.emplace_back(static_cast<size_t>(off), static_cast<size_t>(n));
    }
  }
  size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  size_t rounded = (len + page - 1) & ~(page - 1);
  Mapping m{nullptr, rounded, huge && len >= kHugePage};
  if (m.huge && uninitialized && TakeCached(rounded, &m)) {
    // A kept mapping: its bytes are stale (or zero where the kernel took pages back).
    for (const auto &r : clear) memset(static_cast<uint8_t *>(m.addr) + r.first, 0, r.second);
  } else if (m.huge) {
    // THP backs only whole, aligned 2 MiB extents: an unaligned mapping leaves up to 2 MiB at each
    // end on 4 KiB pages (for a 393 MiB, 144-tensor load, 24,600 page faults instead of 590). So
    // map 2 MiB more and trim the ends to start on a huge-page boundary.
    size_t span = rounded + kHugePage;
    void *raw = mmap(nullptr, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED) ThrowSystem(env, "mmap", errno, std::to_string(len) + " bytes");
    uintptr_t start = reinterpret_cast<uintptr_t>(raw);
    uintptr_t aligned = (start + kHugePage - 1) & ~(uintptr_t{kHugePage} - 1);
    uintptr_t end = aligned + rounded;
    if (aligned > start) munmap(raw, aligned - start);
    if (start + span > end) munmap(reinterpret_cast<void *>(end), start + span - end);
    m.addr = reinterpret_cast<void *>(aligned);
    madvise(m.addr, rounded, MADV_HUGEPAGE);  // advice only: EINVAL where THP is off
  } else {
    m.addr = mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m.addr == MAP_FAILED) ThrowSystem(env, "mmap", errno, std::to_string(len) + " bytes");
    if (huge) madvise(m.addr, len, MADV_HUGEPAGE);
  }
  Napi::MemoryManagement::AdjustExternalMemory(env, static_cast<int64_t>(m.span));
  return Napi::ArrayBuffer::New(env, m.addr, len, FreeMapping, new Mapping(m));
}

}  // namespace
Napi::Object Module(Napi::Env env, Napi::Object exports) {
  exports.Set("init", Napi::Function::New(env, Init, "init"));
  exports.Set("version", Napi::Function::New(env, Version, "version"));
  exports.Set("resolveSyscall", Napi::Function::New(env, ResolveSyscall, "resolveSyscall"));
  exports.Set("syscallName", Napi::Function::New(env, SyscallName, "syscallName"));
  exports.Set("pathWriteSyscalls", Napi::Function::New(env, PathWriteSyscallsJs, "pathWriteSyscalls"));
  exports.Set("compileFilter", Napi::Function::New(env, CompileFilter, "compileFilter"));
  exports.Set("closeFd", Napi::Function::New(env, CloseFd, "closeFd"));
  exports.Set("allocPages", Napi::Function::New(env, AllocPages, "allocPages"));
  exports.Set("readRanges", Napi::Function::New(env, ReadRanges, "readRanges"));
  exports.Set("setPageCache", Napi::Function::New(env, SetPageCache, "setPageCache"));
  exports.Set("socketPair", Napi::Function::New(env, SocketPair, "socketPair"));
  exports.Set("recvFd", Napi::Function::New(env, RecvFd, "recvFd"));
  exports.Set("reapOrphans", Napi::Function::New(env, ReapOrphans, "reapOrphans"));
  exports.Set("Supervisor", Supervisor::Init(env));
  return exports;
}

}  // namespace mg

static Napi::Object InitModelguard(Napi::Env env, Napi::Object exports) { return mg::Module(env, exports); }
NODE_API_MODULE(modelguard, InitModelguard)
