// segpipe run-segment: one segment alone, in this one process, on a dumped input (segpipe dump).
// Layers segments rebuild their KV cache by replaying the dumped prefix (a token's result does not
// depend on the chunking, so the cache holds the same bits as in the real run); a layers segment
// whose experts live in banks loads those banks here too. --expect compares with a dumped output.
#include <chrono>
#include <climits>
#include <cmath>
#include <cstdio>
#include <cstring>

#include <spdlog/spdlog.h>

#include "orchestrator/debugging/capture.h"
#include "orchestrator/commands/cli_args.h"
#include "orchestrator/commands/commands.h"
#include "orchestrator/debugging/debug_common.h"
#include "orchestrator/debugging/dump_io.h"
#include "orchestrator/drivers/segment_set.h"
#include "segments/core/errors.h"
#include "segments/core/encoder_io.h"
#include "segments/model/media_placeholders.h"
#include "segments/encoders/vision_config.h"
#include "segments/encoders/audio_config.h"
#include "segments/checkpoint/checkpoint.h"

namespace segpipe {

namespace {

const char* kRunSegmentHelp =
    "usage: segpipe run-segment --pipeline FILE --segment NAME --input FILE --output FILE [--expect FILE]\n"
    "                           [--tolerance REL_L2]\n"
    "runs one segment of the pipeline in this process on an input written by `segpipe dump`\n"
    "(<segment>.input.safetensors) and writes its output in the dump's format.\n"
    "  --expect FILE      compare with a dumped output (<segment>.output.safetensors), every tensor it holds\n"
    "  --tolerance X      accept a relative L2 error up to X (default 0: bit for bit)\n"
    "exit: 0 ok (or identical), 1 differs from --expect, 2 bad input, 3 runtime failure\n";

std::vector<float> copy_f32(const DumpTensor& t) { return std::vector<float>(t.f32(), t.f32() + t.numel()); }

// Every field of an input file is untrusted (a dump may be edited, or crafted): each is checked here
// against the pipeline before any of it reaches a kernel, and a bad one is exit 2 naming the file and
// the field. pos0 indexes the KV cache, so a negative or huge one would write outside it.
int64_t checked_pos0(const DumpFile& in) {
  if (!in.has("pos0")) return 0;
  const DumpTensor& p = in.get("pos0", DType::I64, 1);
  if (p.numel() != 1) throw InputError(in.path + ": field 'pos0' must hold one value, got shape " + shape_str(p.shape));
  int64_t pos0 = p.i64()[0];
  if (pos0 < 0) throw InputError(in.path + ": field 'pos0' is " + std::to_string(pos0) + ", must be >= 0");
  return pos0;
}

void check_positions(const DumpFile& in, int64_t pos0, int64_t T, int64_t max_seq) {
  if (T < 1) throw InputError(in.path + ": the input holds no tokens (T = " + std::to_string(T) + ")");
  if (T > max_seq || pos0 > max_seq - T)
    throw InputError(in.path + ": field 'pos0' is " + std::to_string(pos0) + " with " + std::to_string(T) +
                     " tokens, past the pipeline's " + std::to_string(max_seq) + " KV-cache positions");
}

// A [T, width] float32 tensor of the file, T >= 1.
const DumpTensor& rows_of(const DumpFile& in, const std::string& n, int64_t width, const char* what) {
  const DumpTensor& t = in.get(n, DType::F32, 2);
  if (t.shape[1] != width)
    throw InputError(in.path + ": field '" + n + "' has width " + std::to_string(t.shape[1]) + ", the model's " + what +
                     " is " + std::to_string(width));
  return t;
}

// An encoder segment on one piece of media as dump writes it (<encoder>.media-<j>.input.safetensors):
// audio features [mel bins, frames], or an image's patches [patches, patch values] and grid_thw [n, 3];
// its rows out ("rows" [tokens, H], and an image's "deepstack" [levels, tokens, H]). Returns the tokens.
int64_t run_encoder(const DumpFile& in, const SegmentDesc& d, const LoadedPlan& lp, SegmentSet& set, DumpFile& out,
                    std::string& extra);

// An int64 field of the file as int32 values (positions): each checked before the narrowing.
std::vector<int32_t> i32_field(const DumpFile& in, const DumpTensor& t, const std::string& n) {
  std::vector<int32_t> v(static_cast<size_t>(t.numel()));
  for (int64_t i = 0; i < t.numel(); i++) {
    if (t.i64()[i] < INT32_MIN || t.i64()[i] > INT32_MAX)
      throw InputError(in.path + ": field '" + n + "' holds " + std::to_string(t.i64()[i]) + ", outside int32");
    v[static_cast<size_t>(i)] = static_cast<int32_t>(t.i64()[i]);
  }
  return v;
}

// A prompt's media as a dump gives them to an embeddings or layers segment (StepIO's fields): the rows
// and their positions, M-RoPE positions, the rope delta. Shapes checked here; the positions of the rows
// by the segment itself (media_rows.h), before it writes through them.
struct DumpedMedia {
  std::vector<int32_t> index, rope;
  std::vector<float> rows;
  MediaRows media_rows(int levels) const {
    return index.empty() ? MediaRows{} : MediaRows{index.data(), static_cast<int64_t>(index.size()), rows.data(), levels};
  }
};

// `prefix` + "deepstack_index" / "deepstack_rows", or prefix + "media_index" / "media_rows" (levels 1).
DumpedMedia read_rows(const DumpFile& in, const std::string& index_name, const std::string& rows_name, int64_t H,
                      int max_levels, int& levels) {
  DumpedMedia d;
  levels = 0;
  if (!in.has(index_name) && !in.has(rows_name)) return d;
  const DumpTensor& i = in.get(index_name, DType::I64, 1);
  const DumpTensor& r = in.get(rows_name, DType::F32, max_levels > 1 ? 3 : 2);
  const int64_t n = i.numel();
  levels = max_levels > 1 ? static_cast<int>(std::min<int64_t>(r.shape[0], INT32_MAX)) : 1;
  const std::vector<int64_t> want = max_levels > 1 ? std::vector<int64_t>{levels, n, H} : std::vector<int64_t>{n, H};
  if (n < 1 || r.shape != want || levels < 1 || levels > max_levels)
    throw InputError(in.path + ": field '" + rows_name + "' has shape " + shape_str(r.shape) + " for " + std::to_string(n) +
                     " positions in '" + index_name + "' (rows of width " + std::to_string(H) +
                     (max_levels > 1 ? ", at most " + std::to_string(max_levels) + " levels)" : ")"));
  d.index = i32_field(in, i, index_name);
  d.rows = copy_f32(r);
  return d;
}

// M-RoPE positions [3, T] of `name`, if the file has them.
std::vector<int32_t> read_rope(const DumpFile& in, const std::string& name, int64_t T) {
  if (!in.has(name)) return {};
  const DumpTensor& t = in.get(name, DType::I64, 2);
  if (t.shape != std::vector<int64_t>{3, T})
    throw InputError(in.path + ": field '" + name + "' must be [3, " + std::to_string(T) + "], got " + shape_str(t.shape));
  return i32_field(in, t, name);
}

}  // namespace

int cmd_run_segment(const Args& args) {
  CliArgs a("run-segment", args, {"--pipeline", "--segment", "--input", "--output", "--expect", "--tolerance"}, {});
  if (a.help()) {
    std::fputs(kRunSegmentHelp, stdout);
    return 0;
  }
  for (const char* f : {"--pipeline", "--segment", "--input", "--output"})
    if (!a.has(f)) throw InputError(std::string("run-segment: ") + f + " is required");
  double tol = a.get_double("--tolerance", 0.0, 0.0, 1e9);
  LoadedPlan lp = load_pipeline_plan(*a.get("--pipeline"));
  const ModelConfig& cfg = lp.cfg;
  const std::string name = *a.get("--segment");
  const SegmentDesc* dp = nullptr;
  for (auto& s : lp.plan.segments)
    if (s.name == name) dp = &s;
  if (!dp) throw InputError(lp.plan.source + ": no segment named '" + name + "'");
  const SegmentDesc& d = *dp;
  DumpFile in = read_dump_file(*a.get("--input"));
  if (in.metadata.count("segment") && in.metadata.at("segment") != name)
    spdlog::info("run-segment: note: {} was dumped for segment '{}', running it through '{}'", in.path,
                 in.metadata.at("segment"), name);
  const int64_t H = cfg.hidden, max_seq = lp.plan.max_seq;
  const int64_t pos0 = checked_pos0(in);

  auto t0 = std::chrono::steady_clock::now();
  SegmentSet set(lp.plan, cfg, {name});
  auto t1 = std::chrono::steady_clock::now();
  DumpFile out;
  int64_t T = 0;
  std::string extra;
  switch (d.kind) {
    case SegmentKind::embeddings: {
      const DumpTensor& t = in.get("input_ids", DType::I64, 1);
      T = t.numel();
      check_positions(in, pos0, T, max_seq);
      std::vector<int32_t> ids(static_cast<size_t>(T));
      for (int64_t i = 0; i < T; i++) {
        // Checked as int64 before the narrowing: 2^32 + 5 must not become token 5.
        if (t.i64()[i] < 0 || t.i64()[i] >= cfg.vocab)
          throw InputError(in.path + ": field 'input_ids' holds token " + std::to_string(t.i64()[i]) + " at " +
                           std::to_string(i) + ", outside the vocabulary 0.." + std::to_string(cfg.vocab - 1));
        ids[static_cast<size_t>(i)] = static_cast<int32_t>(t.i64()[i]);
      }
      std::vector<float> h(static_cast<size_t>(T * H));
      int levels = 0;
      const DumpedMedia m = read_rows(in, "media_index", "media_rows", H, 1, levels);
      set.run(name, {.in = ids.data(), .out = h.data(), .T = T, .pos0 = pos0, .media = m.media_rows(1)});
      if (!m.index.empty()) extra += ", " + std::to_string(m.index.size()) + " media rows";
      out.tensors["hidden"] = DumpTensor::from_f32(h.data(), {T, H});
      break;
    }
    case SegmentKind::layers: {
      const DumpTensor& t = rows_of(in, "hidden", H, "hidden size");
      T = t.shape[0];
      check_positions(in, pos0, T, max_seq);
      if (pos0 > 0) {
        // Rebuild the KV cache of positions < pos0 from the segment's own earlier inputs.
        if (!in.has("prefix_hidden"))
          throw InputError(in.path + ": pos0 is " + std::to_string(pos0) + " but the file has no 'prefix_hidden' to rebuild the KV cache");
        const DumpTensor& p = in.get("prefix_hidden", DType::F32, 2);
        if (p.shape[0] != pos0 || p.shape[1] != H)
          throw InputError(in.path + ": 'prefix_hidden' must be [" + std::to_string(pos0) + ", " + std::to_string(H) + "], got " + shape_str(p.shape));
        std::vector<float> px = copy_f32(p);
        // A prompt with media: the positions and DeepStack rows the prefix was given.
        const std::vector<int32_t> rope = read_rope(in, "prefix_rope_positions", pos0);
        int levels = 0;
        const DumpedMedia ds = read_rows(in, "prefix_deepstack_index", "prefix_deepstack_rows", H, cfg.num_layers, levels);
        set.run(name, {.in = px.data(), .out = px.data(), .T = pos0, .pos0 = 0,
                       .rope_positions = rope.empty() ? nullptr : rope.data(), .deepstack = ds.media_rows(levels)});
        extra += ", KV cache rebuilt from " + std::to_string(pos0) + " prefix positions";
      }
      std::vector<float> x = copy_f32(t);
      Capture cap;
      const std::vector<int32_t> rope = read_rope(in, "rope_positions", T);
      int64_t delta = 0;
      if (in.has("rope_delta")) {
        const DumpTensor& dt = in.get("rope_delta", DType::I64, 1);
        if (dt.numel() != 1) throw InputError(in.path + ": field 'rope_delta' must hold one value");
        delta = dt.i64()[0];
        if (delta < -max_seq || delta > max_seq)
          throw InputError(in.path + ": field 'rope_delta' is " + std::to_string(delta) + ", beyond the " +
                           std::to_string(max_seq) + " positions of the context");
      }
      int levels = 0;
      const DumpedMedia ds = read_rows(in, "deepstack_index", "deepstack_rows", H, cfg.num_layers, levels);
      set.run(name, {.in = x.data(), .out = x.data(), .T = T, .pos0 = pos0, .observer = &cap,
                     .rope_positions = rope.empty() ? nullptr : rope.data(), .rope_delta = delta,
                     .deepstack = ds.media_rows(levels)});
      out.tensors["hidden"] = DumpTensor::from_f32(x.data(), {T, H});
      for (auto& [n, v] : cap.tensors) out.tensors[n] = DumpTensor::from_f32(v.data(), cap.shapes.at(n));
      for (auto& [l, r] : cap.routes) {
        std::string L = "layers." + std::to_string(l);
        out.tensors[L + ".experts"] = DumpTensor::from_i32(r.experts.data(), {T, r.k});
        out.tensors[L + ".weights"] = DumpTensor::from_f32(r.weights.data(), {T, r.k});
      }
      if (d.banks) {
        std::string b;
        for (auto& n : set.loaded_banks()) b += (b.empty() ? "" : ", ") + n;
        extra += ", its expert banks (" + b + ") loaded in this process";
      }
      break;
    }
    case SegmentKind::experts: {
      int layers_run = 0;
      for (int l = d.layer_first; l <= d.layer_last; l++) {
        std::string L = "layers." + std::to_string(l);
        if (!in.has(L + ".x")) continue;
        const DumpTensor& x = in.get(L + ".x", DType::F32, 2);
        const DumpTensor& e = in.get(L + ".experts", DType::I32, 2);
        const DumpTensor& w = in.get(L + ".weights", DType::F32, 2);
        T = x.shape[0];
        if (x.shape[1] != H || e.shape[0] != T || w.shape != e.shape)
          throw InputError(in.path + ": " + L + ".x/.experts/.weights have inconsistent shapes");
        check_positions(in, pos0, T, max_seq);
        if (e.shape[1] != cfg.top_k)
          throw InputError(in.path + ": field '" + L + ".experts' has " + std::to_string(e.shape[1]) +
                           " experts per token, the model routes to " + std::to_string(cfg.top_k));
        int k = static_cast<int>(e.shape[1]);
        for (int64_t i = 0; i < e.numel(); i++)
          if (e.i32()[i] < 0 || e.i32()[i] >= cfg.num_experts)
            throw InputError(in.path + ": " + L + ".experts holds expert " + std::to_string(e.i32()[i]) + ", outside 0.." + std::to_string(cfg.num_experts - 1));
        std::vector<float> slots(static_cast<size_t>(T * k * H), 0.f);
        std::vector<uint8_t> owned(static_cast<size_t>(T * k), 0);
        ExpertRequest req{l, x.f32(), T, k, e.i32(), w.f32(), slots.data()};
        set.bank(name, req);
        for (int64_t s = 0; s < T * k; s++) owned[static_cast<size_t>(s)] = e.i32()[s] >= d.expert_first && e.i32()[s] <= d.expert_last;
        out.tensors[L + ".slots"] = DumpTensor::from_f32(slots.data(), {T, k, H});
        out.tensors[L + ".owned"] = DumpTensor::from_u8(owned, {T, k});
        layers_run++;
      }
      if (!layers_run) throw InputError(in.path + ": no layers.<i>.x request for the layers of segment '" + name + "'");
      extra += ", " + std::to_string(layers_run) + " MoE layer requests";
      break;
    }
    case SegmentKind::audio_encoder:
    case SegmentKind::vision_encoder:
      T = run_encoder(in, d, lp, set, out, extra);
      break;
    case SegmentKind::lm_head: {
      const DumpTensor& t = rows_of(in, "hidden", H, "hidden size");
      T = t.shape[0];
      check_positions(in, pos0, T, max_seq);
      std::vector<float> normed(static_cast<size_t>(T * H)), logits(static_cast<size_t>(T * cfg.vocab));
      set.run(name, {.in = t.f32(), .out = logits.data(), .normed = normed.data(), .T = T, .pos0 = pos0,
                     .all_positions = true});
      out.tensors["logits"] = DumpTensor::from_f32(logits.data(), {T, cfg.vocab});
      out.tensors["norm"] = DumpTensor::from_f32(normed.data(), {T, H});
      break;
    }
  }
  auto t2 = std::chrono::steady_clock::now();
  out.metadata = {{"format", "segpipe-dump/1"}, {"segment", name}, {"kind", to_string(d.kind)},
                  {"role", "output"}, {"pos0", std::to_string(pos0)}, {"source", "segpipe run-segment"}};
  if (in.metadata.count("step")) out.metadata["step"] = in.metadata.at("step");
  write_dump_file(*a.get("--output"), out);
  auto ms = [](auto x) { return std::chrono::duration<double, std::milli>(x).count(); };
  std::printf("run-segment: '%s' (%s) on %lld tokens at position %lld%s: load %.1f ms, run %.1f ms, %.1f MB of weights\n",
              name.c_str(), to_string(d.kind), static_cast<long long>(T), static_cast<long long>(pos0), extra.c_str(),
              ms(t1 - t0), ms(t2 - t1), static_cast<double>(set.weight_bytes(name)) / 1e6);
  std::printf("wrote %s (%zu tensors)\n", a.get("--output")->c_str(), out.tensors.size());
  if (!a.has("--expect")) return 0;

  DumpFile ex = read_dump_file(*a.get("--expect"));
  bool ok = true;
  std::printf("compared with %s (%s)\n", ex.path.c_str(), tol > 0 ? ("relative L2 <= " + std::to_string(tol)).c_str() : "bit for bit");
  std::printf("  %-30s %12s %12s  %s\n", "tensor", "max_abs", "rel_l2", "verdict");
  size_t compared = 0;
  for (auto& [n, ref] : ex.tensors) {
    auto it = out.tensors.find(n);
    if (it == out.tensors.end()) {
      // Inputs carried in an output file (none today) would be skipped; a missing result fails.
      ok = false;
      std::printf("  %-30s %12s %12s  MISSING from this run\n", n.c_str(), "-", "-");
      continue;
    }
    TensorDiff df = diff_tensors(it->second, ref);
    bool pass = df.same_shape && (df.bitwise || (tol > 0 && ref.dtype == DType::F32 && df.rel_l2 <= tol));
    ok &= pass;
    compared++;
    std::string verdict = !df.same_shape ? "DIFFERS (shape " + shape_str(it->second.shape) + " vs " + shape_str(ref.shape) + ")"
                          : df.bitwise ? "identical"
                          : pass      ? "within tolerance"
                                      : "DIFFERS (first at element " + std::to_string(df.first_diff) + ")";
    std::printf("  %-30s %12.3e %12.3e  %s\n", n.c_str(), df.max_abs, df.rel_l2, verdict.c_str());
  }
  for (auto& [n, t] : out.tensors)
    if (!ex.has(n)) std::printf("  %-30s %12s %12s  not in the expected file\n", n.c_str(), "-", "-");
  if (compared == 0) ok = false;
  std::printf("run-segment: %s\n", ok ? "PASS" : "FAIL");
  return ok ? 0 : 1;
}

}  // namespace segpipe

