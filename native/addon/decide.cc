// Decisions: how each notified call is answered. The table and the rule they follow are at the top
// of supervisor.cc; in short, nothing here continues a call on the strength of memory it read.
#include <errno.h>
#include <fcntl.h>
#include <linux/audit.h>
#include <linux/seccomp.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstring>

#include "supervisor.h"

#ifndef __NR_openat2
#define __NR_openat2 437
#endif
#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_pidfd_send_signal
#define SYS_pidfd_send_signal 424
#endif

namespace mg {

namespace {

constexpr size_t kPayloadMax = 512;    // payload bytes kept in a report event
constexpr size_t kArgvMax = 128;       // exec arguments reported
constexpr size_t kMsgsReported = 16;   // sendmmsg messages reported one by one; the rest are counted
constexpr size_t kMmsgMax = 1024;      // UIO_MAXIOV: the kernel's own cap on sendmmsg's vlen
constexpr size_t kIovMax = 1024;       // UIO_MAXIOV: the kernel's cap on msg_iovlen
constexpr size_t kCopyMax = 1 << 20;   // payload bytes copied to send on the target's behalf, per call
constexpr size_t kControlMax = 4096;   // control-message bytes copied
constexpr int kDeferPollMs = 100;      // a deferred send re-checks that its caller still waits this often
constexpr int kDeferredMax = 64;       // calls performed on helper threads at once
constexpr uint32_t kX32Bit = 0x40000000;

#if defined(__x86_64__)
constexpr uint32_t kNativeArch = AUDIT_ARCH_X86_64;
#elif defined(__aarch64__)
constexpr uint32_t kNativeArch = AUDIT_ARCH_AARCH64;
#else
constexpr uint32_t kNativeArch = 0;
#endif

std::string AbiName(uint32_t arch, int nr) {
  if (arch == kNativeArch && (static_cast<uint32_t>(nr) & kX32Bit)) return "x32";
  if (arch == AUDIT_ARCH_I386) return "i386";
  char buf[32];
  snprintf(buf, sizeof buf, "arch 0x%08x", arch);
  return buf;
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

bool IsStream(const Fd &sock) {
  int type = 0;
  socklen_t len = sizeof type;
  return getsockopt(sock.get(), SOL_SOCKET, SO_TYPE, &type, &len) == 0 && type == SOCK_STREAM;
}

bool Blocking(const Fd &f) {
  int fl = fcntl(f.get(), F_GETFL);
  return fl >= 0 && (fl & O_NONBLOCK) == 0;
}

// A sockaddr copied out of the target: the bytes the supervisor will use, never re-read.
struct AddrCopy {
  struct sockaddr_storage ss;
  socklen_t len = 0;
  const struct sockaddr *sa() const { return reinterpret_cast<const struct sockaddr *>(&ss); }
};

// 0, or the errno the kernel would give for an address it cannot take.
int CopyAddr(const Mem &mem, uint64_t ptr, uint64_t len, AddrCopy *out) {
  memset(&out->ss, 0, sizeof out->ss);
  if (len > sizeof out->ss) return EINVAL;
  if (len == 0) return EINVAL;
  if (!mem.Read(ptr, &out->ss, len)) return EFAULT;
  out->len = static_cast<socklen_t>(len);
  return 0;
}

// A relative unix socket path is the caller's: rewritten against its cwd so the supervisor, whose
// cwd differs, reaches the same file. 0 or ENAMETOOLONG.
int AbsoluteUnix(int pid, AddrCopy *a, std::string *shown) {
  auto *un = reinterpret_cast<struct sockaddr_un *>(&a->ss);
  if (a->ss.ss_family != AF_UNIX || a->len <= offsetof(struct sockaddr_un, sun_path) || un->sun_path[0] == 0) return 0;
  size_t n = strnlen(un->sun_path, a->len - offsetof(struct sockaddr_un, sun_path));
  std::string p(un->sun_path, n);
  if (p[0] != '/') p = AbsoluteFor(pid, AT_FDCWD, p);
  if (p.size() >= sizeof un->sun_path) return ENAMETOOLONG;
  memset(un->sun_path, 0, sizeof un->sun_path);
  memcpy(un->sun_path, p.data(), p.size());
  a->len = static_cast<socklen_t>(offsetof(struct sockaddr_un, sun_path) + p.size() + 1);
  *shown = p;
  return 0;
}

// How a path-or-fd call is decided (supervisor.cc's table).
enum class How { kLandlock, kTruncate, kMode, kOwner, kTimes, kXattr };
enum class Times { kNone, kUtimbuf, kTimeval, kTimespec };

struct PathCall {
  How how;
  int dirfd_arg;  // -1: the cwd
  int path_arg;   // -1: an fd form (fd_arg)
  int value_arg = -1;  // mode; uid (gid follows); times pointer
  int other_dirfd_arg = -2;  // -2: no other path
  int other_path_arg = -1;
  bool other_written = false;  // rename: the old name goes away, so it is a write too
  bool other_is_text = false;  // symlink: the target is text
  int fd_arg = -1;
  bool nofollow = false;  // lchown and the like act on a symlink itself
  int flags_arg = -1;     // AT_SYMLINK_NOFOLLOW / AT_EMPTY_PATH live here
  Times times = Times::kNone;
};

PathCall P(How how, int dirfd, int path) { return PathCall{how, dirfd, path}; }
PathCall Other(PathCall p, int odir, int opath, bool written, bool text = false) {
  p.other_dirfd_arg = odir;
  p.other_path_arg = opath;
  p.other_written = written;
  p.other_is_text = text;
  return p;
}
PathCall Val(PathCall p, int v, int flags = -1, Times t = Times::kNone) {
  p.value_arg = v;
  p.flags_arg = flags;
  p.times = t;
  return p;
}
PathCall FdForm(How how, int fd, int v) {
  PathCall p{how, -1, -1};
  p.fd_arg = fd;
  p.value_arg = v;
  return p;
}
PathCall NoFollow(PathCall p) {
  p.nofollow = true;
  return p;
}

const std::map<int, PathCall> &PathCalls() {
  static const std::map<int, PathCall> calls = {
#ifdef __NR_mkdir
      {__NR_mkdir, P(How::kLandlock, -1, 0)},
      {__NR_rmdir, P(How::kLandlock, -1, 0)},
      {__NR_unlink, P(How::kLandlock, -1, 0)},
      {__NR_rename, Other(P(How::kLandlock, -1, 1), -1, 0, true)},
      {__NR_link, Other(P(How::kLandlock, -1, 1), -1, 0, false)},
      {__NR_symlink, Other(P(How::kLandlock, -1, 1), -1, 0, false, true)},
      {__NR_mknod, P(How::kLandlock, -1, 0)},
      {__NR_chmod, Val(P(How::kMode, -1, 0), 1)},
      {__NR_chown, Val(P(How::kOwner, -1, 0), 1)},
      {__NR_lchown, NoFollow(Val(P(How::kOwner, -1, 0), 1))},
      {__NR_utime, Val(P(How::kTimes, -1, 0), 1, -1, Times::kUtimbuf)},
      {__NR_utimes, Val(P(How::kTimes, -1, 0), 1, -1, Times::kTimeval)},
      {__NR_futimesat, Val(P(How::kTimes, 0, 1), 2, -1, Times::kTimeval)},
#endif
      {__NR_mkdirat, P(How::kLandlock, 0, 1)},
      {__NR_unlinkat, P(How::kLandlock, 0, 1)},
      {__NR_renameat, Other(P(How::kLandlock, 2, 3), 0, 1, true)},
      {__NR_renameat2, Other(P(How::kLandlock, 2, 3), 0, 1, true)},
      {__NR_linkat, Other(P(How::kLandlock, 2, 3), 0, 1, false)},
      {__NR_symlinkat, Other(P(How::kLandlock, 1, 2), -1, 0, false, true)},
      {__NR_mknodat, P(How::kLandlock, 0, 1)},
      {__NR_truncate, P(How::kTruncate, -1, 0)},
      {__NR_fchmodat, Val(P(How::kMode, 0, 1), 2)},
#ifdef __NR_fchmodat2
      {__NR_fchmodat2, Val(P(How::kMode, 0, 1), 2, 3)},
#endif
      {__NR_fchownat, Val(P(How::kOwner, 0, 1), 2, 4)},
      {__NR_utimensat, Val(P(How::kTimes, 0, 1), 2, 3, Times::kTimespec)},
      {__NR_fchmod, FdForm(How::kMode, 0, 1)},
      {__NR_fchown, FdForm(How::kOwner, 0, 1)},
      {__NR_setxattr, P(How::kXattr, -1, 0)},
      {__NR_lsetxattr, P(How::kXattr, -1, 0)},
      {__NR_removexattr, P(How::kXattr, -1, 0)},
      {__NR_lremovexattr, P(How::kXattr, -1, 0)},
      {__NR_fsetxattr, FdForm(How::kXattr, 0, -1)},
      {__NR_fremovexattr, FdForm(How::kXattr, 0, -1)},
  };
  return calls;
}

bool WriteFlags(uint64_t flags) { return (flags & O_ACCMODE) != O_RDONLY || (flags & (O_CREAT | O_TRUNC)) != 0; }

// What the profile says about this call.
struct ProfileAnswer {
  int action = 0;  // 0 allow, 1 errno, 2 kill
  int err = 0;
};

ProfileAnswer ProfileVerdict(const Policy &p, int nr, const uint64_t *args) {
  auto it = p.profile_rules.find(nr);
  if (it == p.profile_rules.end()) return {p.default_errno ? 1 : 0, p.default_errno};
  ProfileAnswer out{-1, 0};
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
    if (r.action == 0) return {0, 0};
    // Like the kernel, the most severe matching action wins: kill over errno.
    if (out.action < 0 || r.action > out.action) out = {r.action, r.action == 1 ? r.err : EPERM};
  }
  if (out.action >= 0) return out;
  return {p.default_errno ? 1 : 0, p.default_errno};
}

}  // namespace

std::vector<int> PathWriteSyscalls() {
  std::vector<int> out;
  for (const auto &kv : PathCalls()) out.push_back(kv.first);
  return out;
}

struct Supervisor::Call {
  uint64_t id;
  int nr;
  int pid;
  uint32_t arch;
  uint64_t a[6];
  Mem mem;
  int tgid = 0;
  std::vector<std::unique_ptr<Event>> events;
  // Applied to every event once the answer is known.
  bool by_profile = false;
  bool always = false;
  bool simulated = false;
  bool killed = false;
  bool runtime_probe = false;

