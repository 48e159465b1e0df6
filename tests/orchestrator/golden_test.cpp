// Golden files (orchestrator/debugging/golden.h): loading rejects goldens that do not fit the model, reports
// unknown names, and verify_golden catches a perturbed boundary or token and fails a golden with no
// boundary to compare. The committed goldens are the files their summary.json records (sha256) and
// come from transformers (their `source`).
#include <gtest/gtest.h>
#include <stdlib.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <random>
#include <set>

#include "orchestrator/debugging/golden.h"
#include "orchestrator/drivers/runner.h"
#include "segments/model/config_file.h"
#include "segments/checkpoint/safetensors.h"
#include "segments/checkpoint/safetensors_writer.h"
#include "segments/core/errors.h"
#include "sha256.h"
#include "../segments/segments_test_support.h"

namespace segpipe {
namespace {

namespace fs = std::filesystem;

using testing::model_dir;
using testing::TempDir;

// A golden held in memory: specs in file order, bytes per tensor, metadata.
struct GoldenFile {
  std::vector<TensorSpec> specs;
  std::map<std::string, std::string> bytes;
  std::map<std::string, std::string> meta;

  static GoldenFile read(const std::string& path) {
    auto f = SafetensorsFile::open(path);
    GoldenFile g;
    g.meta = f->header().metadata;
    std::vector<const TensorEntry*> order;
    for (auto& [n, e] : f->header().tensors) order.push_back(&e);
    std::sort(order.begin(), order.end(), [](auto* a, auto* b) { return a->begin < b->begin; });
    for (const TensorEntry* e : order) {
      g.specs.push_back({e->name, e->dtype, e->shape});
      TensorView v = f->view(e->name);
      g.bytes[e->name] = std::string(static_cast<const char*>(v.data), v.nbytes);
    }
    return g;
  }
  void write(const std::string& path) const {
    write_safetensors(path, specs, meta, [&](const TensorSpec& t, uint64_t first, uint64_t n, void* o) {
      size_t es = dtype_size(t.dtype);
      std::memcpy(o, bytes.at(t.name).data() + first * es, n * es);
    });
  }
  void add(const std::string& name, DType dt, std::vector<int64_t> shape) {
    TensorSpec s{name, dt, shape};
    specs.push_back(s);
    bytes[name] = std::string(s.nbytes(), '\0');
  }
  float* floats(const std::string& name) { return reinterpret_cast<float*>(bytes.at(name).data()); }
  int64_t* ids(const std::string& name) { return reinterpret_cast<int64_t*>(bytes.at(name).data()); }
};

void expect_load_error(const std::string& path, const ModelConfig& cfg, std::initializer_list<std::string> needles) {
  testing::expect_input_error([&] { load_golden(path, cfg); }, needles);
}

const std::string kMoeShort = model_dir("tiny-qwen3-moe") + "/goldens/short.safetensors";

TEST(GoldenLoad, CommittedGoldenLoads) {
  ModelConfig cfg = read_model_config(model_dir("tiny-qwen3-moe"));
  Golden g = load_golden(kMoeShort, cfg);
  EXPECT_EQ(g.metadata.at("format"), "segpipe-golden/1");
  EXPECT_FALSE(g.input_ids.empty());
  EXPECT_TRUE(g.has_generated);
  EXPECT_TRUE(g.unknown.empty());
  EXPECT_TRUE(g.tensors.count("layers.0.router_logits"));
  EXPECT_FALSE(g.tensors.count("layers.1.router_logits"));  // layer 1 is dense (mlp_only_layers)
}

TEST(GoldenLoad, WrongFormatMetadata) {
  TempDir d;
  ModelConfig cfg = read_model_config(model_dir("tiny-qwen3-moe"));
  GoldenFile g = GoldenFile::read(kMoeShort);
  g.meta["format"] = "segpipe-golden/2";
  g.write(d.file("g.safetensors"));
  expect_load_error(d.file("g.safetensors"), cfg, {d.file("g.safetensors"), "format"});
  g.meta.erase("format");
  g.write(d.file("g.safetensors"));
  expect_load_error(d.file("g.safetensors"), cfg, {d.file("g.safetensors"), "format"});
}

TEST(GoldenLoad, ModelTypeMismatch) {
  ModelConfig moe = read_model_config(model_dir("tiny-qwen3-moe"));
  std::string dense_golden = model_dir("tiny-qwen3-dense") + "/goldens/short.safetensors";
  expect_load_error(dense_golden, moe, {dense_golden, "model_type"});
  ModelConfig omni = read_model_config(model_dir("tiny-qwen3-omni"));
  expect_load_error(kMoeShort, omni, {kMoeShort, "model_type"});
}

TEST(GoldenLoad, ShapeThatDoesNotFitTheModel) {
  // Same model_type (qwen3_moe), other shapes: the f32 model has hidden 64, 16 experts.
  ModelConfig moe = read_model_config(model_dir("tiny-qwen3-moe"));
  std::string f32_golden = model_dir("tiny-qwen3-moe-f32") + "/goldens/short.safetensors";
  expect_load_error(f32_golden, moe, {f32_golden, "shape"});
  // A dense golden relabelled as qwen3_moe: its shapes (hidden 80) do not fit either.
  TempDir d;
  GoldenFile g = GoldenFile::read(model_dir("tiny-qwen3-dense") + "/goldens/short.safetensors");
  g.meta["model_type"] = "qwen3_moe";
  g.write(d.file("dense.safetensors"));
  expect_load_error(d.file("dense.safetensors"), moe, {d.file("dense.safetensors")});
  // A router tensor with the wrong number of experts names that tensor.
  GoldenFile m = GoldenFile::read(kMoeShort);
  int64_t T = m.specs[0].shape[0];
  for (auto& s : m.specs) T = s.name == "input_ids" ? s.shape[0] : T;
  m.specs.erase(std::remove_if(m.specs.begin(), m.specs.end(), [](auto& s) { return s.name == "layers.2.router_logits"; }),
                m.specs.end());
  m.add("layers.2.router_logits", DType::F32, {T, 7});
  m.write(d.file("router.safetensors"));
  expect_load_error(d.file("router.safetensors"), moe, {"layers.2.router_logits", "shape"});
  // A boundary stored as F16 is rejected by dtype.
  GoldenFile h = GoldenFile::read(kMoeShort);
  for (auto& s : h.specs)
    if (s.name == "norm") s.dtype = DType::F16;
  h.bytes["norm"].resize(h.bytes["norm"].size() / 2);
  h.write(d.file("f16.safetensors"));
  expect_load_error(d.file("f16.safetensors"), moe, {"'norm'", "F32"});
}

TEST(GoldenLoad, LayerIndexBeyondTheModel) {
  TempDir d;
  ModelConfig cfg = read_model_config(model_dir("tiny-qwen3-moe"));
  GoldenFile g = GoldenFile::read(kMoeShort);
  int64_t T = static_cast<int64_t>(g.bytes["input_ids"].size() / 8);
  g.add("layers.5.output", DType::F32, {T, cfg.hidden});  // layers 0..4
  g.write(d.file("g.safetensors"));
  expect_load_error(d.file("g.safetensors"), cfg, {"layers.5.output"});
  // A router for a dense layer.
  GoldenFile r = GoldenFile::read(kMoeShort);
  r.add("layers.1.router_logits", DType::F32, {T, cfg.num_experts});
  r.write(d.file("r.safetensors"));
  expect_load_error(d.file("r.safetensors"), cfg, {"layers.1.router_logits"});
}

// Regression (found by these tests, fixed in 3b70836): a layer index too large for int made std::stoi
// throw std::out_of_range, which is not an InputError (segpipe verify exited 3, not 2).
TEST(GoldenLoad, HugeLayerIndexIsAnInputError) {
  TempDir d;
  ModelConfig cfg = read_model_config(model_dir("tiny-qwen3-moe"));
  GoldenFile g = GoldenFile::read(kMoeShort);
  int64_t T = static_cast<int64_t>(g.bytes["input_ids"].size() / 8);
  g.add("layers.99999999999.output", DType::F32, {T, cfg.hidden});
  g.write(d.file("g.safetensors"));
  expect_load_error(d.file("g.safetensors"), cfg, {"layers.99999999999.output"});
}

// Regression (found by these tests, fixed in 3b70836): tensor names were matched with std::regex,
// whose libstdc++ implementation recurses once per character: a golden with a 200000-digit layer
// index overflowed the stack (SIGSEGV instead of exit 2). Run in a child process so that a crash
// fails only this test.
TEST(GoldenLoadDeathTest, VeryLongTensorNameDoesNotCrash) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  TempDir d;
  ModelConfig cfg = read_model_config(model_dir("tiny-qwen3-moe"));
  GoldenFile g = GoldenFile::read(kMoeShort);
  g.add("layers." + std::string(200000, '1') + ".outputs", DType::F32, {0});
  g.write(d.file("long.safetensors"));
  EXPECT_EXIT(
      {
        try {
          Golden l = load_golden(d.file("long.safetensors"), cfg);
          std::exit(l.unknown.size() == 1 ? 0 : 3);
        } catch (const InputError&) {
          std::exit(0);
        } catch (...) {
          std::exit(4);
        }
      },
      ::testing::ExitedWithCode(0), "");
}

TEST(GoldenLoad, UnknownNamesAreReported) {
  TempDir d;
  ModelConfig cfg = read_model_config(model_dir("tiny-qwen3-moe"));
  GoldenFile g = GoldenFile::read(kMoeShort);
  g.add("attention_mask", DType::I64, {3});
  g.add("layers.0.mlp_output", DType::F32, {2, 2});
  g.write(d.file("g.safetensors"));
  Golden l = load_golden(d.file("g.safetensors"), cfg);
  std::sort(l.unknown.begin(), l.unknown.end());
  EXPECT_EQ(l.unknown, (std::vector<std::string>{"attention_mask", "layers.0.mlp_output"}));
  EXPECT_FALSE(l.tensors.count("attention_mask"));
}

TEST(GoldenLoad, BadInputIds) {
  TempDir d;
  ModelConfig cfg = read_model_config(model_dir("tiny-qwen3-moe"));
  GoldenFile g = GoldenFile::read(kMoeShort);
  g.ids("input_ids")[0] = cfg.vocab;  // one past the vocabulary
  g.write(d.file("v.safetensors"));
  expect_load_error(d.file("v.safetensors"), cfg, {"input_ids"});
  GoldenFile n = GoldenFile::read(kMoeShort);
  n.ids("input_ids")[1] = -4;
  n.write(d.file("n.safetensors"));
  expect_load_error(d.file("n.safetensors"), cfg, {"input_ids"});
  GoldenFile m = GoldenFile::read(kMoeShort);
  m.specs.erase(std::remove_if(m.specs.begin(), m.specs.end(), [](auto& s) { return s.name == "input_ids"; }), m.specs.end());
  m.write(d.file("m.safetensors"));
  expect_load_error(d.file("m.safetensors"), cfg, {"input_ids"});
}

class GoldenVerify : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = model_dir("tiny-qwen3-moe");
    cfg_ = read_model_config(dir_);
    RunPlan p = default_plan(dir_, cfg_);
    p.threads = 2;
    p.max_seq = 128;
    plan_ = p;
  }
  GoldenReport verify(const std::string& path) {
    auto r = make_inproc_runner(plan_);
    return verify_golden(*r, load_golden(path, cfg_), cfg_, 1e-4);
  }
  // Verifies the committed golden after `change` (a copy of it, written to a temporary file).
  GoldenReport verify_changed(const std::function<void(GoldenFile&)>& change) {
    TempDir d;
    GoldenFile g = GoldenFile::read(kMoeShort);
    change(g);
    g.write(d.file("changed.safetensors"));
    return verify(d.file("changed.safetensors"));
  }
  // The verdict on boundary `n`, which must be the only one that failed.
  static const BoundaryResult& only_failure(const GoldenReport& r, const std::string& n) {
    EXPECT_FALSE(r.passed);
    for (auto& x : r.boundaries)
      if (x.name != n) EXPECT_TRUE(x.passed) << x.name;
    const BoundaryResult& b = find(r, n);
    EXPECT_FALSE(b.passed);
    return b;
  }
  static const BoundaryResult& find(const GoldenReport& r, const std::string& n) {
    for (auto& b : r.boundaries)
      if (b.name == n) return b;
    static BoundaryResult none;
    none.name = "(missing " + n + ")";
    none.passed = false;
    ADD_FAILURE() << "no boundary " << n;
    return none;
  }
  std::string dir_;
  ModelConfig cfg_;
  RunPlan plan_;
};

