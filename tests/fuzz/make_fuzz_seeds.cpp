// Writes the seed corpora of the fuzz targets from the committed checkpoints:
//   OUT/safetensors_header/  real headers of models/**/*.safetensors in the target's input layout
//                            (8 bytes data-region size + header text), plus small complete files
//   OUT/model_config/        models/*/config.json and the config of every synthetic preset
//   OUT/golden/              the committed short goldens (complete files)
//   OUT/shard_index/         models/*/model.safetensors.index.json
//   OUT/dump_file/           the segment input and output files `segpipe dump` writes for the
//                            committed tiny-qwen3-moe pipeline with banks (inproc; one prefill, one decode step)
//   OUT/tokenizer_json/      a small tokenizer.json cut from the committed Qwen3 one (its first 512
//                            vocabulary entries, the merges among them, its added tokens)
//   OUT/chat_messages/       the message arrays of tests/tokenizer/fixtures/chat_renderings.json
//   OUT/worker_spec/         the spec JSON of a worker of each kind, as the orchestrator writes it
//   OUT/audio_file/          the committed tests/data/media audio files (WAV, FLAC)
//   OUT/media_wire/          a step's media and an encode request as rank 0 sends them to an agent
//   OUT/media_dump_file/     dump files of a prompt with audio and an image (OUT/omni-model: its pipeline)
//   OUT/image_file/          the committed tests/data/media images (PNG, JPEG)
// usage: make_fuzz_seeds SOURCE_DIR OUT_DIR
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <string>

#include <nlohmann/json.hpp>

#include "orchestrator/commands/commands.h"
#include "orchestrator/debugging/dump_io.h"
#include "orchestrator/multihost/media_wire.h"
#include "orchestrator/tokenizer/tokenizer.h"
#include "segments/checkpoint/safetensors_writer.h"
#include "segments/model/synthetic.h"
#include "orchestrator/multihost/media_wire.h"
#include "workers/protocol.h"

namespace fs = std::filesystem;

static std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

static void spit(const fs::path& p, const std::string& s) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(s.data(), static_cast<std::streamsize>(s.size()));
}

static std::string le64(uint64_t n) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; i++) s[static_cast<size_t>(i)] = static_cast<char>((n >> (8 * i)) & 0xff);
  return s;
}

// Each returns 1 when it wrote at least one seed, saying so otherwise.
static int done(const fs::path& dir, int count) {
  std::printf("%d seeds in %s\n", count, dir.c_str());
  if (count == 0) std::fprintf(stderr, "make_fuzz_seeds: no seed for %s\n", dir.c_str());
  return count > 0 ? 1 : 0;
}

static int shard_index_seeds(const fs::path& src, const fs::path& dir) {
  fs::create_directories(dir);
  int count = 0;
  for (auto& m : fs::directory_iterator(src / "models"))
    if (fs::exists(m.path() / "model.safetensors.index.json")) {
      spit(dir / (m.path().filename().string() + ".json"), slurp(m.path() / "model.safetensors.index.json"));
      count++;
    }
  return done(dir, count);
}

static int dump_file_seeds(const fs::path& src, const fs::path& dir) {
  fs::create_directories(dir);
  const fs::path run = dir.parent_path() / "dump-run";
  fs::remove_all(run);
  int count = 0;
  try {
    segpipe::cmd_dump({"--pipeline", (src / "pipelines" / "tiny-qwen3-moe-inproc.yaml").string(), "--tokens",
                       "11 22 33", "--max-new-tokens", "2", "--out", run.string()});
    for (auto& e : fs::recursive_directory_iterator(run))
      if (e.is_regular_file() && e.path().extension() == ".safetensors" && e.file_size() < (1u << 20)) {
        std::string tag = fs::relative(e.path(), run).string();
        for (auto& c : tag)
          if (c == '/') c = '-';
        fs::copy_file(e.path(), dir / tag, fs::copy_options::overwrite_existing);
        count++;
      }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "make_fuzz_seeds: segpipe dump failed: %s\n", e.what());
  }
  fs::remove_all(run);
  return done(dir, count);
}