  Call(int listener, const struct seccomp_notif *req)
      : id(req->id), nr(req->data.nr), pid(static_cast<int>(req->pid)), arch(req->data.arch), mem(listener, req->id, pid) {
    for (int i = 0; i < 6; i++) a[i] = req->data.args[i];
  }
  int Tgid() {
    if (tgid == 0) tgid = TgidOf(pid);
    return tgid;
  }
  Event &Add() {
    auto ev = std::make_unique<Event>();
    ev->time = NowMs();
    ev->pid = pid;
    ev->nr = nr;
    for (int i = 0; i < 6; i++) ev->args[i] = a[i];
    events.push_back(std::move(ev));
    return *events.back();
  }
};

void Supervisor::Handle(const void *raw) {
  Call c(listener_.get(), static_cast<const struct seccomp_notif *>(raw));
  Answer ans = Decide(c);
  for (auto &e : c.events) {
    if (ans.kind == Answer::kError && !ans.performed) {
      e->denied = true;
      e->err = ans.err;
    }
    e->by_profile = e->by_profile || c.by_profile;
    e->always = e->always || c.always;
    e->runtime_probe = c.runtime_probe;
    e->killed = c.killed;
    if (c.simulated) {
      e->denied = true;
      e->simulated = true;
    }
  }
  // Queue the events, then answer. Queuing never waits for JavaScript (the queue is unbounded), and
  // it orders every event before anything the target does next: the unpickler pool relies on a
  // denied call's event reaching JavaScript no later than the worker's reply to that call.
  for (auto &e : c.events) Emit(std::move(e));
  if (ans.kind == Answer::kDeferred) return;
  struct seccomp_notif_resp resp;
  memset(&resp, 0, sizeof resp);
  resp.id = c.id;
  if (ans.kind == Answer::kContinue) {
    resp.flags = SECCOMP_USER_NOTIF_FLAG_CONTINUE;
  } else if (ans.kind == Answer::kError) {
    resp.error = -ans.err;
  } else {
    resp.val = ans.val;
  }
  // ENOENT: the target died meanwhile; nothing to answer.
  (void)ioctl(listener_.get(), SECCOMP_IOCTL_NOTIF_SEND, &resp);
}

void Supervisor::Defer(uint64_t id, std::function<int64_t(const std::function<bool()> &alive)> work) {
  // Each deferred call holds a thread of this process: a program that blocks many sends at once
  // gets EAGAIN past the bound instead of a thread each.
  int l = deferred_->load() < kDeferredMax ? fcntl(listener_.get(), F_DUPFD_CLOEXEC, 3) : -1;
  if (l < 0) {
    struct seccomp_notif_resp resp = {id, 0, -EAGAIN, 0};
    (void)ioctl(listener_.get(), SECCOMP_IOCTL_NOTIF_SEND, &resp);
    return;
  }
  auto count = deferred_;
  count->fetch_add(1);
  std::thread([l, id, work, count]() {
    Fd listener(l);
    auto alive = [&]() {
      uint64_t i = id;
      return ioctl(listener.get(), SECCOMP_IOCTL_NOTIF_ID_VALID, &i) == 0;
    };
    int64_t r = work(alive);
    struct seccomp_notif_resp resp;
    memset(&resp, 0, sizeof resp);
    resp.id = id;
    if (r < 0) resp.error = static_cast<int32_t>(r);
    else resp.val = r;
    (void)ioctl(listener.get(), SECCOMP_IOCTL_NOTIF_SEND, &resp);
    count->fetch_sub(1);
  }).detach();
}

Answer Supervisor::Decide(Call &c) {
  const int nr = c.nr;
  const uint64_t *a = c.a;
  // Another ABI's numbers mean other calls: none is ever let through, every one is reported.
  if (c.arch != kNativeArch || (static_cast<uint32_t>(nr) & kX32Bit)) {
    Event &ev = c.Add();
    ev.abi = AbiName(c.arch, nr);
    ev.note = "a system call through the " + ev.abi + " ABI; answered ENOSYS";
    c.always = true;
    return Answer::Error(ENOSYS);
  }
  if (policy_.runtime_probes.count(nr)) {
    c.Add().note = "a runtime's probe (libuv tries io_uring): answered ENOSYS so it falls back";
    c.runtime_probe = true;
    c.always = true;
    return Answer::Error(ENOSYS);
  }
  auto cd = policy_.cond_denied.find(nr);
  auto md = policy_.mask_denied.find(nr);
  if (policy_.always_denied.count(nr) ||
      (cd != policy_.cond_denied.end() && cd->second.second.count(static_cast<uint32_t>(a[cd->second.first]))) ||
      (md != policy_.mask_denied.end() && (a[md->second.first] & md->second.second) != 0)) {
    c.Add();
    c.always = true;
    return Answer::Error(EPERM);
  }
  const ProfileAnswer pv = ProfileVerdict(policy_, nr, a);
  if (nr == __NR_personality) {
    c.Add();
    if (policy_.personality_allowed.count(static_cast<uint32_t>(a[0])) == 0) {
      c.always = true;
      return Answer::Error(EPERM);
    }
    if (pv.action == 1) {
      c.by_profile = true;
      return Answer::Error(pv.err);
    }
  }
  if (pv.action == 2) {
    // A kill rule: the process dies, as the rule says, and the report says so (a SIGSYS from BPF
    // would kill it unseen).
    Event &ev = c.Add();
    ev.note = "killed by a profile rule";
    c.killed = true;
    c.by_profile = true;
    Fd pidfd(static_cast<int>(syscall(SYS_pidfd_open, c.Tgid(), 0)));
    if (pidfd.ok() && c.mem.Valid()) syscall(SYS_pidfd_send_signal, pidfd.get(), SIGKILL, nullptr, 0);
    return Answer::Error(ENOSYS);
  }
  if (pv.action == 1) {
    // The profile denies it: decoded only for the report.
    c.by_profile = true;
    Event &ev = c.Add();
    if (nr == __NR_connect || nr == __NR_bind) {
      ev.fd = static_cast<int>(a[0]);
      AddrCopy ac;
      if (CopyAddr(c.mem, a[1], a[2], &ac) == 0) {
        ev.has_sockaddr = true;
        ev.sockaddr = DecodeSockaddr(reinterpret_cast<uint8_t *>(&ac.ss), ac.len);
      }
    } else if (nr == __NR_sendto && a[4] != 0) {
      ev.fd = static_cast<int>(a[0]);
      AddrCopy ac;
      if (CopyAddr(c.mem, a[4], a[5], &ac) == 0) {
        ev.has_sockaddr = true;
        ev.sockaddr = DecodeSockaddr(reinterpret_cast<uint8_t *>(&ac.ss), ac.len);
      }
    } else if (nr == __NR_execve || nr == __NR_execveat || nr == __NR_open || nr == __NR_creat || nr == __NR_openat ||
               nr == __NR_openat2) {
      uint64_t p = nr == __NR_execve || nr == __NR_open || nr == __NR_creat ? a[0] : a[1];
      ev.has_path = c.mem.String(p, &ev.path);
    } else if (PathCalls().count(nr) && PathCalls().at(nr).path_arg >= 0) {
      const PathCall &pc = PathCalls().at(nr);
      std::string raw;
      if ((ev.has_path = c.mem.String(a[pc.path_arg], &raw)))
        ev.path = AbsoluteFor(c.pid, pc.dirfd_arg >= 0 ? static_cast<int>(a[pc.dirfd_arg]) : AT_FDCWD, raw);
    } else if (PathCalls().count(nr)) {
      // An fd form: the fd's file, as the kernel names it.
      ev.fd = static_cast<int>(a[PathCalls().at(nr).fd_arg]);
      ev.path = ReadLink("/proc/" + std::to_string(c.pid) + "/fd/" + std::to_string(ev.fd));
      ev.has_path = !ev.path.empty();
    }
    return Answer::Error(pv.err);
  }
  if (nr == __NR_personality) return Answer::Continue();
  switch (nr) {
    case __NR_connect: return Connect(c);
    case __NR_bind: return Bind(c);
    case __NR_listen: return Listen(c);
    case __NR_sendto: return SendTo(c);
    case __NR_sendmsg: return SendMsg(c, false);
    case __NR_sendmmsg: return SendMsg(c, true);
    case __NR_execve:
    case __NR_execveat: return Exec(c);
    case __NR_open:
    case __NR_openat:
    case __NR_creat:
    case __NR_openat2: return OpenForWrite(c);
    case __NR_socket: {
      // BPF lets the profile's families through; one that reaches here is closed to this profile
      // (or the profile reports sockets: audit).
      Event &ev = c.Add();
      int family = static_cast<int>(static_cast<uint32_t>(a[0]));
      bool family_ok = policy_.socket_families.empty() || policy_.socket_families.count(family);
      if (family_ok && family == AF_NETLINK && !policy_.netlink_protocols.empty() &&
          !policy_.netlink_protocols.count(static_cast<int>(static_cast<uint32_t>(a[2]))))
        family_ok = false;
      if (!family_ok) {
        ev.note = "this socket family is closed to the profile";
        return Answer::Error(EAFNOSUPPORT);
      }
      return Answer::Continue();  // registers only: the kernel creates what they say
    }
    default: break;
  }
  if (PathCalls().count(nr)) return PathWrite(c);
  c.Add();  // allowed by the profile, reported (the report list): nothing read decides it
  return Answer::Continue();
}

// ---- network -------------------------------------------------------------------------------

namespace {

bool NetAllowed(const Policy &p, const SockAddr &sa) {
  for (const auto &na : p.allow) {
    int fam = sa.family == "inet" ? AF_INET : sa.family == "inet6" ? AF_INET6 : -1;
    if (fam != na.family) continue;
    if (na.port != 0 && na.port != sa.port) continue;
    if (!na.addr.empty() && na.addr != sa.raw_addr) continue;
    return true;
  }
  return false;
}

bool IsInet(const SockAddr &sa) { return sa.family == "inet" || sa.family == "inet6"; }

bool UnixListed(const Policy &p, const std::string &address) {
  for (const auto &u : p.unix_allowed)
    if (u == address) return true;
  return false;
}

// Sends on a socket of the target's with the supervisor's own buffers: now when it can, else on a
// helper thread that waits for room while the caller still waits.
using SendFn = std::function<ssize_t(int flags)>;

}  // namespace

// Where a destination may be sent to: 0 to send, else the errno to deny with.
static int SendDecision(const Policy &p, const SockAddr &sa) {
  if (sa.family == "netlink") return 0;  // the kernel itself, in the socket's own namespace
  if (sa.family == "unix") return p.unix_deny && !UnixListed(p, sa.address) ? EPERM : 0;
  if (IsInet(sa)) return NetAllowed(p, sa) || !p.net_deny ? 0 : EPERM;
  return p.net_deny ? EPERM : 0;
}

Answer Supervisor::Connect(Call &c) {
  Event &ev = c.Add();
  ev.fd = static_cast<int>(c.a[0]);
  AddrCopy to;
  int bad = CopyAddr(c.mem, c.a[1], c.a[2], &to);
  if (bad) return Answer::Error(bad);
  ev.has_sockaddr = true;
  ev.sockaddr = DecodeSockaddr(reinterpret_cast<uint8_t *>(&to.ss), to.len);
  auto sock = std::make_shared<Fd>(RemoteFd(c.Tgid(), ev.fd));
  if (!sock->ok()) return Answer::Error(EBADF);
  ev.sock_type = SockType(*sock);
  const SockAddr &sa = ev.sockaddr;
  if (sa.family == "unix") {
    if (policy_.unix_deny && !UnixListed(policy_, sa.address)) return Answer::Error(ECONNREFUSED);
    std::string shown;
    if (int e = AbsoluteUnix(c.pid, &to, &shown)) return Answer::Error(e);
  } else if (IsInet(sa)) {
    int fam = sa.family == "inet" ? AF_INET : AF_INET6;
    if (!NetAllowed(policy_, sa) && policy_.net_deny) {
      if (policy_.fake_dns && sa.port == 53 && ev.sock_type == "tcp" && sink_.HasTcp(fam)) {
        // Every address is local in the sandbox's namespace: this reaches the TCP DNS sink.
        ev.note = "connected to the DNS sink so the resolver reveals its query";
        c.simulated = true;
      } else if (policy_.fake_dns && sa.port == 53 && ev.sock_type != "tcp") {
        fake_peers_[{c.Tgid(), ev.fd}] = sa;
        if (!sink_.HasUdp(fam)) {
          ev.note = "connect simulated so the resolver reveals its query";
          c.simulated = true;
          return Answer::Value(0);
        }
        ev.note = "connected to the DNS sink so the resolver reveals its query";
        c.simulated = true;
      } else {
        return Answer::Error(ECONNREFUSED);
      }
    }
  } else if (sa.family == "unspec") {
    fake_peers_.erase({c.Tgid(), ev.fd});
  } else if (sa.family != "netlink" && policy_.net_deny) {
    return Answer::Error(ECONNREFUSED);
  }
  // Performed on the target's own socket with the supervisor's copy of the address.
  if (!Blocking(*sock)) {
    if (connect(sock->get(), to.sa(), to.len) == 0) return Answer::Value(0);
    return Answer::Failed(errno);
  }
  Defer(c.id, [sock, to](const std::function<bool()> &) -> int64_t {
    int r;
    do {
      r = connect(sock->get(), to.sa(), to.len);
    } while (r < 0 && errno == EINTR);
    return r == 0 ? 0 : -errno;
  });
  return Answer::Deferred();
}

Answer Supervisor::Bind(Call &c) {
  Event &ev = c.Add();
  ev.fd = static_cast<int>(c.a[0]);
  AddrCopy at;
  int bad = CopyAddr(c.mem, c.a[1], c.a[2], &at);
  if (bad) return Answer::Error(bad);
  ev.has_sockaddr = true;
  ev.sockaddr = DecodeSockaddr(reinterpret_cast<uint8_t *>(&at.ss), at.len);
  Fd sock = RemoteFd(c.Tgid(), ev.fd);
  if (!sock.ok()) return Answer::Error(EBADF);
  ev.sock_type = SockType(sock);
  if (IsInet(ev.sockaddr)) {
    bool deny = policy_.net_deny && !NetAllowed(policy_, ev.sockaddr);
    binds_[{c.Tgid(), ev.fd}] = {ev.sockaddr, deny};
    if (deny) return Answer::Error(EPERM);
  } else if (ev.sockaddr.family == "unix" && !ev.sockaddr.address.empty() && ev.sockaddr.address[0] == '@') {
    // Abstract names are shared by the network namespace: outside a fresh one, a bound name could
    // pose as a host service. Like connects, only listed names while unix sockets are denied.
    if (policy_.unix_deny && !UnixListed(policy_, ev.sockaddr.address)) return Answer::Error(EPERM);
  } else if (ev.sockaddr.family == "unix" && !ev.sockaddr.address.empty()) {
    // A pathname socket is a file it creates: inside the write list, like any other.
    std::string shown;
    if (int e = AbsoluteUnix(c.pid, &at, &shown)) return Answer::Error(e);
    ev.has_path = true;
    ev.path = shown;
    // The folder is opened as the caller sees it and judged by what it is, so a symlink on the way
    // cannot lead the supervisor's bind out of the write list; the bind then goes through that very
    // folder.
    size_t slash = shown.rfind('/');
    std::string base = shown.substr(slash + 1);
    int err = 0;
    Fd parent = OpenAsTarget(c.pid, c.Tgid(), AT_FDCWD, slash == 0 ? "/" : shown.substr(0, slash), true, &err);
    if (!parent.ok()) return Answer::Error(err);
    std::string real = FdPath(parent.get());
    ev.path = real.empty() ? shown : Normalize(real + "/" + base);
    if (policy_.write_check) {
      bool ok = false;
      for (const auto &w : policy_.write_allowed)
        if (!real.empty() && Under(ev.path, w)) ok = true;
      if (!ok) return Answer::Error(EACCES);
    }
    std::string via = "/proc/self/fd/" + std::to_string(parent.get()) + "/" + base;
    auto *un = reinterpret_cast<struct sockaddr_un *>(&at.ss);
    if (via.size() >= sizeof un->sun_path) return Answer::Error(ENAMETOOLONG);
    memset(un->sun_path, 0, sizeof un->sun_path);
    memcpy(un->sun_path, via.data(), via.size());
    at.len = static_cast<socklen_t>(offsetof(struct sockaddr_un, sun_path) + via.size() + 1);
    if (bind(sock.get(), at.sa(), at.len) == 0) return Answer::Value(0);
    return Answer::Failed(errno);
  }
  if (bind(sock.get(), at.sa(), at.len) == 0) return Answer::Value(0);
  return Answer::Failed(errno);
}

Answer Supervisor::Listen(Call &c) {
  Event &ev = c.Add();
  ev.fd = static_cast<int>(c.a[0]);
  auto it = binds_.find({c.Tgid(), ev.fd});
  Fd sock = RemoteFd(c.Tgid(), ev.fd);
  if (!sock.ok()) return Answer::Error(EBADF);
  ev.sock_type = SockType(sock);
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  if (getsockname(sock.get(), reinterpret_cast<sockaddr *>(&ss), &len) == 0) {
    ev.has_sockaddr = true;
    ev.sockaddr = DecodeSockaddr(reinterpret_cast<uint8_t *>(&ss), len);
  }
  if (it != binds_.end() && it->second.second) {
    ev.has_sockaddr = true;
    ev.sockaddr = it->second.first;
    ev.note = "its bind was denied";
  }
  bool inet = ev.sock_type == "tcp" || ev.sock_type == "udp" || (ev.has_sockaddr && IsInet(ev.sockaddr));
  if (inet && policy_.net_deny && !(ev.has_sockaddr && NetAllowed(policy_, ev.sockaddr) && !(it != binds_.end() && it->second.second)))
    return Answer::Error(EPERM);
  // The socket decided on is the one that listens, whatever the fd table holds by now.
  if (listen(sock.get(), static_cast<int>(c.a[1])) == 0) return Answer::Value(0);
  return Answer::Failed(errno);
}

// Sends now, or hands the send to a helper thread when a blocking socket has no room yet.
static Answer SendPerformed(Supervisor *self, uint64_t id, const Fd &sock, int flags, const SendFn &send_fn,
                            const std::function<void(std::function<int64_t(const std::function<bool()> &)>)> &defer) {
  bool may_block = Blocking(sock) && !(flags & MSG_DONTWAIT);
  ssize_t r = send_fn(flags | MSG_DONTWAIT);
  if (r >= 0) return Answer::Value(r);
  if (!may_block || (errno != EAGAIN && errno != EWOULDBLOCK)) return Answer::Failed(errno);
  int fd = fcntl(sock.get(), F_DUPFD_CLOEXEC, 3);
  auto held = std::make_shared<Fd>(fd);
  defer([held, flags, send_fn](const std::function<bool()> &alive) -> int64_t {
    for (;;) {
      struct pollfd p = {held->get(), POLLOUT, 0};
      poll(&p, 1, kDeferPollMs);
      ssize_t n = send_fn(flags | MSG_DONTWAIT);
      if (n >= 0) return n;
      if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) return -errno;
      if (!alive()) return -EINTR;  // the caller is gone: nothing to answer
    }
  });
  (void)self;
  (void)id;
  return Answer::Deferred();
}

