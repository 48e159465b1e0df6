// Segment processes that die (any signal) or stop answering, at start-up and mid-generation: the
// orchestrator names the segment and how it failed, exits 3, and leaves no process or arena behind;
// with --restart the run continues to exactly the tokens of an uninterrupted run.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fcntl.h>

#include <algorithm>
#include <filesystem>
#include <thread>

#include "process_harness.h"

namespace segpipe::test {
namespace {

const char* kPipeline =
    "version: 1\nmodel: %MODEL%\ntimeout_ms: 1500\ndefaults: {threads: 1}\nsegments:\n"
    "  - {name: embed, kind: embeddings}\n"
    "  - {name: early, kind: layers, layers: [0, 1]}\n"
    "  - {name: late, kind: layers, layers: [2, 4], experts: banks}\n"
    "  - {name: bank-lo, kind: experts, layers: [2, 4], experts: [0, 3]}\n"
    "  - {name: bank-hi, kind: experts, layers: [2, 4], experts: [4, 7]}\n"
    "  - {name: head, kind: lm_head}\n";

// 1.5 s: long enough that a starved worker on a loaded 2-core CI machine is not taken for hung.
// The pipelines' hang timeout (timeout_ms), scaled like every other limit for emulated runs.
constexpr int kHungMs = 1500 * kTimeScale;

std::string pipeline_file(const std::string& extra = "", int timeout_ms = kHungMs) {
  static std::string dir = temp_dir();
  std::string text = kPipeline;
  text.replace(text.find("%MODEL%"), 7, source_path("models/tiny-qwen3-moe"));
  text.replace(text.find("1500"), 4, std::to_string(timeout_ms));
  std::string path = dir + "/p" + std::to_string(std::hash<std::string>{}(extra + std::to_string(timeout_ms))) + ".yaml";
  write_file(path, text + extra);
  return path;
}

const std::vector<std::string> kGenerate = {"generate", "--tokens", "11 22 33 44", "--ids", "--max-new-tokens", "8"};

std::vector<std::string> gen_args(const std::string& yaml, bool restart) {
  std::vector<std::string> a = kGenerate;
  a.insert(a.begin() + 1, {"--pipeline", yaml});
  if (restart) a.push_back("--restart");
  return a;
}

std::string baseline_tokens() {
  static std::string out;
  if (out.empty()) {
    RunResult r = run_segpipe(gen_args(pipeline_file(), false));
    EXPECT_EQ(r.rc, 0) << r.err;
    out = r.out;
  }
  return out;
}

struct Fault {
  const char* segment;
  const char* kind;   // for the message
  const char* when;   // hello | step | experts
  int at;
  int sig;
};

std::string fault_name(const Fault& f) {
  std::string s = std::string(f.segment) + "_" + f.when + std::to_string(f.at) + "_sig" + std::to_string(f.sig);
  for (auto& c : s)
    if (c == '-') c = '_';
  return s;
}

const Fault kDeaths[] = {
    {"embed", "embeddings", "hello", 1, SIGKILL}, {"early", "layers", "hello", 1, SIGKILL},
    {"late", "layers", "hello", 1, SIGKILL},      {"bank-lo", "experts", "hello", 1, SIGKILL},
    {"head", "lm_head", "hello", 1, SIGKILL},     {"embed", "embeddings", "step", 4, SIGKILL},
    {"early", "layers", "step", 3, SIGKILL},      {"late", "layers", "step", 5, SIGKILL},
    {"bank-hi", "experts", "experts", 7, SIGKILL}, {"head", "lm_head", "step", 3, SIGKILL},
    {"late", "layers", "step", 2, SIGSEGV},       {"bank-lo", "experts", "experts", 4, SIGTERM},
};

class SegmentDeath : public ::testing::TestWithParam<Fault> {};

TEST_P(SegmentDeath, IsReportedWithExit3AndNothingLeftBehind) {
  const Fault& f = GetParam();
  std::string spec = std::string(f.segment) + ":" + f.when + ":" + std::to_string(f.at) + ":" + std::to_string(f.sig);
  // handle_segv=0: in a sanitizer build the injected SIGSEGV must kill the worker, not be reported by ASan.
  RunResult r = run_segpipe(gen_args(pipeline_file(), false), {{"SEGPIPE_FAULT", spec}, {"ASAN_OPTIONS", "handle_segv=0"}});
  EXPECT_EQ(r.rc, 3) << r.err;
  EXPECT_NE(r.err.find("segment '" + std::string(f.segment) + "' (" + f.kind), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("signal " + std::to_string(f.sig)), std::string::npos) << r.err;
  // Seen as a death (waitpid), not later as a hang: no clock needed, so it holds under load.
  EXPECT_EQ(r.err.find("stopped answering"), std::string::npos) << r.err;
  EXPECT_TRUE(leftover_arenas(r.pid).empty());
  // Workers die with the orchestrator (PR_SET_PDEATHSIG): wait for each one's exit (pidfd).
  EXPECT_TRUE(wait_for_exit(leftover_workers(r.pid)));
  EXPECT_TRUE(leftover_workers(r.pid).empty());
}

TEST_P(SegmentDeath, WithRestartContinuesToTheUninterruptedTokens) {
  const Fault& f = GetParam();
  std::string spec = std::string(f.segment) + ":" + f.when + ":" + std::to_string(f.at) + ":" + std::to_string(f.sig);
  RunResult r = run_segpipe(gen_args(pipeline_file(), true), {{"SEGPIPE_FAULT", spec}, {"ASAN_OPTIONS", "handle_segv=0"}});
  EXPECT_EQ(r.rc, 0) << r.err;
  EXPECT_NE(r.err.find("restarting"), std::string::npos) << r.err;
  EXPECT_EQ(r.out, baseline_tokens());
  EXPECT_TRUE(leftover_arenas(r.pid).empty());
}

INSTANTIATE_TEST_SUITE_P(Faults, SegmentDeath, ::testing::ValuesIn(kDeaths),
                         [](const auto& tp) { return fault_name(tp.param); });

TEST(SegmentDeath, RestartKeyInThePipelineFileWorksLikeTheFlag) {
  RunResult r = run_segpipe(gen_args(pipeline_file("restart: true\n"), false), {{"SEGPIPE_FAULT", "late:step:4:9"}});
  EXPECT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(r.out, baseline_tokens());
}

class HungSegment : public ::testing::TestWithParam<Fault> {};

TEST_P(HungSegment, HitsTheTimeoutAndIsNamed) {
  const Fault& f = GetParam();
  std::string spec = std::string(f.segment) + ":" + f.when + ":" + std::to_string(f.at) + ":" + std::to_string(f.sig);
  RunResult r = run_segpipe(gen_args(pipeline_file(), false), {{"SEGPIPE_FAULT", spec}});
  EXPECT_EQ(r.rc, 3) << r.err;
  EXPECT_NE(r.err.find("segment '" + std::string(f.segment) + "'"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("stopped answering for " + std::to_string(kHungMs) + " ms"), std::string::npos) << r.err;
  // Detected by the timeout rather than never: a bound that holds on a loaded machine (how soon
  // after the timeout is a latency, not a correctness property).
  EXPECT_LT(r.seconds, (kHungMs / 1000.0 + 60) * kTimeScale) << r.err;
  EXPECT_TRUE(leftover_arenas(r.pid).empty());
  EXPECT_TRUE(wait_for_exit(leftover_workers(r.pid)));
  EXPECT_TRUE(leftover_workers(r.pid).empty());
  // And with --restart the stopped one is replaced.
  RunResult r2 = run_segpipe(gen_args(pipeline_file(), true), {{"SEGPIPE_FAULT", spec}});
  EXPECT_EQ(r2.rc, 0) << r2.err;
  EXPECT_EQ(r2.out, baseline_tokens());
}

// Signal 0: the request's thread spins forever while the process's heartbeat thread lives on (a
// wedged computation): the heartbeat stops because the work stops moving.
const Fault kHangs[] = {{"late", "layers", "step", 3, SIGSTOP},
                        {"bank-hi", "experts", "experts", 3, SIGSTOP},
                        {"head", "lm_head", "step", 2, SIGSTOP},
                        {"embed", "embeddings", "hello", 1, SIGSTOP},
                        {"late", "layers", "step", 3, 0},
                        {"bank-lo", "experts", "experts", 2, 0},
                        {"head", "lm_head", "step", 2, 0}};
INSTANTIATE_TEST_SUITE_P(Hangs, HungSegment, ::testing::ValuesIn(kHangs),
                         [](const auto& tp) { return fault_name(tp.param); });

// `segpipe generate --ids | head -c 20`: the reader goes away. The orchestrator used to die of SIGPIPE,
// printing nothing and leaving its arena behind; now it stops, releases everything and exits 0.
TEST(ClosedOutput, GenerateStopsCleanlyWhenItsReaderGoes) {
  for (size_t bytes : {size_t{0}, size_t{20}}) {
    // 2000 tokens: far more than a pipe holds before the reader has gone.
    std::vector<std::string> a = {"generate", "--pipeline", pipeline_file(), "--tokens", "11 22 33 44",
                                  "--ids", "--max-new-tokens", "2000"};
    RunResult r = run_segpipe_reader_closes(a, bytes);
    EXPECT_EQ(r.rc, 0) << "reader gone after " << bytes << " bytes: " << r.err;
    EXPECT_EQ(r.err.find("failure"), std::string::npos) << r.err;
    EXPECT_EQ(r.out.size(), bytes);
    EXPECT_TRUE(leftover_arenas(r.pid).empty()) << "reader gone after " << bytes << " bytes";
    EXPECT_TRUE(wait_for_exit(leftover_workers(r.pid)));
    EXPECT_TRUE(leftover_workers(r.pid).empty());
  }
}

// transport: inproc maps the weights into the orchestrator itself; a checkpoint truncated during the
// run used to kill it with SIGBUS (exit 135, nothing printed). Now: exit 3 naming segment and file.
TEST(ChangedCheckpoint, TruncatedDuringAnInprocRunIsExit3NamingSegmentAndFile) {
  const std::string dir = temp_dir();
  std::filesystem::copy(source_path("models/tiny-qwen3-moe"), dir + "/m", std::filesystem::copy_options::recursive);
  std::string yaml = kPipeline;
  yaml.replace(yaml.find("%MODEL%"), 7, dir + "/m");
  yaml += "transport: inproc\n";
  write_file(dir + "/p.yaml", yaml);
  const std::string shard = dir + "/m/model-00002-of-00003.safetensors";
  std::vector<std::string> a = {"generate", "--pipeline", dir + "/p.yaml", "--tokens", "11 22 33 44",
                                "--ids", "--max-new-tokens", "2000"};
  // Stopped while it generates, so that the truncation lands between two steps of a run that has
  // many steps left; every step reads all of the shard's weights again.
  RunResult r = run_segpipe_then(a, [&](pid_t pid) {
    kill(pid, SIGSTOP);
    EXPECT_EQ(truncate(shard.c_str(), 300000), 0);
    kill(pid, SIGCONT);
  });
  EXPECT_EQ(r.rc, 3) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  EXPECT_NE(r.err.find("segment '"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find(shard), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("SIGBUS"), std::string::npos) << r.err;
  std::filesystem::remove_all(dir);
}

// A run held in the middle of a step (the 'late' worker stops itself): its orchestrator pid, once its
// workers exist (the arena is created before they start).
pid_t start_held_run(const std::string& yaml) {
  pid_t pid = fork();
  if (pid == 0) {
    // Default dispositions, whatever this test inherited (a shell's background job ignores SIGINT
    // and SIGQUIT, and segpipe rightly keeps a signal ignored that it was started with).
    for (int sig = 1; sig < NSIG; sig++)
      if (sig != SIGKILL && sig != SIGSTOP) signal(sig, SIG_DFL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    setenv("SEGPIPE_FAULT", "late:step:2:19", 1);
    int devnull = open("/dev/null", O_WRONLY);
    dup2(devnull, 1);
    dup2(devnull, 2);
    std::vector<std::string> a = gen_args(yaml, false);
    a.insert(a.begin(), SEGPIPE_BIN);
    std::vector<char*> argv;
    for (auto& s : a) argv.push_back(s.data());
    argv.push_back(nullptr);
    execv(SEGPIPE_BIN, argv.data());
    _exit(127);
  }
  // All six started (each arms PR_SET_PDEATHSIG before it execs), not only the first.
  for (int i = 0; i < 1000 && leftover_workers(pid).size() < 6; i++) usleep(10000);
  return pid;
}

// Any signal that ends the orchestrator ends it without leaving its arena: SIGQUIT, SIGUSR1 and
// SIGALRM used to leave it in /dev/shm. SIGPIPE is ignored (a closed output is handled as EPIPE).
TEST(OrchestratorSignal, EndsTheRunAndLeavesNoArenaOrProcess) {
  std::string yaml = pipeline_file("", 60000);
  for (int sig : {SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGALRM, SIGPIPE}) {
    pid_t pid = start_held_run(yaml);
    const std::vector<pid_t> workers = leftover_workers(pid);
    ASSERT_EQ(workers.size(), 6u) << "signal " << sig;
    ASSERT_TRUE(holds_unnamed_arena(pid)) << "signal " << sig;
    ASSERT_TRUE(leftover_arenas(pid).empty()) << "the arena has no name; signal " << sig;
    kill(pid, sig);
    if (sig == SIGPIPE) kill(pid, SIGTERM);  // survived it: end the held run the usual way
    int st = 0;
    waitpid(pid, &st, 0);
    EXPECT_TRUE(WIFSIGNALED(st)) << "signal " << sig;
    EXPECT_EQ(WTERMSIG(st), sig == SIGPIPE ? SIGTERM : sig) << "it still dies of the signal";
    EXPECT_TRUE(leftover_arenas(pid).empty()) << "signal " << sig;
    EXPECT_TRUE(wait_for_exit(workers)) << "signal " << sig;
    EXPECT_TRUE(leftover_workers(pid).empty()) << "signal " << sig;
  }
}

// The orchestrator itself is killed: its workers follow it, and nothing is left anywhere. The arena
// is an unnamed memfd held by the orchestrator and its workers only; it goes with the last of them.
TEST(OrchestratorDeath, WorkersExitAndNothingIsLeft) {
  std::string yaml = pipeline_file("", 60000);
  const pid_t pid = start_held_run(yaml);  // returns once all six workers exist
  ASSERT_TRUE(holds_unnamed_arena(pid));
  ASSERT_TRUE(leftover_arenas(pid).empty()) << "a run's arena has no name in /dev/shm";
  const std::vector<pid_t> workers = leftover_workers(pid);
  ASSERT_FALSE(workers.empty());
  for (pid_t w : workers) EXPECT_TRUE(holds_unnamed_arena(w)) << "worker " << w << " inherited the arena";
  kill(pid, SIGKILL);
  int st;
  waitpid(pid, &st, 0);
  EXPECT_TRUE(wait_for_exit(workers)) << "workers must exit with their orchestrator";
  EXPECT_TRUE(leftover_workers(pid).empty()) << "workers must exit with their orchestrator";
  EXPECT_TRUE(leftover_arenas(pid).empty()) << "SIGKILL leaves nothing in /dev/shm";
  // And the next run works as usual.
  RunResult r = run_segpipe(gen_args(pipeline_file(), false));
  EXPECT_EQ(r.rc, 0) << r.err;
}

}  // namespace
}  // namespace segpipe::test