TEST_F(GoldenVerify, CommittedGoldenPasses) {
  GoldenReport r = verify(kMoeShort);
  EXPECT_TRUE(r.passed);
  // embeddings, 5 layer outputs, 4 routers, norm, logits, generated_ids
  EXPECT_EQ(r.boundaries.size(), 13u);
  for (auto& b : r.boundaries) EXPECT_TRUE(b.passed) << b.name << " " << b.rel_l2;
}

TEST_F(GoldenVerify, PerturbedLayerOutputFailsOnlyThatBoundary) {
  GoldenReport r = verify_changed([](GoldenFile& g) {
    float* v = g.floats("layers.2.output");
    size_t n = g.bytes.at("layers.2.output").size() / 4;
    // Noise of relative L2 norm 1e-3: each element gets +-1e-3 * rms(ref).
    double ss = 0;
    for (size_t i = 0; i < n; i++) ss += static_cast<double>(v[i]) * v[i];
    double rms = std::sqrt(ss / static_cast<double>(n));
    std::mt19937 rng(1);
    for (size_t i = 0; i < n; i++) v[i] += static_cast<float>((rng() % 2 ? 1e-3 : -1e-3) * rms);
  });
  EXPECT_NEAR(only_failure(r, "layers.2.output").rel_l2, 1e-3, 2e-4);
}