Answer Supervisor::SendTo(Call &c) {
  const uint64_t *a = c.a;
  Event &ev = c.Add();
  ev.fd = static_cast<int>(a[0]);
  ev.payload_len = a[2];
  ev.payload.resize(std::min<uint64_t>(a[2], kPayloadMax));
  ev.payload.resize(c.mem.ReadSome(a[1], ev.payload.data(), ev.payload.size()));
  if (a[4] == 0) {
    // No destination (a register): the socket's own peer, which only an approved connect set.
    auto it = fake_peers_.find({c.Tgid(), ev.fd});
    if (it != fake_peers_.end()) {
      ev.has_sockaddr = true;
      ev.sockaddr = it->second;
      ev.note = "sent to a simulated connection";
      ev.sock_type = SockType(RemoteFd(c.Tgid(), ev.fd));
      return Answer::Error(EPERM);  // never really connected: fail it so the resolver gives up fast
    }
    return Answer::Continue();
  }
  AddrCopy to;
  int bad = CopyAddr(c.mem, a[4], a[5], &to);
  if (bad) return Answer::Error(bad);
  ev.has_sockaddr = true;
  ev.sockaddr = DecodeSockaddr(reinterpret_cast<uint8_t *>(&to.ss), to.len);
  Fd sock = RemoteFd(c.Tgid(), ev.fd);
  if (!sock.ok()) return Answer::Error(EBADF);
  ev.sock_type = SockType(sock);
  if (int e = SendDecision(policy_, ev.sockaddr)) return Answer::Error(e);
  std::string shown;
  if (int e = AbsoluteUnix(c.pid, &to, &shown)) return Answer::Error(e);
  // Performed with the supervisor's copies of the destination and the payload.
  size_t want = std::min<uint64_t>(a[2], kCopyMax);
  if (a[2] > kCopyMax && !IsStream(sock)) return Answer::Error(EMSGSIZE);
  auto data = std::make_shared<std::vector<uint8_t>>(want);
  if (want && c.mem.ReadSome(a[1], data->data(), want) != want) return Answer::Error(EFAULT);
  int sfd = sock.get();
  auto held = std::make_shared<Fd>(std::move(sock));
  SendFn fn = [held, data, to, sfd](int flags) -> ssize_t {
    (void)sfd;
    return sendto(held->get(), data->data(), data->size(), flags | MSG_NOSIGNAL, to.sa(), to.len);
  };
  return SendPerformed(this, c.id, *held, static_cast<int>(a[3]), fn,
                       [this, &c](std::function<int64_t(const std::function<bool()> &)> w) { Defer(c.id, std::move(w)); });
}

