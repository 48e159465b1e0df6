#include "orchestrator/drivers/process.h"

#include <signal.h>
#include <fcntl.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "segments/core/errors.h"

namespace segpipe {

pid_t spawn_self(const std::vector<std::string>& args, const std::vector<int>& inherit) {
  std::vector<std::string> argv_s = {"segpipe"};
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& s : argv_s) argv.push_back(s.data());
  argv.push_back(nullptr);
  char exe[4096];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n <= 0) throw RuntimeFailure("cannot find the segpipe executable (/proc/self/exe)");
  exe[n] = 0;
  const pid_t parent = getpid();
  pid_t pid = fork();
  if (pid < 0) throw RuntimeFailure(std::string("fork failed: ") + std::strerror(errno));
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    // The orchestrator may have died between fork() and prctl(): no signal would come then, and the
    // worker would run on as an orphan.
    if (getppid() != parent) _exit(127);
    // The orchestrator ignores SIGPIPE (output.h); an ignored signal would survive execv.
    signal(SIGPIPE, SIG_DFL);
    // Only in the child's copy of the descriptor table: the parent's flags stay close-on-exec, so
    // no other child it spawns (or a concurrent spawn) inherits what was not meant for it.
    for (int fd : inherit)
      if (fcntl(fd, F_SETFD, 0) != 0) _exit(127);
    execv(exe, argv.data());
    _exit(127);
  }
  return pid;
}

bool reap_if_exited(pid_t pid, int& status) {
  int st = 0;
  pid_t r = waitpid(pid, &st, WNOHANG);
  if (r == pid) {
    status = st;
    return true;
  }
  if (r < 0 && errno == ECHILD) {
    status = 0;
    return true;
  }
  return false;
}

std::string describe_status(int status) {
  if (WIFEXITED(status)) return "exited with code " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) {
    int s = WTERMSIG(status);
    const char* name = sigabbrev_np(s);
    return "was killed by signal " + std::to_string(s) + (name ? std::string(" (SIG") + name + ")" : "");
  }
  return "ended (status " + std::to_string(status) + ")";
}

void kill_and_reap(pid_t pid) {
  if (pid <= 0) return;
  kill(pid, SIGKILL);
  int st;
  while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
  }
}

}  // namespace segpipe
