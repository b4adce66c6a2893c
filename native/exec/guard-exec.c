/*
 * guard-exec: modelguard's one-shot launcher.
 *
 * It runs as two processes:
 *   init   the process execa started. It stays outside every wall: it becomes a child
 *          subreaper, forwards signals to the target, reaps every orphan, and when the target
 *          exits it stops whatever the target left behind, then exits with the target's status
 *          (128 + signal when killed). This is the PID-1 duty that `guard entrypoint` needs too.
 *   target the forked child: it raises the walls (network namespace, rlimits, pids cgroup,
 *          Landlock, no_new_privs, seccomp with a notification listener) and execve()s the
 *          command. Between fork and execve it only makes plain system calls.
 *
 * Control channel (--ctl FD, a stream socket from the parent):
 *   parent → target  u32 count, then per filter a u32 length and that many bytes of BPF
 *                    (struct sock_filter[]); the last filter is installed with NEW_LISTENER. The
 *                    target reads them after its other walls are up, so the parent may still be
 *                    compiling them while guard-exec starts.
 *   target → parent  the listener fd, as SCM_RIGHTS over --listener-sock (a socketpair end), sent
 *                    by a helper thread created before any filter, so its sendmsg is never filtered
 *   target → parent  with --dns-sinkhole, before any filter: each DNS sink socket as SCM_RIGHTS
 *                    (tag 'S') over --listener-sock, ahead of the listener
 *   target → parent  "L <pid> scm netns=<0|1> landlock=<abi> pids=<0|1> sinks=<n> mem=<cgroup|rlimit|none>
 *                    tmp=<0|1> userns=<0|1> getfd=<0|1>\n" once it is sent
 *   parent → target  "G": go ahead and execve
 *   any    → parent  "E <step> <errno>\n" when a step failed (the process then exits 127)
 *   init   → parent  "X <code> <signal> - oom=<kills> mempeak=<bytes> tmpfs<i>=<used>/<size>:<path>\n" when
 *                    the target has been reaped (path %-encoded); with --hold, init then waits for the
 *                    parent to close the channel before it exits, so the run's mount namespace stays
 *                    readable (/proc/PID/root) while the parent reads the last events
 * --memory-max BYTES: a memory cgroup below guard-exec's own (v1 or v2), RLIMIT_DATA where none can be had.
 * --tmpfs PATH=BYTES (repeatable): init enters a mount namespace of its own and mounts a private tmpfs of
 * that size on PATH (the run's $TMPDIR, /dev/shm); the target and everything it starts share it, and it
 * is gone when they are. Without the privilege to do so, the folders stay as they are (tmp=0).
 * --tmpfs-or-deny PATH=BYTES: the same, but without a private tmpfs PATH is left out of the write list
 * (what is written to a shared /dev/shm would outlive the run).
 * --userns: without CAP_SYS_ADMIN, the namespaces --netns and --tmpfs ask for are made inside a user
 * namespace of the run's own (step_user_namespace), where the kernel and the seccomp profile allow one.
 * --keep-fd FD (repeatable) keeps another inherited fd open in the target across execve: the
 * unpickler worker's Node IPC channel travels this way.
 * Every policy decision (which syscalls, which paths) is made by the caller; this file only
 * applies what its arguments say.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
/* The sanitizer build (scripts/test-asan.sh): AddressSanitizer maps its shadow memory (~20 TiB of
 * private writable address space, reserved at start-up) before main, so any RLIMIT_AS or RLIMIT_DATA
 * below that makes every later mmap of this process fail (measured: the handoff thread's first
 * allocation got ENOMEM right after the profile's `as` limit of 64 GiB, "ERROR: Failed to mmap",
 * exit 1 before execve). ASan documents it does not work under such limits. In that build only,
 * the two address-space limits are not applied (and a memory limit by rlimit is reported as
 * mem=none, i.e. not enforced); every other wall is the same. A normal build never sets this. */
#if defined(__SANITIZE_ADDRESS__)
#define SANITIZER_ADDRESS_SPACE 1
#else
#define SANITIZER_ADDRESS_SPACE 0
#endif
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/seccomp.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <termios.h>
#include <pthread.h>
#include <unistd.h>

/* Landlock ABI constants, declared here so the build does not depend on new kernel headers. */
#ifndef SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV
#define SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV (1UL << 5)
#endif
#define LL_CREATE_RULESET_VERSION (1U << 0)
#define LL_RULE_PATH_BENEATH 1
#define LL_RULE_NET_PORT 2
#define LL_FS_EXECUTE (1ULL << 0)
#define LL_FS_WRITE_FILE (1ULL << 1)
#define LL_FS_READ_FILE (1ULL << 2)
#define LL_FS_READ_DIR (1ULL << 3)
#define LL_FS_REMOVE_DIR (1ULL << 4)
#define LL_FS_REMOVE_FILE (1ULL << 5)
#define LL_FS_MAKE_CHAR (1ULL << 6)
#define LL_FS_MAKE_DIR (1ULL << 7)
#define LL_FS_MAKE_REG (1ULL << 8)
#define LL_FS_MAKE_SOCK (1ULL << 9)
#define LL_FS_MAKE_FIFO (1ULL << 10)
#define LL_FS_MAKE_BLOCK (1ULL << 11)
#define LL_FS_MAKE_SYM (1ULL << 12)
#define LL_FS_REFER (1ULL << 13)
#define LL_FS_TRUNCATE (1ULL << 14)
#define LL_NET_BIND_TCP (1ULL << 0)
#define LL_NET_CONNECT_TCP (1ULL << 1)
#define LL_SCOPE_ABSTRACT_UNIX (1ULL << 0)
#define LL_SCOPE_SIGNAL (1ULL << 1)
#ifndef __NR_landlock_create_ruleset
#define __NR_landlock_create_ruleset 444
#define __NR_landlock_add_rule 445
#define __NR_landlock_restrict_self 446
#endif
#ifndef __NR_close_range
#define __NR_close_range 436
#endif

struct ll_ruleset_attr {
  uint64_t handled_access_fs;
  uint64_t handled_access_net;
  uint64_t scoped;
};
struct ll_path_beneath_attr {
  uint64_t allowed_access;
  int32_t parent_fd;
} __attribute__((packed));
struct ll_net_port_attr {
  uint64_t allowed_access;
  uint64_t port;
};

#define MAX_LIST 1024
#define MAX_TMPFS 4
#define MAX_FILTERS 4

struct rlimit_opt {
  int resource;
  struct rlimit value;
};

