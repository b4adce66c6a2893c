// The notification loop: receives each notified call, has the decision files (decide*.cc) answer
// it, and streams what it saw to JavaScript. Reading the target from outside is remote.cc; the DNS
// sink is dns_sink.cc.
//
// THE RULE. The supervisor never answers SECCOMP_USER_NOTIF_FLAG_CONTINUE for a call whose outcome
// depends on memory it read. A call's pointers lead into the target's memory; any other thread of
// the target can rewrite that memory between the supervisor's read (/proc/PID/mem) and the
// kernel's own read once the call continues (seccomp_unotify(2), "Caveats"). The same goes for the
// target's fd table, which another thread can change with dup2(). So every notified call is decided
// in one of these ways, and only these:
//   BPF       on the registers alone (socket family and type, clone flags, ioctl numbers, modes):
//             the kernel never re-reads a register;
//   KERNEL    by a layer the kernel enforces on its own, whatever the call's memory says (Landlock's
//             write rules, the network namespace, rlimits, cgroups): the supervisor may continue a
//             call that such a layer backs, and denies what its own read already shows is outside;
//   DENY      with an errno;
//   PERFORM   the supervisor takes its own copy of the arguments, acts on the kernel objects
//             themselves (the target's socket or file duplicated through pidfd_getfd, a path opened
//             from the target's cwd/root), performs the call and hands back the result. No fd is
//             made for the target (SECCOMP_IOCTL_NOTIF_ADDFD is not needed: a socket is connected
//             in place). The filter waits killably once a call is received
//             (SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV), so a signal never runs a performed call twice.
// Decoding memory only to report a call is fine; decoding it to allow a call is not.
//
// HOW EACH NOTIFIED CALL IS DECIDED (decide.cc; network: decide_net.cc; files: decide_fs.cc):
//   foreign ABI (x32 bit, i386…)   BPF notifies (libseccomp's bad-arch action); DENY ENOSYS, reported
//   always-denied calls            DENY (ptrace, mount, unshare, setns, bpf, seccomp, …)
//   io_uring_setup/enter/register  DENY ENOSYS, reported as a runtime probe (libuv falls back)
//   prctl/ioctl by value, clone    registers: DENY when a denied value or namespace flag is there;
//     with CLONE_NEW*              clone3 never gets here: BPF answers ENOSYS (its flags are in
//                                  memory) and the C library falls back to clone
//   personality                    registers
//   profile rule kill              the process is killed (SIGKILL) and the kill reported
//   profile-denied calls           DENY with the profile's errno (decoded only to report)
//   socket                         BPF allows the profile's families; the rest DENY EAFNOSUPPORT
//   connect, bind                  own copy of the address: DENY, or PERFORM on the target's socket
//   listen                         the socket itself (pidfd_getfd): DENY or PERFORM
//   sendto                         no address (a register): state only (simulated DNS peers) →
//                                  DENY or CONTINUE; an address: own copy → DENY or PERFORM
//   sendmsg, sendmmsg              own copy of every header, address, payload and fd passed
//                                  (whatever vlen): DENY all, or PERFORM all
//   execve, execveat               by pid and count (the command's own first exec) or the profile's
//                                  exec mode: no memory involved; the path is read only to report
//   open/creat/openat(2) to write  KERNEL: Landlock enforces the write list; DENY what is outside
//   mkdir, unlink, rename, link,   KERNEL as above (Landlock ABI 1, truncate 3); without Landlock:
//     symlink, mknod, truncate     DENY
//   chmod, fchmod(at), utime(s),   PERFORM on an O_PATH handle of the object (or the target's fd),
//     utimensat, futimesat         when the object is in the write list and the caller owns it
//                                  (Landlock has no right for metadata); else DENY
//   chown family                   PERFORM only a change to the caller's own ids inside the write
//                                  list; else DENY
//   xattr set/remove (all forms)   DENY while writes are checked
//   calls on the report list       the profile allows them whatever their memory holds: CONTINUE
// With no check to make (audit: network and writes allowed), calls CONTINUE: nothing depends on
// what the supervisor read.
#include "supervisor.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <cstring>

