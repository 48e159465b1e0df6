// segpipe dump: runs a prompt through a pipeline as configured (one process per segment, through
// the shm runner's capture) and writes every segment's input and output, every layer boundary and
// the router's choices as safetensors files, plus manifest.json describing them. Expert banks'
// requests and answers are not visible on the shm path: they come from the in-process run of the
// same pipeline, which is run beside it and checked bit for bit against the segmented boundaries.
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "orchestrator/debugging/capture.h"
#include "orchestrator/commands/cli_args.h"
#include "orchestrator/commands/commands.h"
#include "orchestrator/drivers/media_prompt.h"
#include "orchestrator/drivers/inproc_transport.h"
#include "orchestrator/drivers/chain_driver.h"
#include "orchestrator/commands/media_inputs.h"
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
    "                    [--audio FILE] [--image FILE]...\n"
    "writes, for the prefill (DIR) and each greedy decode step n (DIR/decode-<n>):\n"
    "  <segment>.input.safetensors / <segment>.output.safetensors   for every segment\n"
    "  <segment>.layers.<i>.output.safetensors                        every layer inside a layers segment\n"
    "  <segment>.layers.<i>.router.safetensors                        router logits, chosen experts, weights\n"
    "and DIR/manifest.json (every file, tensor, shape, dtype, meaning and source), then prints the\n"
    "router's expert usage per layer. Expert banks' requests/answers come from the in-process run of\n"
    "the same pipeline (checked bit for bit against the segmented run; the manifest says so).\n"
    "  --max-new-tokens N  greedy decode steps dumped after the prefill (default 0)\n"
    "  --audio FILE, --image FILE  (Qwen3-Omni) media at the prompt's start, as generate takes them: each\n"
    "                    encoder's input and rows (<encoder>.media-<j>.*), and the media each embeddings and\n"
    "                    layers segment takes, are dumped too\n"
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
  if (n == "features") return "log-mel features of one audio [mel bins, frames]";
  if (n == "pixel_values") return "patches of one image [patches, patch values], in the processor's merge order";
  if (n == "grid_thw") return "the image's patch grid (t, h, w) [1, 3]";
  if (n == "rows") return kind == "vision_encoder" ? "merged rows of the image [tokens, H]" : "rows of the audio [tokens, H]";
  if (n == "deepstack") return "DeepStack features of the image [levels, tokens, H]";
  if (n == "media_index") return "positions of the step whose embeddings the encoders' rows replace [N]";
  if (n == "media_rows") return "the encoders' rows written over those embeddings [N, H]";
  if (n == "rope_positions") return "M-RoPE positions (time, height, width) of the step's tokens [3, T]";
  if (n == "rope_delta") return "added to the position on every axis where the step has no rope_positions";
  if (n == "deepstack_index" || n == "prefix_deepstack_index") return "image positions where DeepStack rows are added [N_v]";
  if (n == "deepstack_rows" || n == "prefix_deepstack_rows")
    return "DeepStack rows added after global layer l < levels at those positions [levels, N_v, H]";
  if (n == "prefix_rope_positions") return "M-RoPE positions of positions 0..pos0-1 (the KV cache's rebuild) [3, pos0]";
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
// What a layers segment of a prompt with media is given (StepIO's media fields), and for a later step what
// the positions before it were given, so that run-segment rebuilds the KV cache as the run built it:
// the prompt's M-RoPE positions and DeepStack rows, then pos + rope_delta for each token decoded since.
void put_layers_media(DumpFile& in, const StepMedia& sm, const PreparedMedia& prompt, int64_t n, int64_t pos0,
                      int64_t T, int64_t H) {
  in.tensors["rope_delta"] = DumpTensor::from_i64({sm.rope_delta}, {1});
  if (sm.rope_positions)
    in.tensors["rope_positions"] = DumpTensor::from_i64(std::vector<int64_t>(sm.rope_positions, sm.rope_positions + 3 * n), {3, n});
  auto put_ds = [&](const std::string& prefix, const MediaRows& d) {
    if (!d.n) return;
    in.tensors[prefix + "deepstack_index"] = DumpTensor::from_i64(std::vector<int64_t>(d.index, d.index + d.n), {d.n});
    in.tensors[prefix + "deepstack_rows"] = DumpTensor::from_f32(d.rows, {d.levels, d.n, H});
  };
  put_ds("", sm.deepstack);
  if (pos0 == 0) return;
  std::vector<int64_t> pre(static_cast<size_t>(3 * pos0));
  for (int64_t a = 0; a < 3; a++)
    for (int64_t p = 0; p < pos0; p++)
      pre[static_cast<size_t>(a * pos0 + p)] = p < T ? prompt.rope[static_cast<size_t>(a * T + p)] : p + prompt.prefill.rope_delta;
  in.tensors["prefix_rope_positions"] = DumpTensor::from_i64(pre, {3, pos0});
  put_ds("prefix_", prompt.step.deepstack);
}