struct options {
  int ctl;
  int listener_sock;
  int netns;
  int landlock;
  int landlock_net;
  int landlock_scope;
  int pgroup;
  int keep_caps;
  int userns;
  int dns_sinkhole;
  long pids_max;
  unsigned long long memory_max;
  char *tmpfs_paths[MAX_TMPFS];
  unsigned long long tmpfs_sizes[MAX_TMPFS];
  int tmpfs_or_deny[MAX_TMPFS];
  int n_tmpfs;
  int hold;
  int kill_grace_ms;
  const char *write_paths[MAX_LIST];
  int n_write;
  const char *read_paths[MAX_LIST];
  int n_read;
  unsigned allow_ports[MAX_LIST];
  int n_ports;
  struct rlimit_opt rlimits[16];
  int n_rlimits;
  /* --keep-fd: extra inherited fds the target keeps open across execve (e.g. Node's IPC channel). */
  int keep_fds[8];
  int n_keep;
  char **argv;
};

static int ctl_fd = -1;

static void closep(int *fd) {
  if (*fd >= 0) close(*fd);
}
#define cleanup_fd __attribute__((cleanup(closep)))

static void write_all(int fd, const char *buf, size_t len) {
  while (len > 0) {
    ssize_t n = write(fd, buf, len);
    if (n < 0) {
      if (errno == EINTR) continue;
      return;
    }
    buf += n;
    len -= (size_t)n;
  }
}

static int read_full(int fd, void *buf, size_t len) {
  char *p = buf;
  while (len > 0) {
    ssize_t n = read(fd, p, len);
    if (n < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    if (n == 0) {
      errno = EPIPE;
      return -1;
    }
    p += n;
    len -= (size_t)n;
  }
  return 0;
}

/* A failed step: tell the parent which one and why, then leave. Async-signal-safe. */
__attribute__((noreturn)) static void die_step(const char *step, int err) {
  char line[160];
  int n = snprintf(line, sizeof line, "E %s %d\n", step, err);
  if (ctl_fd >= 0 && n > 0) write_all(ctl_fd, line, (size_t)n);
  else if (n > 0) write_all(2, line, (size_t)n);
  _exit(127);
}

__attribute__((noreturn)) static void usage(const char *why) {
  fprintf(stderr, "guard-exec: %s\nusage: guard-exec --ctl FD [--netns] [--landlock] [--write PATH]... "
                  "[--read PATH]... [--landlock-net] [--allow-port N]... [--rlimit NAME=SOFT[:HARD]]... [--dns-sinkhole] "
                  "[--pids-max N] [--memory-max BYTES] [--tmpfs PATH=BYTES]... [--hold] [--pgroup] [--keep-fd FD]... [--userns] "
                  "-- CMD ARGS...\n", why);
  exit(2);
}

static int rlimit_by_name(const char *name) {
  static const struct { const char *name; int res; } table[] = {
      {"as", RLIMIT_AS},         {"nproc", RLIMIT_NPROC},   {"nofile", RLIMIT_NOFILE},
      {"cpu", RLIMIT_CPU},       {"fsize", RLIMIT_FSIZE},   {"core", RLIMIT_CORE},
      {"stack", RLIMIT_STACK},   {"memlock", RLIMIT_MEMLOCK}, {"data", RLIMIT_DATA},
  };
  for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
    if (strcmp(table[i].name, name) == 0) return table[i].res;
  return -1;
}

static rlim_t parse_rlim(const char *s) {
  if (strcmp(s, "inf") == 0 || strcmp(s, "unlimited") == 0) return RLIM_INFINITY;
  char *end;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 10);
  if (errno || end == s || (*end && *end != ':')) usage("bad rlimit value");
  return (rlim_t)v;
}

static void parse_args(int argc, char **argv, struct options *o) {
  memset(o, 0, sizeof *o);
  o->ctl = -1;
  o->listener_sock = -1;
  o->kill_grace_ms = 2000;
  int i = 1;
  for (; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (strcmp(a, "--") == 0) {
      i++;
      break;
    } else if (strcmp(a, "--ctl") == 0 && v) {
      o->ctl = atoi(v);
      i++;
    } else if (strcmp(a, "--listener-sock") == 0 && v) {
      o->listener_sock = atoi(v);
      i++;
    } else if (strcmp(a, "--keep-fd") == 0 && v) {
      int fd = atoi(v);
      if (o->n_keep >= 8 || fd < 3) usage("bad --keep-fd (at most 8, each >= 3)");
      o->keep_fds[o->n_keep++] = fd;
      i++;
    } else if (strcmp(a, "--netns") == 0) {
      o->netns = 1;
    } else if (strcmp(a, "--dns-sinkhole") == 0) {
      o->dns_sinkhole = 1;
    } else if (strcmp(a, "--landlock") == 0) {
      o->landlock = 1;
    } else if (strcmp(a, "--landlock-net") == 0) {
      o->landlock_net = 1;
    } else if (strcmp(a, "--landlock-scope") == 0) {
      o->landlock_scope = 1;
    } else if (strcmp(a, "--keep-caps") == 0) {
      o->keep_caps = 1;
    } else if (strcmp(a, "--userns") == 0) {
      o->userns = 1;
    } else if (strcmp(a, "--pgroup") == 0) {
      o->pgroup = 1;
    } else if (strcmp(a, "--write") == 0 && v) {
      if (o->n_write >= MAX_LIST) usage("too many --write");
      o->write_paths[o->n_write++] = v;
      i++;
    } else if (strcmp(a, "--read") == 0 && v) {
      if (o->n_read >= MAX_LIST) usage("too many --read");
      o->read_paths[o->n_read++] = v;
      i++;
    } else if (strcmp(a, "--allow-port") == 0 && v) {
      if (o->n_ports >= MAX_LIST) usage("too many --allow-port");
      o->allow_ports[o->n_ports++] = (unsigned)atoi(v);
      i++;
    } else if (strcmp(a, "--memory-max") == 0 && v) {
      o->memory_max = strtoull(v, NULL, 10);
      i++;
    } else if ((strcmp(a, "--tmpfs") == 0 || strcmp(a, "--tmpfs-or-deny") == 0) && v) {
      const char *eq = strrchr(v, '=');
      if (!eq || eq == v || o->n_tmpfs >= MAX_TMPFS) usage("bad --tmpfs (PATH=BYTES, at most 4)");
      char *path = strndup(v, (size_t)(eq - v));
      if (!path) usage("out of memory");
      o->tmpfs_or_deny[o->n_tmpfs] = strcmp(a, "--tmpfs-or-deny") == 0;
      o->tmpfs_paths[o->n_tmpfs] = path;
      o->tmpfs_sizes[o->n_tmpfs++] = strtoull(eq + 1, NULL, 10);
      i++;
    } else if (strcmp(a, "--hold") == 0) {
      o->hold = 1;
    } else if (strcmp(a, "--pids-max") == 0 && v) {
      o->pids_max = atol(v);
      i++;
    } else if (strcmp(a, "--kill-grace-ms") == 0 && v) {
      o->kill_grace_ms = atoi(v);
      i++;
    } else if (strcmp(a, "--rlimit") == 0 && v) {
      char name[32];
      const char *eq = strchr(v, '=');
      if (!eq || (size_t)(eq - v) >= sizeof name || o->n_rlimits >= 16) usage("bad --rlimit");
      memcpy(name, v, (size_t)(eq - v));
      name[eq - v] = 0;
      int res = rlimit_by_name(name);
      if (res < 0) usage("unknown rlimit");
      struct rlimit_opt *r = &o->rlimits[o->n_rlimits++];
      r->resource = res;
      r->value.rlim_cur = parse_rlim(eq + 1);
      const char *colon = strchr(eq + 1, ':');
      r->value.rlim_max = colon ? parse_rlim(colon + 1) : r->value.rlim_cur;
      i++;
    } else {
      usage("unknown option");
    }
  }
  if (o->ctl < 0) usage("--ctl is required");
  if (i >= argc) usage("no command");
  o->argv = &argv[i];
}

