// Fuzz target: dump files read by run-segment (orchestrator/debugging/dump_io.h, orchestrator/commands/cmd_run_segment.cpp).
// The input is written as the --input file and run through every segment of the committed
// tiny-qwen3-moe pipeline with banks (embeddings, layers, expert banks, lm_head): every field is
// untrusted (a crafted pos0 once wrote outside the KV cache), so only InputError (exit 2) and
// RuntimeFailure (exit 3: a non-finite value the input carried) may come out.
#include <fcntl.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>

#include "fuzz_write.h"
#include "orchestrator/commands/commands.h"
#include "orchestrator/debugging/dump_io.h"
#include "segments/core/errors.h"

namespace {

const char* const kSegments[] = {"embed", "early", "late", "bank-lo", "head"};

// run-segment prints a line per run: sent to /dev/null once, so the fuzzer's own output stays readable.
void quiet_stdout() {
  static const bool done = [] {
    const int fd = ::open("/dev/null", O_WRONLY | O_CLOEXEC);
    if (fd >= 0) {
      std::fflush(stdout);
      ::dup2(fd, 1);
      ::close(fd);
    }
    return true;
  }();
  (void)done;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace segpipe;
  quiet_stdout();
  const std::string in = fuzz::write_input("dump-in.safetensors", data, size);
  if (in.empty()) return 0;
  const std::string out = fuzz::scratch_dir() + "/dump-out.safetensors";
  if (!fuzz::only_input_errors("read_dump_file", [&] { read_dump_file(in); })) return 0;
  const std::string pipeline = std::string(SEGPIPE_SOURCE_DIR) + "/pipelines/tiny-qwen3-moe-inproc.yaml";
  for (const char* seg : kSegments) {
    try {
      cmd_run_segment({"--pipeline", pipeline, "--segment", seg, "--input", in, "--output", out});
    } catch (const InputError&) {
      // a field that does not fit the pipeline: exit 2
    } catch (const RuntimeFailure&) {
      // a non-finite value carried by the input, stopped by the segment's check: exit 3
    } catch (const std::exception& e) {
      std::fprintf(stderr, "fuzz run-segment %s: exception other than InputError/RuntimeFailure: %s\n", seg, e.what());
      std::abort();
    }
  }
  ::unlink(out.c_str());
  return 0;
}
