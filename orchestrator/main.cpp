// segpipe: one executable for every command (shared/docs/cli.md). Errors reach the user as one line
// on standard error with the documented exit code.
#include <cstdio>
#include <cstring>
#include <exception>
#include <functional>
#include <map>
#include <new>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "orchestrator/commands/commands.h"
#include "orchestrator/drivers/mapped_fault.h"
#include "orchestrator/drivers/multihost.h"
#include "orchestrator/reports/output.h"
#include "orchestrator/tokenizer/cli_tokenizer.h"
#include "segments/core/errors.h"
#include "workers/log.h"
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
      {"eval", {segpipe::cmd_eval, "answer a question set through a model or pipeline: accuracy and agreement"}},
      {"memory", {segpipe::cmd_memory, "memory per segment process, and memory/speed experiments"}},
  };
  return c;
}

// Messages thrown inside a command may start with its name; the prefix printed here already says it.
const char* strip_command(const std::string& cmd, const char* msg) {
  size_t n = cmd.size();
  return std::strncmp(msg, cmd.c_str(), n) == 0 && msg[n] == ':' && msg[n + 1] == ' ' ? msg + n + 2 : msg;
}

// A message is one line of reasonable length whatever the input held: control characters are
// escaped, and any single word longer than kLongWord (a 100 MB path, a pasted document) keeps its
// start and end around a note of its length, so that the reason after it stays readable.
std::string one_line(std::string_view msg) {
  constexpr size_t kLongWord = 240, kHead = 120, kTail = 80;
  auto utf8_cont = [](char c) { return (static_cast<unsigned char>(c) & 0xc0) == 0x80; };
  std::string out;
  size_t i = 0;
  while (i < msg.size()) {
    size_t j = i;
    while (j < msg.size() && msg[j] != ' ') j++;
    std::string_view word = msg.substr(i, j - i);
    if (word.size() > kLongWord) {
      size_t h = kHead, t = word.size() - kTail;
      while (h > 0 && utf8_cont(word[h])) h--;
      while (t < word.size() && utf8_cont(word[t])) t++;
      out += std::string(word.substr(0, h)) + "...(" + std::to_string(word.size()) + " bytes)..." +
             std::string(word.substr(t));
    } else {
      out += word;
    }
    if (j < msg.size()) out += ' ';
    i = j + 1;
  }
  std::string esc;
  for (char c : out) {
    unsigned char u = static_cast<unsigned char>(c);
    if (u >= 0x20 && u != 0x7f) {
      esc += c;
    } else {
      char b[8];
      std::snprintf(b, sizeof b, "\\x%02x", u);
      esc += b;
    }
  }
  return esc;
}

void report(const std::string& cmd, const char* kind, const char* msg) {
  const std::string line = "segpipe " + one_line(cmd) + ": " + kind + ": " + one_line(strip_command(cmd, msg));
  std::fprintf(stderr, "%s\n", line.c_str());
  segpipe::log_to_file_only(line);
}

void usage(FILE* out) {
  std::fprintf(out, "usage: segpipe [--log-level trace|debug|info|warn|error|off] [--log-file PATH] <command> [options]\n"
                   "       (segpipe <command> --help for its options; SEGPIPE_LOG_LEVEL and SEGPIPE_LOG_FILE set them\n"
                   "       without the flags; the log file gets every process's lines, appended)\n\n"
                   "commands:\n");
  for (auto& [name, c] : commands()) std::fprintf(out, "  %-14s %s\n", name.c_str(), c.summary);
}

}  // namespace

int run(int argc, char** argv) {
  // Global options before the command: `segpipe [--log-level LEVEL] [--log-file PATH] <command> ...`
  // (workers/log.h). Only there, so that no command's own arguments (a prompt, say) can be taken for one.
  std::string log_level, log_file;
  int first = 1;
  while (first < argc) {
    const std::string_view a = argv[first];
    std::string* target = nullptr;
    std::string_view flag;
    for (auto [f, t] : {std::pair{std::string_view("--log-level"), &log_level}, {std::string_view("--log-file"), &log_file}})
      if (a == f || (a.size() > f.size() && a.substr(0, f.size()) == f && a[f.size()] == '=')) target = t, flag = f;
    if (!target) break;
    if (a.size() > flag.size()) {
      *target = std::string(a.substr(flag.size() + 1));
      first += 1;
    } else if (first + 1 < argc) {
      *target = argv[first + 1];
      first += 2;
    } else {
      std::fprintf(stderr, "segpipe: %s needs a value\n", std::string(flag).c_str());
      return 2;
    }
    if (target->empty()) {
      std::fprintf(stderr, "segpipe: %s needs a value\n", std::string(flag).c_str());
      return 2;
    }
  }
  if (first > 1) {
    argv[first - 1] = argv[0];  // keeps argv[0] meaningful after the shift
    argv += first - 1;
    argc -= first - 1;
  }
  if (argc < 2) {
    // No command: the built-in demo is `segpipe generate` with no model.
    usage(stderr);
    return 2;
  }
  std::string cmd = argv[1];
  std::vector<std::string> args(argv + 2, argv + argc);
  try {
    if (cmd == segpipe::kWorkerCommand) return segpipe::worker_main(args);
    segpipe::init_orchestrator_logging(log_level, log_file);
    if (cmd == "--help" || cmd == "-h" || cmd == "help") {
      usage(stdout);
      return 0;
    }
    auto it = commands().find(cmd);
    if (it == commands().end()) {
      std::fprintf(stderr, "segpipe: unknown command '%s'\n", one_line(cmd).c_str());
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
    report(cmd, "error", e.what());
    return 2;
  } catch (const segpipe::CheckFailure& e) {
    report(cmd, "check failed", e.what());
    return 1;
  } catch (const segpipe::RuntimeFailure& e) {
    report(cmd, "runtime failure", e.what());
    return 3;
  } catch (const std::bad_alloc&) {
    report(cmd, "runtime failure", "out of memory");
    return 3;
  } catch (const std::exception& e) {
    report(cmd, "runtime failure", e.what());
    return 3;
  }
}

int main(int argc, char** argv) {
  // Under MPI's launcher (a run across hosts), the processes of the other hosts serve as their hosts'
  // agents instead of running the command; rank 0 runs it and ends the job with its status.
  if (const std::optional<int> agent = segpipe::multihost::enter(argc, argv)) return *agent;
  return segpipe::multihost::leave(run(argc, argv));
}
