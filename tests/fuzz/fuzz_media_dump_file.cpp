// Fuzz target: dump files of a prompt with audio and an image, as run-segment reads them
// (orchestrator/commands/cmd_run_segment.cpp): the encoders' inputs (features, pixel_values, grid_thw),
// the rows over the embeddings (media_index, media_rows), the layers' M-RoPE positions, rope delta and
// DeepStack rows, and a decode step's prefix positions and rows. The input is run through every segment
// of a Qwen3-Omni pipeline that make_fuzz_seeds lays out beside the seeds (the committed tiny
// checkpoint with its media token ids inside its vocabulary): every field is untrusted, so only
// InputError (exit 2) and RuntimeFailure (exit 3) may come out.
#include <fcntl.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>

#include "fuzz_write.h"
#include "orchestrator/commands/commands.h"
#include "orchestrator/debugging/dump_io.h"
#include "segments/core/errors.h"

namespace {

const char* const kSegments[] = {"audio", "vision", "embed", "early", "late", "head"};

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
  static const std::string pipeline = std::string(SEGPIPE_FUZZ_SEEDS) + "/omni-model/pipeline.yaml";
  if (!std::filesystem::exists(pipeline)) {
    std::fprintf(stderr, "fuzz media_dump_file: %s is missing (make_fuzz_seeds lays it out)\n", pipeline.c_str());
    std::abort();
  }
  quiet_stdout();
  const std::string in = fuzz::write_input("media-dump-in.safetensors", data, size);
  if (in.empty()) return 0;
  const std::string out = fuzz::scratch_dir() + "/media-dump-out.safetensors";
  if (!fuzz::only_input_errors("read_dump_file", [&] { read_dump_file(in); })) return 0;
  for (const char* seg : kSegments) {
    try {
      cmd_run_segment({"--pipeline", pipeline, "--segment", seg, "--input", in, "--output", out});
    } catch (const InputError&) {
    } catch (const RuntimeFailure&) {
    } catch (const std::exception& e) {
      std::fprintf(stderr, "fuzz run-segment %s (media): exception other than InputError/RuntimeFailure: %s\n", seg, e.what());
      std::abort();
    }
  }
  ::unlink(out.c_str());
  return 0;
}
