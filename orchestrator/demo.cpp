#include "orchestrator/demo.h"

#include <unistd.h>

#include <cstdio>
#include <filesystem>

#include "orchestrator/pipeline/pipeline.h"
#include "segments/core/errors.h"
#include "segments/model/synthetic.h"

namespace segpipe {

namespace fs = std::filesystem;

namespace {

// The demo pipeline: beside the executable's parent (<root>/build/segpipe), else in the source tree
// this binary was built from (out-of-tree build folders).
fs::path demo_yaml() {
  char exe[4096];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n > 0) {
    exe[n] = 0;
    fs::path p = fs::path(exe).parent_path().parent_path() / "pipelines" / "demo.yaml";
    if (fs::exists(p)) return p;
  }
  return fs::path(SEGPIPE_SOURCE_DIR) / "pipelines" / "demo.yaml";
}

}  // namespace

std::string ensure_demo_pipeline() {
  fs::path yaml = demo_yaml();
  if (!fs::exists(yaml)) throw InputError(yaml.string() + ": the demo pipeline is missing from this installation");
  // The checkpoint goes where the pipeline says it is.
  fs::path model = parse_pipeline_file(yaml.string()).model_dir;
  if (!fs::exists(model / "config.json")) {
    std::fprintf(stderr, "segpipe: creating the demo checkpoint in %s (once)\n", model.c_str());
    // Written beside and renamed into place, so concurrent first runs never see half a checkpoint.
    MakeModelOptions o;
    o.preset = "demo-omni";
    o.out_dir = model.string() + ".tmp-" + std::to_string(getpid());
    o.seed = 0;
    o.tokenizer = (yaml.parent_path().parent_path() / "orchestrator" / "tokenizer" / "qwen3").string();
    fs::create_directories(model.parent_path());
    make_synthetic_model(o);
    std::error_code ec;
    fs::rename(o.out_dir, model, ec);
    if (ec) fs::remove_all(o.out_dir);  // another run got there first
    if (!fs::exists(model / "config.json")) throw RuntimeFailure(model.string() + ": could not create the demo checkpoint");
  }
  return yaml.string();
}

}  // namespace segpipe
