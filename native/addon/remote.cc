#include "remote.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/netlink.h>
#include <linux/openat2.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <linux/seccomp.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstdlib>
#include <cstring>

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_pidfd_getfd
#define SYS_pidfd_getfd 438
#endif
#ifndef SYS_openat2
#define SYS_openat2 437
#endif

namespace mg {

Mem::Mem(int listener, uint64_t id, int pid) : listener_(listener), id_(id) {
  std::string p = "/proc/" + std::to_string(pid) + "/mem";
  fd_.reset(open(p.c_str(), O_RDONLY | O_CLOEXEC));
}

bool Mem::Valid() const {
  uint64_t id = id_;
  return ioctl(listener_, SECCOMP_IOCTL_NOTIF_ID_VALID, &id) == 0;
}

bool Mem::Read(uint64_t addr, void *buf, size_t n) const {
  if (!fd_.ok() || addr == 0) return false;
  char *p = static_cast<char *>(buf);
  size_t done = 0;
  while (done < n) {
    ssize_t r = pread(fd_.get(), p + done, n - done, static_cast<off_t>(addr + done));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    done += static_cast<size_t>(r);
  }
  return Valid();
}

size_t Mem::ReadSome(uint64_t addr, void *buf, size_t max) const {
  if (!fd_.ok() || addr == 0) return 0;
  char *p = static_cast<char *>(buf);
  size_t done = 0;
  while (done < max) {
    // A read stops short at an unmapped page, and the next one fails: what came before is kept.
    size_t want = max - done;
    ssize_t r = pread(fd_.get(), p + done, want, static_cast<off_t>(addr + done));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    done += static_cast<size_t>(r);
  }
  return Valid() ? done : 0;
}

bool Mem::String(uint64_t addr, std::string *out) const {
  out->clear();
  if (!fd_.ok() || addr == 0) return false;
  char chunk[256];
  while (out->size() < kStringMax) {
    size_t page_left = 4096 - ((addr + out->size()) & 4095);
    size_t want = std::min(sizeof chunk, page_left);
    ssize_t r = pread(fd_.get(), chunk, want, static_cast<off_t>(addr + out->size()));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    void *nul = memchr(chunk, 0, static_cast<size_t>(r));
    if (nul != nullptr) {
      out->append(chunk, static_cast<const char *>(nul) - chunk);
      return Valid();
    }
    out->append(chunk, static_cast<size_t>(r));
  }
  return false;  // longer than PATH_MAX: the kernel would refuse it too
}

SockAddr DecodeSockaddr(const uint8_t *b, size_t len) {
  SockAddr sa;
  if (len < 2) {
    sa.family = "other";
    return sa;
  }
  uint16_t fam;
  memcpy(&fam, b, 2);
  char text[INET6_ADDRSTRLEN] = {0};
  if (fam == AF_INET && len >= sizeof(sockaddr_in)) {
    sockaddr_in in;
    memcpy(&in, b, sizeof in);
    sa.family = "inet";
    inet_ntop(AF_INET, &in.sin_addr, text, sizeof text);
    sa.address = text;
    sa.port = ntohs(in.sin_port);
    sa.raw_addr.assign(reinterpret_cast<uint8_t *>(&in.sin_addr), reinterpret_cast<uint8_t *>(&in.sin_addr) + 4);
  } else if (fam == AF_INET6 && len >= sizeof(sockaddr_in6)) {
    sockaddr_in6 in6;
    memcpy(&in6, b, sizeof in6);
    sa.family = "inet6";
    inet_ntop(AF_INET6, &in6.sin6_addr, text, sizeof text);
    sa.address = text;
    sa.port = ntohs(in6.sin6_port);
    sa.raw_addr.assign(in6.sin6_addr.s6_addr, in6.sin6_addr.s6_addr + 16);
  } else if (fam == AF_UNIX) {
    sa.family = "unix";
    size_t off = offsetof(sockaddr_un, sun_path);
    if (len > off) {
      const char *p = reinterpret_cast<const char *>(b + off);
      size_t n = len - off;
      if (p[0] == 0) {
        sa.address = "@" + std::string(p + 1, strnlen(p + 1, n - 1));
      } else {
        sa.address = std::string(p, strnlen(p, n));
      }
    }
  } else if (fam == AF_NETLINK) {
    sa.family = "netlink";
  } else if (fam == AF_UNSPEC) {
    sa.family = "unspec";
  } else {
    sa.family = "other";
    sa.address = "family " + std::to_string(fam);
  }
  return sa;
}

int TgidOf(int tid) {
  std::string p = "/proc/" + std::to_string(tid) + "/status";
  Fd fd(open(p.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.ok()) return tid;
  char buf[2048];
  ssize_t n = read(fd.get(), buf, sizeof buf - 1);
  if (n <= 0) return tid;
  buf[n] = 0;
  const char *t = strstr(buf, "\nTgid:");
  return t ? atoi(t + 6) : tid;
}

bool CredsOf(int pid, uid_t *fsuid, gid_t *fsgid, mode_t *umask_out) {
  std::string p = "/proc/" + std::to_string(pid) + "/status";
  Fd fd(open(p.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.ok()) return false;
  char buf[4096];
  ssize_t n = read(fd.get(), buf, sizeof buf - 1);
  if (n <= 0) return false;
  buf[n] = 0;
  // "Uid:\treal\teffective\tsaved\tfs": the fourth number is the one file access uses.
  auto fourth = [&](const char *key, unsigned long *out) {
    const char *t = strstr(buf, key);
    if (!t) return false;
    t += strlen(key);
    char *end = nullptr;
    for (int i = 0; i < 4; i++) {
      *out = strtoul(t, &end, 10);
      if (end == t) return false;
      t = end;
    }
    return true;
  };
  unsigned long u = 0, g = 0;
  if (!fourth("\nUid:", &u) || !fourth("\nGid:", &g)) return false;
  *fsuid = static_cast<uid_t>(u);
  *fsgid = static_cast<gid_t>(g);
  const char *m = strstr(buf, "\nUmask:");
  *umask_out = m ? static_cast<mode_t>(strtoul(m + 7, nullptr, 8)) : 022;
  return true;
}

Fd RemoteFd(int tgid, int fd) {
  Fd pidfd(static_cast<int>(syscall(SYS_pidfd_open, tgid, 0)));
  if (!pidfd.ok()) return Fd();
  return Fd(static_cast<int>(syscall(SYS_pidfd_getfd, pidfd.get(), fd, 0)));
}

Fd OpenAsTarget(int pid, int tgid, int dirfd, const std::string &path, bool follow, int *err) {
  *err = 0;
  if (path.empty()) {
    *err = ENOENT;
    return Fd();
  }
  struct open_how how;
  memset(&how, 0, sizeof how);
  how.flags = O_PATH | O_CLOEXEC | (follow ? 0 : O_NOFOLLOW);
  how.resolve = RESOLVE_NO_MAGICLINKS;
  Fd base;
  std::string rest = path;
  if (path[0] == '/') {
    // In the target's root (its mount namespace, wherever that is), never above it.
    base.reset(open(("/proc/" + std::to_string(pid) + "/root").c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
    how.resolve |= RESOLVE_IN_ROOT;
    rest.erase(0, rest.find_first_not_of('/'));
    if (rest.empty()) rest = ".";
  } else if (dirfd == AT_FDCWD) {
    base.reset(open(("/proc/" + std::to_string(pid) + "/cwd").c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  } else {
    base = RemoteFd(tgid, dirfd);
  }
  if (!base.ok()) {
    *err = dirfd == AT_FDCWD || path[0] == '/' ? ESRCH : EBADF;
    return Fd();
  }
  int fd = static_cast<int>(syscall(SYS_openat2, base.get(), rest.c_str(), &how, sizeof how));
  if (fd < 0) *err = errno;
  return Fd(fd);
}

std::string FdPath(int fd) {
  std::string p = ReadLink("/proc/self/fd/" + std::to_string(fd));
  if (p.empty() || p[0] != '/') return "";
  const std::string deleted = " (deleted)";
  if (p.size() > deleted.size() && p.compare(p.size() - deleted.size(), deleted.size(), deleted) == 0) return "";
  return p;
}

std::string Normalize(const std::string &path) {
  std::vector<std::string> parts;
  size_t i = 0;
  while (i <= path.size()) {
    size_t j = path.find('/', i);
    if (j == std::string::npos) j = path.size();
    std::string part = path.substr(i, j - i);
    if (part == "..") {
      if (!parts.empty()) parts.pop_back();
    } else if (!part.empty() && part != ".") {
      parts.push_back(part);
    }
    i = j + 1;
  }
  std::string out;
  for (const auto &p : parts) out += "/" + p;
  return out.empty() ? "/" : out;
}

std::string ReadLink(const std::string &p) {
  char buf[4096];
  ssize_t n = readlink(p.c_str(), buf, sizeof buf - 1);
  if (n <= 0) return "";
  return std::string(buf, static_cast<size_t>(n));
}

bool Under(const std::string &path, const std::string &prefix) {
  if (prefix == "/") return true;
  return path == prefix || (path.size() > prefix.size() && path.compare(0, prefix.size(), prefix) == 0 &&
                            path[prefix.size()] == '/');
}

std::string AbsoluteFor(int pid, int dirfd, const std::string &p) {
  if (!p.empty() && p[0] == '/') return Normalize(p);
  std::string dir = dirfd == AT_FDCWD ? ReadLink("/proc/" + std::to_string(pid) + "/cwd")
                                      : ReadLink("/proc/" + std::to_string(pid) + "/fd/" + std::to_string(dirfd));
  return Normalize(dir + "/" + p);
}

}  // namespace mg
