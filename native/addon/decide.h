// Shared by the decision files (decide.cc, decide_net.cc, decide_fs.cc): one notified call as the
// supervisor holds it, and the table of calls that change the file system.
#pragma once
#include <linux/seccomp.h>
#include <sys/socket.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "supervisor.h"

namespace mg {

constexpr size_t kPayloadMax = 512;  // payload bytes kept in a report event

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

// Calls that change the file system by path or fd, with where their arguments are.
const std::map<int, PathCall> &PathCalls();

// A sockaddr copied out of the target: the bytes the supervisor will use, never re-read.
struct AddrCopy {
  struct sockaddr_storage ss;
  socklen_t len = 0;
  const struct sockaddr *sa() const { return reinterpret_cast<const struct sockaddr *>(&ss); }
};
// 0, or the errno the kernel would give for an address it cannot take.
int CopyAddr(const Mem &mem, uint64_t ptr, uint64_t len, AddrCopy *out);

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

}  // namespace mg
