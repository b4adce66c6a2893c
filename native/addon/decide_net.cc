// Network calls: the address is the supervisor's own copy, and an allowed call is performed by the
// supervisor on the caller's socket (duplicated with pidfd_getfd), never continued.
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstring>

#include "decide.h"

namespace mg {

namespace {

constexpr size_t kMsgsReported = 16;   // sendmmsg messages reported one by one; the rest are counted
constexpr size_t kMmsgMax = 1024;      // UIO_MAXIOV: the kernel's own cap on sendmmsg's vlen
constexpr size_t kIovMax = 1024;       // UIO_MAXIOV: the kernel's cap on msg_iovlen
constexpr size_t kCopyMax = 1 << 20;   // payload bytes copied to send on the target's behalf, per call
constexpr size_t kControlMax = 4096;   // control-message bytes copied
constexpr int kDeferPollMs = 100;      // a deferred send re-checks that its caller still waits this often

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

}  // namespace

// 0, or the errno the kernel would give for an address it cannot take.
int CopyAddr(const Mem &mem, uint64_t ptr, uint64_t len, AddrCopy *out) {
  memset(&out->ss, 0, sizeof out->ss);
  if (len > sizeof out->ss) return EINVAL;
  if (len == 0) return EINVAL;
  if (!mem.Read(ptr, &out->ss, len)) return EFAULT;
  out->len = static_cast<socklen_t>(len);
  return 0;
}

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

}  // namespace mg