namespace {

// One message copied out of the target: what the supervisor sends, byte for byte.
struct MsgCopy {
  bool has_name = false;
  AddrCopy name;
  std::vector<std::vector<uint8_t>> data;
  std::vector<uint8_t> control;
  std::vector<std::shared_ptr<Fd>> fds;  // fds passed with SCM_RIGHTS, duplicated from the target
  std::vector<struct iovec> iov;
  struct msghdr hdr;
  size_t bytes = 0;
  void Build() {
    iov.clear();
    for (auto &d : data) iov.push_back({d.data(), d.size()});
    memset(&hdr, 0, sizeof hdr);
    if (has_name) {
      hdr.msg_name = &name.ss;
      hdr.msg_namelen = name.len;
    }
    hdr.msg_iov = iov.data();
    hdr.msg_iovlen = iov.size();
    if (!control.empty()) {
      hdr.msg_control = control.data();
      hdr.msg_controllen = control.size();
    }
  }
};

// Copies one message header and what it points at; 0 or the errno to answer with. `budget`: payload
// bytes still allowed in this call (the rest is not copied, as a short write).
int CopyMsg(const Mem &mem, int tgid, const struct msghdr &mh, size_t *budget, MsgCopy *out) {
  if (mh.msg_name != nullptr && mh.msg_namelen > 0) {
    int bad = CopyAddr(mem, reinterpret_cast<uint64_t>(mh.msg_name), mh.msg_namelen, &out->name);
    if (bad) return bad;
    out->has_name = true;
  }
  if (mh.msg_iovlen > kIovMax) return EMSGSIZE;
  std::vector<struct iovec> iov(mh.msg_iovlen);
  if (mh.msg_iovlen && !mem.Read(reinterpret_cast<uint64_t>(mh.msg_iov), iov.data(), iov.size() * sizeof(struct iovec)))
    return EFAULT;
  for (const auto &v : iov) {
    size_t n = std::min(v.iov_len, *budget);
    std::vector<uint8_t> d(n);
    if (n && mem.ReadSome(reinterpret_cast<uint64_t>(v.iov_base), d.data(), n) != n) return EFAULT;
    *budget -= n;
    out->bytes += n;
    out->data.push_back(std::move(d));
  }
  if (mh.msg_control != nullptr && mh.msg_controllen > 0) {
    if (mh.msg_controllen > kControlMax) return ENOBUFS;
    out->control.resize(mh.msg_controllen);
    if (!mem.Read(reinterpret_cast<uint64_t>(mh.msg_control), out->control.data(), out->control.size())) return EFAULT;
    struct msghdr view;
    memset(&view, 0, sizeof view);
    view.msg_control = out->control.data();
    view.msg_controllen = out->control.size();
    for (struct cmsghdr *cm = CMSG_FIRSTHDR(&view); cm != nullptr; cm = CMSG_NXTHDR(&view, cm)) {
      if (cm->cmsg_level != SOL_SOCKET) continue;
      if (cm->cmsg_type == SCM_CREDENTIALS) return EPERM;  // the supervisor cannot vouch for them
      if (cm->cmsg_type != SCM_RIGHTS) continue;
      // The fds passed are the target's: swap each for the supervisor's duplicate of that file.
      size_t n = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      int *fds = reinterpret_cast<int *>(CMSG_DATA(cm));
      for (size_t i = 0; i < n; i++) {
        auto dup = std::make_shared<Fd>(RemoteFd(tgid, fds[i]));
        if (!dup->ok()) return EBADF;
        fds[i] = dup->get();
        out->fds.push_back(dup);
      }
    }
  }
  return 0;
}

}  // namespace

