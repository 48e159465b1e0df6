// The private MPS server's process handling (orchestrator/drivers/cuda_mps.h), with a stand-in for
// nvidia-cuda-mps-control on PATH: a script that makes the control socket and runs until told to
// quit (or ended), like the real daemon in foreground mode. No GPU needed.
#include "orchestrator/drivers/cuda_mps.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <poll.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>
#include <thread>

#include "segments/core/errors.h"

namespace fs = std::filesystem;
using namespace segpipe;

namespace {

// -f: the daemon (records its pid, makes the socket, waits); no argument: a client passing stdin
// ("quit") to the daemon through a file the daemon polls.
// The daemon also starts a "server" (a background loop in its process group, its pid in
// server.pid) and quits without waiting for it, as the real daemon may leave its server exiting.
// Ended by a signal (its orchestrator died: PR_SET_PDEATHSIG), it ends its server first, as the
// real daemon shuts its server down; without that the loop outlived the suite, reparented to init.
constexpr const char* kFakeControl = R"(#!/bin/sh
if [ "$1" = "-f" ]; then
  echo $$ > "$CUDA_MPS_PIPE_DIRECTORY/daemon.pid"
  sh -c 'echo $$ > "$CUDA_MPS_PIPE_DIRECTORY/server.pid"; while :; do sleep 0.01; done' &
  server=$!
  trap 'kill -KILL $server; exit 143' TERM INT HUP
  while [ ! -f "$CUDA_MPS_PIPE_DIRECTORY/server.pid" ]; do sleep 0.01; done
  : > "$CUDA_MPS_PIPE_DIRECTORY/control"
  while [ ! -f "$CUDA_MPS_PIPE_DIRECTORY/quit" ]; do sleep 0.01; done
  exit 0
fi
cat > "$CUDA_MPS_PIPE_DIRECTORY/quit.tmp" && mv "$CUDA_MPS_PIPE_DIRECTORY/quit.tmp" "$CUDA_MPS_PIPE_DIRECTORY/quit"
)";

class CudaMpsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    stop_private_mps();
    char tmpl[] = "/tmp/segpipe-mpstest-XXXXXX";  // not a server directory name (those get cleaned)
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    bin_ = tmpl;
    std::ofstream(bin_ / "nvidia-cuda-mps-control") << kFakeControl;
    fs::permissions(bin_ / "nvidia-cuda-mps-control", fs::perms::owner_all);
    const char* p = std::getenv("PATH");
    old_path_ = p ? p : "";
    setenv("PATH", (bin_.string() + ":" + old_path_).c_str(), 1);
    unsetenv("CUDA_MPS_PIPE_DIRECTORY");
    unsetenv("CUDA_MPS_LOG_DIRECTORY");
    unsetenv("SEGPIPE_GPU_SHARING");
  }
  void TearDown() override {
    stop_private_mps();
    setenv("PATH", old_path_.c_str(), 1);
    fs::remove_all(bin_);
    unsetenv("SEGPIPE_GPU_SHARING");
  }
  fs::path bin_;
  std::string old_path_;
};

bool alive(pid_t pid) { return kill(pid, 0) == 0; }

