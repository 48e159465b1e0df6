#include "orchestrator/demo.h"

#include <unistd.h>

#include <cstdio>
#include <filesystem>

#include "segments/core/errors.h"
#include "segments/model/synthetic.h"

namespace segpipe {

namespace fs = std::filesystem;

namespace {
// The repository root: the executable lives in <root>/build/.
fs::path repo_root() {
  char exe[4096];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n <= 0) throw RuntimeFailure("cannot locate the segpipe executable");
  exe[n] = 0;
  return fs::path(exe).parent_path().parent_path();
}
}  // namespace

std::string ensure_demo_pipeline() {
  fs::path root = repo_root();
  fs::path yaml = root / "pipelines" / "demo.yaml";
  if (!fs::exists(yaml)) throw InputError(yaml.string() + ": the demo pipeline is missing from this installation");
  fs::path model = root / "build" / "models" / "demo-omni";
  if (!fs::exists(model / "config.json")) {
    std::fprintf(stderr, "segpipe: creating the demo checkpoint in %s (once)\n", model.c_str());
    // Written beside and renamed into place, so concurrent first runs never see half a checkpoint.
    MakeModelOptions o;
    o.preset = "demo-omni";
    o.out_dir = model.string() + ".tmp-" + std::to_string(getpid());
    o.seed = 0;
    o.tokenizer = (root / "orchestrator" / "tokenizer" / "qwen3").string();
    make_synthetic_model(o);
    std::error_code ec;
    fs::rename(o.out_dir, model, ec);
    if (ec) fs::remove_all(o.out_dir);  // another run got there first
    if (!fs::exists(model / "config.json")) throw RuntimeFailure(model.string() + ": could not create the demo checkpoint");
  }
  return yaml.string();
}

}  // namespace segpipe