Answer Supervisor::SendMsg(Call &c, bool many) {
  const uint64_t *a = c.a;
  const int fd = static_cast<int>(a[0]);
  size_t count = many ? std::min<uint64_t>(a[2], kMmsgMax) : 1;
  const int flags = static_cast<int>(many ? a[3] : a[2]);
  Fd sock = RemoteFd(c.Tgid(), fd);
  std::string type = SockType(sock);
  // The first messages are reported one by one, and past them every one with a destination (up to as
  // many again): what decides a denial is always in the report.
  size_t extra = 0;
  auto add = [&](size_t i) -> Event * {
    Event &ev = c.Add();
    ev.fd = fd;
    ev.sock_type = type;
    if (many) ev.msg_index = static_cast<int>(i);
    return &ev;
  };
  auto report = [&](size_t i) -> Event * { return i < kMsgsReported ? add(i) : nullptr; };
  if (!sock.ok()) {
    report(0);
    return Answer::Error(EBADF);
  }
  if (count == 0) {
    report(0);
    return Answer::Value(0);
  }
  // Every header at once: the whole call is judged, whatever vlen says.
  std::vector<struct mmsghdr> hdrs(count);
  memset(hdrs.data(), 0, hdrs.size() * sizeof(struct mmsghdr));
  bool read_ok = many ? c.mem.Read(a[1], hdrs.data(), count * sizeof(struct mmsghdr))
                      : c.mem.Read(a[1], &hdrs[0].msg_hdr, sizeof(struct msghdr));
  if (!read_ok) {
    report(0);
    return Answer::Error(EFAULT);
  }
  auto msgs = std::make_shared<std::vector<MsgCopy>>(count);
  size_t budget = kCopyMax;
  int deny = 0;
  size_t copied = count;
  for (size_t i = 0; i < count; i++) {
    MsgCopy &m = (*msgs)[i];
    Event *ev = report(i);
    int bad = CopyMsg(c.mem, c.Tgid(), hdrs[i].msg_hdr, &budget, &m);
    if (!ev && m.has_name && extra < kMsgsReported) {
      extra++;
      ev = add(i);
    }
    if (ev) {
      if (m.has_name) {
        ev->has_sockaddr = true;
        ev->sockaddr = DecodeSockaddr(reinterpret_cast<uint8_t *>(&m.name.ss), m.name.len);
      }
      for (const auto &d : m.data) ev->payload_len += d.size();
      for (const auto &d : m.data) {
        size_t room = kPayloadMax - ev->payload.size();
        ev->payload.insert(ev->payload.end(), d.begin(), d.begin() + static_cast<long>(std::min(room, d.size())));
      }
    }
    if (bad) {
      if (ev) ev->note = "its arguments could not be copied";
      if (i == 0 || !many) return Answer::Error(bad);
      copied = i;  // sendmmsg: the messages before it are sent, as the kernel would
      break;
    }
    SockAddr dest;
    if (m.has_name) {
      dest = DecodeSockaddr(reinterpret_cast<uint8_t *>(&m.name.ss), m.name.len);
      if (int e = SendDecision(policy_, dest)) deny = e;
      std::string shown;
      if (!deny) {
        if (int e = AbsoluteUnix(c.pid, &m.name, &shown)) return Answer::Error(e);
      }
    } else {
      auto it = fake_peers_.find({c.Tgid(), fd});
      if (it != fake_peers_.end()) {
        if (ev) {
          ev->has_sockaddr = true;
          ev->sockaddr = it->second;
          ev->note = "sent to a simulated connection";
        }
        deny = EPERM;
      }
    }
    if (budget == 0 && i + 1 < count) {
      copied = i + 1;  // past the copy budget: a short sendmmsg, as the kernel may give
      break;
    }
  }
  if (count > c.events.size() && !c.events.empty())
    c.events.back()->note = std::to_string(count - c.events.size()) + " more messages in this call, judged with it";
  if (deny) return Answer::Error(deny);
  msgs->resize(copied);
  for (auto &m : *msgs) m.Build();
  auto held = std::make_shared<Fd>(std::move(sock));
  const uint64_t vec = a[1];
  const int pid = c.pid;
  auto fn_many = [held, msgs](int fl) -> ssize_t {
    std::vector<struct mmsghdr> out(msgs->size());
    for (size_t i = 0; i < msgs->size(); i++) {
      out[i].msg_hdr = (*msgs)[i].hdr;
      out[i].msg_len = 0;
    }
    int r = sendmmsg(held->get(), out.data(), static_cast<unsigned>(out.size()), fl | MSG_NOSIGNAL);
    if (r > 0)
      for (int i = 0; i < r; i++) (*msgs)[static_cast<size_t>(i)].bytes = out[static_cast<size_t>(i)].msg_len;
    return r;
  };
  auto fn_one = [held, msgs](int fl) -> ssize_t { return sendmsg(held->get(), &(*msgs)[0].hdr, fl | MSG_NOSIGNAL); };
  if (!many) {
    return SendPerformed(this, c.id, *held, flags, fn_one,
                         [this, &c](std::function<int64_t(const std::function<bool()> &)> w) { Defer(c.id, std::move(w)); });
  }
  // sendmmsg writes each message's length back into the caller's array (resolvers check it).
  auto write_back = [pid, vec, msgs](int64_t sent) {
    if (sent <= 0) return;
    Fd memfd(open(("/proc/" + std::to_string(pid) + "/mem").c_str(), O_WRONLY | O_CLOEXEC));
    for (int64_t i = 0; i < sent && memfd.ok(); i++) {
      unsigned int len = static_cast<unsigned int>((*msgs)[static_cast<size_t>(i)].bytes);
      (void)!pwrite(memfd.get(), &len, sizeof len,
                    static_cast<off_t>(vec + static_cast<uint64_t>(i) * sizeof(struct mmsghdr) + offsetof(struct mmsghdr, msg_len)));
    }
  };
  SendFn fn = [fn_many, write_back](int fl) -> ssize_t {
    ssize_t r = fn_many(fl);
    if (r > 0) write_back(r);
    return r;
  };
  return SendPerformed(this, c.id, *held, flags, fn,
                       [this, &c](std::function<int64_t(const std::function<bool()> &)> w) { Defer(c.id, std::move(w)); });
}