// /proc/PID/stat: "pid (comm) S ppid ..."; comm may hold spaces and parentheses, so read after the last ')'.
bool zombie_child_of_this_process(pid_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
  std::string text((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  const size_t close = text.rfind(')');
  if (close == std::string::npos) return false;
  std::istringstream rest(text.substr(close + 1));
  char state = 0;
  long ppid = 0;
  rest >> state >> ppid;
  return state == 'Z' && ppid == static_cast<long>(getpid());
}

// Waits until a process that is not our child has ended (a pidfd is readable once it has exited).
// False if it is still running after `timeout_ms` (or cannot be watched).
bool ends_within(pid_t pid, int timeout_ms) {
  const int fd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
  if (fd < 0) return errno == ESRCH;  // already gone
  pollfd p{fd, POLLIN, 0};
  const bool ended = poll(&p, 1, timeout_ms) == 1;
  close(fd);
  return ended;
}

}  // namespace

TEST_F(CudaMpsTest, StartsPointsTheEnvironmentAtItAndStopsCleanly) {
  ASSERT_EQ(start_private_mps(), "");
  EXPECT_TRUE(private_mps_running());
  const char* pipe = std::getenv("CUDA_MPS_PIPE_DIRECTORY");
  ASSERT_NE(pipe, nullptr);
  ASSERT_NE(std::getenv("CUDA_MPS_LOG_DIRECTORY"), nullptr);
  const fs::path dir = fs::path(pipe).parent_path();
  EXPECT_EQ(dir.filename().string().rfind("segpipe-mps-", 0), 0u);
  EXPECT_TRUE(fs::exists(fs::path(pipe) / "control"));
  long owner = 0;
  std::ifstream(dir / "owner") >> owner;
  EXPECT_EQ(owner, static_cast<long>(getpid()));
  pid_t daemon = 0;
  std::ifstream(fs::path(pipe) / "daemon.pid") >> daemon;
  ASSERT_GT(daemon, 0);
  EXPECT_TRUE(alive(daemon));
  pid_t server = 0;
  std::ifstream(fs::path(pipe) / "server.pid") >> server;
  ASSERT_GT(server, 0);
  EXPECT_TRUE(alive(server));
  EXPECT_EQ(start_private_mps(), "");  // once per process
  stop_private_mps();
  EXPECT_FALSE(private_mps_running());
  // Nothing of the daemon's process group is left, not even a zombie: the server that outlived its
  // daemon was ended and reaped here (kill() succeeds on a zombie). Under user-mode emulation the
  // subreaper setting may not reach the host kernel, and the server is then init's to reap: give it a
  // bounded moment, but a zombie whose parent is this process fails at once (stop did not reap it).
  bool server_left = true;
  for (int i = 0; i < 1000 && (server_left = alive(server)); i++) {
    ASSERT_FALSE(zombie_child_of_this_process(server)) << "the server " << server << " is our zombie: stop did not reap it";
    usleep(10000);
  }
  EXPECT_FALSE(server_left) << "the server " << server << " is left after 10 s";
  // A short-lived child of the stand-in server (its `sleep`) dies with the group but is reaped by init,
  // not by us: give init a bounded moment (slow machines, emulation) before calling it left over.
  bool group_left = true;
  for (int i = 0; i < 1000 && (group_left = kill(-daemon, 0) == 0); i++) usleep(10000);
  EXPECT_FALSE(group_left) << "a process of the daemon's group is left after 10 s";
  EXPECT_EQ(std::getenv("CUDA_MPS_PIPE_DIRECTORY"), nullptr);
  EXPECT_EQ(std::getenv("CUDA_MPS_LOG_DIRECTORY"), nullptr);
  EXPECT_FALSE(fs::exists(dir));
  EXPECT_FALSE(alive(daemon));
}

TEST_F(CudaMpsTest, AnMpsPipeDirectoryOfTheUsersIsLeftAlone) {
  setenv("CUDA_MPS_PIPE_DIRECTORY", "/tmp/users-own-mps", 1);
  std::string why = start_private_mps();
  EXPECT_NE(why.find("CUDA_MPS_PIPE_DIRECTORY is set"), std::string::npos) << why;
  EXPECT_FALSE(private_mps_running());
  EXPECT_STREQ(std::getenv("CUDA_MPS_PIPE_DIRECTORY"), "/tmp/users-own-mps");
  unsetenv("CUDA_MPS_PIPE_DIRECTORY");
}

TEST_F(CudaMpsTest, MissingControlProgramIsReportedNotFatal) {
  setenv("PATH", "/nonexistent", 1);
  if (access("/usr/bin/nvidia-cuda-mps-control", X_OK) == 0 || access("/usr/local/cuda/bin/nvidia-cuda-mps-control", X_OK) == 0)
    GTEST_SKIP() << "a real nvidia-cuda-mps-control is installed";
  std::string why = start_private_mps();
  EXPECT_NE(why.find("not found"), std::string::npos) << why;
  EXPECT_FALSE(private_mps_running());
}

TEST_F(CudaMpsTest, ADaemonThatNeverGetsReadyIsEndedAndItsDirectoryRemoved) {
  std::ofstream(bin_ / "nvidia-cuda-mps-control") << "#!/bin/sh\nexit 1\n";
  std::string why = start_private_mps();
  EXPECT_NE(why.find("did not start"), std::string::npos) << why;
  EXPECT_FALSE(private_mps_running());
  EXPECT_EQ(std::getenv("CUDA_MPS_PIPE_DIRECTORY"), nullptr);
}

TEST_F(CudaMpsTest, DirectoriesOfDeadOrchestratorsAreRemovedAtTheNextStart) {
  // A pid that cannot be alive: a child that has exited and been reaped.
  pid_t dead = fork();
  if (dead == 0) _exit(0);
  int st;
  waitpid(dead, &st, 0);
  // Unique names (mkdtemp) in the server directories' namespace, so that concurrent runs of this
  // test never share one.
  const fs::path tmp = fs::temp_directory_path();
  std::string ts = (tmp / "segpipe-mps-stale-XXXXXX").string(), tl = (tmp / "segpipe-mps-live-XXXXXX").string();
  ASSERT_NE(mkdtemp(ts.data()), nullptr);
  ASSERT_NE(mkdtemp(tl.data()), nullptr);
  const fs::path stale = ts, live = tl;
  fs::create_directories(stale / "pipe");
  fs::create_directories(live / "pipe");
  std::ofstream(stale / "owner") << dead << "\n";
  std::ofstream(live / "owner") << getpid() << "\n";
  ASSERT_EQ(start_private_mps(), "");
  EXPECT_FALSE(fs::exists(stale));
  EXPECT_TRUE(fs::exists(live));
  fs::remove_all(live);
}

TEST_F(CudaMpsTest, SharingModeFromTheEnvironment) {
  EXPECT_EQ(gpu_sharing_from_env(), GpuSharing::Auto);
  setenv("SEGPIPE_GPU_SHARING", "mps", 1);
  EXPECT_EQ(gpu_sharing_from_env(), GpuSharing::Mps);
  setenv("SEGPIPE_GPU_SHARING", "off", 1);
  EXPECT_EQ(gpu_sharing_from_env(), GpuSharing::Off);
  setenv("SEGPIPE_GPU_SHARING", "always", 1);
  try {
    gpu_sharing_from_env();
    FAIL() << "no error";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("SEGPIPE_GPU_SHARING='always'"), std::string::npos) << e.what();
  }
}

