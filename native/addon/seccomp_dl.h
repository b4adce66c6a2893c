// libseccomp loaded at run time: the build machine has libseccomp2 but not its headers.
// Only the few prototypes and constants modelguard uses are declared here (libseccomp 2.5 ABI).
#pragma once
#include <cstdint>
#include <string>

namespace mg {

typedef void *scmp_filter_ctx;
typedef uint64_t scmp_datum_t;

enum scmp_compare {
  SCMP_CMP_NE = 1,
  SCMP_CMP_LT = 2,
  SCMP_CMP_LE = 3,
  SCMP_CMP_EQ = 4,
  SCMP_CMP_GE = 5,
  SCMP_CMP_GT = 6,
  SCMP_CMP_MASKED_EQ = 7,
};

struct scmp_arg_cmp {
  unsigned int arg;
  enum scmp_compare op;
  scmp_datum_t datum_a;
  scmp_datum_t datum_b;
};

struct scmp_version {
  unsigned int major;
  unsigned int minor;
  unsigned int micro;
};

enum scmp_filter_attr {
  SCMP_FLTATR_ACT_DEFAULT = 1,
  SCMP_FLTATR_ACT_BADARCH = 2,
  SCMP_FLTATR_CTL_NNP = 3,
  SCMP_FLTATR_CTL_TSYNC = 4,
  SCMP_FLTATR_API_TSKIP = 5,
  SCMP_FLTATR_CTL_LOG = 6,
  SCMP_FLTATR_CTL_SSB = 7,
  SCMP_FLTATR_CTL_OPTIMIZE = 8,
};

constexpr uint32_t SCMP_ACT_KILL_PROCESS = 0x80000000U;
constexpr uint32_t SCMP_ACT_KILL_THREAD = 0x00000000U;
constexpr uint32_t SCMP_ACT_TRAP = 0x00030000U;
constexpr uint32_t SCMP_ACT_NOTIFY = 0x7fc00000U;
constexpr uint32_t SCMP_ACT_LOG = 0x7ffc0000U;
constexpr uint32_t SCMP_ACT_ALLOW = 0x7fff0000U;
constexpr uint32_t scmp_act_errno(uint32_t e) { return 0x00050000U | (e & 0x0000ffffU); }
constexpr int NR_SCMP_ERROR = -1;

struct Libseccomp {
  scmp_filter_ctx (*init)(uint32_t def_action);
  void (*release)(scmp_filter_ctx ctx);
  int (*arch_add)(scmp_filter_ctx ctx, uint32_t arch_token);
  uint32_t (*arch_native)(void);
  int (*rule_add_array)(scmp_filter_ctx ctx, uint32_t action, int syscall, unsigned int arg_cnt,
                        const struct scmp_arg_cmp *arg_array);
  int (*attr_set)(scmp_filter_ctx ctx, enum scmp_filter_attr attr, uint32_t value);
  int (*export_bpf)(const scmp_filter_ctx ctx, int fd);
  int (*syscall_resolve_name)(const char *name);
  char *(*syscall_resolve_num_arch)(uint32_t arch_token, int num);
  const struct scmp_version *(*version)(void);
  unsigned int (*api_get)(void);
};

// Loads libseccomp.so.2 once; returns nullptr and fills `error` when it cannot.
const Libseccomp *LoadLibseccomp(std::string *error);

}  // namespace mg
