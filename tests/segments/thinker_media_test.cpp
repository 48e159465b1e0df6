// The thinker side of Qwen3-Omni with audio and images, against the transformers goldens of the
// multimodal checkpoints (tools/goldens/media/thinker.py, README-thinker.md): M-RoPE positions and
// placeholder counts against the reference's own get_rope_index and length functions, and the thinker's
// boundaries computed from the GOLDEN encoder outputs (so this part is checked apart from the encoders).
// Text-only steps must not change: M-RoPE rows that are all equal give the bits of 1-D RoPE.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "segments/checkpoint/checkpoint.h"
#include "segments/checkpoint/safetensors.h"
#include "segments/factory/segment_factory.h"
#include "segments/kernels/cpu/rope.h"
#include "segments/kernels/cpu/thread_pool.h"
#include "segments/model/config_file.h"
#include "segments/model/media_placeholders.h"
#include "segments/model/mrope_positions.h"
#include "segments_test_support.h"

namespace segpipe {
namespace {

const char* const kModels[] = {"tiny-qwen3-omni-mm", "tiny-qwen3-omni-mm-v5"};
const char* const kPrompts[] = {"image", "audio", "mixed"};
constexpr double kTolerance = 1e-4;  // relative L2, as segpipe verify's default

nlohmann::json read_json(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot read " + path + " (the multimodal goldens: tools/goldens/media/thinker.py)");
  return nlohmann::json::parse(in);
}

// One golden file's tensors, as float32 / int64 vectors.
struct GoldenFile {
  explicit GoldenFile(const std::string& path) : f(SafetensorsFile::open(path)) {}
  bool has(const std::string& n) const { return f->has(n); }
  std::vector<int64_t> shape(const std::string& n) { return f->view(n).shape; }
  std::vector<float> floats(const std::string& n) {
    TensorView v = f->view(n);
    EXPECT_EQ(v.dtype, DType::F32) << n;
    const float* p = static_cast<const float*>(v.data);
    return std::vector<float>(p, p + v.numel());
  }
  std::vector<int64_t> ints(const std::string& n) {
    TensorView v = f->view(n);
    EXPECT_EQ(v.dtype, DType::I64) << n;
    const int64_t* p = static_cast<const int64_t*>(v.data);
    return std::vector<int64_t>(p, p + v.numel());
  }
  std::vector<int32_t> ints32(const std::string& n) {
    std::vector<int64_t> v = ints(n);
    return std::vector<int32_t>(v.begin(), v.end());
  }
  std::shared_ptr<SafetensorsFile> f;
};

std::string golden_path(const std::string& model, const std::string& prompt) {
  return testing::model_dir(model) + "/goldens/" + prompt + ".safetensors";
}

MediaTokenConfig tokens_of(const std::string& model) {
  const std::string cfg = testing::model_dir(model) + "/config.json";
  return parse_media_tokens(read_json(cfg), cfg);
}

std::vector<ImageGrid> grids_of(GoldenFile& g) {
  std::vector<ImageGrid> out;
  if (!g.has("image.grid_thw")) return out;
  std::vector<int64_t> v = g.ints("image.grid_thw");
  for (size_t i = 0; i + 2 < v.size(); i += 3) out.push_back({v[i], v[i + 1], v[i + 2]});
  return out;
}

std::vector<int64_t> audio_frames_of(GoldenFile& g) {
  return g.has("audio.feature_lens") ? g.ints("audio.feature_lens") : std::vector<int64_t>{};
}

double rel_l2(const std::vector<float>& ours, const std::vector<float>& ref) {
  double num = 0, den = 0;
  for (size_t i = 0; i < ref.size(); i++) {
    const double d = static_cast<double>(ours[i]) - ref[i];
    num += d * d;
    den += static_cast<double>(ref[i]) * ref[i];
  }
  return std::sqrt(num / std::max(den, 1e-300));
}

// ---------------------------------------------------------------------------------------------------------
// M-RoPE positions and placeholder counts

class Prompts : public ::testing::TestWithParam<std::tuple<const char*, const char*>> {};

TEST_P(Prompts, MropePositionsEqualTheReference) {
  const auto [model, prompt] = GetParam();
  GoldenFile g(golden_path(model, prompt));
  std::vector<int32_t> ids = g.ints32("input_ids");
  MropePositions r = mrope_positions(ids, tokens_of(model), grids_of(g), audio_frames_of(g));
  std::vector<int64_t> ref = g.ints("position_ids");
  ASSERT_EQ(g.shape("position_ids"), (std::vector<int64_t>{3, static_cast<int64_t>(ids.size())}));
  ASSERT_EQ(r.pos.size(), ref.size());
  for (size_t i = 0; i < ref.size(); i++)
    ASSERT_EQ(r.pos[i], ref[i]) << model << "/" << prompt << ": axis " << i / ids.size() << " token " << i % ids.size();
  EXPECT_EQ(r.delta, g.ints("rope_deltas").at(0)) << model << "/" << prompt;
}

TEST_P(Prompts, PlaceholderCountsEqualTheProcessor) {
  const auto [model, prompt] = GetParam();
  GoldenFile g(golden_path(model, prompt));
  const MediaTokenConfig tok = tokens_of(model);
  std::vector<int32_t> ids = g.ints32("input_ids");
  int64_t audio_rows = 0, image_rows = 0;
  for (int64_t f : audio_frames_of(g)) audio_rows += audio_placeholder_count(f);
  for (const ImageGrid& gr : grids_of(g)) image_rows += image_placeholder_count(gr, tok.spatial_merge_size);
  // The processor's counts equal the placeholders in the prompt and the rows the reference's encoders gave.
  EXPECT_EQ(audio_rows, static_cast<int64_t>(placeholder_positions(ids, tok.audio_token_id).size()));
  EXPECT_EQ(image_rows, static_cast<int64_t>(placeholder_positions(ids, tok.image_token_id).size()));
  EXPECT_EQ(audio_rows, g.has("audio_tower.output") ? g.shape("audio_tower.output")[0] : 0);
  EXPECT_EQ(image_rows, g.has("visual.output") ? g.shape("visual.output")[0] : 0);
  if (g.has("visual_positions")) {
    std::vector<int64_t> vp = g.ints("visual_positions");
    std::vector<int32_t> ours = placeholder_positions(ids, tok.image_token_id);
    EXPECT_TRUE(std::equal(vp.begin(), vp.end(), ours.begin(), ours.end()));
  }
}

// Prompts that disagree with their media are refused with a message naming what disagrees.
TEST_P(Prompts, MismatchedMediaAreRefused) {
  const auto [model, prompt] = GetParam();
  GoldenFile g(golden_path(model, prompt));
  const MediaTokenConfig tok = tokens_of(model);
  std::vector<int32_t> ids = g.ints32("input_ids");
  std::vector<ImageGrid> grids = grids_of(g);
  std::vector<int64_t> frames = audio_frames_of(g);
  auto run = [&](const std::vector<int32_t>& i, const std::vector<ImageGrid>& gr, const std::vector<int64_t>& fr) {
    return [=, &tok] { mrope_positions(i, tok, gr, fr); };
  };
  if (!grids.empty()) {
    std::vector<ImageGrid> more = grids;
    more.push_back(grids[0]);
    testing::expect_input_error(run(ids, more, frames), {"image", "block"});
    testing::expect_input_error(run(ids, {}, frames), {"image block", "0 image"});
    std::vector<int32_t> fewer = ids;  // one image placeholder fewer
    fewer.erase(std::find(fewer.begin(), fewer.end(), tok.image_token_id));
    testing::expect_input_error(run(fewer, grids, frames), {"image 0", "placeholders"});
    std::vector<int32_t> video = ids;
    *std::find(video.begin(), video.end(), tok.image_token_id) = tok.video_token_id;
    testing::expect_input_error(run(video, grids, frames), {"video"});
  }
  if (g.has("audio_tower.output") || g.has("visual.output")) {  // one row short of the placeholders
    const int64_t H = g.has("audio_tower.output") ? g.shape("audio_tower.output")[1] : g.shape("visual.output")[1];
    std::vector<float> audio = g.has("audio_tower.output") ? g.floats("audio_tower.output") : std::vector<float>{};
    std::vector<float> image = g.has("visual.output") ? g.floats("visual.output") : std::vector<float>{};
    (audio.empty() ? image : audio).resize((audio.empty() ? image : audio).size() - static_cast<size_t>(H));
    testing::expect_input_error([&] { place_media_rows(ids, tok, audio, image, H); }, {"rows", "placeholders"});
  }
  if (!frames.empty()) {
    testing::expect_input_error(run(ids, grids, {frames[0], frames[0]}), {"audio", "block"});
    testing::expect_input_error(run(ids, grids, {frames[0] + 200}), {"audio 0", "placeholders"});
    std::vector<int32_t> stray = ids;  // an audio pad outside its block
    stray.push_back(tok.audio_token_id);
    testing::expect_input_error(run(stray, grids, frames), {"outside", "position " + std::to_string(ids.size())});
  }
}

INSTANTIATE_TEST_SUITE_P(Goldens, Prompts, ::testing::Combine(::testing::ValuesIn(kModels), ::testing::ValuesIn(kPrompts)),
                         [](const auto& tp) {
                           std::string s = std::string(std::get<0>(tp.param)) + "_" + std::get<1>(tp.param);
                           std::replace(s.begin(), s.end(), '-', '_');
                           return s;
                         });

class Tables : public ::testing::TestWithParam<const char*> {};

// The reference's length functions over 1..1000 frames and beyond (chunk boundaries included).
TEST_P(Tables, AudioLengthsEqualTheReference) {
  nlohmann::json t = read_json(testing::model_dir(GetParam()) + "/goldens/reference_tables.json");
  ASSERT_EQ(t["source"].get<std::string>().rfind("transformers ", 0), 0u);
  const auto& lengths = t["mel_lengths"];
  ASSERT_GE(lengths.size(), 1000u);
  for (size_t i = 0; i < lengths.size(); i++) {
    const int64_t L = lengths[i].get<int64_t>();
    ASSERT_EQ(audio_placeholder_count(L), t["processor_audio_lengths"][i].get<int64_t>()) << L << " frames";
    for (auto& [n, v] : t["model_audio_lengths"].items())
      ASSERT_EQ(audio_encoder_output_length(L, std::stoi(n)), v[i].get<int64_t>()) << L << " frames, n_window " << n;
  }
}

// get_rope_index on prompts no golden prompt reaches: several images (grid_t 2 too), audio first, blocks
// side by side or at the ends, other n_window / position_id_per_seconds.
TEST_P(Tables, RopeIndexCasesEqualTheReference) {
  nlohmann::json t = read_json(testing::model_dir(GetParam()) + "/goldens/reference_tables.json");
  ASSERT_GE(t["rope_index"].size(), 6u);
  for (const auto& c : t["rope_index"]) {
    MediaTokenConfig tok = tokens_of(GetParam());
    tok.audio_n_window = c["n_window"].get<int>();
    tok.position_id_per_seconds = c["position_id_per_seconds"].get<int64_t>();
    tok.spatial_merge_size = c["spatial_merge_size"].get<int>();
    std::vector<int32_t> ids = c["input_ids"].get<std::vector<int32_t>>();
    std::vector<ImageGrid> grids;
    for (const auto& gr : c["image_grid_thw"]) grids.push_back({gr[0].get<int64_t>(), gr[1].get<int64_t>(), gr[2].get<int64_t>()});
    std::vector<int64_t> frames = c["audio_seqlens"].get<std::vector<int64_t>>();
    const std::string what = c["name"].get<std::string>() + " (n_window " + std::to_string(tok.audio_n_window) + ")";
    MropePositions r = mrope_positions(ids, tok, grids, frames);
    const auto& ref = c["position_ids"];
    for (int a = 0; a < 3; a++)
      for (size_t i = 0; i < ids.size(); i++)
        ASSERT_EQ(r.pos[a * ids.size() + i], ref[a][i].get<int64_t>()) << what << ": axis " << a << " token " << i;
    EXPECT_EQ(r.delta, c["rope_deltas"].get<int64_t>()) << what;
  }
}

INSTANTIATE_TEST_SUITE_P(Goldens, Tables, ::testing::ValuesIn(kModels), [](const auto& tp) {
  std::string s = tp.param;
  std::replace(s.begin(), s.end(), '-', '_');
  return s;
});

// ---------------------------------------------------------------------------------------------------------
// The thinker's boundaries from the golden encoder outputs

struct Capture : BoundaryObserver {
  std::map<std::string, std::vector<float>> t;
  void on_tensor(const Boundary& b, const float* d, int64_t rows, int64_t cols) override {
    t[b.name()].assign(d, d + rows * cols);
  }
};

struct Model {
  explicit Model(const std::string& name, int64_t max_seq)
      : dir(testing::model_dir(name)), cfg(read_model_config(dir)), ck(Checkpoint::open(dir)), pool(2) {
    env.cfg = &cfg;
    env.checkpoint = ck.get();
    env.pool = &pool;
    env.max_seq = max_seq;
  }
  std::unique_ptr<Segment> make(SegmentKind kind, int l0 = -1, int l1 = -1) {
    SegmentParams p;
    p.kind = kind;
    p.layer_first = l0;
    p.layer_last = l1;
    return make_segment(p, env);
  }
  std::string dir;
  ModelConfig cfg;
  std::shared_ptr<Checkpoint> ck;
  ThreadPool pool;
  SegmentEnv env;
};

// What the chain hands the segments for one golden prompt: the media rows in prompt order (audio rows at
// the audio placeholders, image rows at the image ones, merged by position), the DeepStack rows per level
// at the image positions, and the M-RoPE positions.
struct ThinkerInputs {
  std::vector<int32_t> ids, media_index, ds_index, positions;
  std::vector<float> media_rows, ds_rows;
  int ds_levels = 0;
  int64_t delta = 0;
};

ThinkerInputs thinker_inputs(GoldenFile& g, const MediaTokenConfig& tok, int64_t H) {
  ThinkerInputs in;
  in.ids = g.ints32("input_ids");
  std::vector<float> audio = g.has("audio_tower.output") ? g.floats("audio_tower.output") : std::vector<float>{};
  std::vector<float> image = g.has("visual.output") ? g.floats("visual.output") : std::vector<float>{};
  PlacedRows placed = place_media_rows(in.ids, tok, audio, image, H);
  in.media_index = placed.index;
  in.media_rows = placed.rows;
  in.ds_index = placeholder_positions(in.ids, tok.image_token_id);
  while (g.has("visual.deepstack." + std::to_string(in.ds_levels))) {
    std::vector<float> f = g.floats("visual.deepstack." + std::to_string(in.ds_levels++));
    EXPECT_EQ(f.size(), in.ds_index.size() * H);
    in.ds_rows.insert(in.ds_rows.end(), f.begin(), f.end());
  }
  in.positions = g.ints32("position_ids");
  in.delta = g.ints("rope_deltas").at(0);
  return in;
}

StepIO layers_io(const ThinkerInputs& in, float* x, bool with_positions) {
  StepIO io;
  io.in = x;
  io.out = x;
  io.T = static_cast<int64_t>(in.ids.size());
  io.rope_positions = with_positions ? in.positions.data() : nullptr;
  io.deepstack = {in.ds_index.data(), in.ds_levels ? static_cast<int64_t>(in.ds_index.size()) : 0, in.ds_rows.data(),
                  in.ds_levels};
  return io;
}

class Thinker : public ::testing::TestWithParam<std::tuple<const char*, const char*>> {};

TEST_P(Thinker, BoundariesFromGoldenEncoderOutputsMatchTheReference) {
  const auto [model, prompt] = GetParam();
  GoldenFile g(golden_path(model, prompt));
  Model m(model, 256);
  const MediaTokenConfig tok = tokens_of(model);
  const int64_t H = m.cfg.hidden, V = m.cfg.vocab;
  ThinkerInputs in = thinker_inputs(g, tok, H);
  const int64_t T = static_cast<int64_t>(in.ids.size());
  // The positions the chain would compute equal the golden ones (checked alone above); use ours here.
  MropePositions mp = mrope_positions(in.ids, tok, grids_of(g), audio_frames_of(g));
  ASSERT_EQ(mp.pos, in.positions);

  auto emb = m.make(SegmentKind::embeddings);
  auto layers = m.make(SegmentKind::layers, 0, m.cfg.num_layers - 1);
  auto head = m.make(SegmentKind::lm_head);
  Capture cap;
  std::vector<float> x(static_cast<size_t>(T * H)), logits(static_cast<size_t>(T * V));
  StepIO eio;
  eio.in = in.ids.data();
  eio.out = x.data();
  eio.T = T;
  eio.observer = &cap;
  eio.media = {in.media_index.data(), static_cast<int64_t>(in.media_index.size()), in.media_rows.data(), 1};
  emb->step(eio);
  StepIO lio = layers_io(in, x.data(), true);
  lio.observer = &cap;
  layers->step(lio);
  StepIO hio;
  hio.in = x.data();
  hio.out = logits.data();
  hio.T = T;
  hio.all_positions = true;
  hio.observer = &cap;
  head->step(hio);

  // The scatter is a copy of the golden rows into the looked-up table rows: exact.
  EXPECT_EQ(cap.t.at("embeddings"), g.floats("embeddings")) << "embeddings with the media rows";
  std::vector<std::string> names;
  for (int l = 0; l < m.cfg.num_layers; l++) {
    names.push_back("layers." + std::to_string(l) + ".output");
    if (m.cfg.is_moe_layer(l)) names.push_back("layers." + std::to_string(l) + ".router_logits");
  }
  names.push_back("norm");
  names.push_back("logits");
  for (const std::string& n : names) {
    ASSERT_TRUE(g.has(n)) << n;
    const double e = rel_l2(cap.t.at(n), g.floats(n));
    EXPECT_LT(e, kTolerance) << model << "/" << prompt << ": " << n << " relative L2 " << e;
  }

  // Greedy decode with the KV cache: text tokens at slot T + n, M-RoPE position T + n + delta.
  std::vector<int64_t> want = g.ints("generated_ids");
  std::vector<int32_t> got;
  std::vector<float> last(logits.end() - V, logits.end()), h(static_cast<size_t>(H));
  for (size_t n = 0; n < want.size(); n++) {
    got.push_back(static_cast<int32_t>(std::max_element(last.begin(), last.end()) - last.begin()));
    if (n + 1 == want.size()) break;
    StepIO e1;
    e1.in = &got.back();
    e1.out = h.data();
    e1.T = 1;
    emb->step(e1);
    StepIO l1;
    l1.in = h.data();
    l1.out = h.data();
    l1.T = 1;
    l1.pos0 = T + static_cast<int64_t>(n);
    l1.rope_delta = in.delta;
    layers->step(l1);
    StepIO h1;
    h1.in = h.data();
    h1.out = last.data();
    h1.T = 1;
    head->step(h1);
  }
  EXPECT_TRUE(std::equal(got.begin(), got.end(), want.begin(), want.end())) << model << "/" << prompt << ": greedy tokens differ";
}

// DeepStack levels index global layers: two layers segments split anywhere give the one segment's bits.
TEST_P(Thinker, SplitLayersEqualOneSegment) {
  const auto [model, prompt] = GetParam();
  GoldenFile g(golden_path(model, prompt));
  Model m(model, 256);
  const int64_t H = m.cfg.hidden;
  ThinkerInputs in = thinker_inputs(g, tokens_of(model), H);
  const std::vector<float> e = g.floats("embeddings");
  std::vector<float> whole = e;
  auto all = m.make(SegmentKind::layers, 0, m.cfg.num_layers - 1);
  all->step(layers_io(in, whole.data(), true));
  for (int cut = 0; cut + 1 < m.cfg.num_layers; cut++) {
    std::vector<float> split = e;
    auto a = m.make(SegmentKind::layers, 0, cut);
    auto b = m.make(SegmentKind::layers, cut + 1, m.cfg.num_layers - 1);
    a->step(layers_io(in, split.data(), true));
    b->step(layers_io(in, split.data(), true));
    EXPECT_EQ(std::memcmp(split.data(), whole.data(), whole.size() * 4), 0) << "cut after layer " << cut;
  }
}

INSTANTIATE_TEST_SUITE_P(Goldens, Thinker, ::testing::Combine(::testing::ValuesIn(kModels), ::testing::ValuesIn(kPrompts)),
                         [](const auto& tp) {
                           std::string s = std::string(std::get<0>(tp.param)) + "_" + std::get<1>(tp.param);
                           std::replace(s.begin(), s.end(), '-', '_');
                           return s;
                         });

// ---------------------------------------------------------------------------------------------------------
// Text-only steps keep their bits; bad extras are refused

// A text step given M-RoPE rows that are all pos0 + t (what get_rope_index gives text) or a delta that
// lands on the same positions computes exactly what the plain step computes.
TEST(ThinkerTextOnly, EqualPositionRowsAndDeltaGiveThePlainStepsBits) {
  Model m("tiny-qwen3-omni", 64);
  const int64_t T = 7, H = m.cfg.hidden;
  std::vector<float> x0(static_cast<size_t>(T * H));
  for (size_t i = 0; i < x0.size(); i++) x0[i] = static_cast<float>(std::sin(0.37 * static_cast<double>(i)) * 0.8);
  auto run = [&](const int32_t* rows, int64_t pos0, int64_t delta) {
    auto l = m.make(SegmentKind::layers, 0, m.cfg.num_layers - 1);
    std::vector<float> x = x0;
    if (pos0 > 0) {  // fill the cache below pos0 so that the step at pos0 attends to something
      std::vector<float> pre(static_cast<size_t>(pos0 * H), 0.25f);
      StepIO p;
      p.in = p.out = pre.data();
      p.T = pos0;
      l->step(p);
    }
    StepIO io;
    io.in = x.data();
    io.out = x.data();
    io.T = T;
    io.pos0 = pos0;
    io.rope_positions = rows;
    io.rope_delta = delta;
    l->step(io);
    return x;
  };
  const std::vector<float> plain = run(nullptr, 3, 0);
  auto rows_from = [&](int64_t p0) {
    std::vector<int32_t> rows(static_cast<size_t>(3 * T));
    for (int a = 0; a < 3; a++)
      for (int64_t t = 0; t < T; t++) rows[static_cast<size_t>(a * T + t)] = static_cast<int32_t>(p0 + t);
    return rows;
  };
  const std::vector<int32_t> same = rows_from(3), shifted = rows_from(5);
  EXPECT_EQ(std::memcmp(run(same.data(), 3, 0).data(), plain.data(), plain.size() * 4), 0);
  // A delta rotates as the rows pos0 + t + delta do (the decode steps after an image prompt), in the same slots.
  const std::vector<float> by_rows = run(shifted.data(), 3, 0), by_delta = run(nullptr, 3, 2);
  EXPECT_EQ(std::memcmp(by_rows.data(), by_delta.data(), plain.size() * 4), 0);
  EXPECT_NE(std::memcmp(by_rows.data(), plain.data(), plain.size() * 4), 0) << "positions do not reach the step";
  // Height and width rows apart from the time row rotate differently (apply3 reads all three).
  Rope r(m.cfg.head_dim, m.cfg.rope_theta);
  r.set_mrope_sections(m.cfg.mrope_section);
  std::vector<float> q1(static_cast<size_t>(m.cfg.head_dim));
  for (size_t i = 0; i < q1.size(); i++) q1[i] = static_cast<float>(std::cos(0.11 * static_cast<double>(i)));
  std::vector<float> q2 = q1, q3 = q1;
  r.apply(q1.data(), 1, 3);
  r.apply3(q2.data(), 1, 3, 3, 3);
  r.apply3(q3.data(), 1, 3, 4, 5);
  EXPECT_EQ(std::memcmp(q1.data(), q2.data(), q1.size() * 4), 0);
  EXPECT_NE(std::memcmp(q3.data(), q1.data(), q1.size() * 4), 0);
}

TEST(ThinkerExtras, AreRefusedWhereTheyCannotApply) {
  Model moe("tiny-qwen3-moe", 32);
  auto l = moe.make(SegmentKind::layers, 0, 0);
  const int64_t T = 4;
  std::vector<float> x(static_cast<size_t>(T * moe.cfg.hidden), 0.1f);
  std::vector<int32_t> rows(static_cast<size_t>(3 * T), 0);
  StepIO io;
  io.in = io.out = x.data();
  io.T = T;
  io.rope_positions = rows.data();
  testing::expect_input_error([&] { l->step(io); }, {"M-RoPE", "qwen3_moe"});

  Model omni("tiny-qwen3-omni", 32);
  auto lo = omni.make(SegmentKind::layers, 0, 0);
  std::vector<float> y(static_cast<size_t>(T * omni.cfg.hidden), 0.1f), ds(static_cast<size_t>(2 * omni.cfg.hidden));
  std::vector<int32_t> idx{3, 4};  // position 4 is outside a 4-token step
  StepIO o;
  o.in = o.out = y.data();
  o.T = T;
  o.deepstack = {idx.data(), 2, ds.data(), 1};
  testing::expect_input_error([&] { lo->step(o); }, {"DeepStack", "position 4"});
  o.deepstack = {};
  o.rope_delta = -1;  // position 0 - 1
  testing::expect_input_error([&] { lo->step(o); }, {"rope delta", "negative"});

  auto e = omni.make(SegmentKind::embeddings);
  std::vector<int32_t> ids{1, 2, 3, 4};
  std::vector<int32_t> back{2, 1};  // not ascending
  StepIO ei;
  ei.in = ids.data();
  ei.out = y.data();
  ei.T = T;
  ei.media = {back.data(), 2, ds.data(), 1};
  testing::expect_input_error([&] { e->step(ei); }, {"media rows", "ascending"});
}

}  // namespace
}  // namespace segpipe
