// Fuzz target: dump files of a prompt with audio and an image, as run-segment reads them
// (orchestrator/commands/cmd_run_segment.cpp): the encoders' inputs (features, pixel_values, grid_thw),
// the rows over the embeddings (media_index, media_rows), the layers' M-RoPE positions, rope delta and
// DeepStack rows, and a decode step's prefix positions and rows. The input is run through every segment
// of a Qwen3-Omni pipeline that make_fuzz_seeds lays out beside the seeds (the committed tiny
// checkpoint with its media token ids inside its vocabulary): every field is untrusted, so only
// InputError (exit 2) and RuntimeFailure (exit 3) may come out.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>

#include "fuzz_write.h"
#include "orchestrator/commands/commands.h"
#include "orchestrator/debugging/dump_io.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace segpipe;
  static const std::string pipeline = std::string(SEGPIPE_FUZZ_SEEDS) + "/omni-model/pipeline.yaml";
  if (!std::filesystem::exists(pipeline)) {
    std::fprintf(stderr, "fuzz media_dump_file: %s is missing (make_fuzz_seeds lays it out)\n", pipeline.c_str());
    std::abort();
  }
  fuzz::quiet_stdout();
  const std::string in = fuzz::write_input("media-dump-in.safetensors", data, size);
  if (in.empty()) return 0;
  if (!fuzz::only_input_errors("read_dump_file", [&] { read_dump_file(in); })) return 0;
  fuzz::run_segments(cmd_run_segment, pipeline, {"audio", "vision", "embed", "early", "late", "head"}, in,
                     fuzz::scratch_dir() + "/media-dump-out.safetensors");
  return 0;
}