TEST_F(CudaMpsTest, TheServerEndsWithAKilledOrchestrator) {
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  pid_t orch = fork();
  if (orch == 0) {  // the orchestrator: starts the server, tells the daemon's pid, waits to be killed
    close(fds[0]);
    if (!start_private_mps().empty()) _exit(1);
    pid_t d[2] = {0, 0};
    std::ifstream(fs::path(std::getenv("CUDA_MPS_PIPE_DIRECTORY")) / "daemon.pid") >> d[0];
    std::ifstream(fs::path(std::getenv("CUDA_MPS_PIPE_DIRECTORY")) / "server.pid") >> d[1];
    if (write(fds[1], d, sizeof d) != sizeof d) _exit(1);
    pause();
    _exit(0);
  }
  close(fds[1]);
  pid_t pids[2] = {0, 0};
  ASSERT_EQ(read(fds[0], pids, sizeof pids), static_cast<ssize_t>(sizeof pids));
  close(fds[0]);
  const pid_t daemon = pids[0], server = pids[1];
  ASSERT_GT(daemon, 0);
  ASSERT_GT(server, 0);
  EXPECT_TRUE(alive(daemon));
  EXPECT_TRUE(alive(server));
  kill(orch, SIGKILL);
  int st;
  waitpid(orch, &st, 0);
  // Whatever the outcome, nothing of this test may outlive it: what failed to end is ended here.
  for (pid_t p : {daemon, server}) {
    if (ends_within(p, 10000)) continue;
    ADD_FAILURE() << (p == daemon ? "the MPS control daemon " : "the MPS server ") << p << " outlived its orchestrator";
    kill(p, SIGKILL);
  }
  // Its directory stays behind (nobody was left to remove it) until the next start removes it.
  ASSERT_EQ(start_private_mps(), "");
  stop_private_mps();
}
