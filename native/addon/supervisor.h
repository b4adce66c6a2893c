// The seccomp notification supervisor: one thread per sandbox reads the listener and answers each
// notified call per the policy TypeScript compiled (decide*.cc), reading the target from outside
// (remote.cc), reading the DNS sink (dns_sink.cc), and handing every event to JavaScript through a
// ThreadSafeFunction. The rule every answer follows is written at the top of supervisor.cc.
#pragma once
#include <napi.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "common.h"
#include "dns_sink.h"
#include "event.h"
#include "remote.h"

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
  // Landlock ABI in force in the target (0: none). Write checks lean on it (see supervisor.cc).
  int landlock_abi = 0;
  std::set<int> always_denied;
  std::map<int, std::pair<int, std::set<uint32_t>>> cond_denied;  // nr → (arg index, low-32 values)
  std::map<int, std::pair<int, uint64_t>> mask_denied;            // nr → (arg index, bits that deny)
  std::set<int> runtime_probes;                                   // answered ENOSYS, reported as such
  std::set<int> socket_families;                                  // empty: any
  std::set<int> netlink_protocols;
  std::set<uint32_t> personality_allowed;
  int default_errno = 1;  // for calls no profile rule allows; 0: allowed
  std::map<int, std::vector<ProfileRule>> profile_rules;
};

// The calls that change the file system through a path or an fd, which the supervisor decides
// (the BPF side notifies exactly these).
std::vector<int> PathWriteSyscalls();

// A call's answer.
struct Answer {
  enum Kind { kContinue, kError, kValue, kDeferred } kind = kContinue;
  int err = 0;
  int64_t val = 0;
  bool performed = false;  // an error the call itself got when the supervisor performed it
  static Answer Continue() { return {}; }
  static Answer Error(int e) { return {kError, e, 0}; }
  static Answer Failed(int e) { return {kError, e, 0, true}; }
  static Answer Value(int64_t v) { return {kValue, 0, v}; }
  static Answer Deferred() { return {kDeferred, 0, 0}; }
};

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
  void Emit(std::unique_ptr<Event> ev);
  void Join();

  // decide.cc, decide_net.cc, decide_fs.cc: one notification in, one answer out (or handed to a
  // helper thread).
  void Handle(const void *notif);
  struct Call;
  Answer Decide(Call &c);
  Answer Connect(Call &c);
  Answer Bind(Call &c);
  Answer Listen(Call &c);
  Answer SendTo(Call &c);
  Answer SendMsg(Call &c, bool many);
  Answer Exec(Call &c);
  Answer PathWrite(Call &c);
  Answer OpenForWrite(Call &c);
  // Runs `work` on its own thread and answers the call with its result: for a call the supervisor
  // performs that may block (a blocking socket), so the loop keeps answering everyone else.
  void Defer(uint64_t id, std::function<int64_t(const std::function<bool()> &alive)> work);

  Fd listener_;
  Fd wake_;
  DnsSink sink_;
  Policy policy_;
  bool first_exec_done_ = false;
  // Calls being performed on helper threads (shared with them: they may outlive this object).
  std::shared_ptr<std::atomic<int>> deferred_ = std::make_shared<std::atomic<int>>(0);
  std::map<std::pair<int, int>, SockAddr> fake_peers_;  // (tgid, fd) → simulated peer
  std::map<std::pair<int, int>, std::pair<SockAddr, bool>> binds_;  // (tgid, fd) → address, denied
  Napi::ThreadSafeFunction tsfn_;
  std::thread thread_;
  bool joined_ = false;
  bool finalized_ = false;  // main thread only: set by the thread-safe function's finalizer
};

}  // namespace mg
