// The vision tower against transformers (models/<checkpoint>/... goldens in
// tests/data/media/goldens/<checkpoint>/vision_encoder_<case>.safetensors; README-vision.md): every
// recorded boundary, the merged output and each DeepStack feature, on both committed Omni checkpoints
// and on one and two images per call.
//
// Tolerance: relative L2 error <= 1e-5 and max abs error <= 1e-5 * max(1, largest |reference value|) per
// boundary. The weights are the same bf16 values on both sides and every step is float32, but the
// reference's matrix products (oneDNN/BLAS blocking), LayerNorm moments and SLEEF transcendental
// functions sum and round in other orders than our fixed-order kernels: a few float32 ulps per step,
// growing through the blocks to ~1e-6 relative here. A wrong weight, order or formula gives errors of
// the order of the values themselves.
#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

#include "media/image/image_decode.h"
#include "media/image/image_processor.h"
#include "segments/checkpoint/checkpoint.h"
#include "segments/core/errors.h"
#include "segments/encoders/vision_config.h"
#include "segments/encoders/vision_encoder.h"
#include "segments/kernels/cpu/thread_pool.h"
#include "tests/media/image_golden.h"

namespace segpipe::testing {
namespace {

constexpr double kRelL2 = 1e-5;
constexpr double kMaxAbs = 1e-5;

struct Loaded {
  std::shared_ptr<Checkpoint> ck;
  VisionEncoderConfig cfg;
};

Loaded load(const std::string& name) {
  const std::string dir = source_path("models/" + name);
  Loaded l;
  l.ck = Checkpoint::open(dir);
  l.cfg = parse_vision_config(l.ck->config_json(), dir + "/config.json");
  return l;
}

std::vector<VisionGrid> grids_of(const VisionGolden& g) {
  const std::vector<int64_t> v = g.i64("image_grid_thw");
  std::vector<VisionGrid> out;
  for (size_t i = 0; i + 2 < v.size(); i += 3) out.push_back({v[i], v[i + 1], v[i + 2]});
  return out;
}

class VisionEncoderGolden : public ::testing::TestWithParam<std::tuple<std::string, std::string>> {};

TEST_P(VisionEncoderGolden, EveryBoundaryMatches) {
  const auto& [ckpt, vcase] = GetParam();
  auto g = VisionGolden::open("tests/data/media/goldens/" + ckpt + "/vision_encoder_" + vcase + ".safetensors");
  if (!g) return;
  Loaded l = load(ckpt);
  VisionEncoder enc(*l.ck, l.cfg);
  const std::vector<float> pv = g->f32("pixel_values");
  const auto pv_shape = g->shape("pixel_values");
  ASSERT_EQ(pv_shape.size(), 2u);
  ASSERT_EQ(pv_shape[1], l.cfg.patch_dim());
  std::map<std::string, std::pair<std::vector<float>, std::vector<int64_t>>> seen;
  ThreadPool pool(2);
  const VisionEncoderOutput out = enc.forward(pv.data(), pv_shape[0], grids_of(*g), pool,
                                              [&](const std::string& n, const float* p, const std::vector<int64_t>& s) {
                                                int64_t k = 1;
                                                for (auto d : s) k *= d;
                                                seen[n] = {std::vector<float>(p, p + k), s};
                                              });
  int compared = 0;
  for (const std::string& name : g->names()) {
    if (name == "pixel_values" || name == "image_grid_thw") continue;
    SCOPED_TRACE(name);
    auto it = seen.find(name);
    if (it == seen.end()) {
      ADD_FAILURE() << "golden boundary " << name << " is not produced by the encoder";
      continue;
    }
    const auto ref = g->f32(name);
    EXPECT_EQ(it->second.second, g->shape(name));
    ASSERT_EQ(it->second.first.size(), ref.size());
    const ErrorStats s = compare(it->second.first.data(), ref.data(), ref.size());
    std::printf("[ %-18s %-6s %-18s ] max abs %.3g (ref max %.3g) rel L2 %.3g\n", ckpt.c_str(), vcase.c_str(),
                name.c_str(), s.max_abs, s.ref_max, s.rel_l2);
    EXPECT_LE(s.rel_l2, kRelL2);
    EXPECT_LE(s.max_abs, kMaxAbs * std::max(1.0, s.ref_max)) << "worst element " << s.worst;
    compared++;
  }
  EXPECT_GE(compared, 8);
  // The returned tensors are the observed ones.
  EXPECT_EQ(out.merged, seen["merged"].first);
  ASSERT_EQ(out.deepstack.size(), l.cfg.deepstack_visual_indexes.size());
  for (size_t j = 0; j < out.deepstack.size(); j++)
    EXPECT_EQ(out.deepstack[j], seen["deepstack." + std::to_string(j)].first);
  EXPECT_EQ(out.tokens * l.cfg.merge_unit(), pv_shape[0]);
}

INSTANTIATE_TEST_SUITE_P(Omni, VisionEncoderGolden,
                         ::testing::Combine(::testing::Values("tiny-qwen3-omni", "tiny-qwen3-omni-v5"),
                                            ::testing::Values("shapes", "photo", "pair")),
                         [](const auto& p) {
                           std::string n = std::get<0>(p.param) + "_" + std::get<1>(p.param);
                           for (char& c : n)
                             if (c == '-') c = '_';
                           return n;
                         });

// From the image files to the merged features with our own decoder and processor: the pixel values must
// equal the golden's bit for bit (image_processor_test.cpp says why), so the output must match as above.
TEST(VisionEncoder, FromImageFilesMatchesTheReference) {
  for (const char* ckpt : {"tiny-qwen3-omni", "tiny-qwen3-omni-v5"}) {
    SCOPED_TRACE(ckpt);
    auto g = VisionGolden::open(std::string("tests/data/media/goldens/") + ckpt + "/vision_encoder_pair.safetensors");
    if (!g) return;
    Loaded l = load(ckpt);
    const nlohmann::json images = g->meta_json("images"), configs = g->meta_json("processor_configs");
    std::vector<float> pv;
    std::vector<VisionGrid> grids;
    for (const auto& item : images) {
      const std::string file = item["image"].get<std::string>();
      media::ImageProcessorConfig cfg = media::image_processor_config_from_json(
          configs[item["config"].get<std::string>()], "processor_configs", media::ImageProcessorConfig{});
      cfg.patch_size = l.cfg.patch_size;
      cfg.merge_size = l.cfg.spatial_merge_size;
      cfg.temporal_patch_size = l.cfg.temporal_patch_size;
      const media::ProcessedImage p = media::preprocess_image(media::decode_image_file(source_path(file)), cfg, file);
      pv.insert(pv.end(), p.pixel_values.begin(), p.pixel_values.end());
      grids.push_back({p.grid_t, p.grid_h, p.grid_w});
    }
    EXPECT_EQ(pv, g->f32("pixel_values"));
    VisionEncoder enc(*l.ck, l.cfg);
    ThreadPool pool(2);
    const auto out = enc.forward(pv.data(), static_cast<int64_t>(pv.size()) / l.cfg.patch_dim(), grids, pool);
    const auto ref = g->f32("merged");
    ASSERT_EQ(out.merged.size(), ref.size());
    const ErrorStats s = compare(out.merged.data(), ref.data(), ref.size());
    EXPECT_LE(s.rel_l2, kRelL2);
    EXPECT_LE(s.max_abs, kMaxAbs * std::max(1.0, s.ref_max));
  }
}

TEST(VisionEncoder, ThreadCountDoesNotChangeTheResult) {
  Loaded l = load("tiny-qwen3-omni");
  VisionEncoder enc(*l.ck, l.cfg);
  const std::vector<VisionGrid> grids = {{1, 4, 6}, {2, 2, 2}};
  std::vector<float> pv(static_cast<size_t>((24 + 8) * l.cfg.patch_dim()));
  for (size_t i = 0; i < pv.size(); i++) pv[i] = static_cast<float>((i * 37 % 101) / 50.0 - 1.0);
  ThreadPool one(1), three(3);
  const auto a = enc.forward(pv.data(), 32, grids, one);
  const auto b = enc.forward(pv.data(), 32, grids, three);
  EXPECT_EQ(a.merged, b.merged);
  EXPECT_EQ(a.deepstack, b.deepstack);
  EXPECT_EQ(a.tokens, 8);
}

TEST(VisionEncoder, GridsThatDoNotFitAreInputErrors) {
  Loaded l = load("tiny-qwen3-omni");
  VisionEncoder enc(*l.ck, l.cfg);
  std::vector<float> pv(static_cast<size_t>(16 * l.cfg.patch_dim()));
  ThreadPool pool(1);
  EXPECT_THROW(enc.forward(pv.data(), 16, {{1, 4, 3}}, pool), InputError);  // w not a multiple of merge
  EXPECT_THROW(enc.forward(pv.data(), 16, {{1, 2, 2}}, pool), InputError);  // 4 patches, 16 rows
  EXPECT_THROW(enc.forward(pv.data(), 16, {{0, 4, 4}}, pool), InputError);
  EXPECT_THROW(enc.forward(pv.data(), 16, {}, pool), InputError);
  EXPECT_NO_THROW(enc.forward(pv.data(), 16, {{1, 4, 4}}, pool));
}

TEST(VisionConfig, ReadsTheCheckpointsAndNamesBadFields) {
  Loaded l = load("tiny-qwen3-omni");
  EXPECT_EQ(l.cfg.depth, 2);
  EXPECT_EQ(l.cfg.hidden_size, 32);
  EXPECT_EQ(l.cfg.num_heads, 2);
  EXPECT_EQ(l.cfg.patch_size, 4);
  EXPECT_EQ(l.cfg.num_grid_per_side(), 4);
  EXPECT_EQ(l.cfg.out_hidden_size, 64);
  EXPECT_EQ(l.cfg.deepstack_visual_indexes, std::vector<int>{0});
  EXPECT_EQ(load("tiny-qwen3-omni-v5").cfg.out_hidden_size, 48);

  const nlohmann::json good = l.ck->config_json();
  auto expect_error = [&](const std::function<void(nlohmann::json&)>& edit, const std::string& key) {
    nlohmann::json j = good;
    edit(j);
    try {
      parse_vision_config(j, "m/config.json");
      ADD_FAILURE() << "no error for " << key;
    } catch (const InputError& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find("m/config.json"), std::string::npos) << msg;
      EXPECT_NE(msg.find(key), std::string::npos) << msg;
    }
  };
  auto vc = [](nlohmann::json& j) -> nlohmann::json& { return j["thinker_config"]["vision_config"]; };
  expect_error([&](auto& j) { j["thinker_config"].erase("vision_config"); }, "thinker_config.vision_config");
  expect_error([&](auto& j) { vc(j).erase("depth"); }, "vision_config.depth");
  expect_error([&](auto& j) { vc(j)["num_heads"] = 3; }, "vision_config.num_heads");
  expect_error([&](auto& j) { vc(j)["num_heads"] = 16; }, "vision_config.num_heads");  // head size 2
  expect_error([&](auto& j) { vc(j)["deepstack_visual_indexes"] = {2}; }, "deepstack_visual_indexes");
  expect_error([&](auto& j) { vc(j)["deepstack_visual_indexes"] = {0, 0}; }, "deepstack_visual_indexes");
  expect_error([&](auto& j) { vc(j)["hidden_act"] = "relu"; }, "vision_config.hidden_act");
  expect_error([&](auto& j) { vc(j)["patch_size"] = "4"; }, "vision_config.patch_size");
  expect_error([&](auto& j) { vc(j)["rope_parameters"]["rope_theta"] = 0.5; }, "rope_parameters.rope_theta");
}

TEST(VisionEncoder, WrongTensorShapeNamesTheTensor) {
  Loaded l = load("tiny-qwen3-omni");
  VisionEncoderConfig cfg = l.cfg;
  cfg.intermediate_size = 65;  // the checkpoint's fc1 is [64, 32]
  try {
    VisionEncoder enc(*l.ck, cfg);
    ADD_FAILURE() << "no error";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("thinker.visual.blocks.0.mlp.linear_fc1.weight"), std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace segpipe::testing