static int tokenizer_json_seeds(const fs::path& src, const fs::path& dir) {
  fs::create_directories(dir);
  nlohmann::ordered_json j = nlohmann::ordered_json::parse(slurp(src / "orchestrator/tokenizer/qwen3/tokenizer.json"));
  auto& model = j["model"];
  nlohmann::ordered_json vocab = nlohmann::ordered_json::object();
  for (auto& [k, v] : model["vocab"].items())
    if (v.get<int64_t>() < 512) vocab[k] = v;
  nlohmann::ordered_json merges = nlohmann::ordered_json::array();
  for (auto& m : model["merges"]) {
    std::string a, b;
    if (m.is_array() && m.size() == 2) {
      a = m[0], b = m[1];
    } else if (m.is_string()) {
      const std::string t = m;
      const auto sp = t.find(' ');
      if (sp == std::string::npos) continue;
      a = t.substr(0, sp), b = t.substr(sp + 1);
    }
    if (vocab.contains(a) && vocab.contains(b) && vocab.contains(a + b)) merges.push_back(m);
  }
  model["vocab"] = vocab;
  model["merges"] = merges;
  const fs::path small = dir / "qwen3-small.json";
  spit(small, j.dump(1));
  try {
    segpipe::Tokenizer::load(small.string());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "make_fuzz_seeds: note: the small tokenizer seed does not load: %s\n", e.what());
  }
  return done(dir, 1);
}

// Copies the files of tests/data/media with one of the extensions; 1 when at least one was copied.
static int media_seeds(const fs::path& src, const fs::path& dir, std::initializer_list<const char*> exts) {
  fs::create_directories(dir);
  int n = 0;
  for (auto& f : fs::directory_iterator(src / "tests/data/media"))
    for (const char* e : exts)
      if (f.path().extension() == e) {
        fs::copy_file(f.path(), dir / f.path().filename(), fs::copy_options::overwrite_existing);
        n++;
      }
  return n > 0 ? 1 : 0;
}

static int chat_messages_seeds(const fs::path& src, const fs::path& dir) {
  fs::create_directories(dir);
  int count = 0;
  const auto cases = nlohmann::ordered_json::parse(slurp(src / "tests/tokenizer/fixtures/chat_renderings.json"));
  for (const auto& c : cases)
    if (c.is_object() && c.contains("messages") && !c.contains("tools"))
      spit(dir / ("case-" + std::to_string(count++) + ".json"), c["messages"].dump(1));
  return done(dir, count);
}

static int worker_spec_seeds(const fs::path& dir) {
  fs::create_directories(dir);
  int count = 0;
  for (const char* kind : {"embeddings", "layers", "experts", "lm_head"}) {
    segpipe::proto::WorkerSpec s;
    s.arena = "segpipe-1-0123456789abcdef";
    s.index = count;
    s.name = std::string("seg-") + kind;
    s.kind = *segpipe::parse_segment_kind(kind);
    s.model_dir = "models/tiny-qwen3-moe";
    if (std::string(kind) == "layers" || std::string(kind) == "experts") s.layer_first = 0, s.layer_last = 4;
    if (std::string(kind) == "experts") s.expert_first = 0, s.expert_last = 3;
    if (std::string(kind) == "layers") {
      s.banks = true;
      s.bank_list.push_back({3, 7, 0, 4, "bank-lo"});
    }
    s.max_seq = 256;
    s.max_tokens = 256;
    s.capture_tokens = 16;
    s.parent_pid = 1234;
    s.status_block = 0, s.channel_block = 1, s.kv_block = 2, s.capture_block = 3, s.moe_x = 4;
    spit(dir / (std::string(kind) + ".json"), segpipe::proto::to_json(s).dump());
    count++;
  }
  return done(dir, count);
}