namespace segpipe {
namespace {

int64_t run_encoder(const DumpFile& in, const SegmentDesc& d, const LoadedPlan& lp, SegmentSet& set, DumpFile& out,
                    std::string& extra) {
  const std::string path = lp.plan.model_dir + "/config.json";
  const nlohmann::json config = read_json_file(path);
  const MediaTokenConfig tok = parse_media_tokens(config, path);
  EncoderIO io;
  std::vector<float> data;
  std::vector<int32_t> grids;
  int64_t tokens = 0, width = 0;
  int levels = 1;
  if (d.kind == SegmentKind::audio_encoder) {
    const AudioEncoderConfig c = parse_audio_encoder_config(config, path);
    const DumpTensor& f = in.get("features", DType::F32, 2);
    if (f.shape[0] != c.num_mel_bins)
      throw InputError(in.path + ": field 'features' has " + std::to_string(f.shape[0]) + " mel bins, the audio tower takes " +
                       std::to_string(c.num_mel_bins));
    data = copy_f32(f);
    io.frames = f.shape[1];
    tokens = audio_encoder_output_length(io.frames, tok.audio_n_window);
    width = c.output_dim;
  } else {
    const VisionEncoderConfig c = parse_vision_config(config, path);
    const DumpTensor& p = in.get("pixel_values", DType::F32, 2);
    if (p.shape[1] != c.patch_dim())
      throw InputError(in.path + ": field 'pixel_values' has patches of " + std::to_string(p.shape[1]) +
                       " values, the vision tower takes " + std::to_string(c.patch_dim()));
    const DumpTensor& g = in.get("grid_thw", DType::I64, 2);
    if (g.shape[1] != 3 || g.shape[0] < 1) throw InputError(in.path + ": field 'grid_thw' must be [n, 3], got " + shape_str(g.shape));
    grids = i32_field(in, g, "grid_thw");
    for (int64_t i = 0; i < g.shape[0]; i++) {
      const ImageGrid ig{grids[size_t(3 * i)], grids[size_t(3 * i + 1)], grids[size_t(3 * i + 2)]};
      if (ig.t < 1 || ig.h < 1 || ig.w < 1 || ig.t > (1 << 20) || ig.h > (1 << 20) || ig.w > (1 << 20))
        throw InputError(in.path + ": field 'grid_thw' row " + std::to_string(i) + " is not a grid of positive sizes");
      tokens += image_placeholder_count(ig, tok.spatial_merge_size);
    }
    data = copy_f32(p);
    io.frames = p.shape[0];
    io.grids = grids.data();
    io.n_grids = g.shape[0];
    width = c.out_hidden_size;
    levels = 1 + static_cast<int>(c.deepstack_visual_indexes.size());
  }
  std::vector<float> rows(static_cast<size_t>(levels * tokens * width));
  io.in = data.data();
  io.out = rows.data();
  io.out_floats = static_cast<int64_t>(rows.size());
  StepIO s;
  s.encode = &io;
  set.run(d.name, s);
  out.tensors["rows"] = DumpTensor::from_f32(rows.data(), {tokens, width});
  if (levels > 1) out.tensors["deepstack"] = DumpTensor::from_f32(rows.data() + tokens * width, {levels - 1, tokens, width});
  extra += ", " + std::to_string(tokens) + " rows of " + std::to_string(io.frames) + (d.kind == SegmentKind::audio_encoder ? " feature frames" : " patches");
  return tokens;
}

}  // namespace
}  // namespace segpipe