/* Closes every fd >= 3 except the control socket, the listener socket and the --keep-fd list. */
static void close_inherited(const struct options *o) {
  int keep[12];
  int n = 0;
  keep[n++] = o->ctl;
  if (o->listener_sock >= 0) keep[n++] = o->listener_sock;
  for (int i = 0; i < o->n_keep; i++) {
    if (fcntl(o->keep_fds[i], F_GETFD) < 0) usage("--keep-fd is not an open fd");
    keep[n++] = o->keep_fds[i];
  }
  for (int i = 1; i < n; i++) /* insertion sort: at most 10 entries */
    for (int j = i; j > 0 && keep[j - 1] > keep[j]; j--) {
      int t = keep[j];
      keep[j] = keep[j - 1];
      keep[j - 1] = t;
    }
  unsigned from = 3;
  for (int i = 0; i < n; i++) {
    if ((unsigned)keep[i] > from) syscall(__NR_close_range, from, (unsigned)keep[i] - 1, 0);
    if ((unsigned)keep[i] + 1 > from) from = (unsigned)keep[i] + 1;
  }
  syscall(__NR_close_range, from, ~0U, 0);
}

/* ---- init side ------------------------------------------------------------------------- */

static const int forwarded[] = {SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH, SIGCONT};

static char cgroup_dir[256];

/* A pids cgroup bounds a fork bomb even for root, whom RLIMIT_NPROC does not bind. */
static int make_pids_cgroup(long pids_max) {
  static const char *roots[] = {"/sys/fs/cgroup/pids", "/sys/fs/cgroup"};
  for (size_t i = 0; i < 2; i++) {
    char probe[300];
    snprintf(probe, sizeof probe, "%s/pids.max", roots[i]);
    char ctlfile[300];
    snprintf(ctlfile, sizeof ctlfile, "%s/cgroup.procs", roots[i]);
    if (access(ctlfile, W_OK) != 0) continue;
    snprintf(cgroup_dir, sizeof cgroup_dir, "%s/modelguard-%d", roots[i], (int)getpid());
    if (mkdir(cgroup_dir, 0700) != 0 && errno != EEXIST) {
      cgroup_dir[0] = 0;
      continue;
    }
    char file[300];
    snprintf(file, sizeof file, "%s/pids.max", cgroup_dir);
    int fd cleanup_fd = open(file, O_WRONLY | O_CLOEXEC);
    char num[32];
    int n = snprintf(num, sizeof num, "%ld", pids_max);
    if (fd < 0 || write(fd, num, (size_t)n) != n) {
      rmdir(cgroup_dir);
      cgroup_dir[0] = 0;
      continue;
    }
    return 1;
  }
  return 0;
}

/* ---- memory ceiling and private temporary space --------------------------------------- */

static char memcg_dir[512];
static int memcg_v2;
/* How the memory ceiling is enforced: set in init before the fork, read by the target. */
static const char *memory_mode = "none";

