#include "supervisor.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/netlink.h>
#include <linux/seccomp.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cstring>

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_pidfd_getfd
#define SYS_pidfd_getfd 438
#endif
#ifndef __NR_openat2
#define __NR_openat2 437
#endif

namespace mg {

namespace {

constexpr size_t kPayloadMax = 512;
constexpr size_t kStringMax = 4096;
constexpr size_t kArgvMax = 128;
constexpr size_t kMmsgMax = 16;
constexpr uint32_t kSinksMax = 4;         // UDP and TCP, IPv4 and IPv6
constexpr size_t kTcpQueriesMax = 16;     // DNS-over-TCP connections read at once

double NowMs() {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<double>(ts.tv_sec) * 1000.0 + static_cast<double>(ts.tv_nsec) / 1e6;
}

// Reads the target's memory through /proc/PID/mem, checking after every read that the
// notification is still alive (the PID may otherwise have been reused).
class Mem {
 public:
  Mem(int listener, uint64_t id, int pid) : listener_(listener), id_(id) {
    std::string p = "/proc/" + std::to_string(pid) + "/mem";
    fd_.reset(open(p.c_str(), O_RDONLY | O_CLOEXEC));
  }
  bool Valid() const {
    uint64_t id = id_;
    return ioctl(listener_, SECCOMP_IOCTL_NOTIF_ID_VALID, &id) == 0;
  }
  bool Read(uint64_t addr, void *buf, size_t n) const {
    if (!fd_.ok() || addr == 0) return false;
    char *p = static_cast<char *>(buf);
    size_t done = 0;
    while (done < n) {
      ssize_t r = pread(fd_.get(), p + done, n - done, static_cast<off_t>(addr + done));
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) return false;
      done += static_cast<size_t>(r);
    }
    return Valid();
  }
  // Reads at most `max` bytes, stopping at a page boundary if the next page is unreadable.
  size_t ReadSome(uint64_t addr, void *buf, size_t max) const {
    if (!fd_.ok() || addr == 0) return 0;
    char *p = static_cast<char *>(buf);
    size_t done = 0;
    while (done < max) {
      size_t page_left = 4096 - ((addr + done) & 4095);
      size_t want = std::min(max - done, page_left);
      ssize_t r = pread(fd_.get(), p + done, want, static_cast<off_t>(addr + done));
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) break;
      done += static_cast<size_t>(r);
    }
    return Valid() ? done : 0;
  }
  bool String(uint64_t addr, std::string *out) const {
    out->clear();
    char chunk[256];
    while (out->size() < kStringMax) {
      size_t page_left = 4096 - ((addr + out->size()) & 4095);
      size_t want = std::min(sizeof chunk, page_left);
      ssize_t r = pread(fd_.get(), chunk, want, static_cast<off_t>(addr + out->size()));
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) return false;
      void *nul = memchr(chunk, 0, static_cast<size_t>(r));
      if (nul != nullptr) {
        out->append(chunk, static_cast<const char *>(nul) - chunk);
        return Valid();
      }
      out->append(chunk, static_cast<size_t>(r));
    }
    return Valid();
  }

 private:
  int listener_;
  uint64_t id_;
  Fd fd_;
};

