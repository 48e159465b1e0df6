#include "tests/shm/test_support.h"

#include <dirent.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <thread>

#include "shm/arena_name.h"

namespace segpipe::shm::testing {

pid_t fork_child(const std::function<int()>& body) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    int code = 99;
    try {
      code = body();
    } catch (...) {
    }
    ::_exit(code);  // no atexit handlers, no static destructors: the parent's objects stay intact
  }
  return pid;
}

int wait_child(pid_t pid, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  int status = 0;
  for (;;) {
    const pid_t r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid) break;
    if (std::chrono::steady_clock::now() > deadline) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &status, 0);
      return -1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -2;
}

bool child_alive(pid_t pid) {
  siginfo_t info{};
  return ::waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG | WNOWAIT) == 0 && info.si_pid == 0;
}

std::vector<std::string> own_arenas() {
  std::vector<std::string> out;
  DIR* d = ::opendir(std::string(kShmDir).c_str());
  if (d == nullptr) return out;
  while (const dirent* e = ::readdir(d)) {
    const auto pid = parse_arena_name(e->d_name);
    if (pid && *pid == ::getpid()) out.emplace_back(e->d_name);
  }
  ::closedir(d);
  return out;
}

namespace {

// After all tests of this process: nothing of ours may be left in /dev/shm. (ctest runs each test
// in its own process, so this checks every test on its own.)
class NoArenaLeftBehind : public ::testing::Environment {
 public:
  void TearDown() override {
    const auto left = own_arenas();
    EXPECT_TRUE(left.empty()) << "arena left in /dev/shm: " << (left.empty() ? "" : left.front());
  }
};
[[maybe_unused]] ::testing::Environment* const g_env = ::testing::AddGlobalTestEnvironment(new NoArenaLeftBehind);

}  // namespace
}  // namespace segpipe::shm::testing