static int write_file(const char *dir, const char *name, const char *text) {
  char file[600];
  snprintf(file, sizeof file, "%s/%s", dir, name);
  int fd cleanup_fd = open(file, O_WRONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  size_t n = strlen(text);
  return write(fd, text, n) == (ssize_t)n ? 0 : -1;
}

/* Reads the number after `key ` in a "key value" file (memory.events, memory.oom_control), or a
 * file holding one number when key is NULL. -1 when absent. */
static long long read_number(const char *dir, const char *name, const char *key) {
  char file[600];
  snprintf(file, sizeof file, "%s/%s", dir, name);
  FILE *f = fopen(file, "re");
  if (!f) return -1;
  long long v = -1;
  char k[64];
  long long n;
  if (!key) {
    if (fscanf(f, "%lld", &n) == 1) v = n;
  } else {
    while (fscanf(f, "%63s %lld", k, &n) == 2)
      if (strcmp(k, key) == 0) v = n;
  }
  fclose(f);
  return v;
}

/* guard-exec's own cgroup path for the memory controller (v1) or the unified hierarchy (v2). */
static int own_cgroup(int v2, char *out, size_t size) {
  FILE *f = fopen("/proc/self/cgroup", "re");
  if (!f) return -1;
  char line[1024];
  int found = -1;
  while (fgets(line, sizeof line, f)) {
    char *a = strchr(line, ':');
    char *b = a ? strchr(a + 1, ':') : NULL;
    if (!b) continue;
    *a = 0;
    *b = 0;
    char *path = b + 1;
    path[strcspn(path, "\n")] = 0;
    int match = 0;
    if (v2) match = strcmp(a + 1, "") == 0 && strcmp(line, "0") == 0;
    else
      for (char *c = strtok(a + 1, ","); c; c = strtok(NULL, ","))
        if (strcmp(c, "memory") == 0) match = 1;
    if (match) {
      snprintf(out, size, "%s", strcmp(path, "/") == 0 ? "" : path);
      found = 0;
    }
  }
  fclose(f);
  return found;
}

/* A memory cgroup of `bytes` below guard-exec's own, so the machine's own accounting still holds
 * the run. cgroup v1 first (memory.limit_in_bytes), then v2 (memory.max); 0 when neither works. */
static int make_memory_cgroup(unsigned long long bytes) {
  char num[32];
  snprintf(num, sizeof num, "%llu", bytes);
  for (int v2 = 0; v2 < 2; v2++) {
    char own[400];
    if (own_cgroup(v2, own, sizeof own) != 0) continue;
    const char *root = v2 ? "/sys/fs/cgroup" : "/sys/fs/cgroup/memory";
    if (v2 && access("/sys/fs/cgroup/cgroup.controllers", F_OK) != 0) continue;
    snprintf(memcg_dir, sizeof memcg_dir, "%s%s/modelguard-%d", root, own, (int)getpid());
    if (mkdir(memcg_dir, 0700) != 0 && errno != EEXIST) {
      memcg_dir[0] = 0;
      continue;
    }
    int ok = write_file(memcg_dir, v2 ? "memory.max" : "memory.limit_in_bytes", num) == 0;
    if (ok && v2) write_file(memcg_dir, "memory.swap.max", "0");
    if (ok && !v2) write_file(memcg_dir, "memory.memsw.limit_in_bytes", num); /* no swap to slip past it, where swap is accounted */
    if (!ok) {
      rmdir(memcg_dir);
      memcg_dir[0] = 0;
      continue;
    }
    memcg_v2 = v2;
    return 1;
  }
  return 0;
}

/* Whether this process holds `cap` in its user namespace: CAP_SYS_ADMIN is what
 * unshare(CLONE_NEWNET|CLONE_NEWNS) needs, CAP_NET_ADMIN what the DNS sink needs in the new one. */
static int has_cap(int cap) {
  struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
  struct __user_cap_data_struct data[2];
  memset(data, 0, sizeof data);
  if (syscall(SYS_capget, &hdr, data) != 0) return 0;
  return (data[cap / 32].effective >> (cap % 32)) & 1;
}

#ifndef __NR_pidfd_open
#define __NR_pidfd_open 434
#endif
#ifndef __NR_pidfd_getfd
#define __NR_pidfd_getfd 438
#endif
/* Whether pidfd_getfd works here: the supervisor takes the command's socket with it to make the
 * connects, binds and sends it permits. A runtime's seccomp profile may refuse it (Docker's allows
 * it only with CAP_SYS_PTRACE); guard runs under the same profile as this process, so the answer
 * here is the supervisor's. Tried on our own stdin's number (any open fd will do). */
static int pidfd_getfd_works(void) {
  int pidfd = (int)syscall(__NR_pidfd_open, getpid(), 0);
  if (pidfd < 0) return 0;
  int fd = (int)syscall(__NR_pidfd_getfd, pidfd, ctl_fd, 0);
  close(pidfd);
  if (fd < 0) return 0;
  close(fd);
  return 1;
}
static int getfd_ok;

/* Step (init, before the fork, with --userns): without CAP_SYS_ADMIN (root in a container that was
 * not given it, or any user but root) the network and mount namespaces cannot be had directly (nor,
 * without CAP_NET_ADMIN, the DNS sink in the network namespace), but a
 * user namespace of the run's own can hold them: unshare(CLONE_NEWUSER) needs no privilege where
 * the kernel and the seccomp profile allow it (podman's default profile does; Docker's refuses it
 * without CAP_SYS_ADMIN), and in it this process holds every capability over namespaces it then
 * makes. Only this process's own uid and gid are mapped, each to itself, so ids and file owners
 * read the same inside; the target drops every capability before its execve as it does anyway.
 * Guard's supervisor, whose euid owns the new namespace, keeps the access it needs to the target
 * (pidfd_getfd, reading its memory). Returns 1 inside a new user namespace, 0 where there is none. */
static int userns_entered;
static int step_user_namespace(const struct options *o) {
  /* With SYS_ADMIN the namespaces come directly; a user namespace still adds the DNS sink where NET_ADMIN is missing. */
  if (has_cap(CAP_SYS_ADMIN) && !(o->netns && o->dns_sinkhole && !has_cap(CAP_NET_ADMIN))) return 0;
  uid_t uid = geteuid();
  gid_t gid = getegid();
  if (unshare(CLONE_NEWUSER) != 0) return 0; /* refused (a seccomp profile, a sysctl, a limit): the walls go up without */
  char map[64];
  snprintf(map, sizeof map, "%u %u 1\n", (unsigned)uid, (unsigned)uid);
  if (write_file("/proc/self", "uid_map", map) != 0) die_step("uid_map", errno);
  /* gid_map may be written without privilege only once setgroups is denied. */
  if (write_file("/proc/self", "setgroups", "deny") != 0) die_step("setgroups", errno);
  snprintf(map, sizeof map, "%u %u 1\n", (unsigned)gid, (unsigned)gid);
  if (write_file("/proc/self", "gid_map", map) != 0) die_step("gid_map", errno);
  return 1;
}

/* Step (init, before the fork): a mount namespace of the run's own with a private tmpfs on each
 * --tmpfs path. Returns 1 when they are in place, 0 without the privilege to make them. */
static int tmp_private;
static int step_private_tmp(struct options *o) {
  if (o->n_tmpfs == 0) return 0;
  if (unshare(CLONE_NEWNS) != 0) {
    if (errno == EPERM) return 0;
    die_step("unshare(CLONE_NEWNS)", errno);
  }
  /* Nothing mounted here reaches the host's namespace. */
  if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0) die_step("mount(MS_PRIVATE)", errno);
  for (int i = 0; i < o->n_tmpfs; i++) {
    struct stat st;
    if (stat(o->tmpfs_paths[i], &st) != 0 || !S_ISDIR(st.st_mode)) continue;
    char opts[160];
    int shared = strcmp(o->tmpfs_paths[i], "/dev/shm") == 0;
    /* In a user namespace of the run's own only our ids are mapped: /dev/shm is then ours, not root's. */
    unsigned shm_uid = userns_entered ? (unsigned)geteuid() : 0U, shm_gid = userns_entered ? (unsigned)getegid() : 0U;
    snprintf(opts, sizeof opts, "size=%llu,mode=%s,uid=%u,gid=%u", o->tmpfs_sizes[i], shared ? "1777" : "0700",
             shared ? shm_uid : (unsigned)st.st_uid, shared ? shm_gid : (unsigned)st.st_gid);
    if (mount("tmpfs", o->tmpfs_paths[i], "tmpfs", MS_NOSUID | MS_NODEV, opts) != 0) die_step("mount(tmpfs)", errno);
  }
  return 1;
}

/* Whether `path` is a --tmpfs-or-deny folder (writable only as a private tmpfs). */
static int denied_unless_private(const struct options *o, const char *path) {
  for (int i = 0; i < o->n_tmpfs; i++)
    if (o->tmpfs_or_deny[i] && strcmp(o->tmpfs_paths[i], path) == 0) return 1;
  return 0;
}

/* "%XX" for every byte of a path but [A-Za-z0-9/._-], so the control line stays one line of fields. */
static void encode_path(const char *p, char *out, size_t size) {
  size_t n = 0;
  for (; *p && n + 4 < size; p++) {
    unsigned char c = (unsigned char)*p;
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '/' || c == '.' || c == '_' || c == '-')
      out[n++] = (char)c;
    else
      n += (size_t)snprintf(out + n, size - n, "%%%02X", c);
  }
  out[n] = 0;
}

/* Moves the calling process into the pids cgroup. On a cgroup v1 hierarchy, writing 0 to `tasks`
 * moves only the calling thread, and the kernel then skips the global threadgroup lock that a
 * cgroup.procs write takes, whose first writer waits for an RCU grace period (5-20 ms, on the
 * path of every run). The target calls this while it is single-threaded (the hand-off thread
 * comes later), so moving its thread moves the process. cgroup v2 has no `tasks`: cgroup.procs. */
