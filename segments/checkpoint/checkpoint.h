// A Hugging Face checkpoint folder: config.json plus one safetensors file or shards listed in
// model.safetensors.index.json. Shards are opened (header only) when a tensor in them is asked for;
// tensor bytes are mapped per tensor on request, so a segment maps only what it uses.
#pragma once
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "segments/checkpoint/safetensors.h"

namespace segpipe {

// Reads a JSON file; a missing file or invalid JSON is an InputError naming the file.
// config.json, indexes and generation configs are kilobytes to a few megabytes.
constexpr uint64_t kMaxJsonFileBytes = 64ull << 20;
// A regular file of at most kMaxJsonFileBytes holding valid JSON with no key repeated in any
// object; InputError naming the file otherwise.
nlohmann::json read_json_file(const std::string& path);

class Checkpoint {
 public:
  static std::shared_ptr<Checkpoint> open(const std::string& dir);

  const std::string& dir() const { return dir_; }
  const nlohmann::json& config_json() const { return config_; }
  // Every tensor name the checkpoint declares (index or file headers), sorted.
  std::vector<std::string> tensor_names();
  bool has(const std::string& name) const { return where_.count(name) != 0; }
  // Header entry (dtype, shape, offsets) without touching tensor bytes.
  const TensorEntry& entry(const std::string& name);
  // Maps the tensor and returns a view; a missing tensor is an InputError naming it.
  // populate: see SafetensorsFile::view.
  TensorView view(const std::string& name, bool populate = true);
  // SafetensorsFile::release_pages on the shard holding `name` (a tensor not mapped: nothing).
  void release_pages(const std::string& name, const void* p, uint64_t n);
  // Bytes of all tensors mapped so far (what this process has loaded).
  uint64_t mapped_tensor_bytes() const;
  // Shard file (path) holding a tensor.
  std::string file_of(const std::string& name) const;
  std::vector<std::string> files() const;
  // Opens every shard and checks that the index agrees with the shards' headers.
  void validate_all();

 private:
  SafetensorsFile& shard(const std::string& file);
  std::string dir_;
  nlohmann::json config_;
  std::map<std::string, std::string> where_;  // tensor name -> shard file name (relative)
  std::map<std::string, std::shared_ptr<SafetensorsFile>> shards_;
  bool indexed_ = false;
};

}  // namespace segpipe
