#include "shm/arena_name.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <random>
#include <string>

namespace segpipe::shm {

std::string make_arena_name() {
  // random_device reads getrandom(): no seeding by time, so forked children that call this in the
  // same microsecond still differ.
  std::random_device rd;
  const uint64_t r = (uint64_t{rd()} << 32) | rd();
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*s%ld-%016llx", static_cast<int>(kArenaNamePrefix.size()),
                kArenaNamePrefix.data(), static_cast<long>(getpid()), static_cast<unsigned long long>(r));
  return buf;
}

std::optional<pid_t> parse_arena_name(std::string_view name) {
  if (!name.starts_with(kArenaNamePrefix)) return std::nullopt;
  name.remove_prefix(kArenaNamePrefix.size());
  long long pid = 0;
  std::size_t i = 0;
  for (; i < name.size() && name[i] >= '0' && name[i] <= '9'; ++i) {
    pid = pid * 10 + (name[i] - '0');
    if (pid > INT32_MAX) return std::nullopt;
  }
  if (i == 0 || i >= name.size() || name[i] != '-' || pid <= 0) return std::nullopt;
  const std::string_view hex = name.substr(i + 1);
  if (hex.empty()) return std::nullopt;
  for (char ch : hex) {
    const bool is_hex = (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f');
    if (!is_hex) return std::nullopt;
  }
  return static_cast<pid_t>(pid);
}

bool arena_exists(std::string_view name) {
  const std::string path = std::string(kShmDir) + "/" + std::string(name);
  struct stat st{};
  return ::stat(path.c_str(), &st) == 0;
}

}  // namespace segpipe::shm