// One piece of media as its encoder took it, and the rows it made ([levels, tokens, width]: the rows,
// then for an image each DeepStack level).
void put_encoder_files(const MediaInput& m, const EncodedMedia& e, DumpFile& in, DumpFile& out) {
  const int64_t frames = m.frames, width = static_cast<int64_t>(m.data.size()) / std::max<int64_t>(1, m.frames);
  if (m.encoder == SegmentKind::audio_encoder) {
    in.tensors["features"] = DumpTensor::from_f32(m.data.data(), {width, frames});
  } else {
    in.tensors["pixel_values"] = DumpTensor::from_f32(m.data.data(), {frames, width});
    const int64_t g = static_cast<int64_t>(m.grids.size()) / 3;
    in.tensors["grid_thw"] = DumpTensor::from_i64(std::vector<int64_t>(m.grids.begin(), m.grids.end()), {g, 3});
  }
  out.tensors["rows"] = DumpTensor::from_f32(e.rows.data(), {e.tokens, e.width});
  if (e.levels > 1)
    out.tensors["deepstack"] = DumpTensor::from_f32(e.rows.data() + e.tokens * e.width, {e.levels - 1, e.tokens, e.width});
}

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
  CliArgs a("dump", args, {"--pipeline", "--prompt", "--tokens", "--out", "--max-new-tokens", "--audio", "--image"}, {});
  if (a.help()) {
    std::fputs(kDumpHelp, stdout);
    return 0;
  }
  if (!a.has("--pipeline")) throw InputError("dump: --pipeline FILE is required");
  if (!a.has("--out")) throw InputError("dump: --out DIR is required");
  LoadedPlan lp = load_pipeline_plan(*a.get("--pipeline"));
  auto prompts = prompts_from_args(a, lp, "dump");
  if (prompts.size() != 1) throw InputError("dump: give one prompt (one --prompt or one --tokens)");
  // Media go at the prompt's start, as generate --tokens puts them.
  const std::vector<MediaInput> media = load_media_args(args, lp.plan.model_dir);
  const std::vector<int32_t> ids = media.empty() ? prompts[0] : insert_media_blocks(prompts[0], 0, media, lp.plan.model_dir);
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
  // The same pipeline in this process, its bank calls recorded (the one driver over the in-process
  // transport, as make_runner's in-process runner).
  SegmentSet traced_set(lp.plan, cfg);
  std::vector<BankCall> calls;
  auto traced = make_chain_runner(lp.plan, std::make_unique<InprocTransport>(lp.plan, cfg, traced_set, &calls));
  // With media: the prompt's (both runs encode; the rows must agree bit for bit), then the decode steps'
  // rope delta; what the prefix of a later step was given, for run-segment's rebuild of the KV cache.
  PreparedMedia pm_seg, pm_ref;
  if (!media.empty()) {
    const MediaPrompt mp{ids, media};
    pm_seg = prepare_media_prompt(*runner, cfg, lp.plan.model_dir, mp);
    pm_ref = prepare_media_prompt(*traced, cfg, lp.plan.model_dir, mp);
  }
  RouterStats router(cfg);
  std::map<std::string, std::vector<float>> history;  // layers segment -> its inputs so far [pos, H]
  bool all_same = true;
  std::string first_diff;
  for (size_t j = 0; j < media.size() && all_same; j++)
    if (std::memcmp(pm_seg.prefill.encoded[j].rows.data(), pm_ref.prefill.encoded[j].rows.data(),
                    pm_seg.prefill.encoded[j].rows.size() * 4) != 0) {
      all_same = false;
      first_diff = std::string(to_string(media[j].encoder)) + " rows of medium " + std::to_string(j);
    }
  std::vector<int32_t> generated;
  std::vector<int32_t> cur = ids;
  int64_t pos0 = 0;
  const std::string shm_source = lp.plan.inproc ? "in-process run (the pipeline's transport is inproc)" : kShmSource;

  for (int s = 0; s <= steps; s++) {
    const int64_t n = static_cast<int64_t>(cur.size());
    Capture seg, ref;
    std::vector<float> lseg, lref;
    calls.clear();
    StepMedia decode_media;
    decode_media.rope_delta = pm_seg.prefill.rope_delta;
    const StepMedia* sm = media.empty() ? nullptr : s == 0 ? &pm_seg.step : &decode_media;
    if (!sm) {
      runner->step(cur.data(), n, pos0, true, &seg, lseg);
      traced->step(cur.data(), n, pos0, true, &ref, lref);
    } else {
      runner->step_media(cur.data(), n, pos0, true, &seg, lseg, *sm);
      traced->step_media(cur.data(), n, pos0, true, &ref, lref, s == 0 ? pm_ref.step : decode_media);
    }
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
          if (sm && sm->embed.n) {
            in.tensors["media_index"] = DumpTensor::from_i64(std::vector<int64_t>(sm->embed.index, sm->embed.index + sm->embed.n), {sm->embed.n});
            in.tensors["media_rows"] = DumpTensor::from_f32(sm->embed.rows, {sm->embed.n, H});
          }
          out.tensors["hidden"] = f32(seg, "embeddings");
          break;
        }
        case SegmentKind::layers: {
          in.tensors["hidden"] = f32(seg, prev);
          auto& hist = history[sd.name];
          if (pos0 > 0) in.tensors["prefix_hidden"] = DumpTensor::from_f32(hist.data(), {pos0, H});
          const auto& x = seg.tensors.at(prev);
          hist.insert(hist.end(), x.begin(), x.end());
          if (sm) put_layers_media(in, *sm, pm_seg, n, pos0, T, H);
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
        // Each piece of media this encoder made rows of, at the prompt's step (a prompt without media
        // never reaches them: no files).
        case SegmentKind::audio_encoder:
        case SegmentKind::vision_encoder: {
          if (s != 0) continue;
          int j = 0;
          for (size_t m = 0; m < media.size(); m++) {
            if (media[m].encoder != sd.kind) continue;
            DumpFile ein, eout;
            put_encoder_files(media[m], pm_seg.prefill.encoded[m], ein, eout);
            const std::string mb = base + ".media-" + std::to_string(j++);
            w.emit(mb + ".input.safetensors", ein, sd.name, kind, "input", shm_source);
            w.emit(mb + ".output.safetensors", eout, sd.name, kind, "output", shm_source);
          }
          continue;
        }
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
    if (is_encoder(sd.kind)) {
      // One pair of files per piece of media it encoded (none without media).
      int count = 0;
      for (const MediaInput& m : media) count += m.encoder == sd.kind;
      j["input"] = count ? sd.name + ".media-<j>.input.safetensors" : "";
      j["output"] = count ? sd.name + ".media-<j>.output.safetensors" : "";
      j["media"] = count;
    }
    segs.push_back(j);
  }
  json man{{"format", "segpipe-dump/1"},
           {"pipeline", lp.plan.source},
           {"model", lp.plan.model_dir},
           {"transport", lp.plan.inproc ? "inproc" : "shm"},
           {"input_ids", ids},
           {"media", media.size()},
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