TEST_F(GoldenVerify, ChangedGeneratedIdFailsGeneratedIds) {
  size_t n = 0;
  GoldenReport r = verify_changed([&](GoldenFile& g) {
    int64_t* ids = g.ids("generated_ids");
    n = g.bytes["generated_ids"].size() / 8;
    ASSERT_GE(n, 2u);
    ids[n - 1] = (ids[n - 1] + 1) % cfg_.vocab;
  });
  const BoundaryResult& b = only_failure(r, "generated_ids");
  EXPECT_NE(b.note.find("first difference at step " + std::to_string(n - 1)), std::string::npos) << b.note;
}

TEST_F(GoldenVerify, SkippedBoundariesAreListed) {
  GoldenReport r = verify_changed([](GoldenFile& g) {
    std::erase_if(g.specs, [](auto& s) { return s.name == "norm" || s.name == "logits"; });
  });
  EXPECT_TRUE(r.passed);
  EXPECT_NE(std::find(r.skipped.begin(), r.skipped.end(), "norm"), r.skipped.end());
  EXPECT_NE(std::find(r.skipped.begin(), r.skipped.end(), "logits"), r.skipped.end());
}

TEST_F(GoldenVerify, GoldenWithOnlyInputIdsFails) {
  GoldenReport r = verify_changed([](GoldenFile& g) { std::erase_if(g.specs, [](auto& s) { return s.name != "input_ids"; }); });
  EXPECT_FALSE(r.passed);
  ASSERT_EQ(r.boundaries.size(), 1u);
  EXPECT_EQ(r.boundaries[0].name, kNoBoundary);
  EXPECT_FALSE(r.boundaries[0].passed);
  // Every boundary the format defines for this model is listed as skipped: embeddings, 5 layers,
  // 4 routers, norm, logits, generated_ids.
  EXPECT_EQ(r.skipped.size(), 13u);
}

