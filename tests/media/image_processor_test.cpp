// The image processor against transformers (image_processor.safetensors: the processor's own resize
// output, pixel_values, image_grid_thw and the placeholder count, for the real Qwen3-Omni settings, the
// tiny checkpoints' settings and the class defaults).
//
// Tolerances: the resized image must match byte for byte (torch's uint8 kernel is integer arithmetic
// once its weights are rounded to int16, and those come from the same double computations here).
// pixel_values must match bit for bit where the normalization constants are exact in float32 (mean and
// std 0.5: 0.5 * 255 = 127.5); with other constants (the CLIP defaults) the reference may round the
// fused mean/std products differently, so up to 2 ulp of the values' magnitude there.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "media/image/bicubic_resize.h"
#include "media/image/image_decode.h"
#include "media/image/image_processor.h"
#include "media/image/smart_resize.h"
#include "segments/core/errors.h"
#include "tests/media/image_golden.h"

namespace segpipe::testing {
namespace {

const char* kGolden = "tests/data/media/goldens/image_processor.safetensors";
const std::vector<std::pair<std::string, std::string>> kImages = {{"shapes", "tests/data/media/shapes.png"},
                                                                  {"photo", "tests/data/media/photo.jpg"}};

// The processor settings the golden recorded (metadata config.<cfg>), through our own reader.
media::ImageProcessorConfig config_of(const VisionGolden& g, const std::string& cfg) {
  return media::image_processor_config_from_json(g.meta_json("config." + cfg), "config." + cfg,
                                                 media::ImageProcessorConfig{});
}

std::vector<std::string> recorded_configs(const VisionGolden& g) {
  std::vector<std::string> out;
  for (const auto& [k, v] : g.metadata())
    if (k.rfind("config.", 0) == 0 && k.rfind("config.pil.", 0) != 0) out.push_back(k.substr(7));
  return out;
}

TEST(ImageProcessor, MatchesReferenceForEveryRecordedConfig) {
  auto g = VisionGolden::open(kGolden);
  if (!g) return;
  const auto configs = recorded_configs(*g);
  ASSERT_GE(configs.size(), 4u) << "expected real, tiny, tiny_small, tiny_min, defaults";
  for (const std::string& cfg_name : configs) {
    const media::ImageProcessorConfig cfg = config_of(*g, cfg_name);
    const bool exact_constants = cfg.image_mean == std::array<float, 3>{0.5f, 0.5f, 0.5f} &&
                                 cfg.image_std == std::array<float, 3>{0.5f, 0.5f, 0.5f};
    for (const auto& [img_name, file] : kImages) {
      const std::string p = cfg_name + "." + img_name;
      SCOPED_TRACE(p);
      if (!g->has(p + ".pixel_values")) {
        ADD_FAILURE() << p << ".pixel_values missing from the golden";
        continue;
      }
      const media::RgbImage img = media::decode_image_file(source_path(file));
      // Grid and size rule.
      const media::ResizedSize size = media::smart_resize(img.height, img.width, cfg.patch_size * cfg.merge_size,
                                                          cfg.min_pixels, cfg.max_pixels, file);
      const std::vector<int64_t> grid = g->i64(p + ".image_grid_thw");
      ASSERT_EQ(grid.size(), 3u);
      EXPECT_EQ(grid[0], 1);
      EXPECT_EQ(size.height / cfg.patch_size, grid[1]);
      EXPECT_EQ(size.width / cfg.patch_size, grid[2]);
      // The resize alone.
      if (g->has(p + ".resized")) {
        const media::RgbImage r = media::resize_bicubic_antialias(img, size.height, size.width);
        const std::vector<uint8_t> ref = g->u8(p + ".resized");  // [3, h, w]
        ASSERT_EQ(ref.size(), r.rgb.size());
        int64_t differ = 0, worst = 0;
        for (int c = 0; c < 3; c++)
          for (int64_t y = 0; y < r.height; y++)
            for (int64_t x = 0; x < r.width; x++) {
              const size_t k = static_cast<size_t>((c * r.height + y) * r.width + x);
              const int d = std::abs(int(r.at(y, x, c)) - int(ref[k]));
              differ += d != 0;
              worst = std::max<int64_t>(worst, d);
            }
        EXPECT_EQ(differ, 0) << "resized pixels differ (largest difference " << worst << ")";
      } else {
        ADD_FAILURE() << p << ".resized missing from the golden";
      }
      // The whole processor.
      const media::ProcessedImage out = media::preprocess_image(img, cfg, file);
      EXPECT_EQ(out.grid_t, grid[0]);
      EXPECT_EQ(out.grid_h, grid[1]);
      EXPECT_EQ(out.grid_w, grid[2]);
      const std::vector<float> ref = g->f32(p + ".pixel_values");
      const auto shape = g->shape(p + ".pixel_values");
      ASSERT_EQ(shape.size(), 2u);
      EXPECT_EQ(shape[0], out.num_patches());
      EXPECT_EQ(shape[1], out.patch_dim);
      ASSERT_EQ(ref.size(), out.pixel_values.size());
      const ErrorStats s = compare(out.pixel_values.data(), ref.data(), ref.size());
      const double tol = exact_constants ? 0.0 : 2.0 * std::ldexp(1.0, -23) * std::max(1.0, s.ref_max);
      EXPECT_LE(s.max_abs, tol) << "pixel_values: max abs error " << s.max_abs << " at " << s.worst;
      EXPECT_EQ(g->i64(p + ".placeholder_tokens").at(0), out.placeholder_tokens(cfg.merge_size));
      std::printf("[ image %-18s ] grid %lldx%lld pixel_values max abs %.3g\n", p.c_str(),
                  static_cast<long long>(out.grid_h), static_cast<long long>(out.grid_w), s.max_abs);
    }
  }
}

TEST(ImageProcessor, RealSettingsAreQwen3OmniDefaults) {
  auto g = VisionGolden::open(kGolden);
  if (!g) return;
  const media::ImageProcessorConfig ref = config_of(*g, "real"), ours = media::qwen3_omni_image_processor_config();
  EXPECT_EQ(ours.patch_size, ref.patch_size);
  EXPECT_EQ(ours.merge_size, ref.merge_size);
  EXPECT_EQ(ours.temporal_patch_size, ref.temporal_patch_size);
  EXPECT_EQ(ours.min_pixels, ref.min_pixels);
  EXPECT_EQ(ours.max_pixels, ref.max_pixels);
  EXPECT_EQ(ours.image_mean, ref.image_mean);
  EXPECT_EQ(ours.image_std, ref.image_std);
  EXPECT_EQ(ours.rescale_factor, ref.rescale_factor);
}

// ---------------------------------------------------------------------------------------------------------
// size rules and bad input

TEST(SmartResize, AspectRatioAbove200IsRefused) {
  EXPECT_NO_THROW(media::smart_resize(10, 2000, 32, 3136, 12845056, "x.png"));  // exactly 200
  try {
    media::smart_resize(10, 2001, 32, 3136, 12845056, "x.png");
    ADD_FAILURE() << "no error";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("x.png"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("above the image processor's limit of 200"), std::string::npos);
  }
}

TEST(ImageProcessorConfigJson, ReadsBothSpellingsAndRejectsBadValues) {
  const auto d = media::ImageProcessorConfig{};
  auto c = media::image_processor_config_from_json(
      nlohmann::json::parse(R"({"patch_size": 14, "size": {"shortest_edge": 100, "longest_edge": 5000},
                                "image_mean": [0.1, 0.2, 0.3], "image_std": 0.25, "min_pixels": null})"),
      "p.json", d);
  EXPECT_EQ(c.patch_size, 14);
  EXPECT_EQ(c.min_pixels, 100);
  EXPECT_EQ(c.max_pixels, 5000);
  EXPECT_EQ(c.image_std[2], 0.25f);
  c = media::image_processor_config_from_json(
      nlohmann::json::parse(R"({"size": {"shortest_edge": 100, "longest_edge": 5000}, "max_pixels": 9000})"),
      "p.json", d);
  EXPECT_EQ(c.max_pixels, 9000) << "max_pixels wins over size, as in the reference's __init__";
  for (const char* bad : {R"({"patch_size": 0})", R"({"patch_size": "16"})", R"({"image_std": [0.5, 0, 0.5]})",
                          R"({"image_mean": [0.5, 0.5]})", R"({"min_pixels": 100, "max_pixels": 10})",
                          R"({"do_resize": 1})", R"([1, 2])"}) {
    SCOPED_TRACE(bad);
    try {
      media::image_processor_config_from_json(nlohmann::json::parse(bad), "preprocessor_config.json", d);
      ADD_FAILURE() << "no error";
    } catch (const InputError& e) {
      EXPECT_NE(std::string(e.what()).find("preprocessor_config.json"), std::string::npos) << e.what();
    }
  }
}

TEST(ImageProcessor, PatchOrderIsBlocksOfMergeSize) {
  // A 4x4-patch image (patch 1, merge 2, T 2) whose pixel value names its position: row r of
  // pixel_values must be the patch at the reference's block order, each channel repeated for 2 frames.
  media::RgbImage img;
  img.width = 4;
  img.height = 4;
  for (int64_t y = 0; y < 4; y++)
    for (int64_t x = 0; x < 4; x++)
      for (int c = 0; c < 3; c++) img.rgb.push_back(static_cast<uint8_t>(y * 40 + x * 10 + c));
  media::ImageProcessorConfig cfg;
  cfg.patch_size = 1;
  cfg.merge_size = 2;
  cfg.temporal_patch_size = 2;
  cfg.do_rescale = cfg.do_normalize = false;
  const auto out = media::normalize_and_patchify(img, cfg);
  ASSERT_EQ(out.num_patches(), 16);
  ASSERT_EQ(out.patch_dim, 6);
  // block (0,0): (0,0) (0,1) (1,0) (1,1); block (0,1): (0,2) (0,3) (1,2) (1,3); ...
  const int order[16][2] = {{0, 0}, {0, 1}, {1, 0}, {1, 1}, {0, 2}, {0, 3}, {1, 2}, {1, 3},
                            {2, 0}, {2, 1}, {3, 0}, {3, 1}, {2, 2}, {2, 3}, {3, 2}, {3, 3}};
  for (int r = 0; r < 16; r++)
    for (int c = 0; c < 3; c++)
      for (int t = 0; t < 2; t++)
        EXPECT_EQ(out.pixel_values[static_cast<size_t>(r * 6 + c * 2 + t)], order[r][0] * 40 + order[r][1] * 10 + c);
}

}  // namespace
}  // namespace segpipe::testing