int TgidOf(int tid) {
  std::string p = "/proc/" + std::to_string(tid) + "/status";
  Fd fd(open(p.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.ok()) return tid;
  char buf[2048];
  ssize_t n = read(fd.get(), buf, sizeof buf - 1);
  if (n <= 0) return tid;
  buf[n] = 0;
  const char *t = strstr(buf, "\nTgid:");
  return t ? atoi(t + 6) : tid;
}

// A duplicate of the target's fd, for getsockopt/getsockname; needs ptrace-level access.
Fd RemoteFd(int tgid, int fd) {
  Fd pidfd(static_cast<int>(syscall(SYS_pidfd_open, tgid, 0)));
  if (!pidfd.ok()) return Fd();
  return Fd(static_cast<int>(syscall(SYS_pidfd_getfd, pidfd.get(), fd, 0)));
}

std::string SockType(const Fd &sock) {
  if (!sock.ok()) return "";
  int type = 0, proto = 0, domain = 0;
  socklen_t len = sizeof type;
  if (getsockopt(sock.get(), SOL_SOCKET, SO_TYPE, &type, &len) != 0) return "";
  len = sizeof proto;
  getsockopt(sock.get(), SOL_SOCKET, SO_PROTOCOL, &proto, &len);
  len = sizeof domain;
  getsockopt(sock.get(), SOL_SOCKET, SO_DOMAIN, &domain, &len);
  if (domain == AF_INET || domain == AF_INET6) {
    if (type == SOCK_STREAM) return "tcp";
    if (type == SOCK_DGRAM) return proto == IPPROTO_ICMP || proto == IPPROTO_ICMPV6 ? "icmp" : "udp";
    if (type == SOCK_RAW) return "raw";
  }
  if (type == SOCK_STREAM) return "stream";
  if (type == SOCK_DGRAM) return "dgram";
  if (type == SOCK_SEQPACKET) return "seqpacket";
  if (type == SOCK_RAW) return "raw";
  return "other";
}

SockAddr DecodeSockaddr(const uint8_t *b, size_t len) {
  SockAddr sa;
  if (len < 2) {
    sa.family = "other";
    return sa;
  }
  uint16_t fam;
  memcpy(&fam, b, 2);
  char text[INET6_ADDRSTRLEN] = {0};
  if (fam == AF_INET && len >= sizeof(sockaddr_in)) {
    sockaddr_in in;
    memcpy(&in, b, sizeof in);
    sa.family = "inet";
    inet_ntop(AF_INET, &in.sin_addr, text, sizeof text);
    sa.address = text;
    sa.port = ntohs(in.sin_port);
    sa.raw_addr.assign(reinterpret_cast<uint8_t *>(&in.sin_addr), reinterpret_cast<uint8_t *>(&in.sin_addr) + 4);
  } else if (fam == AF_INET6 && len >= sizeof(sockaddr_in6)) {
    sockaddr_in6 in6;
    memcpy(&in6, b, sizeof in6);
    sa.family = "inet6";
    inet_ntop(AF_INET6, &in6.sin6_addr, text, sizeof text);
    sa.address = text;
    sa.port = ntohs(in6.sin6_port);
    sa.raw_addr.assign(in6.sin6_addr.s6_addr, in6.sin6_addr.s6_addr + 16);
  } else if (fam == AF_UNIX) {
    sa.family = "unix";
    size_t off = offsetof(sockaddr_un, sun_path);
    if (len > off) {
      const char *p = reinterpret_cast<const char *>(b + off);
      size_t n = len - off;
      if (p[0] == 0) {
        sa.address = "@" + std::string(p + 1, strnlen(p + 1, n - 1));
      } else {
        sa.address = std::string(p, strnlen(p, n));
      }
    }
  } else if (fam == AF_NETLINK) {
    sa.family = "netlink";
  } else if (fam == AF_UNSPEC) {
    sa.family = "unspec";
  } else {
    sa.family = "other";
    sa.address = "family " + std::to_string(fam);
  }
  return sa;
}

bool ReadSockaddr(const Mem &mem, uint64_t addr, uint64_t len, SockAddr *out) {
  if (addr == 0 || len == 0) return false;
  uint8_t buf[128];
  size_t n = std::min<uint64_t>(len, sizeof buf);
  if (!mem.Read(addr, buf, n)) return false;
  *out = DecodeSockaddr(buf, n);
  return true;
}

std::string Normalize(const std::string &path) {
  std::vector<std::string> parts;
  size_t i = 0;
  while (i <= path.size()) {
    size_t j = path.find('/', i);
    if (j == std::string::npos) j = path.size();
    std::string part = path.substr(i, j - i);
    if (part == "..") {
      if (!parts.empty()) parts.pop_back();
    } else if (!part.empty() && part != ".") {
      parts.push_back(part);
    }
    i = j + 1;
  }
  std::string out;
  for (const auto &p : parts) out += "/" + p;
  return out.empty() ? "/" : out;
}

std::string ReadLink(const std::string &p) {
  char buf[4096];
  ssize_t n = readlink(p.c_str(), buf, sizeof buf - 1);
  if (n <= 0) return "";
  return std::string(buf, static_cast<size_t>(n));
}

bool Under(const std::string &path, const std::string &prefix) {
  if (prefix == "/") return true;
  return path == prefix || (path.size() > prefix.size() && path.compare(0, prefix.size(), prefix) == 0 &&
                            path[prefix.size()] == '/');
}

bool WriteFlags(uint64_t flags) {
  return (flags & O_ACCMODE) != O_RDONLY || (flags & (O_CREAT | O_TRUNC)) != 0;
}

// Calls that change the file system through a path (the open family is handled on its own):
// where the changed path is (its dirfd argument, or -1 for the cwd), and for rename/link the
// other path. symlink's target is link text, not a path it touches, so it is only reported.
struct PathCall {
  int dirfd_arg;
  int path_arg;
  int other_dirfd_arg = -2;  // -2: no other path
  int other_path_arg = -1;
  bool other_written = false;  // rename: the old name goes away, so it is a write too
  bool other_is_text = false;  // symlink: the target is text
};

const std::map<int, PathCall> &PathCalls() {
  static const std::map<int, PathCall> calls = {
#ifdef __NR_mkdir
      {__NR_mkdir, {-1, 0}},
      {__NR_rmdir, {-1, 0}},
      {__NR_unlink, {-1, 0}},
      {__NR_rename, {-1, 1, -1, 0, true}},
      {__NR_link, {-1, 1, -1, 0}},
      {__NR_symlink, {-1, 1, -1, 0, false, true}},
      {__NR_mknod, {-1, 0}},
      {__NR_chmod, {-1, 0}},
      {__NR_chown, {-1, 0}},
      {__NR_lchown, {-1, 0}},
      {__NR_utimes, {-1, 0}},
      {__NR_futimesat, {0, 1}},
#endif
      {__NR_mkdirat, {0, 1}},
      {__NR_unlinkat, {0, 1}},
      {__NR_renameat, {2, 3, 0, 1, true}},
      {__NR_renameat2, {2, 3, 0, 1, true}},
      {__NR_linkat, {2, 3, 0, 1}},
      {__NR_symlinkat, {1, 2, -1, 0, false, true}},
      {__NR_mknodat, {0, 1}},
      {__NR_truncate, {-1, 0}},
      {__NR_fchmodat, {0, 1}},
      {__NR_fchownat, {0, 1}},
      {__NR_utimensat, {0, 1}},
      {__NR_setxattr, {-1, 0}},
      {__NR_lsetxattr, {-1, 0}},
      {__NR_removexattr, {-1, 0}},
      {__NR_lremovexattr, {-1, 0}},
  };
  return calls;
}

}  // namespace

std::vector<int> PathWriteSyscalls() {
  std::vector<int> out;
  for (const auto &kv : PathCalls()) out.push_back(kv.first);
  return out;
}

Napi::Function Supervisor::Init(Napi::Env env) {
  return DefineClass(env, "Supervisor", {InstanceMethod("stop", &Supervisor::Stop), InstanceMethod("ref", &Supervisor::Ref),
                                          InstanceMethod("unref", &Supervisor::Unref)});
}

static std::vector<std::string> StringArray(Napi::Env env, Napi::Object o, const char *key) {
  std::vector<std::string> out;
  Napi::Value v = o.Get(key);
  if (v.IsUndefined()) return out;
  if (!v.IsArray()) ThrowUsage(env, "startSupervisor", std::string("`") + key + "` must be an array of strings");
  Napi::Array a = v.As<Napi::Array>();
  for (uint32_t i = 0; i < a.Length(); i++) {
    Napi::Value e = a.Get(i);
    if (!e.IsString()) ThrowUsage(env, "startSupervisor", std::string("`") + key + "` must hold strings");
    out.push_back(e.As<Napi::String>().Utf8Value());
  }
  return out;
}

