// Every committed transformers golden passes through the model form and through a segmented pipeline
// that `segpipe plan` cut; a checkpoint with one altered weight fails.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "process_harness.h"

namespace segpipe::test {
namespace {

namespace fs = std::filesystem;

std::vector<std::string> models() {
  std::vector<std::string> m;
  for (auto& e : fs::directory_iterator(source_path("models")))
    if (fs::exists(e.path() / "goldens")) m.push_back(e.path().filename().string());
  std::sort(m.begin(), m.end());
  return m;
}

std::vector<std::string> goldens(const std::string& model) {
  std::vector<std::string> g;
  for (auto& e : fs::directory_iterator(source_path("models/" + model + "/goldens")))
    if (e.path().extension() == ".safetensors") g.push_back(e.path().string());
  std::sort(g.begin(), g.end());
  return g;
}

class CommittedGoldens : public ::testing::TestWithParam<std::string> {};

TEST_P(CommittedGoldens, PassInTheModelForm) {
  RunResult r = run_segpipe({"verify", "--model", source_path("models/" + GetParam())});
  EXPECT_EQ(r.rc, 0) << r.out << r.err;
  EXPECT_EQ(r.out.find("FAIL"), std::string::npos) << r.out;
  EXPECT_GE(static_cast<size_t>(std::count(std::string_view(r.out).begin(), std::string_view(r.out).end(), '=')),
            goldens(GetParam()).size());
}

TEST_P(CommittedGoldens, PassThroughAPlannedSegmentedPipeline) {
  std::string model = source_path("models/" + GetParam());
  RunResult inspect = run_segpipe({"inspect", model});
  ASSERT_EQ(inspect.rc, 0) << inspect.out << inspect.err;
  bool moe = inspect.out.find("experts ") != std::string::npos;
  std::vector<std::string> plan = {"plan", "--model", model, "--layer-groups", "2"};
  if (moe) plan.insert(plan.end(), {"--expert-banks", "2"});
  RunResult p = run_segpipe(plan);
  ASSERT_EQ(p.rc, 0) << p.err;
  std::string dir = temp_dir();
  write_file(dir + "/planned.yaml", p.out);
  std::vector<std::string> args = {"verify", "--pipeline", dir + "/planned.yaml", "--json", dir + "/r.json"};
  for (auto& g : goldens(GetParam())) args.insert(args.end(), {"--golden", g});
  RunResult r = run_segpipe(args);
  EXPECT_EQ(r.rc, 0) << p.out << r.out << r.err;
  EXPECT_TRUE(leftover_arenas(r.pid).empty());
}

INSTANTIATE_TEST_SUITE_P(Models, CommittedGoldens, ::testing::ValuesIn(models()), [](const auto& tp) {
  std::string s = tp.param;
  for (auto& c : s)
    if (c == '-') c = '_';
  return s;
});

TEST(CommittedGoldens, AlteredWeightIsCaughtAtItsLayer) {
  // Copy tiny-qwen3-dense, then change one element of layer 1's o_proj in the copy.
  std::string dir = temp_dir() + "/m";
  fs::copy(source_path("models/tiny-qwen3-dense"), dir, fs::copy_options::recursive);
  RunResult insp = run_segpipe({"inspect", dir});
  ASSERT_EQ(insp.rc, 0);
  // Find the tensor's offset from the header.
  std::string file = dir + "/model.safetensors";
  std::ifstream in(file, std::ios::binary);
  uint64_t n = 0;
  in.read(reinterpret_cast<char*>(&n), 8);
  std::string header(n, '\0');
  in.read(header.data(), static_cast<std::streamsize>(n));
  auto pos = header.find("\"model.layers.1.self_attn.o_proj.weight\"");
  ASSERT_NE(pos, std::string::npos);
  auto off = header.find("data_offsets", pos);
  uint64_t begin = std::stoull(header.substr(header.find('[', off) + 1));
  in.close();
  std::fstream f(file, std::ios::binary | std::ios::in | std::ios::out);
  f.seekp(static_cast<std::streamoff>(8 + n + begin + 2 * 37));
  uint16_t v = 0x3f80;  // bf16 1.0: far from the small weights there
  f.write(reinterpret_cast<char*>(&v), 2);
  f.close();
  std::vector<std::string> args = {"verify", "--model", dir};
  for (auto& g : goldens("tiny-qwen3-dense")) args.insert(args.end(), {"--golden", g});
  RunResult r = run_segpipe(args);
  EXPECT_EQ(r.rc, 1) << r.out << r.err;
  // Layer 0 still matches; layer 1 is the first to differ.
  auto l0 = r.out.find("layers.0.output");
  auto l1 = r.out.find("layers.1.output");
  ASSERT_NE(l0, std::string::npos);
  ASSERT_NE(l1, std::string::npos);
  EXPECT_NE(r.out.substr(l0, r.out.find('\n', l0) - l0).find("ok"), std::string::npos) << r.out;
  EXPECT_NE(r.out.substr(l1, r.out.find('\n', l1) - l1).find("FAIL"), std::string::npos) << r.out;
}

}  // namespace
}  // namespace segpipe::test
