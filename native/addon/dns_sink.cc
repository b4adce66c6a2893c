#include "dns_sink.h"

#include <errno.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/syscall.h>

#include <algorithm>
#include <cstring>

namespace mg {

namespace {

constexpr size_t kPayloadMax = 512;      // bytes of a query kept for the report
constexpr size_t kTcpQueriesMax = 16;    // DNS-over-TCP connections read at once
constexpr int kUdpBudget = 256;          // datagrams read per wake-up, so the listener is not starved

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

}  // namespace

// A connection to a TCP sink: read in turn with the others (never blocking the supervisor).
void DnsSink::Accept(int fd) {
  for (;;) {
    Fd c(accept4(fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
    if (!c.ok()) return;
    if (queries_.size() >= kTcpQueriesMax) continue;  // closes it: the resolver sees a reset
    queries_.push_back({std::move(c), {}});
  }
}

// Reads what the connection has; once a whole query (2-byte length, then the message) or as much
// as fits is there, reports it, answers REFUSED and closes.
bool DnsSink::ReadTcpQuery(size_t i) {
  TcpQuery &q = queries_[i];
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
  emit_(SinkEvent("tcp", q.buf.data(), q.buf.size(), q.buf.size(), to, to_len,
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
void DnsSink::DrainUdp(int fd) {
  for (int budget = 0; budget < kUdpBudget; budget++) {
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
    emit_(SinkEvent("udp", buf, got, static_cast<size_t>(n), to, to_len,
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


bool DnsSink::Add(Fd sock) {
  int domain = 0, type = 0;
  socklen_t dl = sizeof domain, tl = sizeof type;
  if (getsockopt(sock.get(), SOL_SOCKET, SO_DOMAIN, &domain, &dl) != 0 || getsockopt(sock.get(), SOL_SOCKET, SO_TYPE, &type, &tl) != 0)
    return false;
  if (type == SOCK_STREAM) {
    tcp_families_.insert(domain);
    tcp_.push_back(std::move(sock));
  } else {
    udp_families_.insert(domain);
    udp_.push_back(std::move(sock));
  }
  return true;
}

void DnsSink::PollFds(std::vector<struct pollfd> *out) const {
  for (auto &f : udp_) out->push_back({f.get(), POLLIN, 0});
  for (auto &f : tcp_) out->push_back({f.get(), POLLIN, 0});
  for (auto &q : queries_) out->push_back({q.fd.get(), POLLIN, 0});
  const_cast<DnsSink *>(this)->polled_queries_ = queries_.size();
}

void DnsSink::Ready(const struct pollfd *fds, size_t n) {
  size_t k = 0;
  for (size_t i = 0; i < udp_.size() && k < n; i++, k++)
    if (fds[k].revents & POLLIN) DrainUdp(udp_[i].get());
  for (size_t i = 0; i < tcp_.size() && k < n; i++, k++)
    if (fds[k].revents & POLLIN) Accept(tcp_[i].get());
  // Connections accepted just now are polled next round; read the ones polled this round.
  std::vector<bool> keep(queries_.size(), true);
  for (size_t i = 0; i < polled_queries_ && i < queries_.size() && k < n; i++, k++)
    if (fds[k].revents) keep[i] = ReadTcpQuery(i);
  for (size_t i = queries_.size(); i-- > 0;)
    if (!keep[i]) queries_.erase(queries_.begin() + static_cast<long>(i));
}

void DnsSink::Drain() {
  for (auto &s : udp_) DrainUdp(s.get());
  for (size_t i = 0; i < queries_.size(); i++) ReadTcpQuery(i);
  udp_.clear();
  tcp_.clear();
  queries_.clear();
}

}  // namespace mg
