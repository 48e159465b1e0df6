#include "tests/shm/test_support.h"

#include <dirent.h>
#include <gtest/gtest.h>
#include <sched.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
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

bool wait_until_sleeping(pid_t tid, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  const std::string path = "/proc/" + std::to_string(tid) + "/stat";
  while (std::chrono::steady_clock::now() < deadline) {
    std::ifstream in(path);
    std::string line;
    if (!std::getline(in, line)) return false;
    // "pid (comm) S ...": comm may hold spaces and parentheses, so the state follows the last ')'.
    const auto close = line.rfind(')');
    if (close == std::string::npos || close + 2 >= line.size()) return false;
    const char state = line[close + 2];
    if (state == 'S') return true;
    if (state == 'Z' || state == 'X') return false;
    std::this_thread::yield();
  }
  return false;
}

int allowed_cpu() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (::sched_getaffinity(0, sizeof set, &set) != 0) return -1;
  for (int c = 0; c < CPU_SETSIZE; c++)
    if (CPU_ISSET(c, &set)) return c;
  return -1;
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