Supervisor::Supervisor(const Napi::CallbackInfo &info) : Napi::ObjectWrap<Supervisor>(info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsObject()) ThrowUsage(env, "startSupervisor", "expects one options object");
  Napi::Object o = info[0].As<Napi::Object>();
  Napi::Value fd = o.Get("listenerFd");
  Napi::Value cb = o.Get("onEvent");
  if (!fd.IsNumber()) ThrowUsage(env, "startSupervisor", "`listenerFd` must be a number");
  if (!cb.IsFunction()) ThrowUsage(env, "startSupervisor", "`onEvent` must be a function");
  policy_.first_exec_pid = o.Get("firstExecPid").ToNumber().Int32Value();
  policy_.net_deny = o.Get("netDeny").ToBoolean().Value();
  policy_.fake_dns = o.Get("fakeDns").ToBoolean().Value();
  policy_.unix_deny = o.Get("unixDeny").ToBoolean().Value();
  policy_.write_check = o.Get("writeCheck").ToBoolean().Value();
  policy_.exec_mode = o.Get("execMode").ToNumber().Int32Value();
  policy_.write_allowed = StringArray(env, o, "writeAllowed");
  policy_.unix_allowed = StringArray(env, o, "unixAllowed");
  Napi::Value allow = o.Get("netAllow");
  if (allow.IsArray()) {
    Napi::Array a = allow.As<Napi::Array>();
    for (uint32_t i = 0; i < a.Length(); i++) {
      Napi::Object e = a.Get(i).As<Napi::Object>();
      NetAllow na;
      na.family = e.Get("family").ToNumber().Int32Value() == 6 ? AF_INET6 : AF_INET;
      na.port = e.Get("port").ToNumber().Int32Value();
      Napi::Value addr = e.Get("address");
      if (addr.IsBuffer()) {
        auto b = addr.As<Napi::Buffer<uint8_t>>();
        na.addr.assign(b.Data(), b.Data() + b.Length());
      }
      policy_.allow.push_back(na);
    }
  }
  Napi::Value denied = o.Get("alwaysDenied");
  if (denied.IsArray()) {
    Napi::Array a = denied.As<Napi::Array>();
    for (uint32_t i = 0; i < a.Length(); i++) policy_.always_denied.insert(a.Get(i).ToNumber().Int32Value());
  }
  Napi::Value cond = o.Get("conditionallyDenied");
  if (cond.IsArray()) {
    Napi::Array a = cond.As<Napi::Array>();
    for (uint32_t i = 0; i < a.Length(); i++) {
      Napi::Object e = a.Get(i).As<Napi::Object>();
      auto &slot = policy_.cond_denied[e.Get("nr").ToNumber().Int32Value()];
      slot.first = e.Get("index").ToNumber().Int32Value();
      Napi::Array vals = e.Get("values").As<Napi::Array>();
      for (uint32_t j = 0; j < vals.Length(); j++) slot.second.insert(vals.Get(j).ToNumber().Uint32Value());
    }
  }
  policy_.default_errno = o.Get("defaultErrno").ToNumber().Int32Value();
  Napi::Value rules = o.Get("profileRules");
  if (rules.IsArray()) {
    Napi::Array a = rules.As<Napi::Array>();
    for (uint32_t i = 0; i < a.Length(); i++) {
      Napi::Object e = a.Get(i).As<Napi::Object>();
      ProfileRule r;
      std::string act = e.Get("action").ToString().Utf8Value();
      r.action = act == "allow" ? 0 : act == "errno" ? 1 : 2;
      r.err = e.Get("errno").ToNumber().Int32Value();
      Napi::Array conds = e.Get("conds").As<Napi::Array>();
      for (uint32_t j = 0; j < conds.Length(); j++) {
        Napi::Object c = conds.Get(j).As<Napi::Object>();
        Cond cd;
        cd.index = c.Get("index").ToNumber().Int32Value();
        std::string op = c.Get("op").ToString().Utf8Value();
        cd.op = op == "ne" ? 1 : op == "lt" ? 2 : op == "le" ? 3 : op == "eq" ? 4 : op == "ge" ? 5 : op == "gt" ? 6 : 7;
        bool lossless;
        cd.a = c.Get("a").IsBigInt() ? c.Get("a").As<Napi::BigInt>().Uint64Value(&lossless) : static_cast<uint64_t>(c.Get("a").ToNumber().Int64Value());
        cd.b = c.Get("b").IsBigInt() ? c.Get("b").As<Napi::BigInt>().Uint64Value(&lossless) : static_cast<uint64_t>(c.Get("b").ToNumber().Int64Value());
        r.conds.push_back(cd);
      }
      policy_.profile_rules[e.Get("nr").ToNumber().Int32Value()].push_back(r);
    }
  }
  Napi::Value persona = o.Get("personalityAllowed");
  if (persona.IsArray()) {
    Napi::Array a = persona.As<Napi::Array>();
    for (uint32_t i = 0; i < a.Length(); i++) policy_.personality_allowed.insert(a.Get(i).ToNumber().Uint32Value());
  }
  Napi::Value sinks = o.Get("sinkholeFds");
  if (sinks.IsArray()) {
    Napi::Array a = sinks.As<Napi::Array>();
    for (uint32_t i = 0; i < a.Length() && i < kSinksMax; i++) {
      int sfd = a.Get(i).ToNumber().Int32Value();
      Fd dup(fcntl(sfd, F_DUPFD_CLOEXEC, 3));
      if (!dup.ok()) ThrowSystem(env, "fcntl(F_DUPFD_CLOEXEC)", errno, "DNS sink fd " + std::to_string(sfd));
      int domain = 0, type = 0;
      socklen_t dl = sizeof domain, tl = sizeof type;
      if (getsockopt(dup.get(), SOL_SOCKET, SO_DOMAIN, &domain, &dl) != 0 || getsockopt(dup.get(), SOL_SOCKET, SO_TYPE, &type, &tl) != 0) continue;
      if (type == SOCK_STREAM) {
        tcp_sink_families_.insert(domain);
        tcp_sinks_.push_back(std::move(dup));
      } else {
        sink_families_.insert(domain);
        sinkholes_.push_back(std::move(dup));
      }
    }
  }
  int lfd = fd.As<Napi::Number>().Int32Value();
  listener_.reset(fcntl(lfd, F_DUPFD_CLOEXEC, 3));
  if (!listener_.ok()) ThrowSystem(env, "fcntl(F_DUPFD_CLOEXEC)", errno, "listener fd " + std::to_string(lfd));
  wake_.reset(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!wake_.ok()) ThrowSystem(env, "eventfd", errno);

  tsfn_ = Napi::ThreadSafeFunction::New(env, cb.As<Napi::Function>(), "modelguard-supervisor", 0, 1,
                                        [this](Napi::Env) {
                                          finalized_ = true;
                                          Join();
                                        });
  thread_ = std::thread([this] { Loop(); });
}

Supervisor::~Supervisor() {
  if (wake_.ok()) {
    uint64_t one = 1;
    (void)!write(wake_.get(), &one, sizeof one);
  }
  Join();
}

void Supervisor::Join() {
  if (thread_.joinable() && thread_.get_id() != std::this_thread::get_id()) thread_.join();
}

Napi::Value Supervisor::Ref(const Napi::CallbackInfo &info) {
  if (!finalized_) tsfn_.Ref(info.Env());
  return info.Env().Undefined();
}

Napi::Value Supervisor::Unref(const Napi::CallbackInfo &info) {
  if (!finalized_) tsfn_.Unref(info.Env());
  return info.Env().Undefined();
}

