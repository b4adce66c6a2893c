// The seccomp notification supervisor: one thread per sandbox reads the listener, decodes the
// arguments it needs from /proc/PID/mem, answers per the policy TypeScript compiled, and hands
// every event to JavaScript through a ThreadSafeFunction.
#pragma once
#include <napi.h>

#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "common.h"

namespace mg {

struct NetAllow {
  int family = 0;             // AF_INET or AF_INET6
  std::vector<uint8_t> addr;  // empty: any address
  int port = 0;               // 0: any port
};

struct Cond {
  int index = 0;
  int op = 0;  // 1 ne, 2 lt, 3 le, 4 eq, 5 ge, 6 gt, 7 masked_eq
  uint64_t a = 0;
  uint64_t b = 0;
};

struct ProfileRule {
  int action = 0;  // 0 allow, 1 errno, 2 kill
  int err = 0;
  std::vector<Cond> conds;
};

struct Policy {
  int first_exec_pid = 0;
  bool net_deny = true;
  bool fake_dns = true;
  bool unix_deny = true;
  std::vector<NetAllow> allow;
  int exec_mode = 0;  // 0: first only, 1: allow all, 2: deny all
  std::vector<std::string> write_allowed;
  std::vector<std::string> unix_allowed;
  bool write_check = true;
  std::set<int> always_denied;
  std::map<int, std::pair<int, std::set<uint32_t>>> cond_denied;  // nr → (arg index, low-32 values)
  std::set<uint32_t> personality_allowed;
  int default_errno = 1;  // for calls no profile rule allows; 0: allowed
  std::map<int, std::vector<ProfileRule>> profile_rules;
};

struct SockAddr {
  std::string family;  // inet, inet6, unix, netlink, other
  std::string address;
  int port = -1;
  std::vector<uint8_t> raw_addr;
};

struct Event {
  double time = 0;
  int pid = 0;
  int nr = 0;
  bool denied = false;
  bool simulated = false;
  bool by_profile = false;
  bool always = false;
  int err = 0;
  uint64_t args[6] = {0, 0, 0, 0, 0, 0};
  int fd = -1;
  bool has_sockaddr = false;
  SockAddr sockaddr;
  std::string sock_type;
  std::vector<uint8_t> payload;
  size_t payload_len = 0;
  int msg_index = -1;
  bool has_path = false;
  std::string path;
  // rename/link: the source; symlink: the link text.
  bool has_other_path = false;
  std::string other_path;
  std::vector<std::string> argv;
  bool has_flags = false;
  uint64_t flags = 0;
  std::string note;
  bool end = false;
  std::string end_error;
};

// The calls that change the file system through a path, which the supervisor decodes and checks
// against the write list (the BPF side notifies exactly these).
std::vector<int> PathWriteSyscalls();

class Supervisor : public Napi::ObjectWrap<Supervisor> {
 public:
  static Napi::Function Init(Napi::Env env);
  explicit Supervisor(const Napi::CallbackInfo &info);
  ~Supervisor() override;

 private:
  Napi::Value Stop(const Napi::CallbackInfo &info);
  // ref()/unref(): whether a live supervisor keeps Node's event loop alive (the unpickler pool
  // unrefs idle walled workers). No-ops once the thread-safe function is finalized.
  Napi::Value Ref(const Napi::CallbackInfo &info);
  Napi::Value Unref(const Napi::CallbackInfo &info);
  void Loop();
  void Handle(const void *notif);
  void DrainSinkhole(int fd);
  void AcceptTcpSink(int fd);
  bool ReadTcpQuery(size_t i);  // false: the connection is done (answered, closed or failed)
  void Emit(std::unique_ptr<Event> ev);
  void Join();

  Fd listener_;
  Fd wake_;
  // UDP sockets on port 53 inside the sandbox's network namespace, where every address is local
  // (guard-exec --dns-sinkhole): what any program sends to any resolver lands here.
  std::vector<Fd> sinkholes_;
  std::set<int> sink_families_;  // AF_INET / AF_INET6 of the UDP sinks
  // The same for DNS over TCP: listening sockets, and the connections being read.
  std::vector<Fd> tcp_sinks_;
  std::set<int> tcp_sink_families_;
  struct TcpQuery {
    Fd fd;
    std::vector<uint8_t> buf;
  };
  std::vector<TcpQuery> tcp_queries_;
  Policy policy_;
  bool first_exec_done_ = false;
  std::map<std::pair<int, int>, SockAddr> fake_peers_;  // (tgid, fd) → simulated peer
  std::map<std::pair<int, int>, std::pair<SockAddr, bool>> binds_;  // (tgid, fd) → address, denied
  Napi::ThreadSafeFunction tsfn_;
  std::thread thread_;
  bool joined_ = false;
  bool finalized_ = false;  // main thread only: set by the thread-safe function's finalizer
};

}  // namespace mg
