#include "process_harness.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>

namespace segpipe::test {

namespace {
RunResult run_impl(const std::vector<std::string>& args, const std::map<std::string, std::string>& env,
                   double timeout_s, size_t close_out_after, const std::function<void(pid_t)>& on_first_output = {});
}

RunResult run_segpipe(const std::vector<std::string>& args, const std::map<std::string, std::string>& env,
                      double timeout_s) {
  return run_impl(args, env, timeout_s * kTimeScale, SIZE_MAX);
}

void exec_segpipe(const std::vector<std::string>& args) {
  std::vector<std::string> a = {SEGPIPE_BIN};
  a.insert(a.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& s : a) argv.push_back(s.data());
  argv.push_back(nullptr);
  execv(SEGPIPE_BIN, argv.data());
  _exit(127);
}

RunResult run_segpipe_reader_closes(const std::vector<std::string>& args, size_t read_bytes, double timeout_s) {
  return run_impl(args, {}, timeout_s * kTimeScale, read_bytes);
}

RunResult run_segpipe_then(const std::vector<std::string>& args, const std::function<void(pid_t)>& on_first_output,
                           double timeout_s) {
  return run_impl(args, {}, timeout_s * kTimeScale, SIZE_MAX, on_first_output);
}

namespace {
RunResult run_impl(const std::vector<std::string>& args, const std::map<std::string, std::string>& env,
                   double timeout_s, size_t close_out_after, const std::function<void(pid_t)>& on_first_output) {
  int out[2], err[2];
  if (pipe(out) != 0 || pipe(err) != 0) throw std::runtime_error("pipe");
  auto t0 = std::chrono::steady_clock::now();
  pid_t pid = fork();
  if (pid == 0) {
    dup2(out[1], 1);
    dup2(err[1], 2);
    close(out[0]);
    close(err[0]);
    for (auto& [k, v] : env) setenv(k.c_str(), v.c_str(), 1);
    exec_segpipe(args);
  }
  close(out[1]);
  close(err[1]);
  RunResult r;
  r.pid = pid;
  pollfd fds[2] = {{out[0], POLLIN, 0}, {err[0], POLLIN, 0}};
  int open_fds = 2;
  char buf[4096];
  auto close_out = [&] {
    close(fds[0].fd);
    fds[0].fd = -1;
    open_fds--;
  };
  if (close_out_after == 0) close_out();
  while (open_fds > 0) {
    double left = timeout_s - std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (left <= 0) {
      kill(pid, SIGKILL);
      break;
    }
    if (poll(fds, 2, static_cast<int>(left * 1000)) <= 0) continue;
    for (int i = 0; i < 2; i++) {
      if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP))) continue;
      size_t want = i == 0 ? std::min(sizeof buf, close_out_after - r.out.size()) : sizeof buf;
      ssize_t n = read(fds[i].fd, buf, want);
      if (n <= 0) {
        close(fds[i].fd);
        fds[i].fd = -1;
        open_fds--;
      } else {
        const bool first = i == 0 && r.out.empty();
        (i == 0 ? r.out : r.err).append(buf, static_cast<size_t>(n));
        if (first && on_first_output) on_first_output(pid);
        if (i == 0 && r.out.size() >= close_out_after) close_out();
      }
    }
  }
  int st = 0;
  waitpid(pid, &st, 0);
  for (auto& f : fds)
    if (f.fd >= 0) close(f.fd);
  r.rc = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}
}  // namespace

std::vector<pid_t> leftover_workers(pid_t orchestrator) {
  std::vector<pid_t> out;
  std::string needle = "\"parent_pid\":" + std::to_string(orchestrator) + ",";
  DIR* d = opendir("/proc");
  while (dirent* e = readdir(d)) {
    pid_t p = std::atoi(e->d_name);
    if (p <= 0) continue;
    std::ifstream in("/proc/" + std::string(e->d_name) + "/cmdline", std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    std::string cmd = ss.str();
    if (cmd.find("__worker") != std::string::npos && cmd.find(needle) != std::string::npos) {
      // A zombie is gone for our purposes only once reaped; count anything still in /proc.
      out.push_back(p);
    }
  }
  closedir(d);
  return out;
}

bool wait_for_exit(const std::vector<pid_t>& pids, double timeout_s) {
  bool all = true;
  for (pid_t p : pids) {
    const int fd = static_cast<int>(syscall(SYS_pidfd_open, p, 0));
    if (fd < 0) continue;  // ESRCH: already gone
    pollfd w{fd, POLLIN, 0};
    all &= poll(&w, 1, static_cast<int>(timeout_s * kTimeScale * 1000)) == 1;
    close(fd);
  }
  return all;
}

std::vector<std::string> leftover_arenas(pid_t pid) {
  std::vector<std::string> out;
  std::string prefix = "segpipe-" + std::to_string(pid) + "-";
  DIR* d = opendir("/dev/shm");
  while (dirent* e = readdir(d))
    if (std::strncmp(e->d_name, prefix.c_str(), prefix.size()) == 0) out.push_back(e->d_name);
  closedir(d);
  return out;
}

bool holds_unnamed_arena(pid_t pid) {
  const std::string dir = "/proc/" + std::to_string(pid) + "/fd";
  DIR* d = opendir(dir.c_str());
  if (!d) return false;
  bool found = false;
  while (dirent* e = readdir(d)) {
    char target[256];
    const ssize_t n = readlink((dir + "/" + e->d_name).c_str(), target, sizeof target - 1);
    if (n <= 0) continue;
    target[n] = 0;
    found |= std::strncmp(target, "/memfd:segpipe-arena", 20) == 0;
  }
  closedir(d);
  return found;
}

void poke_bf16(const std::string& file, const std::string& tensor, uint64_t index, uint16_t bits) {
  std::ifstream in(file, std::ios::binary);
  uint64_t n = 0;
  in.read(reinterpret_cast<char*>(&n), 8);
  std::string header(n, '\0');
  in.read(header.data(), static_cast<std::streamsize>(n));
  in.close();
  const nlohmann::json h = nlohmann::json::parse(header);
  if (h.at(tensor).at("dtype") != "BF16") throw std::runtime_error(file + ": " + tensor + " is not BF16");
  const uint64_t begin = h.at(tensor).at("data_offsets")[0].get<uint64_t>();
  std::fstream f(file, std::ios::binary | std::ios::in | std::ios::out);
  f.seekp(static_cast<std::streamoff>(8 + n + begin + 2 * index));
  f.write(reinterpret_cast<const char*>(&bits), 2);
}

std::string temp_dir() {
  char tmpl[] = "/tmp/segpipe-it-XXXXXX";
  char* p = mkdtemp(tmpl);
  if (!p) throw std::runtime_error("mkdtemp");
  return p;
}

void write_file(const std::string& path, const std::string& text) {
  std::ofstream o(path);
  o << text;
}

std::string source_path(const std::string& rel) { return std::string(SEGPIPE_SOURCE_DIR) + "/" + rel; }

}  // namespace segpipe::test