// A dump of a prompt with audio and an image through a Qwen3-Omni pipeline laid out beside the seeds
// in-process (this program cannot be a segment process) (OUT/omni-model: the committed tiny checkpoint with its media token ids moved inside its vocabulary, and
// the processor's audio windows; OUT/omni-model/pipeline.yaml), and small encoder inputs written here
// (the dumped image's 1,900 patches would make each fuzzed run of the vision tower slow).
static int media_dump_seeds(const fs::path& src, const fs::path& out) {
  const fs::path model = out / "omni-model", dir = out / "media_dump_file", run = out / "media-dump-run";
  fs::create_directories(dir);
  fs::remove_all(model);
  fs::remove_all(run);
  int count = 0;
  try {
    fs::copy(src / "models" / "tiny-qwen3-omni", model, fs::copy_options::recursive);
    fs::remove_all(model / "goldens");
    nlohmann::json c = nlohmann::json::parse(slurp(model / "config.json"));
    auto& t = c["thinker_config"];
    t["audio_token_id"] = 1190, t["image_token_id"] = 1191, t["video_token_id"] = 1192;
    t["audio_start_token_id"] = 1193, t["audio_end_token_id"] = 1194;
    t["vision_start_token_id"] = 1195, t["vision_end_token_id"] = 1196;
    t["audio_config"]["n_window"] = 50, t["audio_config"]["n_window_infer"] = 200;
    spit(model / "config.json", c.dump(1));
    spit(model / "pipeline.yaml", "version: 1\nmodel: " + fs::absolute(model).string() +
                                      "\ntransport: inproc\nsegments:\n  - {name: vision, kind: vision_encoder}\n"
                                      "  - {name: audio, kind: audio_encoder}\n  - {name: embed, kind: embeddings}\n"
                                      "  - {name: early, kind: layers, layers: [0, 0]}\n"
                                      "  - {name: late, kind: layers, layers: [1, 2]}\n  - {name: head, kind: lm_head}\n");
    segpipe::cmd_dump({"--pipeline", (model / "pipeline.yaml").string(), "--tokens", "1 2 3", "--max-new-tokens", "1",
                       "--out", run.string(), "--image", (src / "tests/data/media/shapes.png").string(), "--audio",
                       (src / "tests/data/media/speech.wav").string()});
    for (auto& e : fs::recursive_directory_iterator(run)) {
      const std::string rel = fs::relative(e.path(), run).string();
      if (!e.is_regular_file() || e.path().extension() != ".safetensors" || rel.find(".input.") == std::string::npos ||
          rel.rfind("vision.", 0) == 0 || e.file_size() >= (1u << 20))
        continue;
      std::string tag = rel;
      for (auto& ch : tag)
        if (ch == '/') ch = '-';
      fs::copy_file(e.path(), dir / tag, fs::copy_options::overwrite_existing);
      count++;
    }
    // One small image: a grid of 1 x 4 x 4 patches (4 rows after the 2 x 2 merge).
    const auto& v = t["vision_config"];
    const int64_t patch = v.value("in_channels", 3) * v.at("temporal_patch_size").get<int64_t>() *
                          v.at("patch_size").get<int64_t>() * v.at("patch_size").get<int64_t>();
    std::vector<float> px(static_cast<size_t>(16 * patch));
    for (size_t i = 0; i < px.size(); i++) px[i] = static_cast<float>(i % 7) * 0.25f - 0.75f;
    segpipe::DumpFile img;
    img.tensors["pixel_values"] = segpipe::DumpTensor::from_f32(px.data(), {16, patch});
    img.tensors["grid_thw"] = segpipe::DumpTensor::from_i64({1, 4, 4}, {1, 3});
    img.tensors["pos0"] = segpipe::DumpTensor::from_i64({0}, {1});
    segpipe::write_dump_file((dir / "vision-small.input.safetensors").string(), img);
    count++;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "make_fuzz_seeds: the media dump failed: %s\n", e.what());
  }
  fs::remove_all(run);
  return done(dir, count);
}

