// The file system: writes the kernel checks again are left to Landlock (and denied here when outside
// the write list); metadata changes, which Landlock has no right for, are performed by the
// supervisor on the object itself.
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

#ifndef __NR_openat2
#define __NR_openat2 437
#endif

namespace mg {

namespace {

PathCall P(How how, int dirfd, int path) { return PathCall{how, dirfd, path}; }
PathCall Other(PathCall p, int odir, int opath, bool written, bool text = false) {
  p.other_dirfd_arg = odir;
  p.other_path_arg = opath;
  p.other_written = written;
  p.other_is_text = text;
  return p;
}
PathCall Val(PathCall p, int v, int flags = -1, Times t = Times::kNone) {
  p.value_arg = v;
  p.flags_arg = flags;
  p.times = t;
  return p;
}
PathCall FdForm(How how, int fd, int v) {
  PathCall p{how, -1, -1};
  p.fd_arg = fd;
  p.value_arg = v;
  return p;
}
PathCall NoFollow(PathCall p) {
  p.nofollow = true;
  return p;
}

bool WriteFlags(uint64_t flags) { return (flags & O_ACCMODE) != O_RDONLY || (flags & (O_CREAT | O_TRUNC)) != 0; }

}  // namespace

const std::map<int, PathCall> &PathCalls() {
  static const std::map<int, PathCall> calls = {
#ifdef __NR_mkdir
      {__NR_mkdir, P(How::kLandlock, -1, 0)},
      {__NR_rmdir, P(How::kLandlock, -1, 0)},
      {__NR_unlink, P(How::kLandlock, -1, 0)},
      {__NR_rename, Other(P(How::kLandlock, -1, 1), -1, 0, true)},
      {__NR_link, Other(P(How::kLandlock, -1, 1), -1, 0, false)},
      {__NR_symlink, Other(P(How::kLandlock, -1, 1), -1, 0, false, true)},
      {__NR_mknod, P(How::kLandlock, -1, 0)},
      {__NR_chmod, Val(P(How::kMode, -1, 0), 1)},
      {__NR_chown, Val(P(How::kOwner, -1, 0), 1)},
      {__NR_lchown, NoFollow(Val(P(How::kOwner, -1, 0), 1))},
      {__NR_utime, Val(P(How::kTimes, -1, 0), 1, -1, Times::kUtimbuf)},
      {__NR_utimes, Val(P(How::kTimes, -1, 0), 1, -1, Times::kTimeval)},
      {__NR_futimesat, Val(P(How::kTimes, 0, 1), 2, -1, Times::kTimeval)},
#endif
      {__NR_mkdirat, P(How::kLandlock, 0, 1)},
      {__NR_unlinkat, P(How::kLandlock, 0, 1)},
      {__NR_renameat, Other(P(How::kLandlock, 2, 3), 0, 1, true)},
      {__NR_renameat2, Other(P(How::kLandlock, 2, 3), 0, 1, true)},
      {__NR_linkat, Other(P(How::kLandlock, 2, 3), 0, 1, false)},
      {__NR_symlinkat, Other(P(How::kLandlock, 1, 2), -1, 0, false, true)},
      {__NR_mknodat, P(How::kLandlock, 0, 1)},
      {__NR_truncate, P(How::kTruncate, -1, 0)},
      {__NR_fchmodat, Val(P(How::kMode, 0, 1), 2)},
#ifdef __NR_fchmodat2
      {__NR_fchmodat2, Val(P(How::kMode, 0, 1), 2, 3)},
#endif
      {__NR_fchownat, Val(P(How::kOwner, 0, 1), 2, 4)},
      {__NR_utimensat, Val(P(How::kTimes, 0, 1), 2, 3, Times::kTimespec)},
      {__NR_fchmod, FdForm(How::kMode, 0, 1)},
      {__NR_fchown, FdForm(How::kOwner, 0, 1)},
      {__NR_setxattr, P(How::kXattr, -1, 0)},
      {__NR_lsetxattr, P(How::kXattr, -1, 0)},
      {__NR_removexattr, P(How::kXattr, -1, 0)},
      {__NR_lremovexattr, P(How::kXattr, -1, 0)},
      {__NR_fsetxattr, FdForm(How::kXattr, 0, -1)},
      {__NR_fremovexattr, FdForm(How::kXattr, 0, -1)},
  };
  return calls;
}

std::vector<int> PathWriteSyscalls() {
  std::vector<int> out;
  for (const auto &kv : PathCalls()) out.push_back(kv.first);
  return out;
}

namespace {

bool WriteAllowed(const Policy &p, const std::string &path) {
  for (const auto &w : p.write_allowed)
    if (Under(path, w)) return true;
  return false;
}

}  // namespace

Answer Supervisor::OpenForWrite(Call &c) {
  const uint64_t *a = c.a;
  const int nr = c.nr;
  int dirfd = AT_FDCWD;
  uint64_t path_ptr = 0, flags = 0;
  bool flags_in_memory = false;
  if (nr == __NR_open) {
    path_ptr = a[0];
    flags = a[1];
  } else if (nr == __NR_creat) {
    path_ptr = a[0];
    flags = O_CREAT | O_WRONLY | O_TRUNC;
  } else {
    dirfd = static_cast<int>(a[0]);
    path_ptr = a[1];
    if (nr == __NR_openat) {
      flags = a[2];
    } else {
      flags_in_memory = true;  // openat2: struct open_how, read once here and again by the kernel
      if (!c.mem.Read(a[2], &flags, sizeof flags)) flags = O_RDWR | O_TRUNC;
    }
  }
  bool trunc = (flags & O_TRUNC) != 0 || flags_in_memory;
  if (!WriteFlags(flags) && !flags_in_memory) return Answer::Continue();  // registers say read-only
  // Landlock enforces the write list (truncation from ABI 3): what the kernel does is bounded by it
  // whatever the memory says by then.
  bool backed = policy_.landlock_abi >= (trunc ? 3 : 1);
  if (!WriteFlags(flags)) {
    // openat2 read as read-only: continued only where Landlock would stop a write anyway.
    return backed || !policy_.write_check ? Answer::Continue() : Answer::Error(EACCES);
  }
  Event &ev = c.Add();
  ev.has_flags = true;
  ev.flags = flags;
  std::string p;
  if (c.mem.String(path_ptr, &p)) {
    ev.path = AbsoluteFor(c.pid, dirfd, p);
    ev.has_path = true;
  }
  if (!policy_.write_check) return Answer::Continue();
  if (!ev.has_path || !WriteAllowed(policy_, ev.path)) return Answer::Error(EPERM);
  if (!backed) {
    ev.note = "no kernel layer enforces the write list here (Landlock unavailable)";
    return Answer::Error(EPERM);
  }
  return Answer::Continue();
}

Answer Supervisor::PathWrite(Call &c) {
  const uint64_t *a = c.a;
  const PathCall &pc = PathCalls().at(c.nr);
  Event &ev = c.Add();
  const int dirfd = pc.dirfd_arg >= 0 ? static_cast<int>(a[pc.dirfd_arg]) : AT_FDCWD;
  std::string raw;
  bool has_raw = pc.path_arg >= 0 && a[pc.path_arg] != 0 && c.mem.String(a[pc.path_arg], &raw);
  if (has_raw) {
    ev.has_path = true;
    ev.path = AbsoluteFor(c.pid, dirfd, raw);
  }
  if (pc.other_dirfd_arg != -2) {
    if (pc.other_is_text) {
      ev.has_other_path = c.mem.String(a[pc.other_path_arg], &ev.other_path);
    } else {
      std::string o;
      int odir = pc.other_dirfd_arg >= 0 ? static_cast<int>(a[pc.other_dirfd_arg]) : AT_FDCWD;
      if ((ev.has_other_path = c.mem.String(a[pc.other_path_arg], &o))) ev.other_path = AbsoluteFor(c.pid, odir, o);
    }
  }
  if (!policy_.write_check) return Answer::Continue();  // nothing to check: writes are only reported
  if (pc.how == How::kLandlock || pc.how == How::kTruncate) {
    if (!ev.has_path || !WriteAllowed(policy_, ev.path)) return Answer::Error(EPERM);
    if (pc.other_written && (!ev.has_other_path || !WriteAllowed(policy_, ev.other_path))) return Answer::Error(EPERM);
    if (policy_.landlock_abi < (pc.how == How::kTruncate ? 3 : 1)) {
      ev.note = "no kernel layer enforces the write list here (Landlock unavailable)";
      return Answer::Error(EPERM);
    }
    return Answer::Continue();  // Landlock holds the kernel to the write list, whatever it re-reads
  }
  // Metadata: Landlock has no right for it, so the supervisor acts itself, on the object.
  uint64_t at_flags = pc.flags_arg >= 0 ? a[pc.flags_arg] : 0;
  Fd obj;
  bool fd_form = pc.fd_arg >= 0 || (pc.path_arg >= 0 && a[pc.path_arg] == 0 && c.nr == __NR_utimensat) ||
                 (has_raw && raw.empty() && (at_flags & AT_EMPTY_PATH));
  if (fd_form) {
    int fd = pc.fd_arg >= 0 ? static_cast<int>(a[pc.fd_arg]) : dirfd;
    ev.fd = fd;
    if (fd == AT_FDCWD) return Answer::Error(EFAULT);
    obj = RemoteFd(c.Tgid(), fd);
    if (!obj.ok()) return Answer::Error(EBADF);
  } else {
    if (!has_raw) return Answer::Error(EFAULT);
    bool follow = !pc.nofollow && !(at_flags & AT_SYMLINK_NOFOLLOW);
    int err = 0;
    obj = OpenAsTarget(c.pid, c.Tgid(), dirfd, raw, follow, &err);
    if (!obj.ok()) {
      // Not there: the kernel would say so too. Denied outright when it is outside the list anyway.
      return Answer::Error(ev.has_path && !WriteAllowed(policy_, ev.path) ? EPERM : err);
    }
  }
  // The object itself names where it is: what the call would act on, whatever the path said.
  std::string where = FdPath(obj.get());
  if (!where.empty()) {
    ev.has_path = true;
    ev.path = where;
  }
  if (where.empty() || !WriteAllowed(policy_, where)) return Answer::Error(EPERM);
  if (pc.how == How::kXattr) {
    ev.note = "extended attributes are not changed behind the walls";
    return Answer::Error(EPERM);
  }
  struct stat st;
  uid_t fsuid = 0;
  gid_t fsgid = 0;
  mode_t um = 022;
  if (fstat(obj.get(), &st) != 0 || !CredsOf(c.pid, &fsuid, &fsgid, &um)) return Answer::Error(EPERM);
  // The supervisor may hold capabilities the caller lacks: it acts only as the owner could.
  if (st.st_uid != fsuid) return Answer::Error(EPERM);
  // A file with another name elsewhere would be changed there too.
  if (!S_ISDIR(st.st_mode) && st.st_nlink > 1) {
    ev.note = "the file has other names (hard links), maybe outside the write list";
    return Answer::Error(EPERM);
  }
  std::string proc = "/proc/self/fd/" + std::to_string(obj.get());
  if (pc.how == How::kMode) {
    mode_t mode = static_cast<mode_t>(a[pc.value_arg]) & 07777;
    if (mode & (S_ISUID | S_ISGID)) {
      ev.note = "set-user-ID and set-group-ID bits are never set behind the walls";
      return Answer::Error(EPERM);
    }
    if (S_ISLNK(st.st_mode)) return Answer::Error(EOPNOTSUPP);
    if (fchmodat(AT_FDCWD, proc.c_str(), mode, 0) == 0) return Answer::Value(0);
    return Answer::Failed(errno);
  }
  if (pc.how == How::kOwner) {
    uint32_t uid = static_cast<uint32_t>(a[pc.value_arg]);
    uint32_t gid = static_cast<uint32_t>(a[pc.value_arg + 1]);
    if ((uid != 0xffffffffu && uid != fsuid) || (gid != 0xffffffffu && gid != fsgid)) return Answer::Error(EPERM);
    if (fchownat(obj.get(), "", uid, gid, AT_EMPTY_PATH) == 0) return Answer::Value(0);
    return Answer::Failed(errno);
  }
  // kTimes: the supervisor's own copy of the times.
  struct timespec ts[2];
  struct timespec *tsp = nullptr;
  uint64_t tptr = a[pc.value_arg];
  if (tptr != 0) {
    tsp = ts;
    if (pc.times == Times::kUtimbuf) {
      int64_t t[2];
      if (!c.mem.Read(tptr, t, sizeof t)) return Answer::Error(EFAULT);
      ts[0] = {t[0], 0};
      ts[1] = {t[1], 0};
    } else if (pc.times == Times::kTimeval) {
      struct timeval tv[2];
      if (!c.mem.Read(tptr, tv, sizeof tv)) return Answer::Error(EFAULT);
      for (int i = 0; i < 2; i++) ts[i] = {tv[i].tv_sec, tv[i].tv_usec * 1000};
    } else if (!c.mem.Read(tptr, ts, sizeof ts)) {
      return Answer::Error(EFAULT);
    }
  }
  if (S_ISLNK(st.st_mode)) return Answer::Error(EOPNOTSUPP);
  if (utimensat(AT_FDCWD, proc.c_str(), tsp, 0) == 0) return Answer::Value(0);
  return Answer::Failed(errno);
}

}  // namespace mg
