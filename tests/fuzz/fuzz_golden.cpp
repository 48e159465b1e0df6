// Fuzz target: golden files (orchestrator/debugging/golden.h load_golden). The input is written as a file and
// loaded against every committed model's config; only InputError may escape, and an accepted golden
// must hold tensors of the shapes it declares.
#include <fcntl.h>
#include <unistd.h>

#include <cstdint>
#include <vector>

#include "fuzz_support.h"
#include "orchestrator/debugging/golden.h"
#include "segments/model/config_file.h"

namespace {

const std::vector<segpipe::ModelConfig>& configs() {
  static const std::vector<segpipe::ModelConfig> all = [] {
    std::vector<segpipe::ModelConfig> v;
    for (const char* m : {"tiny-qwen3-moe", "tiny-qwen3-dense", "tiny-qwen3-omni", "tiny-qwen3-moe-hub"})
      v.push_back(segpipe::read_model_config(std::string(SEGPIPE_SOURCE_DIR) + "/models/" + m));
    return v;
  }();
  return all;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace segpipe;
  std::string path = fuzz::scratch_dir() + "/golden.safetensors";
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return 0;
  bool ok = ::write(fd, data, size) == static_cast<ssize_t>(size);
  ::close(fd);
  if (!ok) return 0;
  for (const ModelConfig& cfg : configs()) {
    fuzz::only_input_errors("load_golden", [&] {
      Golden g = load_golden(path, cfg);
      FUZZ_INVARIANT(!g.input_ids.empty());
      for (int32_t id : g.input_ids) FUZZ_INVARIANT(id >= 0 && id < cfg.vocab);
      for (int32_t id : g.generated_ids) FUZZ_INVARIANT(id >= 0 && id < cfg.vocab);
      for (auto& [name, t] : g.tensors) {
        const auto& s = g.shapes.at(name);
        FUZZ_INVARIANT(s.size() == 2 && s[0] == static_cast<int64_t>(g.input_ids.size()));
        FUZZ_INVARIANT(static_cast<int64_t>(t.size()) == s[0] * s[1]);
      }
    });
  }
  return 0;
}
