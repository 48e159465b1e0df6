// Writes the seed corpora of the fuzz targets from the committed checkpoints:
//   OUT/safetensors_header/  real headers of models/**/*.safetensors in the target's input layout
//                            (8 bytes data-region size + header text), plus small complete files
//   OUT/model_config/        models/*/config.json and the config of every synthetic preset
//   OUT/golden/              the committed short goldens (complete files)
// usage: make_fuzz_seeds SOURCE_DIR OUT_DIR
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include "segments/checkpoint/safetensors_writer.h"
#include "segments/model/synthetic.h"

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
  return n > 0 ? 0 : 1;
}
