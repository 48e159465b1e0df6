// Sharded checkpoints (segments/checkpoint/checkpoint.h): index errors name the index, the shard or
// the tensor; a tensor is read from its shard without opening or mapping the others.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "segments/checkpoint/checkpoint.h"
#include "segments/checkpoint/safetensors_writer.h"
#include "segments_test_support.h"

namespace segpipe {
namespace {

using testing::expect_input_error;
using testing::TempDir;
using testing::write_bytes;

void fill_pattern(const TensorSpec& t, uint64_t first, uint64_t n, void* out) {
  for (uint64_t i = 0; i < n; i++) static_cast<float*>(out)[i] = static_cast<float>(first + i) + (t.name == "b" ? 0.5f : 0.f);
}

// config.json, shard 1 holding "a" (and "c"), shard 2 holding "b"; the index as given.
void make_sharded(const TempDir& d, const nlohmann::json& weight_map) {
  write_bytes(d.file("config.json"), R"({"model_type":"qwen3"})");
  write_safetensors(d.file("model-00001-of-00002.safetensors"), {{"a", DType::F32, {1000}}, {"c", DType::F32, {10}}}, {},
                    fill_pattern);
  write_safetensors(d.file("model-00002-of-00002.safetensors"), {{"b", DType::F32, {3000}}}, {}, fill_pattern);
  write_bytes(d.file("model.safetensors.index.json"),
              nlohmann::json{{"metadata", {{"total_size", 16040}}}, {"weight_map", weight_map}}.dump());
}

const nlohmann::json kGoodMap = {{"a", "model-00001-of-00002.safetensors"},
                                 {"c", "model-00001-of-00002.safetensors"},
                                 {"b", "model-00002-of-00002.safetensors"}};

TEST(ShardedCheckpoint, ReadsEachTensorFromItsShard) {
  TempDir d;
  make_sharded(d, kGoodMap);
  auto ck = Checkpoint::open(d.path().string());
  EXPECT_EQ(ck->tensor_names(), (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_EQ(ck->files().size(), 2u);
  TensorView b = ck->view("b");
  ASSERT_EQ(b.numel(), 3000);
  for (int64_t i = 0; i < b.numel(); i++) ASSERT_EQ(static_cast<const float*>(b.data)[i], static_cast<float>(i) + 0.5f);
  EXPECT_NO_THROW(ck->validate_all());
}

TEST(ShardedCheckpoint, TensorInShardTwoMapsNothingOfShardOne) {
  TempDir d;
  make_sharded(d, kGoodMap);
  auto ck = Checkpoint::open(d.path().string());
  EXPECT_EQ(ck->mapped_tensor_bytes(), 0u);
  TensorView b = ck->view("b");
  EXPECT_EQ(ck->mapped_tensor_bytes(), 3000u * 4) << "only 'b' may be mapped";
  EXPECT_EQ(ck->mapped_tensor_bytes(), b.nbytes);
}

TEST(ShardedCheckpoint, ShardOneIsNotEvenOpenedForATensorInShardTwo) {
  TempDir d;
  make_sharded(d, kGoodMap);
  // Shard 1 is garbage: reading 'b' must still work, since the shards are opened lazily.
  write_bytes(d.file("model-00001-of-00002.safetensors"), "garbage");
  auto ck = Checkpoint::open(d.path().string());
  EXPECT_EQ(ck->view("b").numel(), 3000);
  expect_input_error([&] { ck->view("a"); }, {"model-00001-of-00002.safetensors"});
}

TEST(ShardedCheckpoint, CommittedThreeShardModelMapsOnlyTheRequestedTensor) {
  auto ck = Checkpoint::open(testing::model_dir("tiny-qwen3-moe"));
  ASSERT_EQ(ck->files().size(), 3u);
  // A tensor the index places in the last shard.
  nlohmann::json index = read_json_file(testing::model_dir("tiny-qwen3-moe") + "/model.safetensors.index.json");
  std::string name;
  for (auto& [k, v] : index["weight_map"].items())
    if (v == "model-00003-of-00003.safetensors" && name.empty()) name = k;
  ASSERT_FALSE(name.empty());
  ASSERT_NE(ck->file_of(name).find("00003-of-00003"), std::string::npos);
  TensorView v = ck->view(name);
  EXPECT_GT(v.nbytes, 0u);
  EXPECT_EQ(ck->mapped_tensor_bytes(), v.nbytes);
  uint64_t shard3_total = 0;
  for (auto& [k, f] : index["weight_map"].items())
    if (f == "model-00003-of-00003.safetensors") shard3_total += ck->entry(k).end - ck->entry(k).begin;
  EXPECT_LT(v.nbytes, shard3_total);
  EXPECT_EQ(ck->mapped_tensor_bytes(), v.nbytes) << "reading headers maps nothing";
}

TEST(ShardedCheckpoint, MissingShardFile) {
  TempDir d;
  nlohmann::json map = kGoodMap;
  map["b"] = "model-00003-of-00003.safetensors";
  make_sharded(d, map);
  auto ck = Checkpoint::open(d.path().string());
  expect_input_error([&] { ck->view("b"); }, {"model-00003-of-00003.safetensors"});
  expect_input_error([&] { ck->validate_all(); }, {"model-00003-of-00003.safetensors"});
  EXPECT_NO_THROW(ck->view("a"));
}

TEST(ShardedCheckpoint, IndexPlacesTensorInAShardThatLacksIt) {
  TempDir d;
  nlohmann::json map = kGoodMap;
  map["b"] = "model-00001-of-00002.safetensors";  // 'b' is in shard 2
  make_sharded(d, map);
  auto ck = Checkpoint::open(d.path().string());
  expect_input_error([&] { ck->view("b"); }, {"model-00001-of-00002.safetensors", "'b'"});
  expect_input_error([&] { ck->entry("b"); }, {"'b'"});
}

TEST(ShardedCheckpoint, ShardHoldsTensorTheIndexDoesNotPlaceThere) {
  TempDir d;
  nlohmann::json map = kGoodMap;
  map.erase("c");
  make_sharded(d, map);
  auto ck = Checkpoint::open(d.path().string());
  expect_input_error([&] { ck->validate_all(); }, {"'c'"});
}

TEST(ShardedCheckpoint, InvalidIndexJson) {
  TempDir d;
  make_sharded(d, kGoodMap);
  std::string index = d.file("model.safetensors.index.json");
  write_bytes(index, R"({"weight_map": {"a": "model-00001-of-00002.safetensors",)");
  expect_input_error([&] { Checkpoint::open(d.path().string()); }, {index});
  write_bytes(index, R"({"metadata": {}})");
  expect_input_error([&] { Checkpoint::open(d.path().string()); }, {index, "weight_map"});
  write_bytes(index, R"({"weight_map": {"a": 3}})");
  expect_input_error([&] { Checkpoint::open(d.path().string()); }, {index, "'a'"});
  write_bytes(index, R"({"weight_map": {"a": "../model-00001-of-00002.safetensors"}})");
  expect_input_error([&] { Checkpoint::open(d.path().string()); }, {index, "'a'"});
  // "." is the folder itself, not a file in it (found by the shard-index fuzz target).
  write_bytes(index, R"({"weight_map": {"a": "."}})");
  expect_input_error([&] { Checkpoint::open(d.path().string()); }, {index, "'a'", "not a file in the folder"});
  // A NUL ends the name when the file is opened: "\u0000x" would open the folder.
  write_bytes(index, R"({"weight_map": {"a": "\u0000model-00001-of-00002.safetensors"}})");
  expect_input_error([&] { Checkpoint::open(d.path().string()); }, {index, "'a'", "not a file in the folder"});
}

TEST(ShardedCheckpoint, MissingTensorAndMissingFolder) {
  TempDir d;
  make_sharded(d, kGoodMap);
  auto ck = Checkpoint::open(d.path().string());
  expect_input_error([&] { ck->view("zzz"); }, {"'zzz'"});
  expect_input_error([&] { Checkpoint::open(d.file("nope")); }, {d.file("nope")});
  TempDir empty;
  write_bytes(empty.file("config.json"), "{}");
  expect_input_error([&] { Checkpoint::open(empty.path().string()); }, {empty.path().string()});
  write_bytes(empty.file("config.json"), "{");
  expect_input_error([&] { Checkpoint::open(empty.path().string()); }, {"config.json"});
}

TEST(ShardedCheckpoint, UnindexedShardsWithTheSameTensorTwice) {
  TempDir d;
  write_bytes(d.file("config.json"), "{}");
  write_safetensors(d.file("x-1.safetensors"), {{"a", DType::F32, {2}}}, {}, fill_pattern);
  write_safetensors(d.file("x-2.safetensors"), {{"a", DType::F32, {2}}}, {}, fill_pattern);
  expect_input_error([&] { Checkpoint::open(d.path().string()); }, {"'a'", "duplicate"});
}

}  // namespace
}  // namespace segpipe