// What is wrong with a goldens folder against its summary.json: a file whose sha256 differs from the
// recorded one, a golden the summary does not list, a source (summary or file metadata) that is not
// transformers. Empty when all holds.
std::vector<std::string> provenance_problems(const fs::path& dir) {
  using testing_sha256::sha256_file;
  std::vector<std::string> out;
  std::ifstream in(dir / "summary.json");
  const nlohmann::json j = nlohmann::json::parse(in, nullptr, false);
  if (!j.is_object() || !j.contains("goldens") || !j["goldens"].is_array()) return {dir.string() + ": no summary.json"};
  const std::string source = j.value("source", "");
  if (source.rfind("transformers ", 0) != 0) out.push_back(dir.string() + ": summary source '" + source + "'");
  std::set<std::string> listed;
  for (const auto& g : j["goldens"]) {
    const std::string file = g.value("file", ""), want = g.value("sha256", "");
    listed.insert(file);
    const fs::path p = dir / file;
    if (want.size() != 64 || sha256_file(p.string()) != want) {
      out.push_back(p.string() + ": sha256 differs from summary.json");
      continue;
    }
    try {
      const auto meta = SafetensorsFile::open(p.string())->header().metadata;
      const auto it = meta.find("source");
      const std::string s = it == meta.end() ? "" : it->second;
      if (s.rfind("transformers ", 0) != 0 || s != source) out.push_back(p.string() + ": source '" + s + "'");
    } catch (const std::exception& e) {
      out.push_back(p.string() + ": " + e.what());
    }
  }
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().extension() == ".safetensors" && !listed.count(e.path().filename().string()))
      out.push_back(e.path().string() + ": not in summary.json");
  return out;
}