static void join_memory_cgroup(void) {
  if (!memcg_dir[0]) return;
  if (write_file(memcg_dir, memcg_v2 ? "cgroup.procs" : "tasks", "0") != 0) die_step("cgroup(memory)", errno);
}

static void join_cgroup(void) {
  join_memory_cgroup();
  if (!cgroup_dir[0]) return;
  char file[300];
  snprintf(file, sizeof file, "%s/tasks", cgroup_dir);
  int fd cleanup_fd = open(file, O_WRONLY | O_CLOEXEC);
  if (fd < 0) {
    snprintf(file, sizeof file, "%s/cgroup.procs", cgroup_dir);
    fd = open(file, O_WRONLY | O_CLOEXEC);
  }
  if (fd < 0) die_step("cgroup", errno);
  if (write(fd, "0", 1) != 1) die_step("cgroup", errno);
}

/* Sends `sig` to every process left in the cgroup and to every child of ours; returns how many. */
static int signal_leftovers(int sig) {
  int count = 0;
  char path[300];
  if (cgroup_dir[0]) {
    snprintf(path, sizeof path, "%s/cgroup.procs", cgroup_dir);
    FILE *f = fopen(path, "re");
    if (f) {
      int pid;
      while (fscanf(f, "%d", &pid) == 1) {
        if (kill(pid, sig) == 0) count++;
      }
      fclose(f);
    }
  }
  snprintf(path, sizeof path, "/proc/self/task/%d/children", (int)getpid());
  FILE *f = fopen(path, "re");
  if (f) {
    int pid;
    while (fscanf(f, "%d", &pid) == 1) {
      if (kill(pid, sig) == 0) count++;
    }
    fclose(f);
  }
  return count;
}

static void reap_all(int *main_pid, int *main_status) {
  for (;;) {
    int status;
    pid_t p = waitpid(-1, &status, WNOHANG | __WALL);
    if (p <= 0) return;
    if (p == *main_pid) {
      *main_status = status;
      *main_pid = -1;
    }
  }
}

static int run_init(struct options *o, pid_t child, sigset_t *blocked) {
  int main_pid = child;
  int main_status = 0;
  for (;;) {
    siginfo_t si;
    int sig = sigwaitinfo(blocked, &si);
    if (sig < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (sig == SIGCHLD) {
      reap_all(&main_pid, &main_status);
      if (main_pid < 0) break;
      continue;
    }
    if (main_pid > 0) kill(o->pgroup ? -main_pid : main_pid, sig);
  }
  /* The target is gone: stop what it left behind, politely first, then for good. */
  if (signal_leftovers(SIGTERM) > 0) {
    int waited = 0;
    while (waited < o->kill_grace_ms) {
      int dummy = -1, st;
      reap_all(&dummy, &st);
      if (signal_leftovers(0) == 0) break;
      usleep(10000);
      waited += 10;
    }
  }
  for (int round = 0; round < 1000; round++) {
    int left = signal_leftovers(SIGKILL);
    int dummy = -1, st;
    pid_t p;
    while ((p = waitpid(-1, &st, __WALL)) > 0) (void)dummy;
    if (left == 0 && p < 0) break;
  }
  if (cgroup_dir[0]) rmdir(cgroup_dir);
  long long oom = 0, peak = 0;
  if (memcg_dir[0]) {
    if (memcg_v2) {
      oom = read_number(memcg_dir, "memory.events", "oom_kill");
      peak = read_number(memcg_dir, "memory.peak", NULL);
    } else {
      oom = read_number(memcg_dir, "memory.oom_control", "oom_kill");
      /* Older v1 kernels have no oom_kill count: a failed charge at the limit is what we can tell. */
      if (oom < 0) oom = read_number(memcg_dir, "memory.failcnt", NULL) > 0 ? 1 : 0;
      peak = read_number(memcg_dir, "memory.max_usage_in_bytes", NULL);
    }
    rmdir(memcg_dir);
  }
  int code = 0, signo = 0;
  if (WIFEXITED(main_status)) code = WEXITSTATUS(main_status);
  else if (WIFSIGNALED(main_status)) {
    signo = WTERMSIG(main_status);
    code = 128 + signo;
  }
  char line[2048];
  int n = snprintf(line, sizeof line, "X %d %d - oom=%lld mempeak=%lld", code, signo, oom < 0 ? 0 : oom, peak < 0 ? 0 : peak);
  for (int i = 0; tmp_private && i < o->n_tmpfs && n < (int)sizeof line - 600; i++) {
    struct statfs sf;
    if (statfs(o->tmpfs_paths[i], &sf) != 0) continue;
    char enc[500];
    encode_path(o->tmpfs_paths[i], enc, sizeof enc);
    n += snprintf(line + n, sizeof line - (size_t)n, " tmpfs%d=%llu/%llu:%s", i,
                  (unsigned long long)(sf.f_blocks - sf.f_bfree) * (unsigned long long)sf.f_bsize,
                  (unsigned long long)sf.f_blocks * (unsigned long long)sf.f_bsize, enc);
  }
  n += snprintf(line + n, sizeof line - (size_t)n, "\n");
  write_all(o->ctl, line, (size_t)n);
  if (o->hold) {
    /* Keep the mount namespace (and /proc/PID/root into it) until the parent has read what it needs. */
    char b[64];
    for (;;) {
      ssize_t r = read(o->ctl, b, sizeof b);
      if (r > 0 || (r < 0 && errno == EINTR)) continue;
      break;
    }
  }
  return code;
}

/* ---- target side ----------------------------------------------------------------------- */

static void step_loopback_up(void) {
  int s cleanup_fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0) return;
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  strncpy(ifr.ifr_name, "lo", IFNAMSIZ - 1);
  if (ioctl(s, SIOCGIFFLAGS, &ifr) == 0) {
    ifr.ifr_flags |= IFF_UP;
    ioctl(s, SIOCSIFFLAGS, &ifr);
  }
}

#ifndef IPV6_FREEBIND
#define IPV6_FREEBIND 78
#endif

/* `ip route add local default dev lo table local` for one family, over rtnetlink: inside the
 * fresh namespace every address of that family becomes local (AnyIP), so a packet to any
 * resolver reaches the sink socket bound to port 53. Returns 0 or an errno. */