Napi::Value Supervisor::Stop(const Napi::CallbackInfo &info) {
  uint64_t one = 1;
  if (wake_.ok()) (void)!write(wake_.get(), &one, sizeof one);
  return info.Env().Undefined();
}

static Napi::Value ToJs(Napi::Env env, const Event &ev) {
  Napi::Object o = Napi::Object::New(env);
  if (ev.end) {
    o.Set("type", "end");
    if (!ev.end_error.empty()) o.Set("error", ev.end_error);
    return o;
  }
  o.Set("type", "syscall");
  o.Set("time", Napi::Number::New(env, ev.time));
  o.Set("pid", Napi::Number::New(env, ev.pid));
  o.Set("nr", Napi::Number::New(env, ev.nr));
  o.Set("action", ev.denied ? "denied" : "allowed");
  if (ev.simulated) o.Set("simulated", Napi::Boolean::New(env, true));
  if (ev.by_profile) o.Set("byProfile", Napi::Boolean::New(env, true));
  if (ev.always) o.Set("alwaysDenied", Napi::Boolean::New(env, true));
  if (ev.err) o.Set("errno", Napi::Number::New(env, ev.err));
  Napi::Array args = Napi::Array::New(env, 6);
  for (uint32_t i = 0; i < 6; i++) args.Set(i, Napi::BigInt::New(env, ev.args[i]));
  o.Set("args", args);
  if (ev.fd >= 0) o.Set("fd", Napi::Number::New(env, ev.fd));
  if (ev.has_sockaddr) {
    Napi::Object sa = Napi::Object::New(env);
    sa.Set("family", ev.sockaddr.family);
    if (!ev.sockaddr.address.empty()) sa.Set("address", ev.sockaddr.address);
    if (ev.sockaddr.port >= 0) sa.Set("port", Napi::Number::New(env, ev.sockaddr.port));
    o.Set("sockaddr", sa);
  }
  if (!ev.sock_type.empty()) o.Set("sockType", ev.sock_type);
  if (ev.payload_len > 0 || !ev.payload.empty()) {
    o.Set("payload", Napi::Buffer<uint8_t>::Copy(env, ev.payload.data(), ev.payload.size()));
    o.Set("payloadLength", static_cast<double>(ev.payload_len));
  }
  if (ev.msg_index >= 0) o.Set("message", Napi::Number::New(env, ev.msg_index));
  if (ev.has_path) o.Set("path", ev.path);
  if (ev.has_other_path) o.Set("otherPath", ev.other_path);
  if (!ev.argv.empty()) {
    Napi::Array a = Napi::Array::New(env, ev.argv.size());
    for (uint32_t i = 0; i < ev.argv.size(); i++) a.Set(i, ev.argv[i]);
    o.Set("argv", a);
  }
  if (ev.has_flags) o.Set("flags", static_cast<double>(ev.flags));
  if (!ev.note.empty()) o.Set("note", ev.note);
  return o;
}

void Supervisor::Emit(std::unique_ptr<Event> ev) {
  Event *raw = ev.release();
  napi_status st = tsfn_.BlockingCall(raw, [](Napi::Env env, Napi::Function fn, Event *e) {
    std::unique_ptr<Event> owned(e);
    if (env == nullptr || fn == nullptr) return;
    try {
      fn.Call({ToJs(env, *owned)});
    } catch (const Napi::Error &) {
      // JavaScript cannot run (environment teardown) or the callback threw: drop the event rather
      // than let the exception reach libuv, which would terminate the process.
    }
  });
  if (st != napi_ok) delete raw;  // napi_closing: the environment is going away
}

void Supervisor::Loop() {
  struct seccomp_notif_sizes sizes = {0, 0, 0};
  std::string end_error;
  if (syscall(__NR_seccomp, SECCOMP_GET_NOTIF_SIZES, 0, &sizes) != 0) {
    end_error = std::string("seccomp(GET_NOTIF_SIZES): ") + strerror(errno);
  } else {
    size_t req_size = std::max<size_t>(sizes.seccomp_notif, sizeof(struct seccomp_notif));
    std::vector<uint64_t> req_buf((req_size + 7) / 8);
    for (;;) {
      // listener, wake, then the UDP sinks, the TCP sinks and the TCP connections being read.
      std::vector<struct pollfd> fds = {{listener_.get(), POLLIN, 0}, {wake_.get(), POLLIN, 0}};
      for (auto &f : sinkholes_) fds.push_back({f.get(), POLLIN, 0});
      for (auto &f : tcp_sinks_) fds.push_back({f.get(), POLLIN, 0});
      for (auto &q : tcp_queries_) fds.push_back({q.fd.get(), POLLIN, 0});
      int r = poll(fds.data(), fds.size(), -1);
      if (r < 0) {
        if (errno == EINTR) continue;
        end_error = std::string("poll: ") + strerror(errno);
        break;
      }
      if (fds[1].revents) break;
      size_t k = 2;
      for (size_t i = 0; i < sinkholes_.size(); i++, k++)
        if (fds[k].revents & POLLIN) DrainSinkhole(sinkholes_[i].get());
      for (size_t i = 0; i < tcp_sinks_.size(); i++, k++)
        if (fds[k].revents & POLLIN) AcceptTcpSink(tcp_sinks_[i].get());
      // Connections accepted just now are polled next round; read the ones polled this round.
      size_t polled = fds.size() - k;
      std::vector<bool> keep(tcp_queries_.size(), true);
      for (size_t i = 0; i < polled && i < tcp_queries_.size(); i++)
        if (fds[k + i].revents) keep[i] = ReadTcpQuery(i);
      for (size_t i = tcp_queries_.size(); i-- > 0;)
        if (!keep[i]) tcp_queries_.erase(tcp_queries_.begin() + static_cast<long>(i));
      if (fds[0].revents & POLLIN) {
        memset(req_buf.data(), 0, req_buf.size() * 8);
        if (ioctl(listener_.get(), SECCOMP_IOCTL_NOTIF_RECV, req_buf.data()) != 0) {
          if (errno == EINTR || errno == ENOENT) continue;
          end_error = std::string("ioctl(SECCOMP_IOCTL_NOTIF_RECV): ") + strerror(errno);
          break;
        }
        Handle(req_buf.data());
        continue;
      }
      if (fds[0].revents & (POLLHUP | POLLERR | POLLNVAL)) break;  // no task uses the filter any more
    }
  }
  // Queries sent just before the last task exited are still queued.
  for (auto &s : sinkholes_) DrainSinkhole(s.get());
  for (size_t i = 0; i < tcp_queries_.size(); i++) ReadTcpQuery(i);
  sinkholes_.clear();
  tcp_sinks_.clear();
  tcp_queries_.clear();
  auto end = std::make_unique<Event>();
  end->end = true;
  end->end_error = end_error;
  Emit(std::move(end));
  listener_.reset();
  tsfn_.Release();
}

