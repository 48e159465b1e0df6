// segpipe dump: runs a prompt through a pipeline as configured (one process per segment, through
// the shm runner's capture) and writes every segment's input and output, every layer boundary and
// the router's choices as safetensors files, plus manifest.json describing them. Expert banks'
// requests and answers are not visible on the shm path: they come from the in-process run of the
// same pipeline, which is run beside it and checked bit for bit against the segmented boundaries.
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "orchestrator/debugging/capture.h"
#include "orchestrator/commands/cli_args.h"
#include "orchestrator/commands/commands.h"
#include "orchestrator/reports/output.h"
#include "orchestrator/debugging/debug_common.h"
#include "orchestrator/debugging/dump_io.h"
#include "orchestrator/debugging/router_stats.h"
#include "orchestrator/drivers/segment_set.h"
#include "segments/core/errors.h"

namespace segpipe {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

const char* kDumpHelp =
    "usage: segpipe dump --pipeline FILE (--prompt TEXT | --tokens \"ID ...\") --out DIR [--max-new-tokens N]\n"
    "writes, for the prefill (DIR) and each greedy decode step n (DIR/decode-<n>):\n"
    "  <segment>.input.safetensors / <segment>.output.safetensors   for every segment\n"
    "  <segment>.layers.<i>.output.safetensors                        every layer inside a layers segment\n"
    "  <segment>.layers.<i>.router.safetensors                        router logits, chosen experts, weights\n"
    "and DIR/manifest.json (every file, tensor, shape, dtype, meaning and source), then prints the\n"
    "router's expert usage per layer. Expert banks' requests/answers come from the in-process run of\n"
    "the same pipeline (checked bit for bit against the segmented run; the manifest says so).\n"
    "  --max-new-tokens N  greedy decode steps dumped after the prefill (default 0)\n"
    "exit: 0 written, 1 the segmented and in-process runs differ (files still written), 2 bad input, 3 runtime failure\n";

std::string describe(const std::string& kind, const std::string& name) {
  // The last component names the quantity ("layers.3.router_logits" -> "router_logits").
  const std::string n = name.rfind("layers.", 0) == 0 ? name.substr(name.find('.', 7) + 1) : name;
  if (n == "input_ids") return "token ids of this step";
  if (n == "pos0") return "position of the step's first token";
  if (n == "prefix_hidden") return "this segment's inputs at positions 0..pos0-1 (run-segment replays them to rebuild the KV cache)";
  if (n == "hidden")
    return kind == "embeddings" ? "embedding output [T, H]"
           : kind == "lm_head"  ? "hidden states entering the final norm [T, H]"
                                : "hidden states (residual stream) [T, H]";
  if (n == "logits") return "lm_head output for every position of the step [T, V]";
  if (n == "norm") return "final RMSNorm output [T, H]";
  if (n == "output") return "residual stream after this decoder layer [T, H]";
  if (n == "router_logits") return "router (gate) logits before softmax [T, E]";
  if (n == "experts") return "chosen experts per token, in the router's top-k order [T, k]";
  if (n == "weights") return "routing weight of each chosen expert [T, k]";
  if (n == "x") return "post-attention RMSNorm output sent to the banks [T, H]";
  if (n == "slots") return "weighted output of each (token, slot) whose expert this bank owns; zero elsewhere [T, k, H]";
  if (n == "owned") return "1 where the slot's expert belongs to this bank [T, k]";
  return "";
}

struct Writer {
  fs::path root;
  json files = json::array();
  int64_t step = 0, pos0 = 0;
  void emit(const std::string& rel, DumpFile f, const std::string& segment, const std::string& kind,
            const std::string& role, const std::string& source) {
    f.metadata["format"] = "segpipe-dump/1";
    f.metadata["segment"] = segment;
    f.metadata["kind"] = kind;
    f.metadata["role"] = role;
    f.metadata["step"] = std::to_string(step);
    f.metadata["pos0"] = std::to_string(pos0);
    f.metadata["source"] = source;
    fs::path p = root / rel;
    fs::create_directories(p.parent_path());
    write_dump_file(p.string(), f);
    json ts = json::array();
    for (auto& [n, t] : f.tensors)
      ts.push_back({{"name", n}, {"dtype", dtype_name(t.dtype)}, {"shape", t.shape}, {"what", describe(kind, n)}});
    files.push_back({{"file", rel}, {"segment", segment}, {"kind", kind}, {"role", role}, {"step", step},
                     {"pos0", pos0}, {"source", source}, {"tensors", ts}});
  }
};

const char* kShmSource = "segmented run (one process per segment, shm capture)";
const char* kInprocSource =
    "in-process run of the same pipeline (the shm path does not expose bank traffic; its boundaries were "
    "compared bit for bit with the segmented run, see manifest 'segmented_equals_inproc')";

DumpTensor f32(const Capture& c, const std::string& n) {
  auto it = c.tensors.find(n);
  if (it == c.tensors.end()) throw RuntimeFailure("dump: the run did not produce boundary '" + n + "'");
  return DumpTensor::from_f32(it->second.data(), c.shapes.at(n));
}

// Both runs' boundaries and routes identical?
bool same_capture(const Capture& a, const Capture& b, std::string& first_diff) {
  for (auto& n : a.order) {
    auto it = b.tensors.find(n);
    if (it == b.tensors.end() || it->second.size() != a.tensors.at(n).size() ||
        std::memcmp(it->second.data(), a.tensors.at(n).data(), it->second.size() * 4) != 0) {
      first_diff = n;
      return false;
    }
  }
  for (auto& [l, r] : a.routes) {
    auto it = b.routes.find(l);
    if (it == b.routes.end() || it->second.experts != r.experts ||
        std::memcmp(it->second.weights.data(), r.weights.data(), r.weights.size() * 4) != 0) {
      first_diff = "layers." + std::to_string(l) + ".routes";
      return false;
    }
  }
  return true;
}

}  // namespace

