#include "orchestrator/drivers/mapped_fault.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>

#include "shm/cleanup.h"

namespace segpipe {

namespace {

std::atomic<const char*> g_segment{nullptr};
std::atomic<bool> g_reporting{false};
char g_command[64] = "segpipe";
static_assert(std::atomic<const char*>::is_always_lock_free, "read from a signal handler");

void put(const char* s) {
  size_t n = std::strlen(s);
  while (n > 0) {
    ssize_t w = ::write(2, s, n);
    if (w <= 0) return;
    s += w;
    n -= static_cast<size_t>(w);
  }
}

bool parse_hex(const char*& p, uintptr_t& v) {
  const char* start = p;
  v = 0;
  for (;; p++) {
    char c = *p;
    int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
    if (d < 0) break;
    v = v * 16 + static_cast<uintptr_t>(d);
  }
  return p != start;
}

// One line of /proc/self/maps: "start-end perms offset dev inode   path". Copies the path when
// `addr` lies in [start, end) and the mapping is of a file.
bool line_maps(const char* line, uintptr_t addr, char* path, size_t cap) {
  const char* p = line;
  uintptr_t lo = 0, hi = 0;
  if (!parse_hex(p, lo) || *p++ != '-' || !parse_hex(p, hi)) return false;
  if (addr < lo || addr >= hi) return false;
  for (int field = 0; field < 4; field++) {  // perms, offset, dev, inode
    while (*p == ' ') p++;
    while (*p && *p != ' ') p++;
  }
  while (*p == ' ') p++;
  if (*p != '/') return false;
  size_t n = 0;
  while (p[n] && n + 1 < cap) {
    path[n] = p[n];
    n++;
  }
  path[n] = '\0';
  return true;
}

// The file mapped at `addr`, read from /proc/self/maps with a fixed buffer (no allocation).
bool file_at(uintptr_t addr, char* path, size_t cap) {
  int fd = ::open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  char buf[4096], line[1024];
  size_t len = 0;
  bool found = false;
  for (ssize_t n; !found && (n = ::read(fd, buf, sizeof buf)) > 0;) {
    for (ssize_t i = 0; i < n && !found; i++) {
      if (buf[i] != '\n') {
        if (len + 1 < sizeof line) line[len++] = buf[i];
        continue;
      }
      line[len] = '\0';
      found = line_maps(line, addr, path, cap);
      len = 0;
    }
  }
  ::close(fd);
  return found;
}

extern "C" void on_sigbus(int sig, siginfo_t* si, void*) {
  char path[768];
  // Sent by kill(), or not on a mapped file: not ours to explain; die of it as before.
  if (si->si_code <= 0 || !file_at(reinterpret_cast<uintptr_t>(si->si_addr), path, sizeof path)) {
    ::signal(sig, SIG_DFL);
    ::raise(sig);
    return;
  }
  // Another thread faulting at the same time waits for the first one's exit.
  if (g_reporting.exchange(true)) {
    for (;;) ::pause();
  }
  shm::unlink_owned_arenas();
  put(g_command);
  put(": runtime failure: ");
  if (const char* seg = g_segment.load()) {
    put("segment '");
    put(seg);
    put("': ");
  }
  put(path);
  put(" can no longer be read (SIGBUS on a mapped file: it was truncated or rewritten during the run, or its "
      "storage failed)\n");
  ::_exit(3);
}

}  // namespace

void report_mapped_file_faults(const std::string& command) {
  std::string c = "segpipe " + command;
  size_t n = std::min(c.size(), sizeof g_command - 1);
  std::memcpy(g_command, c.data(), n);
  g_command[n] = '\0';
  struct sigaction sa{};
  sa.sa_sigaction = on_sigbus;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_SIGINFO;
  ::sigaction(SIGBUS, &sa, nullptr);
}

RunningSegment::RunningSegment(const std::string& name) : previous_(g_segment.exchange(name.c_str())) {}
RunningSegment::~RunningSegment() { g_segment.store(previous_); }

}  // namespace segpipe
