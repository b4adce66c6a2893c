// One thing the supervisor saw, on its way to JavaScript (see ToJs in supervisor.cc).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "remote.h"

namespace mg {

struct Event {
  double time = 0;
  int pid = 0;
  int nr = 0;
  bool denied = false;
  bool simulated = false;
  bool killed = false;
  bool by_profile = false;
  bool always = false;
  // A call a supported runtime makes on its own (libuv's io_uring probe): answered so it falls back.
  bool runtime_probe = false;
  // Set for a call made through another ABI than the native one ("x32", "i386", or "arch 0x…").
  std::string abi;
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

double NowMs();

}  // namespace mg