int cmd_dump(const Args& args) {
  CliArgs a("dump", args, {"--pipeline", "--prompt", "--tokens", "--out", "--max-new-tokens"}, {});
  if (a.help()) {
    std::fputs(kDumpHelp, stdout);
    return 0;
  }
  if (!a.has("--pipeline")) throw InputError("dump: --pipeline FILE is required");
  if (!a.has("--out")) throw InputError("dump: --out DIR is required");
  LoadedPlan lp = load_pipeline_plan(*a.get("--pipeline"));
  auto prompts = prompts_from_args(a, lp, "dump");
  if (prompts.size() != 1) throw InputError("dump: give one prompt (one --prompt or one --tokens)");
  const std::vector<int32_t>& ids = prompts[0];
  const int steps = static_cast<int>(a.get_int("--max-new-tokens", 0, 0, 4096));
  const ModelConfig& cfg = lp.cfg;
  const int64_t T = static_cast<int64_t>(ids.size()), H = cfg.hidden, V = cfg.vocab;
  if (T + steps > lp.plan.max_seq) throw InputError("dump: prompt plus decode steps exceed the KV cache positions");

  Writer w;
  w.root = *a.get("--out");
  make_output_dir(w.root.string());  // a file in the way or a read-only folder: exit 2 before the run
  ShmOptions so;
  so.capture_tokens = T;
  auto runner = make_runner(lp.plan, so);
  SegmentSet traced(lp.plan, cfg);
  RouterStats router(cfg);
  std::map<std::string, std::vector<float>> history;  // layers segment -> its inputs so far [pos, H]
  bool all_same = true;
  std::string first_diff;
  std::vector<int32_t> generated;
  std::vector<int32_t> cur = ids;
  int64_t pos0 = 0;
  const std::string shm_source = lp.plan.inproc ? "in-process run (the pipeline's transport is inproc)" : kShmSource;

  for (int s = 0; s <= steps; s++) {
    const int64_t n = static_cast<int64_t>(cur.size());
    Capture seg, ref;
    std::vector<float> lseg, lref;
    std::vector<BankCall> calls;
    runner->step(cur.data(), n, pos0, true, &seg, lseg);
    traced.step(cur.data(), n, pos0, true, &ref, lref, &calls);
    std::string d;
    if (!same_capture(seg, ref, d) && all_same) {
      all_same = false;
      first_diff = "step " + std::to_string(s) + ": " + d;
    }
    for (auto& [l, r] : seg.routes) router.add(l, r.experts.data(), n, r.k);
    w.step = s;
    w.pos0 = pos0;
    std::string dir = s == 0 ? "" : "decode-" + std::to_string(s) + "/";
    std::string prev = "embeddings";
    for (const SegmentDesc& sd : lp.plan.segments) {
      const std::string kind = to_string(sd.kind);
      const std::string base = dir + sd.name;
      DumpFile in, out;
      in.tensors["pos0"] = DumpTensor::from_i64({pos0}, {1});
      switch (sd.kind) {
        case SegmentKind::embeddings: {
          std::vector<int64_t> v(cur.begin(), cur.end());
          in.tensors["input_ids"] = DumpTensor::from_i64(v, {n});
          out.tensors["hidden"] = f32(seg, "embeddings");
          break;
        }
        case SegmentKind::layers: {
          in.tensors["hidden"] = f32(seg, prev);
          auto& hist = history[sd.name];
          if (pos0 > 0) in.tensors["prefix_hidden"] = DumpTensor::from_f32(hist.data(), {pos0, H});
          const auto& x = seg.tensors.at(prev);
          hist.insert(hist.end(), x.begin(), x.end());
          std::string last = "layers." + std::to_string(sd.layer_last) + ".output";
          out.tensors["hidden"] = f32(seg, last);
          for (int l = sd.layer_first; l <= sd.layer_last; l++) {
            std::string L = "layers." + std::to_string(l);
            DumpFile lo, lr;
            lo.tensors["hidden"] = f32(seg, L + ".output");
            out.tensors[L + ".output"] = lo.tensors["hidden"];
            w.emit(base + ".layers." + std::to_string(l) + ".output.safetensors", lo, sd.name, kind, "layer output", shm_source);
            if (cfg.is_moe_layer(l)) {
              const CapturedRoute& r = seg.routes.at(l);
              lr.tensors["router_logits"] = f32(seg, L + ".router_logits");
              lr.tensors["experts"] = DumpTensor::from_i32(r.experts.data(), {n, r.k});
              lr.tensors["weights"] = DumpTensor::from_f32(r.weights.data(), {n, r.k});
              for (auto& [k, t] : lr.tensors) out.tensors[L + "." + k] = t;
              w.emit(base + ".layers." + std::to_string(l) + ".router.safetensors", lr, sd.name, kind, "router", shm_source);
            }
          }
          prev = last;
          break;
        }
        case SegmentKind::experts: {
          for (const BankCall& c : calls) {
            if (c.layer < sd.layer_first || c.layer > sd.layer_last) continue;
            std::string L = "layers." + std::to_string(c.layer);
            in.tensors[L + ".x"] = DumpTensor::from_f32(c.x.data(), {c.T, H});
            in.tensors[L + ".experts"] = DumpTensor::from_i32(c.experts.data(), {c.T, c.k});
            in.tensors[L + ".weights"] = DumpTensor::from_f32(c.weights.data(), {c.T, c.k});
            for (auto& ans : c.answers)
              if (ans.bank == sd.name) {
                out.tensors[L + ".slots"] = DumpTensor::from_f32(ans.slots.data(), {c.T, c.k, H});
                out.tensors[L + ".owned"] = DumpTensor::from_u8(ans.owned, {c.T, c.k});
              }
          }
          w.emit(base + ".input.safetensors", in, sd.name, kind, "input", kInprocSource);
          w.emit(base + ".output.safetensors", out, sd.name, kind, "output", kInprocSource);
          continue;
        }
        // A dump's prompt is token ids: nothing reaches the encoders (no media), so they write no files.
        case SegmentKind::audio_encoder:
        case SegmentKind::vision_encoder: continue;
        case SegmentKind::lm_head:
          in.tensors["hidden"] = f32(seg, prev);
          out.tensors["logits"] = DumpTensor::from_f32(lseg.data(), {n, V});
          out.tensors["norm"] = f32(seg, "norm");
          break;
      }
      w.emit(base + ".input.safetensors", in, sd.name, kind, "input", shm_source);
      w.emit(base + ".output.safetensors", out, sd.name, kind, "output", shm_source);
    }
    int32_t next = argmax_row(lseg.data() + (n - 1) * V, V);
    if (s < steps) generated.push_back(next);
    pos0 += n;
    cur = {next};
  }

  json segs = json::array();
  for (const SegmentDesc& sd : lp.plan.segments) {
    json j{{"name", sd.name}, {"kind", to_string(sd.kind)}, {"input", sd.name + ".input.safetensors"},
           {"output", sd.name + ".output.safetensors"}};
    if (sd.layer_first >= 0) j["layers"] = {sd.layer_first, sd.layer_last};
    if (sd.expert_first >= 0) j["experts"] = {sd.expert_first, sd.expert_last};
    if (sd.kind == SegmentKind::layers) j["experts_in_banks"] = sd.banks;
    segs.push_back(j);
  }
  json man{{"format", "segpipe-dump/1"},
           {"pipeline", lp.plan.source},
           {"model", lp.plan.model_dir},
           {"transport", lp.plan.inproc ? "inproc" : "shm"},
           {"input_ids", ids},
           {"decode_steps", steps},
           {"generated_ids", generated},
           {"hidden_size", H},
           {"vocab_size", V},
           {"top_k", cfg.top_k},
           {"num_experts", cfg.num_experts},
           {"segments", segs},
           {"segmented_equals_inproc", all_same},
           {"router", router.to_json()},
           {"files", w.files},
           {"notes",
            "Decode step n lives in decode-<n>/. Bank files (experts segments) come from the in-process run of the "
            "same pipeline; every other file from the run as configured. Floats are F32, ids I64, expert ids I32."}};
  if (!all_same) man["first_difference"] = first_diff;
  write_output_file((w.root / "manifest.json").string(), man.dump(2) + "\n");

  std::printf("dump: %zu files in %s (prompt %lld tokens, %d decode steps, %zu segments)\n", w.files.size(),
              w.root.string().c_str(), static_cast<long long>(T), steps, lp.plan.segments.size());
  std::printf("segmented run vs in-process run: %s\n", all_same ? "bit-identical at every boundary" : ("DIFFER (" + first_diff + ")").c_str());
  if (!router.empty()) {
    std::printf("router: expert usage over %lld tokens\n", static_cast<long long>(T + steps));
    router.print(stdout);
  }
  return all_same ? 0 : 1;
}

}  // namespace segpipe
