#include "shm/cleanup.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstddef>
#include <ctime>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <mutex>

#include "shm/arena_name.h"
#include "shm/block_header.h"

namespace segpipe::shm {
namespace {

// The table a signal handler reads. A slot is published by storing kReady (release) after its
// name is complete, and retired by storing kFree before anything else, so a handler that
// interrupts either step sees a consistent slot or skips it.
constexpr int kSlots = 16;
constexpr int kFree = 0, kWriting = 1, kReady = 2;
struct Slot {
  std::atomic<int> state{kFree};
  pid_t owner = 0;
  char name[256] = {};  // with the leading '/' that shm_unlink wants
};
Slot g_slots[kSlots];
static_assert(std::atomic<int>::is_always_lock_free, "signal handlers need lock-free atomics");

std::once_flag g_atexit_once;

extern "C" void unlink_at_exit() { unlink_owned_arenas(); }

extern "C" void unlink_and_reraise(int sig) {
  const int saved_errno = errno;
  unlink_owned_arenas();
  std::signal(sig, SIG_DFL);
  errno = saved_errno;
  std::raise(sig);
}

// Whether an arena file nobody holds is a leftover: its creator finished writing it (the magic is
// written last, after the creator took its lock), or it is old enough that no creation can still be
// between its create and its lock (a creator that died in that window leaves an unfinished file).
bool finished_or_old(int fd, const struct stat& st) {
  uint32_t magic = 0;
  if (::pread(fd, &magic, sizeof magic, offsetof(ArenaHeader, magic)) == sizeof magic && magic == kArenaMagic) return true;
  return ::time(nullptr) - st.st_ctim.tv_sec > kUnfinishedArenaSeconds;
}

}  // namespace

std::vector<std::string> remove_stale_arenas(std::string_view dir) {
  std::vector<std::string> removed;
  DIR* d = ::opendir(std::string(dir).c_str());
  if (d == nullptr) return removed;
  const uid_t self = ::geteuid();
  while (const dirent* e = ::readdir(d)) {
    if (!parse_arena_name(e->d_name)) continue;
    const std::string path = std::string(dir) + "/" + e->d_name;
    // O_NONBLOCK | O_NOFOLLOW: whatever sits under an arena's name (a FIFO, a link) neither blocks
    // this nor leads it elsewhere.
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0) continue;
    struct stat st{};
    // Only this user's arenas: root must not delete another user's files.
    const bool ours = ::fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_uid == self;
    // In use: its creator (and every process that opened it) holds a shared lock for as long as it
    // lives, in whatever PID namespace; the name's pid cannot tell that across namespaces.
    if (ours && ::flock(fd, LOCK_EX | LOCK_NB) == 0 && finished_or_old(fd, st)) {
      // unlink() on the file rather than shm_unlink(): `dir` may be a test directory, and for
      // /dev/shm the two are the same operation.
      if (::unlink(path.c_str()) == 0) removed.emplace_back(e->d_name);
    }
    ::close(fd);  // releases the lock
  }
  ::closedir(d);
  return removed;
}

int register_for_cleanup(std::string_view name) {
  if (name.empty() || name.size() + 2 > sizeof(Slot::name)) return -1;
  std::call_once(g_atexit_once, [] { std::atexit(unlink_at_exit); });
  for (int i = 0; i < kSlots; ++i) {
    int expected = kFree;
    if (!g_slots[i].state.compare_exchange_strong(expected, kWriting, std::memory_order_acquire)) continue;
    g_slots[i].owner = ::getpid();
    g_slots[i].name[0] = '/';
    std::memcpy(g_slots[i].name + 1, name.data(), name.size());
    g_slots[i].name[name.size() + 1] = '\0';
    g_slots[i].state.store(kReady, std::memory_order_release);
    return i;
  }
  return -1;
}

void unregister_for_cleanup(int slot) {
  if (slot < 0 || slot >= kSlots) return;
  g_slots[slot].state.store(kFree, std::memory_order_release);
}

void unlink_owned_arenas() noexcept {
  const pid_t self = ::getpid();
  for (Slot& s : g_slots) {
    if (s.state.load(std::memory_order_acquire) != kReady || s.owner != self) continue;
    ::shm_unlink(s.name);  // ENOENT when already gone is fine
  }
}

void install_unlink_on_signal() {
  // Every signal whose default action ends the process and that a program may catch, crashes aside
  // (SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGSYS stay with whoever reports them, such as a
  // sanitizer). SIGQUIT, SIGUSR1 or SIGALRM used to end a run with its arena left behind.
  for (int sig : {SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGABRT, SIGUSR1, SIGUSR2, SIGALRM, SIGVTALRM, SIGPROF, SIGPIPE,
                  SIGXCPU, SIGXFSZ, SIGPOLL, SIGPWR, SIGSTKFLT}) {
    // An ignored signal stays ignored (the orchestrator ignores SIGPIPE to see EPIPE instead; a
    // run under nohup ignores SIGHUP): catching it would make it fatal.
    struct sigaction old{};
    if (::sigaction(sig, nullptr, &old) == 0 && !(old.sa_flags & SA_SIGINFO) && old.sa_handler == SIG_IGN) continue;
    struct sigaction sa{};
    sa.sa_handler = unlink_and_reraise;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESETHAND;  // a second signal while we clean up kills at once
    ::sigaction(sig, &sa, nullptr);
  }
}

}  // namespace segpipe::shm
