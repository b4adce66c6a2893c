// Decisions: how each notified call is answered. The table and the rule they follow are at the top
// of supervisor.cc; in short, nothing here continues a call on the strength of memory it read.
// This file: the dispatch, the answers made on registers and the profile, exec. Network calls are
// in decide_net.cc, the file system in decide_fs.cc.
#include <errno.h>
#include <fcntl.h>
#include <linux/audit.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstring>
#include <thread>

#include "decide.h"

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

constexpr size_t kArgvMax = 128;       // exec arguments reported
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

}  // namespace mg
