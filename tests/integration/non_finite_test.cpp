// NaN or Inf in a checkpoint's weights: generate used to exit 0 printing token 0 forever, and inspect
// called the checkpoint complete. Now the run stops with exit 3 naming the segment and the layer where
// the first non-finite value appeared (logits are always checked), and inspect --check-values finds it.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "process_harness.h"

namespace segpipe::test {
namespace {

namespace fs = std::filesystem;

struct BrokenModel {
  std::string root = temp_dir(), dir = root + "/m";
  BrokenModel(const std::string& tensor, uint16_t bits) {
    fs::copy(source_path("models/tiny-qwen3-dense"), dir, fs::copy_options::recursive);
    poke_bf16(dir + "/model.safetensors", tensor, 37, bits);
  }
  ~BrokenModel() { fs::remove_all(root); }
  std::string pipeline(const std::string& transport) const {
    std::string p = root + "/" + transport + ".yaml";
    write_file(p, "version: 1\nmodel: " + dir + "\ntransport: " + transport +
                      "\nsegments:\n  - {name: embed, kind: embeddings}\n  - {name: first, kind: layers, layers: [0, 0]}\n"
                      "  - {name: rest, kind: layers, layers: [1, 2]}\n  - {name: head, kind: lm_head}\n");
    return p;
  }
};

constexpr uint16_t kNaN = 0x7fc0, kInf = 0x7f80;

void expect_stopped(const RunResult& r, const std::string& segment, const std::string& where) {
  EXPECT_EQ(r.rc, 3) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  EXPECT_NE(r.err.find("segment '" + segment + "'"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("non-finite " + where), std::string::npos) << r.err;
}

// `segpipe generate` of `ids` and `new_tokens` more over the broken model's pipeline on `transport`.
RunResult generate(const BrokenModel& m, const std::string& transport, const std::string& ids, int new_tokens) {
  return run_segpipe({"generate", "--pipeline", m.pipeline(transport), "--tokens", ids, "--ids", "--max-new-tokens",
                      std::to_string(new_tokens)});
}

TEST(NonFiniteWeights, StopTheRunNamingSegmentAndLayer) {
  BrokenModel m("model.layers.1.self_attn.o_proj.weight", kNaN);
  for (const std::string transport : {"shm", "inproc"}) {
    RunResult r = generate(m, transport, "7 8 9", 4);
    expect_stopped(r, "rest", "output of layer 1");
    EXPECT_TRUE(leftover_arenas(r.pid).empty());
  }
}

TEST(NonFiniteWeights, InTheEmbeddingTableAreNamedThere) {
  // tiny-qwen3-dense ties lm_head to the embeddings: the row of token 0 holds an Inf.
  BrokenModel m("model.embed_tokens.weight", kInf);
  RunResult r = generate(m, "shm", "0 1", 2);
  expect_stopped(r, "embed", "embeddings");
}

TEST(NonFiniteWeights, InTheFinalNormGiveNonFiniteLogits) {
  BrokenModel m("model.norm.weight", kNaN);
  for (const std::string transport : {"shm", "inproc"}) {
    RunResult r = generate(m, transport, "7 8 9", 4);
    expect_stopped(r, "head", "logits");
  }
}

TEST(NonFiniteWeights, InspectCheckValuesFindsThem) {
  BrokenModel m("model.layers.2.mlp.down_proj.weight", kNaN);
  RunResult plain = run_segpipe({"inspect", m.dir});
  EXPECT_EQ(plain.rc, 0) << "without --check-values no weight is read";
  RunResult r = run_segpipe({"inspect", m.dir, "--check-values"});
  EXPECT_EQ(r.rc, 1) << r.out << r.err;
  EXPECT_NE(r.out.find("NON-FINITE   model.layers.2.mlp.down_proj.weight: 1 NaN/Inf value (first at element 37)"),
            std::string::npos)
      << r.out;
  RunResult clean = run_segpipe({"inspect", source_path("models/tiny-qwen3-dense"), "--check-values"});
  EXPECT_EQ(clean.rc, 0) << clean.out;
  EXPECT_NE(clean.out.find("every weight finite"), std::string::npos) << clean.out;
}

// A wrong dtype is said to be the dtype: "I32 [700, 64], expected [700, 64]" did not say what was wrong.
TEST(InspectMessages, AWrongDtypeIsNamedAsTheDtype) {
  std::string root = temp_dir(), dir = root + "/m";
  fs::copy(source_path("models/tiny-qwen3-dense"), dir, fs::copy_options::recursive);
  std::string file = dir + "/model.safetensors";
  std::ifstream in(file, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  in.close();
  uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  std::string header = bytes.substr(8, n);
  // q_norm is [16] BF16 (32 bytes): as I16 the size stays the same, only the dtype is wrong.
  const std::string key = "\"model.layers.0.self_attn.q_norm.weight\":{\"dtype\":\"BF16\"";
  auto at = header.find(key);
  ASSERT_NE(at, std::string::npos) << header.substr(0, 300);
  header.replace(at + key.size() - 6, 6, "\"I16\" ");  // a space keeps the header's length
  ASSERT_EQ(header.size(), n);
  std::ofstream(file, std::ios::binary) << bytes.substr(0, 8) << header << bytes.substr(8 + n);
  RunResult r = run_segpipe({"inspect", dir});
  EXPECT_EQ(r.rc, 1) << r.out << r.err;
  EXPECT_NE(r.out.find("model.layers.0.self_attn.q_norm.weight: I16 [16]: dtype I16, expected F32, BF16 or F16"),
            std::string::npos)
      << r.out;
  fs::remove_all(root);
}

}  // namespace
}  // namespace segpipe::test