static int add_local_default_route(int family) {
  int s cleanup_fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
  if (s < 0) return errno;
  struct {
    struct nlmsghdr nh;
    struct rtmsg rt;
    char attrs[RTA_SPACE(sizeof(int))];
  } req;
  memset(&req, 0, sizeof req);
  req.nh.nlmsg_len = NLMSG_LENGTH(sizeof(struct rtmsg));
  req.nh.nlmsg_type = RTM_NEWROUTE;
  req.nh.nlmsg_flags = NLM_F_REQUEST | NLM_F_CREATE | NLM_F_EXCL | NLM_F_ACK;
  req.nh.nlmsg_seq = 1;
  req.rt.rtm_family = (unsigned char)family;
  req.rt.rtm_table = RT_TABLE_LOCAL;
  req.rt.rtm_protocol = RTPROT_BOOT;
  req.rt.rtm_scope = RT_SCOPE_HOST;
  req.rt.rtm_type = RTN_LOCAL;
  struct rtattr *ra = (struct rtattr *)((char *)&req + NLMSG_ALIGN(req.nh.nlmsg_len));
  ra->rta_type = RTA_OIF;
  ra->rta_len = RTA_LENGTH(sizeof(int));
  int lo = (int)if_nametoindex("lo");
  if (lo == 0) return ENODEV;
  memcpy(RTA_DATA(ra), &lo, sizeof lo);
  req.nh.nlmsg_len = NLMSG_ALIGN(req.nh.nlmsg_len) + RTA_LENGTH(sizeof(int));
  if (send(s, &req, req.nh.nlmsg_len, 0) < 0) return errno;
  char buf[512];
  ssize_t n = recv(s, buf, sizeof buf, 0);
  if (n < (ssize_t)NLMSG_LENGTH(sizeof(struct nlmsgerr))) return EPROTO;
  struct nlmsghdr *nh = (struct nlmsghdr *)buf;
  if (nh->nlmsg_type != NLMSG_ERROR) return EPROTO;
  struct nlmsgerr *e = NLMSG_DATA(nh);
  return e->error == 0 ? 0 : -e->error;
}

/* A socket on port 53 of every address of `family`: UDP that reports each datagram's destination
 * (the resolver the program meant) and may answer from it, or a listening TCP socket (DNS over
 * TCP, which Go and `options use-vc` use). -1 when the family is unavailable. */
static int open_sink(int family, int type) {
  int s = socket(family, type | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (s < 0) return -1;
  int one = 1;
  int ok = 1;
  if (family == AF_INET6) ok = setsockopt(s, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one) == 0;
  if (type == SOCK_STREAM) ok = ok && setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) == 0;
  else if (family == AF_INET) ok = ok && setsockopt(s, IPPROTO_IP, IP_PKTINFO, &one, sizeof one) == 0;
  /* FREEBIND: answering from an address that exists only through the local route. */
  else ok = ok && setsockopt(s, IPPROTO_IPV6, IPV6_RECVPKTINFO, &one, sizeof one) == 0 &&
            setsockopt(s, IPPROTO_IPV6, IPV6_FREEBIND, &one, sizeof one) == 0;
  if (family == AF_INET) {
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(53), .sin_addr = {htonl(INADDR_ANY)}};
    ok = ok && bind(s, (struct sockaddr *)&a, sizeof a) == 0;
  } else {
    struct sockaddr_in6 a;
    memset(&a, 0, sizeof a);
    a.sin6_family = AF_INET6;
    a.sin6_port = htons(53);
    a.sin6_addr = in6addr_any;
    ok = ok && bind(s, (struct sockaddr *)&a, sizeof a) == 0;
  }
  if (ok && type == SOCK_STREAM) ok = listen(s, 16) == 0;
  if (!ok) {
    close(s);
    return -1;
  }
  return s;
}

/* Sends one fd to the parent as SCM_RIGHTS with the byte `tag`. */
static int send_fd(int sock, int fd, char tag) {
  struct iovec iov = {&tag, 1};
  union {
    char buf[CMSG_SPACE(sizeof(int))];
    struct cmsghdr align;
  } u;
  memset(&u, 0, sizeof u);
  struct msghdr mh;
  memset(&mh, 0, sizeof mh);
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  mh.msg_control = u.buf;
  mh.msg_controllen = sizeof u.buf;
  struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int));
  memcpy(CMSG_DATA(c), &fd, sizeof fd);
  while (sendmsg(sock, &mh, MSG_NOSIGNAL) < 0)
    if (errno != EINTR) return errno;
  return 0;
}

/* Step (--dns-sinkhole, in the fresh network namespace): every address becomes local and port 53
 * (UDP and TCP) is ours, so a DNS query reaches the supervisor whichever call sends it, write() and
 * writev() included, which the filter cannot tell from any other write. The sockets go to the
 * parent before any filter exists and are closed here: the command never holds them.
 * Returns how many sockets were sent (the parent receives them before the listener). */
static int step_dns_sinkhole(int sock) {
  int sent = 0;
  const int families[2] = {AF_INET, AF_INET6};
  const int types[2] = {SOCK_DGRAM, SOCK_STREAM};
  for (int i = 0; i < 2; i++) {
    if (add_local_default_route(families[i]) != 0) continue; /* e.g. IPv6 disabled */
    for (int t = 0; t < 2; t++) {
      int s = open_sink(families[i], types[t]);
      if (s < 0) continue;
      int err = send_fd(sock, s, 'S');
      close(s);
      if (err) die_step("sendmsg(SCM_RIGHTS)", err);
      sent++;
    }
  }
  return sent;
}

static int step_landlock(struct options *o) {
  int abi = (int)syscall(__NR_landlock_create_ruleset, NULL, 0, LL_CREATE_RULESET_VERSION);
  if (abi < 1) return 0;
  uint64_t write_access = LL_FS_WRITE_FILE | LL_FS_REMOVE_DIR | LL_FS_REMOVE_FILE | LL_FS_MAKE_CHAR |
                          LL_FS_MAKE_DIR | LL_FS_MAKE_REG | LL_FS_MAKE_SOCK | LL_FS_MAKE_FIFO |
                          LL_FS_MAKE_BLOCK | LL_FS_MAKE_SYM;
  if (abi >= 2) write_access |= LL_FS_REFER;
  if (abi >= 3) write_access |= LL_FS_TRUNCATE;
  uint64_t read_access = LL_FS_EXECUTE | LL_FS_READ_FILE | LL_FS_READ_DIR;
  struct ll_ruleset_attr attr = {0};
  attr.handled_access_fs = write_access | (o->n_read > 0 ? read_access : 0);
  size_t attr_size = 8;
  if (o->landlock_net && abi >= 4) {
    attr.handled_access_net = LL_NET_BIND_TCP | LL_NET_CONNECT_TCP;
    attr_size = 16;
  }
  if (o->landlock_scope && abi >= 6) {
    attr.scoped = LL_SCOPE_ABSTRACT_UNIX | LL_SCOPE_SIGNAL;
    attr_size = 24;
  }
  int rs cleanup_fd = (int)syscall(__NR_landlock_create_ruleset, &attr, attr_size, 0);
  if (rs < 0) die_step("landlock_create_ruleset", errno);
  for (int pass = 0; pass < 2; pass++) {
    int n = pass == 0 ? o->n_write : o->n_read;
    const char **paths = pass == 0 ? o->write_paths : o->read_paths;
    for (int i = 0; i < n; i++) {
      if (pass == 0 && !tmp_private && denied_unless_private(o, paths[i])) continue;
      int fd cleanup_fd = open(paths[i], O_PATH | O_CLOEXEC);
      if (fd < 0) continue; /* a listed folder that does not exist grants nothing */
      struct stat st;
      if (fstat(fd, &st) != 0) continue;
      struct ll_path_beneath_attr pb;
      uint64_t want = pass == 0 ? write_access | (o->n_read > 0 ? read_access : 0) : read_access;
      if (!S_ISDIR(st.st_mode))
        want &= LL_FS_EXECUTE | LL_FS_WRITE_FILE | LL_FS_READ_FILE | (abi >= 3 ? LL_FS_TRUNCATE : 0);
      pb.allowed_access = want;
      pb.parent_fd = fd;
      if (syscall(__NR_landlock_add_rule, rs, LL_RULE_PATH_BENEATH, &pb, 0) != 0)
        die_step("landlock_add_rule", errno);
    }
  }
  if (attr.handled_access_net) {
    for (int i = 0; i < o->n_ports; i++) {
      struct ll_net_port_attr np = {LL_NET_CONNECT_TCP | LL_NET_BIND_TCP, o->allow_ports[i]};
      if (syscall(__NR_landlock_add_rule, rs, LL_RULE_NET_PORT, &np, 0) != 0)
        die_step("landlock_add_rule(net)", errno);
    }
  }
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) die_step("no_new_privs", errno);
  if (syscall(__NR_landlock_restrict_self, rs, 0) != 0) die_step("landlock_restrict_self", errno);
  return abi;
}