// ---- exec and the file system --------------------------------------------------------------

Answer Supervisor::Exec(Call &c) {
  const uint64_t *a = c.a;
  Event &ev = c.Add();
  uint64_t path_ptr = c.nr == __NR_execve ? a[0] : a[1];
  uint64_t argv_ptr = c.nr == __NR_execve ? a[1] : a[2];
  ev.has_path = c.mem.String(path_ptr, &ev.path);
  for (size_t i = 0; i < kArgvMax && argv_ptr != 0; i++) {
    uint64_t p = 0;
    if (!c.mem.Read(argv_ptr + i * 8, &p, 8) || p == 0) break;
    std::string s;
    if (!c.mem.String(p, &s)) break;
    ev.argv.push_back(s);
  }
  // Decided by who calls and how often, never by the path: the path is only reported.
  if (!first_exec_done_ && c.pid == policy_.first_exec_pid) {
    first_exec_done_ = true;
    ev.note = "the sandboxed command itself";
    return Answer::Continue();
  }
  return policy_.exec_mode == 1 ? Answer::Continue() : Answer::Error(EPERM);
}

namespace {

bool WriteAllowed(const Policy &p, const std::string &path) {
  for (const auto &w : p.write_allowed)
    if (Under(path, w)) return true;
  return false;
}

}  // namespace