TEST(GoldenProvenance, Sha256OfAKnownString) {
  EXPECT_EQ(testing_sha256::sha256_hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(testing_sha256::sha256_hex(std::string(1000, 'a')),
            "41edece42d63e8d9bf515a9ba6932e1c20cbc9f5a5d134645adb5db1b9737ea3");
}

TEST(GoldenProvenance, CommittedGoldensMatchTheirHashesAndSource) {
  int dirs = 0;
  for (const auto& m : fs::directory_iterator(std::string(SEGPIPE_SOURCE_DIR) + "/models")) {
    if (!fs::is_directory(m.path() / "goldens")) continue;
    dirs++;
    for (const auto& p : provenance_problems(m.path() / "goldens")) ADD_FAILURE() << p;
  }
  EXPECT_GE(dirs, 6);
}

TEST(GoldenProvenance, AChangedByteOrANonTransformersSourceIsCaught) {
  TempDir d;
  const fs::path src = model_dir("tiny-qwen3-moe") + "/goldens", dst = d.file("goldens");
  fs::copy(src, dst);
  ASSERT_TRUE(provenance_problems(dst).empty());
  // One byte of a tensor changed: its hash no longer matches.
  {
    std::fstream f(dst / "mid.safetensors", std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(-1, std::ios::end);
    char c = 0;
    f.get(c);
    f.seekp(-1, std::ios::end);
    f.put(static_cast<char>(c ^ 1));
  }
  auto p = provenance_problems(dst);
  ASSERT_EQ(p.size(), 1u);
  EXPECT_NE(p[0].find("mid.safetensors: sha256"), std::string::npos) << p[0];
  // A golden rewritten by something else, with its summary hash updated to match: its source fails.
  fs::copy_file(src / "mid.safetensors", dst / "mid.safetensors", fs::copy_options::overwrite_existing);
  GoldenFile g = GoldenFile::read((src / "short.safetensors").string());
  g.meta["source"] = "segpipe dump";
  g.write((dst / "short.safetensors").string());
  std::ifstream in(dst / "summary.json");
  nlohmann::json j = nlohmann::json::parse(in);
  in.close();
  for (auto& e : j["goldens"])
    if (e["file"] == "short.safetensors") e["sha256"] = testing_sha256::sha256_file((dst / "short.safetensors").string());
  std::ofstream(dst / "summary.json") << j.dump(1);
  p = provenance_problems(dst);
  ASSERT_EQ(p.size(), 1u);
  EXPECT_NE(p[0].find("short.safetensors: source 'segpipe dump'"), std::string::npos) << p[0];
}

TEST(GoldenCompare, ErrorsAndBitwise) {
  std::vector<float> ref = {3.f, 4.f, 0.f}, ours = {3.f, 4.f, 0.5f};
  BoundaryResult r;
  compare_floats(ours.data(), ref.data(), 3, r);
  EXPECT_DOUBLE_EQ(r.max_abs, 0.5);
  EXPECT_DOUBLE_EQ(r.rel_l2, 0.5 / 5.0);
  EXPECT_FALSE(r.bitwise);
  compare_floats(ref.data(), ref.data(), 3, r);
  EXPECT_TRUE(r.bitwise);
  EXPECT_EQ(r.rel_l2, 0.0);
  std::vector<float> nan = {3.f, NAN, 0.f};
  compare_floats(nan.data(), ref.data(), 3, r);
  EXPECT_TRUE(std::isinf(r.rel_l2));
  EXPECT_FALSE(r.bitwise);
}

}  // namespace
}  // namespace segpipe