/* The listener hand-off. A thread created before any wall sends the fd: the main thread's own
 * sendmsg would meet the notify filter before anyone holds its listener. */
struct handoff {
  int sock;
  int to_helper[2];
  int from_helper[2];
};

static int send_fd(int sock, int fd, char tag);

static void *handoff_main(void *arg) {
  struct handoff *h = arg;
  int fd = -1;
  if (read_full(h->to_helper[0], &fd, sizeof fd) != 0) return NULL;
  int err = send_fd(h->sock, fd, 'F');
  write_all(h->from_helper[1], (const char *)&err, sizeof err);
  return NULL;
}

static void handoff_start(struct handoff *h, int sock) {
  h->sock = sock;
  if (pipe2(h->to_helper, O_CLOEXEC) != 0 || pipe2(h->from_helper, O_CLOEXEC) != 0) die_step("pipe2", errno);
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  pthread_attr_setstacksize(&attr, 64 * 1024);
  pthread_t t;
  int rc = pthread_create(&t, &attr, handoff_main, h);
  if (rc != 0) die_step("pthread_create", rc);
}

static void handoff_send(struct handoff *h, int listener) {
  write_all(h->to_helper[1], (const char *)&listener, sizeof listener);
  int err = 0;
  if (read_full(h->from_helper[0], &err, sizeof err) != 0) die_step("sendmsg(SCM_RIGHTS)", errno);
  if (err) die_step("sendmsg(SCM_RIGHTS)", err);
  close(h->to_helper[0]);
  close(h->to_helper[1]);
  close(h->from_helper[0]);
  close(h->from_helper[1]);
  close(h->sock);
}

/* Step: no capabilities survive the execve, not even root's (the bounding set goes first: root
 * regains every capability in it at execve). Without CAP_SETPCAP there is nothing to drop. */
static void step_drop_capabilities(void) {
  if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 && errno != EINVAL) die_step("prctl(PR_CAP_AMBIENT_CLEAR_ALL)", errno);
  for (int cap = 0; cap <= 63; cap++) {
    if (prctl(PR_CAPBSET_READ, cap, 0, 0, 0) != 1) continue;
    if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0) {
      if (errno == EPERM) break; /* not privileged: nothing to drop */
      die_step("prctl(PR_CAPBSET_DROP)", errno);
    }
  }
  struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
  struct __user_cap_data_struct data[2];
  memset(data, 0, sizeof data);
  if (syscall(SYS_capset, &hdr, data) != 0) die_step("capset", errno);
}

/* Resolves CMD against PATH now, so that the target makes exactly one execve. */
static const char *resolve_command(const char *cmd, char *buf, size_t size) {
  if (strchr(cmd, '/')) return cmd;
  const char *path = getenv("PATH");
  if (!path) path = "/usr/local/bin:/usr/bin:/bin";
  while (*path) {
    const char *colon = strchr(path, ':');
    size_t len = colon ? (size_t)(colon - path) : strlen(path);
    if (len == 0) {
      snprintf(buf, size, "./%s", cmd);
    } else {
      snprintf(buf, size, "%.*s/%s", (int)len, path, cmd);
    }
    struct stat st;
    if (stat(buf, &st) == 0 && S_ISREG(st.st_mode) && access(buf, X_OK) == 0) return buf;
    if (!colon) break;
    path = colon + 1;
  }
  return NULL;
}

/* Reads the compiled filters (the profile's, then the supervisor's notify overlay) from the control
 * socket. The target does this as late as it can, just before installing them, so that Node's
 * compiling and writing them overlaps with the steps before (namespace, DNS sink, cgroup). */
static uint32_t read_filters(int ctl, struct sock_fprog *progs) {
  uint32_t count = 0;
  if (read_full(ctl, &count, sizeof count) != 0) die_step("read filter", errno);
  if (count > MAX_FILTERS) die_step("read filter", E2BIG);
  for (uint32_t f = 0; f < count; f++) {
    uint32_t len = 0;
    if (read_full(ctl, &len, sizeof len) != 0) die_step("read filter", errno);
    if (len == 0 || len % sizeof(struct sock_filter) != 0 || len > 4096 * sizeof(struct sock_filter))
      die_step("read filter", EINVAL);
    struct sock_filter *filter = malloc(len);
    if (!filter) die_step("read filter", ENOMEM);
    if (read_full(ctl, filter, len) != 0) die_step("read filter", errno);
    progs[f].len = (unsigned short)(len / sizeof(struct sock_filter));
    progs[f].filter = filter;
  }
  return count;
}