namespace mg {

namespace {
constexpr uint32_t kSinksMax = 4;  // UDP and TCP, IPv4 and IPv6
}  // namespace

double NowMs() {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<double>(ts.tv_sec) * 1000.0 + static_cast<double>(ts.tv_nsec) / 1e6;
}

Napi::Function Supervisor::Init(Napi::Env env) {
  return DefineClass(env, "Supervisor", {InstanceMethod("stop", &Supervisor::Stop), InstanceMethod("ref", &Supervisor::Ref),
                                          InstanceMethod("unref", &Supervisor::Unref)});
}

static std::vector<int> IntArray(Napi::Object o, const char *key) {
  std::vector<int> out;
  Napi::Value v = o.Get(key);
  if (!v.IsArray()) return out;
  Napi::Array a = v.As<Napi::Array>();
  for (uint32_t i = 0; i < a.Length(); i++) out.push_back(a.Get(i).ToNumber().Int32Value());
  return out;
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

Supervisor::Supervisor(const Napi::CallbackInfo &info)
    : Napi::ObjectWrap<Supervisor>(info), sink_([this](std::unique_ptr<Event> ev) { Emit(std::move(ev)); }) {
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
  policy_.landlock_abi = o.Get("landlockAbi").IsNumber() ? o.Get("landlockAbi").ToNumber().Int32Value() : 0;
  for (int nr : IntArray(o, "runtimeProbes")) policy_.runtime_probes.insert(nr);
  for (int f : IntArray(o, "socketFamilies")) policy_.socket_families.insert(f);
  for (int p : IntArray(o, "netlinkProtocols")) policy_.netlink_protocols.insert(p);
  Napi::Value masks = o.Get("maskDenied");
  if (masks.IsArray()) {
    Napi::Array a = masks.As<Napi::Array>();
    for (uint32_t i = 0; i < a.Length(); i++) {
      Napi::Object e = a.Get(i).As<Napi::Object>();
      bool lossless;
      uint64_t mask = e.Get("mask").IsBigInt() ? e.Get("mask").As<Napi::BigInt>().Uint64Value(&lossless)
                                               : static_cast<uint64_t>(e.Get("mask").ToNumber().Int64Value());
      policy_.mask_denied[e.Get("nr").ToNumber().Int32Value()] = {e.Get("index").ToNumber().Int32Value(), mask};
    }
  }
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
      sink_.Add(std::move(dup));
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
  o.Set("action", ev.killed ? "killed" : ev.denied ? "denied" : "allowed");
  if (ev.simulated) o.Set("simulated", Napi::Boolean::New(env, true));
  if (ev.by_profile) o.Set("byProfile", Napi::Boolean::New(env, true));
  if (ev.always) o.Set("alwaysDenied", Napi::Boolean::New(env, true));
  if (ev.runtime_probe) o.Set("runtimeProbe", Napi::Boolean::New(env, true));
  if (!ev.abi.empty()) o.Set("abi", ev.abi);
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
      // The listener, the wake-up eventfd, then the DNS sink's sockets.
      std::vector<struct pollfd> fds = {{listener_.get(), POLLIN, 0}, {wake_.get(), POLLIN, 0}};
      sink_.PollFds(&fds);
      int r = poll(fds.data(), fds.size(), -1);
      if (r < 0) {
        if (errno == EINTR) continue;
        end_error = std::string("poll: ") + strerror(errno);
        break;
      }
      if (fds[1].revents) break;
      sink_.Ready(fds.data() + 2, fds.size() - 2);
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
  sink_.Drain();
  auto end = std::make_unique<Event>();
  end->end = true;
  end->end_error = end_error;
  Emit(std::move(end));
  listener_.reset();
  tsfn_.Release();
}

}  // namespace mg
