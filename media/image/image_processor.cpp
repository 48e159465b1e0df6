#include "media/image/image_processor.h"

#include "media/image/bicubic_resize.h"
#include "media/image/smart_resize.h"
#include "segments/core/errors.h"

namespace segpipe::media {

ImageProcessorConfig qwen3_omni_image_processor_config() { return ImageProcessorConfig{}; }

namespace {

int64_t positive_int(const nlohmann::json& v, const std::string& file, const std::string& key) {
  if (!v.is_number_integer() || v.get<int64_t>() <= 0)
    throw InputError(file + ": " + key + " must be a positive integer, got " + v.dump());
  return v.get<int64_t>();
}

std::array<float, 3> three_floats(const nlohmann::json& v, const std::string& file, const std::string& key,
                                  bool positive) {
  std::array<float, 3> out{};
  if (v.is_number()) {
    out.fill(v.get<float>());  // the reference accepts one float for all channels
  } else if (v.is_array() && v.size() == 3) {
    for (size_t i = 0; i < 3; i++) {
      if (!v[i].is_number()) throw InputError(file + ": " + key + " must hold numbers, got " + v.dump());
      out[i] = v[i].get<float>();
    }
  } else {
    throw InputError(file + ": " + key + " must be a number or a list of 3 numbers, got " + v.dump());
  }
  if (positive)
    for (float x : out)
      if (!(x > 0.0f)) throw InputError(file + ": " + key + " must be positive, got " + v.dump());
  return out;
}

bool boolean(const nlohmann::json& v, const std::string& file, const std::string& key) {
  if (!v.is_boolean()) throw InputError(file + ": " + key + " must be true or false, got " + v.dump());
  return v.get<bool>();
}

}  // namespace

ImageProcessorConfig image_processor_config_from_json(const nlohmann::json& j, const std::string& file,
                                                      const ImageProcessorConfig& defaults) {
  if (!j.is_object()) throw InputError(file + ": expected a JSON object");
  ImageProcessorConfig c = defaults;
  // A key set to null means "not given" (transformers writes None that way).
  auto has = [&](const nlohmann::json& o, const char* k) { return o.contains(k) && !o[k].is_null(); };
  if (has(j, "patch_size")) c.patch_size = positive_int(j["patch_size"], file, "patch_size");
  if (has(j, "merge_size")) c.merge_size = positive_int(j["merge_size"], file, "merge_size");
  if (has(j, "temporal_patch_size"))
    c.temporal_patch_size = positive_int(j["temporal_patch_size"], file, "temporal_patch_size");
  if (has(j, "size")) {
    const auto& s = j["size"];
    if (!s.is_object()) throw InputError(file + ": size must be an object, got " + s.dump());
    if (has(s, "shortest_edge")) c.min_pixels = positive_int(s["shortest_edge"], file, "size.shortest_edge");
    if (has(s, "longest_edge")) c.max_pixels = positive_int(s["longest_edge"], file, "size.longest_edge");
  }
  if (has(j, "min_pixels")) c.min_pixels = positive_int(j["min_pixels"], file, "min_pixels");
  if (has(j, "max_pixels")) c.max_pixels = positive_int(j["max_pixels"], file, "max_pixels");
  if (c.min_pixels > c.max_pixels)
    throw InputError(file + ": min_pixels " + std::to_string(c.min_pixels) + " is above max_pixels " +
                     std::to_string(c.max_pixels));
  if (has(j, "image_mean")) c.image_mean = three_floats(j["image_mean"], file, "image_mean", false);
  if (has(j, "image_std")) c.image_std = three_floats(j["image_std"], file, "image_std", true);
  if (has(j, "rescale_factor")) {
    const auto& v = j["rescale_factor"];
    if (!v.is_number() || !(v.get<double>() > 0.0))
      throw InputError(file + ": rescale_factor must be a positive number, got " + v.dump());
    c.rescale_factor = v.get<double>();
  }
  if (has(j, "do_resize")) c.do_resize = boolean(j["do_resize"], file, "do_resize");
  if (has(j, "do_rescale")) c.do_rescale = boolean(j["do_rescale"], file, "do_rescale");
  if (has(j, "do_normalize")) c.do_normalize = boolean(j["do_normalize"], file, "do_normalize");
  return c;
}

ProcessedImage normalize_and_patchify(const RgbImage& img, const ImageProcessorConfig& cfg) {
  const int64_t p = cfg.patch_size, m = cfg.merge_size, T = cfg.temporal_patch_size;
  SEGPIPE_ASSERT(img.height % (p * m) == 0 && img.width % (p * m) == 0);
  // rescale_and_normalize of the torchvision backend: with both steps on, mean and std are divided by
  // the rescale factor once (float32 tensors times a Python float) and the image is normalized with
  // them: sub then div, in float32.
  std::array<float, 3> sub{}, div{};
  float scale = 1.0f;
  const bool fused = cfg.do_rescale && cfg.do_normalize;
  for (int c = 0; c < 3; c++) {
    const float inv = static_cast<float>(1.0 / cfg.rescale_factor);
    sub[c] = fused ? cfg.image_mean[c] * inv : cfg.image_mean[c];
    div[c] = fused ? cfg.image_std[c] * inv : cfg.image_std[c];
  }
  if (cfg.do_rescale && !cfg.do_normalize) scale = static_cast<float>(cfg.rescale_factor);
  auto value = [&](int64_t y, int64_t x, int c) {
    const float v = static_cast<float>(img.at(y, x, c));
    if (cfg.do_normalize) return (v - sub[c]) / div[c];
    if (cfg.do_rescale) return v * scale;
    return v;
  };

  ProcessedImage out;
  out.resized_height = img.height;
  out.resized_width = img.width;
  out.grid_t = 1;  // one still image, repeated to T frames
  out.grid_h = img.height / p;
  out.grid_w = img.width / p;
  out.patch_dim = 3 * T * p * p;
  out.pixel_values.resize(static_cast<size_t>(out.num_patches() * out.patch_dim));
  // Row order: blocks of m x m patches (block rows, block columns), then the patch inside its block;
  // column order: channel, frame, row in the patch, column in the patch (the reference's permute
  // (0, 1, 4, 7, 5, 8, 3, 2, 6, 9) of [B, t, T, C, h/m, m, p, w/m, m, p]).
  const int64_t bh_n = out.grid_h / m, bw_n = out.grid_w / m;
  float* dst = out.pixel_values.data();
  for (int64_t bh = 0; bh < bh_n; bh++)
    for (int64_t bw = 0; bw < bw_n; bw++)
      for (int64_t mh = 0; mh < m; mh++)
        for (int64_t mw = 0; mw < m; mw++) {
          const int64_t y0 = (bh * m + mh) * p, x0 = (bw * m + mw) * p;
          for (int c = 0; c < 3; c++)
            for (int64_t t = 0; t < T; t++)
              for (int64_t py = 0; py < p; py++)
                for (int64_t px = 0; px < p; px++) *dst++ = value(y0 + py, x0 + px, c);
        }
  return out;
}

ProcessedImage preprocess_image(const RgbImage& image, const ImageProcessorConfig& cfg, const std::string& name) {
  const int64_t factor = cfg.patch_size * cfg.merge_size;
  if (!cfg.do_resize) {
    if (image.height % factor != 0 || image.width % factor != 0)
      throw InputError(name + ": with do_resize off the image sides must be multiples of " +
                       std::to_string(factor) + ", got " + std::to_string(image.width) + "x" +
                       std::to_string(image.height));
    return normalize_and_patchify(image, cfg);
  }
  const ResizedSize size = smart_resize(image.height, image.width, factor, cfg.min_pixels, cfg.max_pixels, name);
  return normalize_and_patchify(resize_bicubic_antialias(image, size.height, size.width), cfg);
}

}  // namespace segpipe::media