// A step's media and an encode request as rank 0 sends them, behind the target's three selector bytes.
static int media_wire_seeds(const fs::path& dir) {
  fs::create_directories(dir);
  const int64_t T = 4, H = 8;
  std::vector<int32_t> rope(3 * T), at = {1, 2}, ds_at = {2};
  std::vector<float> rows(2 * H), ds(2 * 1 * H), in(2 * 6);
  for (size_t i = 0; i < rope.size(); i++) rope[i] = static_cast<int32_t>(i);
  for (size_t i = 0; i < rows.size(); i++) rows[i] = 0.5f * static_cast<float>(i);
  segpipe::StepMedia m;
  m.rope_positions = rope.data();
  m.rope_delta = -3;
  m.embed = segpipe::MediaRows{at.data(), 2, rows.data(), 1};
  m.deepstack = segpipe::MediaRows{ds_at.data(), 1, ds.data(), 2};
  auto with = [](std::string head, const std::vector<std::byte>& b) {
    return head + std::string(reinterpret_cast<const char*>(b.data()), b.size());
  };
  spit(dir / "step.bin", with(std::string("\x00\x03\x07", 3), segpipe::multihost::pack_step_media(m, T, H)));
  segpipe::StepMedia text;
  text.rope_delta = -1;
  spit(dir / "delta.bin", with(std::string("\x00\x00\x07", 3), segpipe::multihost::pack_step_media(text, 1, H)));
  std::vector<int32_t> grid = {1, 2, 2};
  segpipe::EncoderIO e;
  e.in = in.data();
  e.frames = 2;
  e.grids = grid.data();
  e.n_grids = 1;
  e.out_floats = 16;
  spit(dir / "encode.bin", with(std::string("\x01\x01\x01", 3), segpipe::multihost::pack_encode(e, 12)));
  return done(dir, 3);
}

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s SOURCE_DIR OUT_DIR\n", argv[0]);
    return 2;
  }
  fs::path src = argv[1], out = argv[2];
  fs::path hdr = out / "safetensors_header", cfg = out / "model_config", gold = out / "golden";
  for (auto& d : {hdr, cfg, gold}) fs::create_directories(d);
  int n = 0;
  for (auto& m : fs::directory_iterator(src / "models")) {
    if (!m.is_directory()) continue;
    std::string model = m.path().filename().string();
    if (fs::exists(m.path() / "config.json")) spit(cfg / (model + ".json"), slurp(m.path() / "config.json"));
    for (auto& dir : {m.path(), m.path() / "goldens"}) {
      if (!fs::is_directory(dir)) continue;
      for (auto& f : fs::directory_iterator(dir)) {
        if (f.path().extension() != ".safetensors") continue;
        std::string bytes = slurp(f.path());
        if (bytes.size() < 8) continue;
        uint64_t len = 0;
        for (int i = 7; i >= 0; i--) len = (len << 8) | static_cast<unsigned char>(bytes[static_cast<size_t>(i)]);
        if (len > bytes.size() - 8) continue;
        std::string text = bytes.substr(8, len);
        uint64_t data_bytes = bytes.size() - 8 - len;
        std::string tag = model + "-" + (dir == m.path() ? "" : "golden-") + f.path().stem().string();
        spit(hdr / (tag + ".bin"), le64(data_bytes) + text);
        n++;
        if (dir != m.path() && f.path().stem() == "short") spit(gold / (model + "-short.safetensors"), bytes);
      }
    }
  }
  for (auto& p : segpipe::synthetic_presets()) {
    segpipe::MakeModelOptions o;
    o.preset = p.name;
    spit(cfg / ("preset-" + p.name + ".json"), segpipe::synthetic_config(o).dump(1));
  }
  // Small complete files: the raw-file path of the header target opens these successfully.
  using segpipe::DType;
  auto fill = [](const segpipe::TensorSpec& t, uint64_t first, uint64_t count, void* o) {
    for (uint64_t i = 0; i < count * segpipe::dtype_size(t.dtype); i++) static_cast<unsigned char*>(o)[i] = static_cast<unsigned char>(first + i);
  };
  segpipe::write_safetensors((hdr / "small-file-a.safetensors").string(),
                             {{"a", DType::F32, {2, 3}}, {"b", DType::BF16, {5}}, {"e", DType::I64, {0}}},
                             {{"format", "pt"}}, fill);
  segpipe::write_safetensors((hdr / "small-file-b.safetensors").string(),
                             {{"model.embed_tokens.weight", DType::F16, {4, 2}}, {"ids", DType::I64, {3}}}, {}, fill);
  std::printf("%d real headers, seeds in %s\n", n, out.c_str());
  const int more = shard_index_seeds(src, out / "shard_index") + dump_file_seeds(src, out / "dump_file") +
                   tokenizer_json_seeds(src, out / "tokenizer_json") + chat_messages_seeds(src, out / "chat_messages") +
                   worker_spec_seeds(out / "worker_spec") + media_seeds(src, out / "audio_file", {".wav", ".flac"}) +
                   media_seeds(src, out / "image_file", {".png", ".jpg"}) + media_wire_seeds(out / "media_wire") +
                   media_dump_seeds(src, out);
  return n > 0 && more == 9 ? 0 : 1;
}