// Length of the question section at `q` (one name, uncompressed as queries are, plus type and
// class), or 0 when it does not fit in `n` bytes.
static size_t QuestionLength(const uint8_t *q, size_t n) {
  size_t i = 0;
  while (i < n && q[i] != 0) {
    if (q[i] & 0xc0) return 0;
    i += 1 + q[i];
  }
  return i < n && i + 5 <= n ? i + 5 : 0;
}

// The answer to a query (`n` >= 12 bytes): its header with QR set and RCODE 5 (REFUSED), and its
// question, so that resolvers which match the question accept it. Returns its length.
static size_t RefusedAnswer(const uint8_t *q, size_t n, uint8_t *out) {
  size_t qlen = QuestionLength(q + 12, n - 12);
  memcpy(out, q, 12);
  out[2] = static_cast<uint8_t>(0x80 | (q[2] & 0x79));  // QR, opcode and RD kept, AA/TC cleared
  out[3] = 5;                                           // RA 0, RCODE REFUSED
  out[4] = 0;
  out[5] = qlen ? 1 : 0;
  memset(out + 6, 0, 6);
  memcpy(out + 12, q + 12, qlen);
  return 12 + qlen;
}

// A query the DNS sink received, as a report event: the syscall is unknown (the sink sees the
// datagram, not the call), so it is reported as `write`, the one the filter cannot tell apart.
static std::unique_ptr<Event> SinkEvent(const char *type, const uint8_t *data, size_t got, size_t len,
                                        const struct sockaddr_storage &to, socklen_t to_len, const char *note) {
  auto ev = std::make_unique<Event>();
  ev->time = NowMs();
  ev->nr = __NR_write;
  ev->denied = true;
  ev->simulated = true;
  ev->sock_type = type;
  ev->payload.assign(data, data + got);
  ev->payload_len = len;
  if (to_len) {
    ev->has_sockaddr = true;
    ev->sockaddr = DecodeSockaddr(reinterpret_cast<const uint8_t *>(&to), to_len);
  }
  ev->note = note;
  return ev;
}

// A connection to a TCP sink: read in turn with the others (never blocking the supervisor).
void Supervisor::AcceptTcpSink(int fd) {
  for (;;) {
    Fd c(accept4(fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
    if (!c.ok()) return;
    if (tcp_queries_.size() >= kTcpQueriesMax) continue;  // closes it: the resolver sees a reset
    tcp_queries_.push_back({std::move(c), {}});
  }
}

// Reads what the connection has; once a whole query (2-byte length, then the message) or as much
// as fits is there, reports it, answers REFUSED and closes.
bool Supervisor::ReadTcpQuery(size_t i) {
  TcpQuery &q = tcp_queries_[i];
  uint8_t chunk[kPayloadMax + 2];
  for (;;) {
    ssize_t n = recv(q.fd.get(), chunk, sizeof chunk - q.buf.size(), MSG_DONTWAIT);
    if (n > 0) q.buf.insert(q.buf.end(), chunk, chunk + n);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) break;  // closed or failed
    size_t want = q.buf.size() >= 2 ? 2 + ((static_cast<size_t>(q.buf[0]) << 8) | q.buf[1]) : 0;
    bool whole = want && q.buf.size() >= want;
    if (!whole && q.buf.size() < sizeof chunk && n < 0) return true;  // wait for more
    if (!whole && q.buf.size() < sizeof chunk) continue;
    break;
  }
  if (q.buf.size() < 2) return false;
  struct sockaddr_storage to;
  socklen_t to_len = sizeof to;
  if (getsockname(q.fd.get(), reinterpret_cast<struct sockaddr *>(&to), &to_len) != 0) to_len = 0;
  Emit(SinkEvent("tcp", q.buf.data(), q.buf.size(), q.buf.size(), to, to_len,
                 "received by the DNS sink over TCP, answered REFUSED; nothing left the sandbox"));
  if (q.buf.size() >= 14) {
    uint8_t reply[kPayloadMax + 2];
    size_t len = RefusedAnswer(q.buf.data() + 2, q.buf.size() - 2, reply + 2);
    reply[0] = static_cast<uint8_t>(len >> 8);
    reply[1] = static_cast<uint8_t>(len & 0xff);
    send(q.fd.get(), reply, len + 2, MSG_DONTWAIT | MSG_NOSIGNAL);
  }
  return false;
}

// Reads every datagram queued on a DNS sink: each becomes a report event (the query's name is
// decoded in TypeScript, like a send's), and each gets a REFUSED answer from the address it was
// sent to, so the resolver fails at once instead of waiting for its timeout.
void Supervisor::DrainSinkhole(int fd) {
  for (int budget = 0; budget < 256; budget++) {
    uint8_t buf[kPayloadMax];
    struct sockaddr_storage from;
    union {
      char buf[256];
      struct cmsghdr align;
    } ctl;
    struct iovec iov = {buf, sizeof buf};
    struct msghdr mh;
    memset(&mh, 0, sizeof mh);
    mh.msg_name = &from;
    mh.msg_namelen = sizeof from;
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    mh.msg_control = ctl.buf;
    mh.msg_controllen = sizeof ctl.buf;
    ssize_t n = recvmsg(fd, &mh, MSG_DONTWAIT | MSG_TRUNC);
    if (n < 0) return;  // EAGAIN: drained
    size_t got = std::min<size_t>(static_cast<size_t>(n), sizeof buf);
    // The address the program sent to: the resolver it meant.
    struct sockaddr_storage to;
    memset(&to, 0, sizeof to);
    socklen_t to_len = 0;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c != nullptr; c = CMSG_NXTHDR(&mh, c)) {
      if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO) {
        struct in_pktinfo pi;
        memcpy(&pi, CMSG_DATA(c), sizeof pi);
        struct sockaddr_in sin = {};
        sin.sin_family = AF_INET;
        sin.sin_addr = pi.ipi_addr;
        memcpy(&to, &sin, to_len = sizeof sin);
      } else if (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_PKTINFO) {
        struct in6_pktinfo pi;
        memcpy(&pi, CMSG_DATA(c), sizeof pi);
        struct sockaddr_in6 sin6 = {};
        sin6.sin6_family = AF_INET6;
        sin6.sin6_addr = pi.ipi6_addr;
        memcpy(&to, &sin6, to_len = sizeof sin6);
      }
      // Both layouts keep the port at the same offset, right after the family.
      if (to_len) reinterpret_cast<struct sockaddr_in *>(&to)->sin_port = htons(53);
    }
    Emit(SinkEvent("udp", buf, got, static_cast<size_t>(n), to, to_len,
                   "received by the DNS sink: sent with a call the supervisor does not intercept (write, writev), "
                   "answered REFUSED; nothing left the sandbox"));
    if (got < 12 || mh.msg_namelen == 0) continue;
    uint8_t reply[kPayloadMax];
    size_t reply_len = RefusedAnswer(buf, got, reply);
    struct iovec riov = {reply, reply_len};
    struct msghdr rh;
    memset(&rh, 0, sizeof rh);
    rh.msg_name = &from;
    rh.msg_namelen = mh.msg_namelen;
    rh.msg_iov = &riov;
    rh.msg_iovlen = 1;
    union {
      char buf[CMSG_SPACE(sizeof(struct in6_pktinfo))];
      struct cmsghdr align;
    } rctl;
    memset(&rctl, 0, sizeof rctl);
    if (to_len) {
      // From the address the query went to: a connected resolver socket takes nothing else.
      rh.msg_control = rctl.buf;
      struct cmsghdr *c = reinterpret_cast<struct cmsghdr *>(rctl.buf);
      auto put = [&](int level, int type, const void *data, size_t len) {
        c->cmsg_level = level;
        c->cmsg_type = type;
        c->cmsg_len = CMSG_LEN(len);
        memcpy(CMSG_DATA(c), data, len);
        rh.msg_controllen = CMSG_SPACE(len);
      };
      if (to.ss_family == AF_INET) {
        struct in_pktinfo pi;
        memset(&pi, 0, sizeof pi);
        pi.ipi_spec_dst = reinterpret_cast<struct sockaddr_in *>(&to)->sin_addr;
        put(IPPROTO_IP, IP_PKTINFO, &pi, sizeof pi);
      } else {
        struct in6_pktinfo pi;
        memset(&pi, 0, sizeof pi);
        pi.ipi6_addr = reinterpret_cast<struct sockaddr_in6 *>(&to)->sin6_addr;
        put(IPPROTO_IPV6, IPV6_PKTINFO, &pi, sizeof pi);
      }
    }
    sendmsg(fd, &rh, MSG_DONTWAIT | MSG_NOSIGNAL);
  }
}

