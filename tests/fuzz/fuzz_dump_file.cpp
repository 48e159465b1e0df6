// Fuzz target: dump files read by run-segment (orchestrator/debugging/dump_io.h, orchestrator/commands/cmd_run_segment.cpp).
// The input is written as the --input file and run through every segment of the committed
// tiny-qwen3-moe pipeline with banks (embeddings, layers, expert banks, lm_head): every field is
// untrusted (a crafted pos0 once wrote outside the KV cache), so only InputError (exit 2) and
// RuntimeFailure (exit 3: a non-finite value the input carried) may come out.
#include <cstdint>

#include "fuzz_write.h"
#include "orchestrator/commands/commands.h"
#include "orchestrator/debugging/dump_io.h"
#include "segments/core/errors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace segpipe;
  fuzz::quiet_stdout();
  const std::string in = fuzz::write_input("dump-in.safetensors", data, size);
  if (in.empty()) return 0;
  const std::string out = fuzz::scratch_dir() + "/dump-out.safetensors";
  if (!fuzz::only_input_errors("read_dump_file", [&] { read_dump_file(in); })) return 0;
  const std::string pipeline = std::string(SEGPIPE_SOURCE_DIR) + "/pipelines/tiny-qwen3-moe-inproc.yaml";
  fuzz::run_segments(cmd_run_segment, pipeline, {"embed", "early", "late", "bank-lo", "head"}, in, out);
  return 0;
}
