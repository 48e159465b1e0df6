// segpipe make-model --preset NAME --out DIR [--seed S]: deterministic synthetic checkpoints.
#include <cstdio>

#include "orchestrator/commands/cli_args.h"
#include "orchestrator/commands/commands.h"
#include "segments/core/errors.h"
#include "segments/model/synthetic.h"

namespace segpipe {

int cmd_make_model(const Args& args) {
  CliArgs a("make-model", args,
            {"--preset", "--out", "--seed", "--num-layers", "--num-experts", "--top-k", "--vocab-size", "--dtype",
             "--tokenizer", "--max-shard-bytes", "--weights"},
            {});
  if (a.help()) {
    std::printf(
        "usage: segpipe make-model --preset NAME --out DIR [--seed S] [--dtype bf16|f16|f32]\n"
        "                          [--num-layers N] [--num-experts E] [--top-k K] [--vocab-size V]\n"
        "                          [--tokenizer PATH] [--max-shard-bytes B] [--weights files|formula]\n"
        "writes a checkpoint with deterministic synthetic weights in the Hugging Face layout.\n"
        "--weights formula: no tensor files, only the formula's seed (%s); GPU segments make the\n"
        "weights on the device, bit for bit the files; the CPU cannot run such a folder\npresets:\n",
        kFormulaWeightsFile);
    for (auto& p : synthetic_presets()) std::printf("  %-28s %s\n", p.name.c_str(), p.summary.c_str());
    return 0;
  }
  MakeModelOptions o;
  if (!a.get("--preset")) throw InputError("make-model: --preset is required (see --help)");
  if (!a.get("--out")) throw InputError("make-model: --out is required");
  o.preset = *a.get("--preset");
  o.out_dir = *a.get("--out");
  o.seed = static_cast<uint64_t>(a.get_int("--seed", 0, 0, (1ll << 62)));
  std::string dt = a.get_or("--dtype", "bf16");
  if (dt == "bf16" || dt == "bfloat16")
    o.dtype = DType::BF16;
  else if (dt == "f16" || dt == "float16")
    o.dtype = DType::F16;
  else if (dt == "f32" || dt == "float32")
    o.dtype = DType::F32;
  else
    throw InputError("make-model: --dtype must be bf16, f16 or f32, got '" + dt + "'");
  if (a.has("--num-layers")) o.num_layers = static_cast<int>(a.get_int("--num-layers", 0, 1, 1024));
  if (a.has("--num-experts")) o.num_experts = static_cast<int>(a.get_int("--num-experts", 0, 1, 4096));
  if (a.has("--top-k")) o.top_k = static_cast<int>(a.get_int("--top-k", 0, 1, 4096));
  if (a.has("--vocab-size")) o.vocab_size = static_cast<int>(a.get_int("--vocab-size", 0, 1, 1 << 24));
  o.tokenizer = a.get_or("--tokenizer", "");
  o.max_shard_bytes = static_cast<uint64_t>(a.get_int("--max-shard-bytes", 4ll << 30, 1, 1ll << 50));
  const std::string weights = a.get_or("--weights", "files");
  if (weights != "files" && weights != "formula")
    throw InputError("make-model: --weights must be files or formula, got '" + weights + "'");
  o.formula_only = weights == "formula";
  uint64_t bytes = make_synthetic_model(o);
  std::printf("wrote %s: preset %s, seed %llu, %.1f MB of tensors%s\n", o.out_dir.c_str(), o.preset.c_str(),
              static_cast<unsigned long long>(o.seed), static_cast<double>(bytes) / 1e6,
              o.formula_only ? " (as their formula, no files)" : "");
  return 0;
}

}  // namespace segpipe