// What the profile says about this call: 0 allow, else the errno to answer (kill rules: EPERM).
static int ProfileVerdict(const Policy &p, int nr, const uint64_t *args) {
  auto it = p.profile_rules.find(nr);
  if (it == p.profile_rules.end()) return p.default_errno;
  int err = -1;
  for (const auto &r : it->second) {
    bool match = true;
    for (const auto &c : r.conds) {
      uint64_t v = c.index >= 0 && c.index < 6 ? args[c.index] : 0;
      switch (c.op) {
        case 1: match = v != c.a; break;
        case 2: match = v < c.a; break;
        case 3: match = v <= c.a; break;
        case 4: match = v == c.a; break;
        case 5: match = v >= c.a; break;
        case 6: match = v > c.a; break;
        default: match = (v & c.a) == c.b; break;
      }
      if (!match) break;
    }
    if (!match) continue;
    if (r.action == 0) return 0;
    if (err < 0) err = r.action == 1 ? r.err : EPERM;
  }
  return err >= 0 ? err : p.default_errno;
}

void Supervisor::Handle(const void *raw) {
  const auto *req = static_cast<const struct seccomp_notif *>(raw);
  struct seccomp_notif_resp resp;
  memset(&resp, 0, sizeof resp);
  resp.id = req->id;
  const int nr = req->data.nr;
  const int pid = static_cast<int>(req->pid);
  const uint64_t *a = reinterpret_cast<const uint64_t *>(req->data.args);
  Mem mem(listener_.get(), req->id, pid);

  auto base = [&]() {
    auto ev = std::make_unique<Event>();
    ev->time = NowMs();
    ev->pid = pid;
    ev->nr = nr;
    for (int i = 0; i < 6; i++) ev->args[i] = a[i];
    return ev;
  };
  std::vector<std::unique_ptr<Event>> events;
  bool deny = false;
  int err = EPERM;
  bool simulate = false;
  bool redirected = false;  // allowed to run, but only ever reaches the DNS sink

  auto net_allowed = [&](const SockAddr &sa) {
    for (const auto &na : policy_.allow) {
      int fam = sa.family == "inet" ? AF_INET : sa.family == "inet6" ? AF_INET6 : -1;
      if (fam != na.family) continue;
      if (na.port != 0 && na.port != sa.port) continue;
      if (!na.addr.empty() && na.addr != sa.raw_addr) continue;
      return true;
    }
    return false;
  };
  auto is_inet = [](const SockAddr &sa) { return sa.family == "inet" || sa.family == "inet6"; };
  int tgid = 0;
  auto get_tgid = [&]() {
    if (tgid == 0) tgid = TgidOf(pid);
    return tgid;
  };
  // Decides a send-like call with an optional explicit destination.
  auto decide_send = [&](Event &ev, bool has_dest) {
    if (!has_dest) {
      auto it = fake_peers_.find({get_tgid(), ev.fd});
      if (it != fake_peers_.end()) {
        ev.has_sockaddr = true;
        ev.sockaddr = it->second;
        ev.note = "sent to a simulated connection";
        return true;  // never really connected: fail it so the resolver gives up fast
      }
      return false;
    }
    if (ev.sockaddr.family == "netlink") return false;
    if (ev.sockaddr.family == "unix") return policy_.unix_deny;
    if (!is_inet(ev.sockaddr)) return policy_.net_deny;  // packet, vsock…: denied with the network
    if (net_allowed(ev.sockaddr)) return false;
    return policy_.net_deny;
  };

  const int pv = ProfileVerdict(policy_, nr, a);
  bool by_profile = false;
  bool always = false;
  auto cd = policy_.cond_denied.find(nr);
  if (policy_.always_denied.count(nr) ||
      (cd != policy_.cond_denied.end() && cd->second.second.count(static_cast<uint32_t>(a[cd->second.first])))) {
    deny = true;
    always = true;
    events.push_back(base());
  } else if (nr == __NR_personality) {
    if (policy_.personality_allowed.count(static_cast<uint32_t>(a[0])) == 0) {
      deny = true;
      always = true;
    } else if (pv != 0) {
      deny = true;
      by_profile = true;
      err = pv;
    }
    events.push_back(base());
  } else if (pv != 0) {
    // The profile denies it: decode it anyway, for the report, and answer with its errno.
    deny = true;
    by_profile = true;
    err = pv;
    auto ev = base();
    if (nr == __NR_connect || nr == __NR_bind) {
      ev->fd = static_cast<int>(a[0]);
      ev->has_sockaddr = ReadSockaddr(mem, a[1], a[2], &ev->sockaddr);
    } else if (nr == __NR_sendto && a[4] != 0) {
      ev->fd = static_cast<int>(a[0]);
      ev->has_sockaddr = ReadSockaddr(mem, a[4], a[5], &ev->sockaddr);
    } else if (nr == __NR_execve || nr == __NR_execveat || nr == __NR_open || nr == __NR_creat || nr == __NR_openat ||
               nr == __NR_openat2) {
      uint64_t p = nr == __NR_execve || nr == __NR_open || nr == __NR_creat ? a[0] : a[1];
      ev->has_path = mem.String(p, &ev->path);
    } else if (PathCalls().count(nr)) {
      ev->has_path = mem.String(a[PathCalls().at(nr).path_arg], &ev->path);
    }
    events.push_back(std::move(ev));
  } else if (nr == __NR_connect) {
    auto ev = base();
    ev->fd = static_cast<int>(a[0]);
    ev->has_sockaddr = ReadSockaddr(mem, a[1], a[2], &ev->sockaddr);
    Fd sock = RemoteFd(get_tgid(), ev->fd);
    ev->sock_type = SockType(sock);
    const SockAddr &sa = ev->sockaddr;
    if (!ev->has_sockaddr) {
      deny = policy_.net_deny;
      err = ECONNREFUSED;
    } else if (sa.family == "unix") {
      bool listed = false;
      for (const auto &u : policy_.unix_allowed)
        if (u == sa.address) listed = true;
      deny = policy_.unix_deny && !listed;
      err = ECONNREFUSED;
    } else if (is_inet(sa)) {
      if (net_allowed(sa)) {
        deny = false;
      } else if (policy_.net_deny) {
        if (policy_.fake_dns && sa.port == 53 && ev->sock_type == "tcp" &&
            tcp_sink_families_.count(sa.family == "inet" ? AF_INET : AF_INET6)) {
          // Every address is local in the sandbox's namespace: this connects to the TCP DNS sink.
          redirected = true;
          ev->note = "connected to the DNS sink so the resolver reveals its query";
        } else if (policy_.fake_dns && sa.port == 53 && ev->sock_type != "tcp") {
          fake_peers_[{get_tgid(), ev->fd}] = sa;
          if (sink_families_.count(sa.family == "inet" ? AF_INET : AF_INET6)) {
            // Every address is local in the sandbox's namespace: this connects to the DNS sink.
            redirected = true;
            ev->note = "connected to the DNS sink so the resolver reveals its query";
          } else {
            simulate = true;
            ev->note = "connect simulated so the resolver reveals its query";
          }
        } else {
          deny = true;
          err = ECONNREFUSED;
        }
      }
    } else if (sa.family == "unspec") {
      fake_peers_.erase({get_tgid(), ev->fd});
    }
    events.push_back(std::move(ev));
  } else if (nr == __NR_sendto) {
    auto ev = base();
    ev->fd = static_cast<int>(a[0]);
    ev->payload_len = a[2];
    ev->payload.resize(std::min<uint64_t>(a[2], kPayloadMax));
    ev->payload.resize(mem.ReadSome(a[1], ev->payload.data(), ev->payload.size()));
    bool has_dest = a[4] != 0 && ReadSockaddr(mem, a[4], a[5], &ev->sockaddr);
    ev->has_sockaddr = has_dest;
    deny = decide_send(*ev, has_dest);
    if (deny || ev->has_sockaddr) ev->sock_type = SockType(RemoteFd(get_tgid(), ev->fd));
    events.push_back(std::move(ev));
  } else if (nr == __NR_sendmsg || nr == __NR_sendmmsg) {
    size_t count = nr == __NR_sendmsg ? 1 : std::min<uint64_t>(a[2], kMmsgMax);
    size_t stride = nr == __NR_sendmsg ? sizeof(struct msghdr) : sizeof(struct mmsghdr);
    std::string type = SockType(RemoteFd(get_tgid(), static_cast<int>(a[0])));
    for (size_t i = 0; i < count; i++) {
      auto ev = base();
      ev->fd = static_cast<int>(a[0]);
      ev->sock_type = type;
      if (nr == __NR_sendmmsg) ev->msg_index = static_cast<int>(i);
      struct msghdr mh;
      memset(&mh, 0, sizeof mh);
      bool have = mem.Read(a[1] + i * stride, &mh, sizeof mh);
      bool has_dest = have && mh.msg_name != nullptr &&
                      ReadSockaddr(mem, reinterpret_cast<uint64_t>(mh.msg_name), mh.msg_namelen, &ev->sockaddr);
      ev->has_sockaddr = has_dest;
      if (have && mh.msg_iov != nullptr && mh.msg_iovlen > 0) {
        struct iovec iov;
        if (mem.Read(reinterpret_cast<uint64_t>(mh.msg_iov), &iov, sizeof iov)) {
          ev->payload_len = iov.iov_len;
          ev->payload.resize(std::min<size_t>(iov.iov_len, kPayloadMax));
          ev->payload.resize(mem.ReadSome(reinterpret_cast<uint64_t>(iov.iov_base), ev->payload.data(), ev->payload.size()));
        }
      }
      if (decide_send(*ev, has_dest)) deny = true;
      events.push_back(std::move(ev));
    }
    if (deny)
      for (auto &e : events) e->denied = true;
  } else if (nr == __NR_bind) {
    auto ev = base();
    ev->fd = static_cast<int>(a[0]);
    ev->has_sockaddr = ReadSockaddr(mem, a[1], a[2], &ev->sockaddr);
    ev->sock_type = SockType(RemoteFd(get_tgid(), ev->fd));
    if (ev->has_sockaddr && is_inet(ev->sockaddr)) {
      deny = policy_.net_deny && !net_allowed(ev->sockaddr);
      binds_[{get_tgid(), ev->fd}] = {ev->sockaddr, deny};
    }
    events.push_back(std::move(ev));
  } else if (nr == __NR_listen) {
    auto ev = base();
    ev->fd = static_cast<int>(a[0]);
    auto it = binds_.find({get_tgid(), ev->fd});
    Fd sock = RemoteFd(get_tgid(), ev->fd);
    ev->sock_type = SockType(sock);
    if (it != binds_.end()) {
      ev->has_sockaddr = true;
      ev->sockaddr = it->second.first;
      if (it->second.second) ev->note = "its bind was denied";
    } else if (sock.ok()) {
      struct sockaddr_storage ss;
      socklen_t len = sizeof ss;
      if (getsockname(sock.get(), reinterpret_cast<sockaddr *>(&ss), &len) == 0) {
        ev->has_sockaddr = true;
        ev->sockaddr = DecodeSockaddr(reinterpret_cast<uint8_t *>(&ss), len);
      }
    }
    bool inet = ev->sock_type == "tcp" || ev->sock_type == "udp" || (ev->has_sockaddr && is_inet(ev->sockaddr));
    deny = inet && policy_.net_deny && !(ev->has_sockaddr && net_allowed(ev->sockaddr));
    events.push_back(std::move(ev));
  } else if (nr == __NR_socket) {
    events.push_back(base());
  } else if (nr == __NR_execve || nr == __NR_execveat) {
    auto ev = base();
    uint64_t path_ptr = nr == __NR_execve ? a[0] : a[1];
    uint64_t argv_ptr = nr == __NR_execve ? a[1] : a[2];
    ev->has_path = mem.String(path_ptr, &ev->path);
    for (size_t i = 0; i < kArgvMax && argv_ptr != 0; i++) {
      uint64_t p = 0;
      if (!mem.Read(argv_ptr + i * 8, &p, 8) || p == 0) break;
      std::string s;
      if (!mem.String(p, &s)) break;
      ev->argv.push_back(s);
    }
    if (!first_exec_done_ && pid == policy_.first_exec_pid) {
      first_exec_done_ = true;
      ev->note = "the sandboxed command itself";
    } else {
      deny = policy_.exec_mode != 1;
    }
    events.push_back(std::move(ev));
  } else if (PathCalls().count(nr)) {
    const PathCall &pc = PathCalls().at(nr);
    auto ev = base();
    uint64_t path_ptr = a[pc.path_arg];
    // utimensat(fd, NULL, …) and the like act on an fd opened earlier: that open was checked.
    if (path_ptr != 0) {
      auto resolve = [&](int dirfd_arg, int path_arg, std::string *out) {
        std::string p;
        if (!mem.String(a[path_arg], &p)) return false;
        int dirfd = dirfd_arg >= 0 ? static_cast<int>(a[dirfd_arg]) : AT_FDCWD;
        if (p.empty() || p[0] != '/') {
          std::string dir = dirfd == AT_FDCWD ? ReadLink("/proc/" + std::to_string(pid) + "/cwd")
                                               : ReadLink("/proc/" + std::to_string(pid) + "/fd/" + std::to_string(dirfd));
          p = dir + "/" + p;
        }
        *out = Normalize(p);
        return true;
      };
      auto allowed = [&](const std::string &p) {
        for (const auto &w : policy_.write_allowed)
          if (Under(p, w)) return true;
        return false;
      };
      ev->has_path = resolve(pc.dirfd_arg, pc.path_arg, &ev->path);
      if (pc.other_dirfd_arg != -2) {
        if (pc.other_is_text) {
          ev->has_other_path = mem.String(a[pc.other_path_arg], &ev->other_path);
        } else {
          ev->has_other_path = resolve(pc.other_dirfd_arg, pc.other_path_arg, &ev->other_path);
        }
      }
      if (!mem.Valid()) return;
      if (policy_.write_check) {
        deny = !ev->has_path || !allowed(ev->path);
        if (pc.other_written && (!ev->has_other_path || !allowed(ev->other_path))) deny = true;
      }
      events.push_back(std::move(ev));
    }
  } else if (nr == __NR_open || nr == __NR_openat || nr == __NR_creat || nr == __NR_openat2) {
    int dirfd = AT_FDCWD;
    uint64_t path_ptr = 0, flags = 0;
    if (nr == __NR_open) {
      path_ptr = a[0];
      flags = a[1];
    } else if (nr == __NR_creat) {
      path_ptr = a[0];
      flags = O_CREAT | O_WRONLY | O_TRUNC;
    } else {
      dirfd = static_cast<int>(a[0]);
      path_ptr = a[1];
      if (nr == __NR_openat) flags = a[2];
      else if (!mem.Read(a[2], &flags, sizeof flags)) flags = O_RDWR;
    }
    if (WriteFlags(flags)) {
      auto ev = base();
      ev->has_flags = true;
      ev->flags = flags;
      std::string p;
      if (mem.String(path_ptr, &p)) {
        if (p.empty() || p[0] != '/') {
          std::string dir = dirfd == AT_FDCWD ? ReadLink("/proc/" + std::to_string(pid) + "/cwd")
                                               : ReadLink("/proc/" + std::to_string(pid) + "/fd/" + std::to_string(dirfd));
          p = dir + "/" + p;
        }
        ev->path = Normalize(p);
        ev->has_path = true;
        if (!mem.Valid()) return;
      }
      if (policy_.write_check) {
        bool ok = false;
        if (ev->has_path)
          for (const auto &w : policy_.write_allowed)
            if (Under(ev->path, w)) ok = true;
        deny = !ok;
      }
      events.push_back(std::move(ev));
    }
  } else {
    events.push_back(base());  // allowed by the profile, reported (the report list)
  }

  if (simulate) {
    resp.val = 0;
    resp.error = 0;
    resp.flags = 0;
  } else if (deny) {
    resp.error = -err;
  } else {
    resp.flags = SECCOMP_USER_NOTIF_FLAG_CONTINUE;
  }
  for (auto &e : events) {
    if (deny) {
      e->denied = true;
      e->err = err;
      e->by_profile = by_profile;
      e->always = always;
    }
    if (simulate || redirected) {
      e->denied = true;
      e->simulated = true;
    }
  }
  // Queue the events, then answer. Queuing never waits for JavaScript (the queue is unbounded), and
  // it orders every event before anything the target does next: the unpickler pool relies on a
  // denied call's event reaching JavaScript no later than the worker's reply to that call.
  for (auto &e : events) Emit(std::move(e));
  if (ioctl(listener_.get(), SECCOMP_IOCTL_NOTIF_SEND, &resp) != 0 && errno != ENOENT) {
    // ENOENT: the target died or was interrupted meanwhile; nothing to answer.
  }
}

}  // namespace mg
