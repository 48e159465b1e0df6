#include "orchestrator/drivers/cuda_mps.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <optional>
#include <thread>

#include "segments/core/errors.h"

namespace segpipe {

namespace {

constexpr const char* kControl = "nvidia-cuda-mps-control";
constexpr const char* kPipeVar = "CUDA_MPS_PIPE_DIRECTORY";
constexpr const char* kLogVar = "CUDA_MPS_LOG_DIRECTORY";

struct MpsState {
  std::mutex mu;
  pid_t pid = -1;  // the control daemon, leader of its own process group
  std::string dir;
  std::optional<std::string> old_pipe, old_log;
  bool atexit_registered = false;
};

MpsState& state() {
  static MpsState* s = new MpsState;  // never destroyed: used from atexit
  return *s;
}

std::string find_in_path(const char* name) {
  const char* path = std::getenv("PATH");
  std::string p = path ? path : "";
  p += ":/usr/bin:/usr/local/cuda/bin";
  size_t b = 0;
  while (b <= p.size()) {
    size_t e = p.find(':', b);
    if (e == std::string::npos) e = p.size();
    std::string dir = p.substr(b, e - b);
    if (!dir.empty()) {
      std::string f = dir + "/" + name;
      if (access(f.c_str(), X_OK) == 0) return f;
    }
    b = e + 1;
  }
  return "";
}

std::optional<std::string> get_env(const char* n) {
  const char* v = std::getenv(n);
  if (!v) return std::nullopt;
  return std::string(v);
}

void restore_env(const char* n, const std::optional<std::string>& v) {
  if (v)
    setenv(n, v->c_str(), 1);
  else
    unsetenv(n);
}

bool exited(pid_t pid) {
  int st = 0;
  pid_t r = waitpid(pid, &st, WNOHANG);
  return r == pid || (r < 0 && errno == ECHILD);
}

// SIGTERM to the daemon's group (the daemon and the server it started), SIGKILL after 2 s.
void end_group(pid_t pid) {
  if (pid <= 0) return;
  kill(-pid, SIGTERM);
  auto until = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  while (!exited(pid) && std::chrono::steady_clock::now() < until)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  kill(-pid, SIGKILL);  // the server, should it outlive the daemon; ESRCH when the group is gone
  if (!exited(pid)) {
    kill(pid, SIGKILL);
    int st;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
  }
}

// Asks the daemon to quit (it then ends its server and reaps it, so no orphan is left for init to
// reap); waits up to 2 s. The caller ends the group afterwards in any case.
void ask_quit(const MpsState& s) {
  std::string bin = find_in_path(kControl);
  if (bin.empty()) return;
  int fds[2];
  if (pipe(fds) != 0) return;
  const std::string pipe_dir = s.dir + "/pipe", log_dir = s.dir + "/log";
  pid_t c = fork();
  if (c < 0) {
    close(fds[0]);
    close(fds[1]);
    return;
  }
  if (c == 0) {
    dup2(fds[0], 0);
    close(fds[0]);
    close(fds[1]);
    int dn = open("/dev/null", O_WRONLY);
    if (dn >= 0) {
      dup2(dn, 1);
      dup2(dn, 2);
    }
    setenv(kPipeVar, pipe_dir.c_str(), 1);
    setenv(kLogVar, log_dir.c_str(), 1);
    signal(SIGPIPE, SIG_DFL);  // ignored by the orchestrator (output.h); not by the programs it starts
    execl(bin.c_str(), kControl, static_cast<char*>(nullptr));
    _exit(127);
  }
  close(fds[0]);
  const char quit[] = "quit\n";
  if (write(fds[1], quit, sizeof quit - 1) < 0) {
  }
  close(fds[1]);
  auto until = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  bool client_done = false, daemon_done = false;
  while (std::chrono::steady_clock::now() < until && !(client_done && daemon_done)) {
    if (!client_done) client_done = exited(c);
    if (!daemon_done) daemon_done = exited(s.pid);
    if (!(client_done && daemon_done)) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  if (!client_done) {
    kill(c, SIGKILL);
    int st;
    while (waitpid(c, &st, 0) < 0 && errno == EINTR) {
    }
  }
}

// Reaps what is left of the daemon's process group: an MPS server that outlived its daemon became
// this process's child (start_private_mps makes it a subreaper) and is reaped here instead of staying
// a zombie where the machine's init does not reap orphans (a container's PID 1). Everything in the
// group has had SIGKILL (end_group): this returns as soon as the last of our children in it is reaped
// (ECHILD); the 10 s bound is for a loaded or emulated machine, where dying takes longer (1 s was
// not always enough under qemu beside two compilers).
void reap_group(pid_t pgid) {
  auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  for (;;) {
    int st = 0;
    const pid_t r = waitpid(-pgid, &st, WNOHANG);
    if (r > 0) continue;
    if (r < 0 && errno == EINTR) continue;
    if (r < 0 || std::chrono::steady_clock::now() >= until) return;  // ECHILD: none of ours left
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
}

void stop_locked(MpsState& s) {
  if (s.pid <= 0) return;
  ask_quit(s);
  end_group(s.pid);
  reap_group(s.pid);
  s.pid = -1;
  restore_env(kPipeVar, s.old_pipe);
  restore_env(kLogVar, s.old_log);
  std::error_code ec;
  std::filesystem::remove_all(s.dir, ec);
  s.dir.clear();
}

// Directories of private servers whose orchestrator is gone (SIGKILLed: its daemon died with it
// through PR_SET_PDEATHSIG, but nobody removed the directory).
void remove_stale_dirs() {
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(std::filesystem::temp_directory_path(), ec)) {
    const std::string name = e.path().filename().string();
    if (name.rfind("segpipe-mps-", 0) != 0) continue;
    struct stat st{};
    if (stat(e.path().c_str(), &st) != 0 || st.st_uid != getuid()) continue;
    long owner = 0;
    if (FILE* f = std::fopen((e.path() / "owner").c_str(), "r")) {
      if (std::fscanf(f, "%ld", &owner) != 1) owner = 0;
      std::fclose(f);
    }
    // No owner yet: another orchestrator between making the directory and writing its pid.
    if (owner <= 0 || kill(static_cast<pid_t>(owner), 0) == 0 || errno != ESRCH) continue;
    std::error_code ec2;
    std::filesystem::remove_all(e.path(), ec2);
  }
}

}  // namespace

GpuSharing gpu_sharing_from_env() {
  const char* v = std::getenv("SEGPIPE_GPU_SHARING");
  if (!v || !*v || std::strcmp(v, "auto") == 0) return GpuSharing::Auto;
  if (std::strcmp(v, "mps") == 0) return GpuSharing::Mps;
  if (std::strcmp(v, "off") == 0) return GpuSharing::Off;
  throw InputError(std::string("SEGPIPE_GPU_SHARING='") + v + "': expected auto, mps or off");
}

const char* gpu_sharing_name(GpuSharing s) {
  switch (s) {
    case GpuSharing::Auto: return "auto";
    case GpuSharing::Mps: return "mps";
    case GpuSharing::Off: return "off";
  }
  return "?";
}

std::string start_private_mps() {
  MpsState& s = state();
  std::lock_guard<std::mutex> lock(s.mu);
  if (s.pid > 0) return "";
  if (get_env(kPipeVar)) return std::string(kPipeVar) + " is set: the MPS server it names is used as it is";
  std::string bin = find_in_path(kControl);
  if (bin.empty()) return std::string(kControl) + " was not found";
  remove_stale_dirs();
  std::string tmpl = (std::filesystem::temp_directory_path() / "segpipe-mps-XXXXXX").string();
  if (!mkdtemp(tmpl.data())) return std::string("cannot make a directory for it: ") + std::strerror(errno);
  const std::string dir = tmpl, pipe = dir + "/pipe", log = dir + "/log";
  if (FILE* f = std::fopen((dir + "/owner").c_str(), "w")) {
    std::fprintf(f, "%ld\n", static_cast<long>(getpid()));
    std::fclose(f);
  }
  mkdir(pipe.c_str(), 0700);
  mkdir(log.c_str(), 0700);
  // The daemon starts the server as its own child; should the server outlive the daemon, it is
  // re-parented to this process (not to init) and reaped at stop (reap_group).
  prctl(PR_SET_CHILD_SUBREAPER, 1);
  const pid_t parent = getpid();
  pid_t pid = fork();
  if (pid < 0) {
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
    return std::string("fork failed: ") + std::strerror(errno);
  }
  if (pid == 0) {
    setpgid(0, 0);  // its own group: a terminal's Ctrl-C does not end it before the workers
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != parent) _exit(0);
    int dn = open("/dev/null", O_RDWR);
    if (dn >= 0) {
      dup2(dn, 0);
      dup2(dn, 1);
      dup2(dn, 2);
    }
    setenv(kPipeVar, pipe.c_str(), 1);
    setenv(kLogVar, log.c_str(), 1);
    signal(SIGPIPE, SIG_DFL);  // ignored by the orchestrator (output.h); not by the programs it starts
    execl(bin.c_str(), kControl, "-f", static_cast<char*>(nullptr));
    _exit(127);
  }
  setpgid(pid, pid);  // also here: no race with the kill(-pid) of a quick stop
  // The daemon is ready once its control socket exists.
  const std::string sock = pipe + "/control";
  auto until = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  struct stat st{};
  while (stat(sock.c_str(), &st) != 0) {
    if (exited(pid) || std::chrono::steady_clock::now() >= until) {
      end_group(pid);
      std::error_code ec;
      std::filesystem::remove_all(dir, ec);
      return std::string(kControl) + " did not start";
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  s.pid = pid;
  s.dir = dir;
  s.old_pipe = get_env(kPipeVar);
  s.old_log = get_env(kLogVar);
  setenv(kPipeVar, pipe.c_str(), 1);
  setenv(kLogVar, log.c_str(), 1);
  if (!s.atexit_registered) {
    s.atexit_registered = true;
    std::atexit(stop_private_mps);
  }
  return "";
}

void stop_private_mps() {
  MpsState& s = state();
  std::lock_guard<std::mutex> lock(s.mu);
  stop_locked(s);
}

bool private_mps_running() {
  MpsState& s = state();
  std::lock_guard<std::mutex> lock(s.mu);
  return s.pid > 0;
}

}  // namespace segpipe
