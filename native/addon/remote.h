// The target as the supervisor sees it from outside: its memory (read only to report, or to take
// our own copy of a call's arguments), its file descriptors (duplicated through a pidfd: the kernel
// objects themselves, which no thread can rewrite), its cwd and root.
#pragma once
#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "common.h"

namespace mg {

constexpr size_t kStringMax = 4096;

// Reads the target's memory through /proc/PID/mem, checking after every read that the
// notification is still alive (the PID may otherwise have been reused). What it returns is a copy
// taken at one moment: the target may change the memory right after. Use it to report, or as the
// supervisor's own copy of arguments for a call the supervisor performs itself — never to let the
// kernel run the call on the target's memory (see supervisor.cc).
class Mem {
 public:
  Mem(int listener, uint64_t id, int pid);
  bool Valid() const;
  bool Read(uint64_t addr, void *buf, size_t n) const;
  // Reads at most `max` bytes, stopping at a page boundary if the next page is unreadable.
  size_t ReadSome(uint64_t addr, void *buf, size_t max) const;
  bool String(uint64_t addr, std::string *out) const;

 private:
  int listener_;
  uint64_t id_;
  Fd fd_;
};

struct SockAddr {
  std::string family;  // inet, inet6, unix, netlink, unspec, other
  std::string address;
  int port = -1;
  std::vector<uint8_t> raw_addr;
};

SockAddr DecodeSockaddr(const uint8_t *b, size_t len);

int TgidOf(int tid);
// The target's own fd `fd`, duplicated into this process (pidfd_getfd): the same open file.
Fd RemoteFd(int tgid, int fd);
// An O_PATH handle on what `path` names for the target: relative to its cwd or `dirfd` (AT_FDCWD:
// the cwd), absolute paths inside its root. `follow`: follow a final symlink. -errno on failure.
Fd OpenAsTarget(int pid, int tgid, int dirfd, const std::string &path, bool follow, int *err);
// Where an fd of this process points, as the kernel names it ("" when it cannot say).
std::string FdPath(int fd);
// The target's filesystem uid/gid and umask, from /proc (kernel data, not its memory).
bool CredsOf(int pid, uid_t *fsuid, gid_t *fsgid, mode_t *umask_out);

std::string Normalize(const std::string &path);
std::string ReadLink(const std::string &p);
bool Under(const std::string &path, const std::string &prefix);
// An absolute, normalized form of `p` as the target would name it (for the report and checks).
std::string AbsoluteFor(int pid, int dirfd, const std::string &p);

}  // namespace mg
