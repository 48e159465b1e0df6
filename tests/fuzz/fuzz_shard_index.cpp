// Fuzz target: the shard index of a checkpoint (model.safetensors.index.json, segments/checkpoint/
// checkpoint.h). The input is the index of a checkpoint folder whose config.json and shards are those
// of the committed tiny-qwen3-moe; Checkpoint::open, the tensor list and validate_all may only throw
// InputError, and an accepted index names only shards inside the folder.
#include <unistd.h>

#include <cstdint>
#include <filesystem>

#include "fuzz_write.h"
#include "segments/checkpoint/checkpoint.h"

namespace {

namespace fs = std::filesystem;

// The scratch checkpoint: config.json and the shards, copied once (the index is rewritten per input);
// it goes with the scratch folder at exit.
const std::string& checkpoint_dir() {
  static const std::string dir = [] {
    const fs::path d = fs::path(segpipe::fuzz::scratch_dir()) / "ckpt";
    fs::create_directories(d);
    const fs::path src = fs::path(SEGPIPE_SOURCE_DIR) / "models" / "tiny-qwen3-moe";
    for (const auto& e : fs::directory_iterator(src))
      if (e.is_regular_file() && e.path().filename() != "model.safetensors.index.json")
        fs::copy_file(e.path(), d / e.path().filename(), fs::copy_options::overwrite_existing);
    return d.string();
  }();
  return dir;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace segpipe;
  const std::string dir = checkpoint_dir();
  {
    const std::string p = fuzz::write_input("ckpt/model.safetensors.index.json", data, size);
    if (p.empty()) return 0;
  }
  fuzz::only_input_errors("shard index", [&] {
    auto ck = Checkpoint::open(dir);
    static const std::string root = fs::canonical(dir).string() + "/";
    for (const std::string& n : ck->tensor_names()) {
      // A shard outside the folder (an absolute path, '..', a link out) must have been refused.
      const fs::path f = fs::path(ck->file_of(n));
      const std::string where = fs::weakly_canonical(f.is_absolute() ? f : fs::path(dir) / f).string();
      FUZZ_INVARIANT(where.rfind(root, 0) == 0);
    }
    ck->validate_all();
  });
  return 0;
}
