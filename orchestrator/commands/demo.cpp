#include "orchestrator/commands/demo.h"

#include <unistd.h>

#include <filesystem>

#include "orchestrator/pipeline/pipeline.h"
#include "segments/core/errors.h"

namespace segpipe {

namespace fs = std::filesystem;

namespace {

// The demo pipeline: beside the executable's parent (<root>/build/segpipe), else where `cmake
// --install` puts it (<prefix>/bin/segpipe -> <prefix>/share/segpipe/pipelines, the demo model in
// share/segpipe/models beside it, as the pipeline's relative `model:` expects), else in the source
// tree this binary was built from (out-of-tree build folders).
fs::path demo_yaml() {
  char exe[4096];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n > 0) {
    exe[n] = 0;
    const fs::path root = fs::path(exe).parent_path().parent_path();
    for (const fs::path& p : {root / "pipelines" / "demo.yaml", root / "share" / "segpipe" / "pipelines" / "demo.yaml"})
      if (fs::exists(p)) return p;
  }
  return fs::path(SEGPIPE_SOURCE_DIR) / "pipelines" / "demo.yaml";
}

}  // namespace

std::string demo_pipeline() {
  fs::path yaml = demo_yaml();
  if (!fs::exists(yaml)) throw InputError(yaml.string() + ": the demo pipeline is missing from this installation");
  fs::path model = parse_pipeline_file(yaml.string()).model_dir;
  if (!fs::exists(model / "config.json"))
    throw InputError(model.string() + ": the demo model is missing from this installation (it is committed under models/)");
  return yaml.string();
}

}  // namespace segpipe