__attribute__((noreturn)) static void run_target(struct options *o, sigset_t *old_mask) {
  prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
  /* Step: own process group, in the foreground of the terminal if guard had it. */
  if (setpgid(0, 0) != 0) die_step("setpgid", errno);
  if (isatty(0) && tcgetpgrp(0) == getpgid(getppid())) {
    signal(SIGTTOU, SIG_IGN);
    tcsetpgrp(0, getpid());
    signal(SIGTTOU, SIG_DFL);
  }
  join_cgroup();
  struct handoff handoff;
  if (o->listener_sock >= 0) handoff_start(&handoff, o->listener_sock);
  char resolved[PATH_MAX];
  const char *file = resolve_command(o->argv[0], resolved, sizeof resolved);
  if (!file) die_step("execve", ENOENT);
  int netns = 0, sinks = 0;
  if (o->netns) {
    if (unshare(CLONE_NEWNET) == 0) {
      netns = 1;
      step_loopback_up();
      if (o->dns_sinkhole && o->listener_sock >= 0) sinks = step_dns_sinkhole(o->listener_sock);
      /* TCP port 53 now leads only to the DNS sink (every address is local here): Landlock's TCP
       * rules let connects to it through, to be reported and answered. */
      if (sinks > 0 && o->n_ports < MAX_LIST) o->allow_ports[o->n_ports++] = 53;
    } else if (errno != EPERM) {
      die_step("unshare(CLONE_NEWNET)", errno);
    }
  }
  /* Step: rlimits. They only ever lower what is in force, never raise it. */
  for (int i = 0; i < o->n_rlimits; i++) {
    if (SANITIZER_ADDRESS_SPACE && (o->rlimits[i].resource == RLIMIT_AS || o->rlimits[i].resource == RLIMIT_DATA)) continue;
    struct rlimit cur, want = o->rlimits[i].value;
    if (getrlimit(o->rlimits[i].resource, &cur) != 0) die_step("getrlimit", errno);
    if (cur.rlim_max != RLIM_INFINITY && (want.rlim_max == RLIM_INFINITY || want.rlim_max > cur.rlim_max)) want.rlim_max = cur.rlim_max;
    if (want.rlim_cur == RLIM_INFINITY || want.rlim_cur > want.rlim_max) want.rlim_cur = want.rlim_max;
    if (setrlimit(o->rlimits[i].resource, &want) != 0) die_step("setrlimit", errno);
  }
  /* Step: without a memory cgroup, RLIMIT_DATA (private writable memory; unlike RLIMIT_AS it leaves
   * alone the address space that CUDA and allocators reserve without using). */
  if (o->memory_max > 0 && strcmp(memory_mode, "rlimit") == 0 && !SANITIZER_ADDRESS_SPACE) {
    struct rlimit cur;
    if (getrlimit(RLIMIT_DATA, &cur) != 0) die_step("getrlimit", errno);
    struct rlimit want = {o->memory_max, o->memory_max};
    if (cur.rlim_max != RLIM_INFINITY && cur.rlim_max < want.rlim_max) want.rlim_max = cur.rlim_max;
    if (want.rlim_cur > want.rlim_max) want.rlim_cur = want.rlim_max;
    if (setrlimit(RLIMIT_DATA, &want) != 0) die_step("setrlimit", errno);
  }
  if (!o->keep_caps) step_drop_capabilities();
  int landlock = o->landlock ? step_landlock(o) : 0;
  struct sock_fprog progs[MAX_FILTERS];
  uint32_t count = read_filters(o->ctl, progs);
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) die_step("no_new_privs", errno);
  /* Step: seccomp last. Earlier filters are plain; the last one carries the notification listener.
   * The kernel runs every filter and keeps the most severe answer (KILL > ERRNO > NOTIFY > ALLOW). */
  int listener = -1;
  for (uint32_t f = 0; f < count; f++) {
    unsigned flags = f + 1 == count ? SECCOMP_FILTER_FLAG_NEW_LISTENER : 0;
    /* Once the supervisor has received a call, only a fatal signal interrupts the wait: a call it
     * performs itself is never restarted and performed twice (kernel 5.19+; older ones refuse). */
    if (flags) flags |= SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV;
    int rc = (int)syscall(__NR_seccomp, SECCOMP_SET_MODE_FILTER, flags, &progs[f]);
    if (rc < 0 && errno == EINVAL && (flags & SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV))
      rc = (int)syscall(__NR_seccomp, SECCOMP_SET_MODE_FILTER, flags & ~SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV, &progs[f]);
    if (rc < 0) die_step("seccomp(SET_MODE_FILTER)", errno);
    if (flags) listener = rc;
  }
  /* From here on every syscall meets the filter; write/read on the control socket are not notified. */
  if (listener >= 0) {
    if (o->listener_sock < 0) die_step("listener hand-off", EBADF);
    handoff_send(&handoff, listener);
  }
  char line[256];
  int n = snprintf(line, sizeof line, "L %d scm netns=%d landlock=%d pids=%d sinks=%d mem=%s tmp=%d userns=%d getfd=%d\n", (int)getpid(), netns,
                   landlock, cgroup_dir[0] ? 1 : 0, sinks, memory_mode, tmp_private, userns_entered, getfd_ok);
  write_all(o->ctl, line, (size_t)n);
  char go = 0;
  if (read_full(o->ctl, &go, 1) != 0 || go != 'G') die_step("handshake", errno ? errno : EPROTO);
  if (listener >= 0) close(listener);
  fcntl(o->ctl, F_SETFD, FD_CLOEXEC);
  for (size_t i = 0; i < sizeof forwarded / sizeof forwarded[0]; i++) signal(forwarded[i], SIG_DFL);
  signal(SIGCHLD, SIG_DFL);
  signal(SIGPIPE, SIG_DFL);
  sigprocmask(SIG_SETMASK, old_mask, NULL);
  execve(file, o->argv, environ);
  die_step("execve", errno);
}

int main(int argc, char **argv) {
  struct options o;
  parse_args(argc, argv, &o);
  ctl_fd = o.ctl;
  if (fcntl(o.ctl, F_GETFD) < 0) usage("--ctl is not an open fd");

  /* Step: close inherited fds other than stdio, the control socket and the listener socket. */
  if (o.listener_sock >= 0 && o.listener_sock != o.ctl + 1) usage("--listener-sock must be the fd after --ctl");
  close_inherited(&o);

  /* Step: become the subreaper and block the signals we forward, before the child exists. */
  if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0) die_step("prctl(PR_SET_CHILD_SUBREAPER)", errno);
  prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
  sigset_t blocked, old_mask;
  sigemptyset(&blocked);
  for (size_t i = 0; i < sizeof forwarded / sizeof forwarded[0]; i++) sigaddset(&blocked, forwarded[i]);
  sigaddset(&blocked, SIGCHLD);
  if (sigprocmask(SIG_BLOCK, &blocked, &old_mask) != 0) die_step("sigprocmask", errno);

  if (o.pids_max > 0) make_pids_cgroup(o.pids_max);
  if (o.memory_max > 0) memory_mode = make_memory_cgroup(o.memory_max) ? "cgroup" : SANITIZER_ADDRESS_SPACE ? "none" : "rlimit";
  getfd_ok = pidfd_getfd_works();
  if (o.userns && (o.netns || o.n_tmpfs > 0)) userns_entered = step_user_namespace(&o);
  tmp_private = step_private_tmp(&o);

  pid_t child = fork();
  if (child < 0) die_step("fork", errno);
  if (child == 0) run_target(&o, &old_mask);
  /* The kept fds belong to the target; init holding them would hide the target's exit from the peer. */
  for (int i = 0; i < o.n_keep; i++) close(o.keep_fds[i]);
  int code = run_init(&o, child, &blocked);
  for (int i = 0; i < o.n_tmpfs; i++) free(o.tmpfs_paths[i]);
  return code;
}