Answer Supervisor::OpenForWrite(Call &c) {
  const uint64_t *a = c.a;
  const int nr = c.nr;
  int dirfd = AT_FDCWD;
  uint64_t path_ptr = 0, flags = 0;
  bool flags_in_memory = false;
  if (nr == __NR_open) {
    path_ptr = a[0];
    flags = a[1];
  } else if (nr == __NR_creat) {
    path_ptr = a[0];
    flags = O_CREAT | O_WRONLY | O_TRUNC;
  } else {
    dirfd = static_cast<int>(a[0]);
    path_ptr = a[1];
    if (nr == __NR_openat) {
      flags = a[2];
    } else {
      flags_in_memory = true;  // openat2: struct open_how, read once here and again by the kernel
      if (!c.mem.Read(a[2], &flags, sizeof flags)) flags = O_RDWR | O_TRUNC;
    }
  }
  bool trunc = (flags & O_TRUNC) != 0 || flags_in_memory;
  if (!WriteFlags(flags) && !flags_in_memory) return Answer::Continue();  // registers say read-only
  // Landlock enforces the write list (truncation from ABI 3): what the kernel does is bounded by it
  // whatever the memory says by then.
  bool backed = policy_.landlock_abi >= (trunc ? 3 : 1);
  if (!WriteFlags(flags)) {
    // openat2 read as read-only: continued only where Landlock would stop a write anyway.
    return backed || !policy_.write_check ? Answer::Continue() : Answer::Error(EACCES);
  }
  Event &ev = c.Add();
  ev.has_flags = true;
  ev.flags = flags;
  std::string p;
  if (c.mem.String(path_ptr, &p)) {
    ev.path = AbsoluteFor(c.pid, dirfd, p);
    ev.has_path = true;
  }
  if (!policy_.write_check) return Answer::Continue();
  if (!ev.has_path || !WriteAllowed(policy_, ev.path)) return Answer::Error(EPERM);
  if (!backed) {
    ev.note = "no kernel layer enforces the write list here (Landlock unavailable)";
    return Answer::Error(EPERM);
  }
  return Answer::Continue();
}

