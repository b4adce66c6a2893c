// The DNS sink: UDP and TCP sockets on port 53 inside the sandbox's network namespace, where every
// address is local (guard-exec --dns-sinkhole). Whatever a program sends to any resolver, with
// whichever call, lands here: each query becomes a report event and gets a REFUSED answer, so the
// resolver fails at once instead of waiting for its timeout. Nothing leaves.
#pragma once
#include <poll.h>

#include <functional>
#include <memory>
#include <set>
#include <vector>

#include "common.h"
#include "event.h"

namespace mg {

class DnsSink {
 public:
  using EmitFn = std::function<void(std::unique_ptr<Event>)>;
  explicit DnsSink(EmitFn emit) : emit_(std::move(emit)) {}
  // Takes a socket (dup'ed by the caller); sorts it by type. False when it is not a socket.
  bool Add(Fd sock);
  bool HasUdp(int family) const { return udp_families_.count(family) > 0; }
  bool HasTcp(int family) const { return tcp_families_.count(family) > 0; }
  // The fds to poll, in the order Ready() expects them.
  void PollFds(std::vector<struct pollfd> *out) const;
  // Handles what poll() saw, `fds` starting at this sink's first entry.
  void Ready(const struct pollfd *fds, size_t n);
  // Reads what is left (the last task exited) and closes everything.
  void Drain();

 private:
  void DrainUdp(int fd);
  void Accept(int fd);
  bool ReadTcpQuery(size_t i);  // false: the connection is done (answered, closed or failed)

  EmitFn emit_;
  std::vector<Fd> udp_;
  std::set<int> udp_families_;
  std::vector<Fd> tcp_;
  std::set<int> tcp_families_;
  struct TcpQuery {
    Fd fd;
    std::vector<uint8_t> buf;
  };
  std::vector<TcpQuery> queries_;
  size_t polled_queries_ = 0;
};

}  // namespace mg
