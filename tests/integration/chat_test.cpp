// The built-in demo answers, and `generate --chat` without a prompt holds a conversation read from
// standard input: through the demo pipeline (one process per segment, expert banks), the conversation
// kept from turn to turn, Ctrl-C from the terminal ending it cleanly (exit 0, no process or arena left).
// Expected answers are arithmetic facts, and the demo model's goldens (made by transformers) pin the
// tokens; `segpipe eval` on the held-out set compares segmented, in-process and transformers answers.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <stdexcept>
#include <thread>

#include "process_harness.h"

namespace segpipe::test {
namespace {

// segpipe in its own process group with pipes on all three streams, as a shell runs a foreground job:
// a signal to the group is what Ctrl-C in a terminal sends.
class Interactive {
 public:
  explicit Interactive(const std::vector<std::string>& args) {
    int in[2], o[2], e[2];
    if (pipe(in) != 0 || pipe(o) != 0 || pipe(e) != 0) throw std::runtime_error("pipe");
    pid_ = fork();
    if (pid_ == 0) {
      setpgid(0, 0);
      dup2(in[0], 0);
      dup2(o[1], 1);
      dup2(e[1], 2);
      close(in[1]);
      close(o[0]);
      close(e[0]);
      exec_segpipe(args);
    }
    setpgid(pid_, pid_);  // both sides, so the group exists before either goes on
    close(in[0]);
    close(o[1]);
    close(e[1]);
    in_ = in[1], out_ = o[0], err_ = e[0];
  }
  ~Interactive() {
    if (pid_ > 0 && !reaped_) {
      kill(-pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    for (int fd : {in_, out_, err_})
      if (fd >= 0) close(fd);
  }
  void send(const std::string& line) {
    std::string s = line + "\n";
    ASSERT_EQ(write(in_, s.data(), s.size()), static_cast<ssize_t>(s.size()));
  }
  void close_input() {
    close(in_);
    in_ = -1;
  }
  // Sends one user turn and waits for its reply: a reply ends with its statistics line on standard error.
  // Returns the answer (the reply after any think block), or "" when none came in time.
  std::string ask(const std::string& question, double seconds) {
    const size_t from = out.size();
    const long before = stats_lines();
    send(question);
    auto t0 = std::chrono::steady_clock::now();
    while (stats_lines() == before) {
      double left = seconds - std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      if (left <= 0 || !pump(static_cast<int>(left * 1000))) return "";
    }
    return answer_in(out.substr(from));
  }
  void interrupt() { kill(-pid_, SIGINT); }
  int wait_exit(double seconds) {
    auto t0 = std::chrono::steady_clock::now();
    for (;;) {
      int st = 0;
      pid_t r = waitpid(pid_, &st, WNOHANG);
      if (r == pid_) {
        reaped_ = true;
        while (pump(0)) {
        }
        return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
      }
      if (std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() > seconds) return -1;
      pump(50);
    }
  }
  pid_t pid() const { return pid_; }
  std::string out, err;

 private:
  long stats_lines() const {
    long n = 0;
    for (size_t p = 0; (p = err.find("tokens/s", p)) != std::string::npos; p += 8) n++;
    return n / 2;  // each statistics line names prefill and decode tokens/s
  }
  static std::string answer_in(const std::string& reply) {
    size_t e = reply.rfind("</think>");
    std::string s = e == std::string::npos ? reply : reply.substr(e + 8);
    size_t a = s.find_first_not_of(" \n"), b = s.find_last_not_of(" \n");
    return a == std::string::npos ? "" : s.substr(a, b - a + 1);
  }
  // One poll over stdout and stderr; false when both are closed.
  bool pump(int ms) {
    pollfd fds[2] = {{out_, POLLIN, 0}, {err_, POLLIN, 0}};
    if (out_ < 0 && err_ < 0) return false;
    if (poll(fds, 2, ms) <= 0) return true;
    char buf[4096];
    for (int i = 0; i < 2; i++) {
      if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP))) continue;
      ssize_t n = read(fds[i].fd, buf, sizeof buf);
      if (n <= 0) {
        close(fds[i].fd);
        (i == 0 ? out_ : err_) = -1;
      } else {
        (i == 0 ? out : err).append(buf, static_cast<size_t>(n));
      }
    }
    return true;
  }
  pid_t pid_ = -1;
  int in_ = -1, out_ = -1, err_ = -1;
  bool reaped_ = false;
};

std::string after_think(const std::string& line) {
  size_t e = line.rfind("</think>");
  std::string s = e == std::string::npos ? line : line.substr(e + 8);
  size_t a = s.find_first_not_of(" \n"), b = s.find_last_not_of(" \n");
  return a == std::string::npos ? "" : s.substr(a, b - a + 1);
}

TEST(Demo, AnswersTheReadmeQuestionThroughItsPipelineOfProcesses) {
  RunResult r = run_segpipe({"generate", "--chat", "--prompt", "What is 2 + 2?"}, {}, 300);
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(after_think(r.out), "2 + 2 = 4.") << r.out;
  EXPECT_NE(r.err.find("time to first token"), std::string::npos) << r.err;
  EXPECT_TRUE(leftover_workers(r.pid).empty());
  EXPECT_TRUE(leftover_arenas(r.pid).empty());
}

TEST(Demo, ChatKeepsTheConversationAndEndsAtEndOfInput) {
  Interactive p({"generate", "--chat"});
  EXPECT_EQ(p.ask("What is 17 + 25?", 300), "17 + 25 = 42.") << p.out << p.err;
  EXPECT_EQ(p.ask("What is 100 minus 37?", 300), "100 - 37 = 63.") << p.out << p.err;
  EXPECT_EQ(p.ask("Compute 9 times 7.", 300), "9 × 7 = 63.") << p.out << p.err;
  p.close_input();
  ASSERT_EQ(p.wait_exit(300), 0) << p.err;
  // Later turns compute only what the cache does not hold: fewer tokens than their prompts.
  std::regex stats(R"(prompt (\d+) tokens \((\d+) computed\))");
  int turn = 0;
  for (auto it = std::sregex_iterator(p.err.begin(), p.err.end(), stats); it != std::sregex_iterator(); ++it, ++turn)
    if (turn > 0) {
      EXPECT_LT(std::stoi((*it)[2]), std::stoi((*it)[1])) << "turn " << turn << " computed whole";
    }
  EXPECT_EQ(turn, 3) << p.err;
  EXPECT_TRUE(leftover_workers(p.pid()).empty());
  EXPECT_TRUE(leftover_arenas(p.pid()).empty());
}

TEST(Demo, CtrlCEndsTheChatCleanly) {
  Interactive p({"generate", "--chat"});
  ASSERT_EQ(p.ask("What is 2 + 2?", 300), "2 + 2 = 4.") << p.out << p.err;
  // At the prompt: the whole process group gets SIGINT, as from a terminal.
  p.interrupt();
  EXPECT_EQ(p.wait_exit(60), 0) << p.err;
  EXPECT_TRUE(leftover_workers(p.pid()).empty());
  EXPECT_TRUE(leftover_arenas(p.pid()).empty());
}

TEST(Demo, HeldOutQuestionsAgreeSegmentedInProcessAndWithTransformers) {
  std::string json = temp_dir() + "/eval.json";
  RunResult r = run_segpipe({"eval", "--pipeline", source_path("pipelines/demo.yaml"), "--set",
                             source_path("models/qwen3-moe-demo/eval/heldout.jsonl"), "--limit", "25", "--json", json},
                            {}, 600);
  ASSERT_EQ(r.rc, 0) << r.out << r.err;
  std::ifstream in(json);
  nlohmann::json rep = nlohmann::json::parse(in);
  EXPECT_TRUE(rep["segmented_equals_in_process"].get<bool>());
  for (auto& [task, t] : rep["tasks"].items()) {
    EXPECT_EQ(t["n"].get<int>(), 25) << task;
    // The set carries transformers' answer to every question (tools/demo_model/train.py --stage finish).
    EXPECT_EQ(t["with_reference"].get<int>(), 25) << task;
    EXPECT_EQ(t["agrees_with_reference"], t["with_reference"]) << task << ": an answer differs from transformers'";
    if (task == "add" || task == "sub") {
      EXPECT_GE(t["accuracy"].get<double>(), 0.95) << task;
    }
  }
}

}  // namespace
}  // namespace segpipe::test