Answer Supervisor::PathWrite(Call &c) {
  const uint64_t *a = c.a;
  const PathCall &pc = PathCalls().at(c.nr);
  Event &ev = c.Add();
  const int dirfd = pc.dirfd_arg >= 0 ? static_cast<int>(a[pc.dirfd_arg]) : AT_FDCWD;
  std::string raw;
  bool has_raw = pc.path_arg >= 0 && a[pc.path_arg] != 0 && c.mem.String(a[pc.path_arg], &raw);
  if (has_raw) {
    ev.has_path = true;
    ev.path = AbsoluteFor(c.pid, dirfd, raw);
  }
  if (pc.other_dirfd_arg != -2) {
    if (pc.other_is_text) {
      ev.has_other_path = c.mem.String(a[pc.other_path_arg], &ev.other_path);
    } else {
      std::string o;
      int odir = pc.other_dirfd_arg >= 0 ? static_cast<int>(a[pc.other_dirfd_arg]) : AT_FDCWD;
      if ((ev.has_other_path = c.mem.String(a[pc.other_path_arg], &o))) ev.other_path = AbsoluteFor(c.pid, odir, o);
    }
  }
  if (!policy_.write_check) return Answer::Continue();  // nothing to check: writes are only reported
  if (pc.how == How::kLandlock || pc.how == How::kTruncate) {
    if (!ev.has_path || !WriteAllowed(policy_, ev.path)) return Answer::Error(EPERM);
    if (pc.other_written && (!ev.has_other_path || !WriteAllowed(policy_, ev.other_path))) return Answer::Error(EPERM);
    if (policy_.landlock_abi < (pc.how == How::kTruncate ? 3 : 1)) {
      ev.note = "no kernel layer enforces the write list here (Landlock unavailable)";
      return Answer::Error(EPERM);
    }
    return Answer::Continue();  // Landlock holds the kernel to the write list, whatever it re-reads
  }
  // Metadata: Landlock has no right for it, so the supervisor acts itself, on the object.
  uint64_t at_flags = pc.flags_arg >= 0 ? a[pc.flags_arg] : 0;
  Fd obj;
  bool fd_form = pc.fd_arg >= 0 || (pc.path_arg >= 0 && a[pc.path_arg] == 0 && c.nr == __NR_utimensat) ||
                 (has_raw && raw.empty() && (at_flags & AT_EMPTY_PATH));
  if (fd_form) {
    int fd = pc.fd_arg >= 0 ? static_cast<int>(a[pc.fd_arg]) : dirfd;
    ev.fd = fd;
    if (fd == AT_FDCWD) return Answer::Error(EFAULT);
    obj = RemoteFd(c.Tgid(), fd);
    if (!obj.ok()) return Answer::Error(EBADF);
  } else {
    if (!has_raw) return Answer::Error(EFAULT);
    bool follow = !pc.nofollow && !(at_flags & AT_SYMLINK_NOFOLLOW);
    int err = 0;
    obj = OpenAsTarget(c.pid, c.Tgid(), dirfd, raw, follow, &err);
    if (!obj.ok()) {
      // Not there: the kernel would say so too. Denied outright when it is outside the list anyway.
      return Answer::Error(ev.has_path && !WriteAllowed(policy_, ev.path) ? EPERM : err);
    }
  }
  // The object itself names where it is: what the call would act on, whatever the path said.
  std::string where = FdPath(obj.get());
  if (!where.empty()) {
    ev.has_path = true;
    ev.path = where;
  }
  if (where.empty() || !WriteAllowed(policy_, where)) return Answer::Error(EPERM);
  if (pc.how == How::kXattr) {
    ev.note = "extended attributes are not changed behind the walls";
    return Answer::Error(EPERM);
  }
  struct stat st;
  uid_t fsuid = 0;
  gid_t fsgid = 0;
  mode_t um = 022;
  if (fstat(obj.get(), &st) != 0 || !CredsOf(c.pid, &fsuid, &fsgid, &um)) return Answer::Error(EPERM);
  // The supervisor may hold capabilities the caller lacks: it acts only as the owner could.
  if (st.st_uid != fsuid) return Answer::Error(EPERM);
  // A file with another name elsewhere would be changed there too.
  if (!S_ISDIR(st.st_mode) && st.st_nlink > 1) {
    ev.note = "the file has other names (hard links), maybe outside the write list";
    return Answer::Error(EPERM);
  }
  std::string proc = "/proc/self/fd/" + std::to_string(obj.get());
  if (pc.how == How::kMode) {
    mode_t mode = static_cast<mode_t>(a[pc.value_arg]) & 07777;
    if (mode & (S_ISUID | S_ISGID)) {
      ev.note = "set-user-ID and set-group-ID bits are never set behind the walls";
      return Answer::Error(EPERM);
    }
    if (S_ISLNK(st.st_mode)) return Answer::Error(EOPNOTSUPP);
    if (fchmodat(AT_FDCWD, proc.c_str(), mode, 0) == 0) return Answer::Value(0);
    return Answer::Failed(errno);
  }
  if (pc.how == How::kOwner) {
    uint32_t uid = static_cast<uint32_t>(a[pc.value_arg]);
    uint32_t gid = static_cast<uint32_t>(a[pc.value_arg + 1]);
    if ((uid != 0xffffffffu && uid != fsuid) || (gid != 0xffffffffu && gid != fsgid)) return Answer::Error(EPERM);
    if (fchownat(obj.get(), "", uid, gid, AT_EMPTY_PATH) == 0) return Answer::Value(0);
    return Answer::Failed(errno);
  }
  // kTimes: the supervisor's own copy of the times.
  struct timespec ts[2];
  struct timespec *tsp = nullptr;
  uint64_t tptr = a[pc.value_arg];
  if (tptr != 0) {
    tsp = ts;
    if (pc.times == Times::kUtimbuf) {
      int64_t t[2];
      if (!c.mem.Read(tptr, t, sizeof t)) return Answer::Error(EFAULT);
      ts[0] = {t[0], 0};
      ts[1] = {t[1], 0};
    } else if (pc.times == Times::kTimeval) {
      struct timeval tv[2];
      if (!c.mem.Read(tptr, tv, sizeof tv)) return Answer::Error(EFAULT);
      for (int i = 0; i < 2; i++) ts[i] = {tv[i].tv_sec, tv[i].tv_usec * 1000};
    } else if (!c.mem.Read(tptr, ts, sizeof ts)) {
      return Answer::Error(EFAULT);
    }
  }
  if (S_ISLNK(st.st_mode)) return Answer::Error(EOPNOTSUPP);
  if (utimensat(AT_FDCWD, proc.c_str(), tsp, 0) == 0) return Answer::Value(0);
  return Answer::Failed(errno);
}

}  // namespace mg
