// Runs the segpipe binary as a child, captures its output and exit status, and checks what it left
// behind (worker processes, shared-memory arenas).
#pragma once
#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#ifndef SEGPIPE_TEST_TIMEOUT_SCALE
#define SEGPIPE_TEST_TIMEOUT_SCALE 1
#endif

namespace segpipe::test {

// Every time limit of these tests is multiplied by this (1 natively; more where the binaries run
// emulated: SEGPIPE_TEST_TIMEOUT_SCALE in tests/CMakeLists.txt, set by the ARM64 toolchain file).
inline constexpr int kTimeScale = SEGPIPE_TEST_TIMEOUT_SCALE;

struct RunResult {
  int rc = -1;           // exit code, or 128 + signal
  std::string out, err;
  pid_t pid = 0;         // the orchestrator's pid
  double seconds = 0;
};

RunResult run_segpipe(const std::vector<std::string>& args, const std::map<std::string, std::string>& env = {},
                      double timeout_s = 60);
// In a child just forked: replaces it with the segpipe binary run with `args` (exit 127 if it cannot start).
[[noreturn]] void exec_segpipe(const std::vector<std::string>& args);
// Like run_segpipe, but standard output's reader goes away after `read_bytes` bytes (as `| head -c N`
// does); 0 closes it before the command writes anything. out holds what was read.
RunResult run_segpipe_reader_closes(const std::vector<std::string>& args, size_t read_bytes, double timeout_s = 60);
// Like run_segpipe, calling `on_first_output(pid)` once, as soon as standard output has its first bytes
// (the run is then past loading and in its generation loop).
RunResult run_segpipe_then(const std::vector<std::string>& args, const std::function<void(pid_t)>& on_first_output,
                           double timeout_s = 60);
// Worker processes started by orchestrator `pid` that still exist.
std::vector<pid_t> leftover_workers(pid_t orchestrator);
// Waits until each of these processes (our children or not) has exited and closed its descriptors
// (and so released its locks): a pidfd turns readable only then. False if one is still running
// after `timeout_s`. A process that does not show in leftover_workers() any more may still be
// exiting (its command line goes before its descriptors do).
bool wait_for_exit(const std::vector<pid_t>& pids, double timeout_s = 30);
// Arenas in /dev/shm created by `pid` (a run's arena is unnamed: there should never be any).
std::vector<std::string> leftover_arenas(pid_t pid);
// Whether process `pid` holds an unnamed segpipe arena (a memfd among its descriptors).
bool holds_unnamed_arena(pid_t pid);
std::string temp_dir();
// Writes the bf16 `bits` over element `index` of `tensor` in a (copied) single-file checkpoint
// `file` (model.safetensors): a NaN or Inf planted where a test wants a broken weight.
void poke_bf16(const std::string& file, const std::string& tensor, uint64_t index, uint16_t bits);
void write_file(const std::string& path, const std::string& text);
std::string source_path(const std::string& rel);

}  // namespace segpipe::test
