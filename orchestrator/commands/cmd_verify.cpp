// segpipe verify: goldens (model or pipeline form) and segmented-vs-in-process comparison.
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "orchestrator/debugging/bisect.h"
#include "orchestrator/commands/cli_args.h"
#include "orchestrator/commands/commands.h"
#include "orchestrator/commands/media_inputs.h"
#include "orchestrator/reports/output.h"
#include "orchestrator/debugging/golden.h"
#include "orchestrator/planning/pipeline_loader.h"
#include "orchestrator/debugging/segment_compare.h"
#include "segments/core/errors.h"

namespace segpipe {

namespace fs = std::filesystem;

namespace {

const char* kVerifyHelp =
    "usage: segpipe verify (--model DIR | --pipeline FILE) [--golden FILE]... [--json FILE]\n"
    "                      [--tolerance REL_L2] [--tokens \"ID ...\"] [--max-new-tokens N]\n"
    "                      [--bisect [--reference PIPELINE]]\n"
    "  --model DIR       checkpoint folder; with no --golden, every DIR/goldens/*.safetensors\n"
    "  --pipeline FILE   pipeline YAML; with no --golden, the segmented run is compared with the same\n"
    "                    pipeline run in-process, every boundary bit for bit, plus the greedy tokens\n"
    "  --golden FILE     transformers golden (repeatable); compares every boundary it holds\n"
    "  --tolerance X     largest relative L2 error accepted against a golden (default 1e-4)\n"
    "  --tokens IDS      prompt for the segmented-vs-in-process comparison (default: a fixed prompt)\n"
    "  --audio FILE, --image FILE  (Qwen3-Omni) media for that comparison, in this order at the prompt's start:\n"
    "                    the encoders' rows are compared too\n"
    "  --max-new-tokens N  greedy tokens compared (default 8)\n"
    "  --json FILE       write a JSON report\n"
    "  --bisect          name the first segment and layer whose output diverges (against the golden,\n"
    "                    or the in-process run), with its errors; banked layers are followed into the banks\n"
    "  --reference P     with --bisect and no golden: the in-process run of pipeline P is the reference\n"
    "                    (e.g. the original checkpoint of a modified copy)\n"
    "exit: 0 all passed, 1 a boundary or token differs, 2 bad input, 3 runtime failure\n";

void write_json(const std::string& path, const nlohmann::json& j) { write_output_file(path, j.dump(2) + "\n"); }

}  // namespace

int cmd_verify(const Args& args) {
  CliArgs a("verify", args, {"--model", "--pipeline", "--golden", "--json", "--tolerance", "--tokens", "--max-new-tokens",
                                 "--reference", "--audio", "--image"},
            {"--bisect"});
  if (a.help()) {
    std::fputs(kVerifyHelp, stdout);
    return 0;
  }
  if (a.has("--model") == a.has("--pipeline")) throw InputError("verify: give exactly one of --model DIR or --pipeline FILE");
  double tol = a.get_double("--tolerance", 1e-4, 0.0, 1e9);
  LoadedPlan lp = a.has("--model") ? load_model_plan(*a.get("--model")) : load_pipeline_plan(*a.get("--pipeline"));
  std::vector<std::string> goldens = a.all("--golden");
  if (goldens.empty() && a.has("--model")) {
    fs::path gd = fs::path(lp.plan.model_dir) / "goldens";
    if (fs::is_directory(gd))
      for (auto& e : fs::directory_iterator(gd))
        if (e.path().extension() == ".safetensors") goldens.push_back(e.path().string());
    std::sort(goldens.begin(), goldens.end());
    if (goldens.empty()) throw InputError("verify: " + lp.plan.model_dir + " has no goldens/*.safetensors; pass --golden FILE");
  }
  // --audio / --image: the segmented-vs-in-process comparison of a prompt with media (a golden carries
  // its own media, and bisect compares text steps).
  const std::vector<MediaInput> media = load_media_args(args, lp.plan.model_dir);
  if (!media.empty() && !goldens.empty())
    throw InputError("verify: --audio and --image go with the comparison with an in-process run (no --golden); a "
                     "multimodal golden carries its own media");
  nlohmann::json report;
  report["source"] = lp.plan.source;
  bool passed = true;
  if (a.has("--reference") && !a.has("--bisect")) throw InputError("verify: --reference needs --bisect");
  if (a.has("--bisect")) {
    BisectOptions bo;
    bo.goldens = a.all("--golden");
    bo.reference = a.get("--reference");
    bo.tolerance = tol;
    bo.prompt = a.has("--tokens") ? parse_id_list(*a.get("--tokens"), "--tokens") : default_verify_prompt(lp.cfg);
    if (!media.empty()) bo.prompt = insert_media_blocks(bo.prompt, 0, media, lp.plan.model_dir);
    bo.media = media;
    passed = run_bisect(lp, bo, report);
  } else if (!goldens.empty()) {
    // Load every golden first: a misfit is bad input, reported before anything runs.
    std::vector<Golden> gs;
    for (auto& g : goldens) gs.push_back(load_golden(g, lp.cfg));
    ShmOptions so;
    for (const Golden& g : gs) so.capture_tokens = std::max<int64_t>(so.capture_tokens, static_cast<int64_t>(g.input_ids.size()));
    auto runner = make_runner(lp.plan, so);
    for (const Golden& g : gs) {
      GoldenReport r = verify_golden(*runner, g, lp.cfg, tol);
      print_golden_report(r, tol);
      report["goldens"].push_back(golden_report_json(r));
      passed &= r.passed;
    }
    report["segments"] = segment_reports_json(runner->reports());
  } else {
    std::vector<int32_t> prompt = a.has("--tokens") ? parse_id_list(*a.get("--tokens"), "--tokens")
                                                    : default_verify_prompt(lp.cfg);
    int n = static_cast<int>(a.get_int("--max-new-tokens", 8, 0, 1 << 20));
    if (!media.empty()) prompt = insert_media_blocks(prompt, 0, media, lp.plan.model_dir);
    passed = compare_segmented_with_inproc(lp, prompt, n, report, media);
  }
  report["passed"] = passed;
  if (auto j = a.get("--json")) write_json(*j, report);
  std::printf("%s\n", passed ? "verify: PASS" : "verify: FAIL");
  return passed ? 0 : 1;
}

}  // namespace segpipe
