// segpipe: one executable for every command (shared/docs/cli.md). Errors reach the user as one line
// on standard error with the documented exit code.
#include <cstdio>
#include <cstring>
#include <exception>
#include <functional>
#include <map>
#include <new>
#include <string>
#include <vector>

#include "orchestrator/commands.h"
#include "orchestrator/mapped_fault.h"
#include "orchestrator/output.h"
#include "orchestrator/tokenizer/cli_tokenizer.h"
#include "segments/core/errors.h"
#include "workers/worker_main.h"

namespace {

struct Command {
  std::function<int(const segpipe::Args&)> fn;
  const char* summary;
};

const std::map<std::string, Command>& commands() {
  static const std::map<std::string, Command> c = {
      {"generate", {segpipe::cmd_generate, "stream a continuation (no model: the built-in demo)"}},
      {"verify", {segpipe::cmd_verify, "compare a run with goldens, or a segmented run with the in-process run"}},
      {"plan", {segpipe::cmd_plan, "print a pipeline YAML for a checkpoint"}},
      {"inspect", {segpipe::cmd_inspect, "summarize a checkpoint"}},
      {"make-model", {segpipe::cmd_make_model, "write a checkpoint with deterministic synthetic weights"}},
      {"tokenize", {segpipe::cmd_tokenize, "print the token ids of a text"}},
      {"detokenize", {segpipe::cmd_detokenize, "print the text of token ids"}},
      {"chat-template", {segpipe::cmd_chat_template, "render the chat template for a conversation"}},
      {"bench", {segpipe::cmd_bench, "CPU benchmarks: decode and prefill against measured ceilings"}},
      {"dump", {segpipe::cmd_dump, "write every segment's inputs, outputs, layer boundaries and routes"}},
      {"run-segment", {segpipe::cmd_run_segment, "run one segment alone on a dumped input"}},
      {"memory", {segpipe::cmd_memory, "memory per segment process, and memory/speed experiments"}},
  };
  return c;
}

// Messages thrown inside a command may start with its name; the prefix printed here already says it.
const char* strip_command(const std::string& cmd, const char* msg) {
  size_t n = cmd.size();
  return std::strncmp(msg, cmd.c_str(), n) == 0 && msg[n] == ':' && msg[n + 1] == ' ' ? msg + n + 2 : msg;
}

void usage(FILE* out) {
  std::fprintf(out, "usage: segpipe <command> [options]   (segpipe <command> --help for its options)\n\ncommands:\n");
  for (auto& [name, c] : commands()) std::fprintf(out, "  %-14s %s\n", name.c_str(), c.summary);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    // No command: the built-in demo is `segpipe generate` with no model.
    usage(stderr);
    return 2;
  }
  std::string cmd = argv[1];
  std::vector<std::string> args(argv + 2, argv + argc);
  try {
    if (cmd == segpipe::kWorkerCommand) return segpipe::worker_main(args);
    if (cmd == "--help" || cmd == "-h" || cmd == "help") {
      usage(stdout);
      return 0;
    }
    auto it = commands().find(cmd);
    if (it == commands().end()) {
      std::fprintf(stderr, "segpipe: unknown command '%s'\n", cmd.c_str());
      usage(stderr);
      return 2;
    }
    segpipe::ignore_sigpipe();
    segpipe::report_mapped_file_faults(cmd);
    const int rc = it->second.fn(args);
    // Buffered output is written here at the latest: a command whose results did not reach standard
    // output (a full disk, /dev/full) must not exit 0.
    segpipe::flush_stdout();
    return rc;
  } catch (const segpipe::OutputClosed&) {
    return 0;
  } catch (const segpipe::InputError& e) {
    std::fprintf(stderr, "segpipe %s: error: %s\n", cmd.c_str(), strip_command(cmd, e.what()));
    return 2;
  } catch (const segpipe::CheckFailure& e) {
    std::fprintf(stderr, "segpipe %s: check failed: %s\n", cmd.c_str(), strip_command(cmd, e.what()));
    return 1;
  } catch (const segpipe::RuntimeFailure& e) {
    std::fprintf(stderr, "segpipe %s: runtime failure: %s\n", cmd.c_str(), strip_command(cmd, e.what()));
    return 3;
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "segpipe %s: runtime failure: out of memory\n", cmd.c_str());
    return 3;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "segpipe %s: runtime failure: %s\n", cmd.c_str(), e.what());
    return 3;
  }
}
