#include "segments/checkpoint/checkpoint.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <set>

#include "segments/core/errors.h"
#include "segments/core/input_file.h"

namespace segpipe {

namespace fs = std::filesystem;
using nlohmann::json;

json read_json_file(const std::string& path) {
  const std::string text = read_input_file(path, kMaxJsonFileBytes, "JSON file");
  // nlohmann keeps the last of duplicate keys silently; a config.json saying rope_theta twice is
  // ambiguous, so every object's keys are tracked during the parse and a repeat is refused.
  std::vector<std::set<std::string>> keys;
  std::string duplicate;
  auto cb = [&](int, json::parse_event_t ev, json& parsed) {
    if (ev == json::parse_event_t::object_start) keys.emplace_back();
    if (ev == json::parse_event_t::object_end && !keys.empty()) keys.pop_back();
    if (ev == json::parse_event_t::key && !keys.empty() && duplicate.empty()) {
      std::string k = parsed.get<std::string>();
      if (!keys.back().insert(k).second) duplicate = k;
    }
    return true;
  };
  json j;
  try {
    j = json::parse(text, cb);
  } catch (const json::exception& e) {
    throw InputError(path + ": invalid JSON (" + e.what() + ")");
  }
  if (!duplicate.empty()) throw InputError(path + ": duplicate key '" + duplicate + "'");
  return j;
}

std::shared_ptr<Checkpoint> Checkpoint::open(const std::string& dir) {
  auto c = std::shared_ptr<Checkpoint>(new Checkpoint());
  c->dir_ = dir;
  if (!fs::is_directory(dir)) throw InputError(dir + ": not a checkpoint folder (no such directory)");
  c->config_ = read_json_file((fs::path(dir) / "config.json").string());
  if (!c->config_.is_object()) throw InputError(dir + "/config.json: must be a JSON object");

  fs::path index = fs::path(dir) / "model.safetensors.index.json";
  if (fs::exists(index)) {
    json j = read_json_file(index.string());
    if (!j.is_object() || !j.contains("weight_map") || !j["weight_map"].is_object())
      throw InputError(index.string() + ": missing object 'weight_map'");
    for (auto it = j["weight_map"].begin(); it != j["weight_map"].end(); ++it) {
      if (!it.value().is_string()) throw InputError(index.string() + ": weight_map['" + it.key() + "'] must be a file name");
      std::string f = it.value().get<std::string>();
      // A plain name of a file in this folder: no path, not the folder itself, and no NUL (the name
      // would end there when opened, naming the folder).
      const bool control = std::any_of(f.begin(), f.end(), [](char ch) { return static_cast<unsigned char>(ch) < 0x20; });
      if (f.find('/') != std::string::npos || f == ".." || f == "." || f.empty() || control) {
        std::string shown;  // control characters escaped: a NUL would end the message itself
        for (char ch : f) {
          char hex[8];
          std::snprintf(hex, sizeof hex, "\\x%02x", static_cast<unsigned char>(ch));
          shown += static_cast<unsigned char>(ch) < 0x20 ? std::string(hex) : std::string(1, ch);
        }
        throw InputError(index.string() + ": weight_map['" + it.key() + "'] names '" + shown + "', not a file in the folder");
      }
      c->where_[it.key()] = f;
    }
    c->indexed_ = true;
    return c;
  }
  std::vector<std::string> files;
  if (fs::exists(fs::path(dir) / "model.safetensors")) {
    files.push_back("model.safetensors");
  } else {
    for (auto& e : fs::directory_iterator(dir))
      if (e.is_regular_file() && e.path().extension() == ".safetensors") files.push_back(e.path().filename().string());
    std::sort(files.begin(), files.end());
  }
  if (files.empty()) throw InputError(dir + ": no model.safetensors and no model.safetensors.index.json");
  for (const auto& f : files) {
    SafetensorsFile& s = c->shard(f);
    for (auto& [name, e] : s.header().tensors) {
      auto [it, fresh] = c->where_.emplace(name, f);
      if (!fresh) throw InputError(dir + ": duplicate tensor '" + name + "' in " + it->second + " and " + f);
    }
  }
  return c;
}

SafetensorsFile& Checkpoint::shard(const std::string& file) {
  auto it = shards_.find(file);
  if (it == shards_.end()) {
    std::string path = (fs::path(dir_) / file).string();
    if (!fs::exists(path)) throw InputError(path + ": shard named in the index does not exist");
    it = shards_.emplace(file, SafetensorsFile::open(path)).first;
  }
  return *it->second;
}

std::vector<std::string> Checkpoint::tensor_names() {
  std::vector<std::string> v;
  for (auto& [n, f] : where_) v.push_back(n);
  return v;
}

std::string Checkpoint::file_of(const std::string& name) const {
  auto it = where_.find(name);
  if (it == where_.end()) throw InputError(dir_ + ": missing tensor '" + name + "'");
  return (fs::path(dir_) / it->second).string();
}

std::vector<std::string> Checkpoint::files() const {
  std::vector<std::string> v;
  for (auto& [n, f] : where_)
    if (std::find(v.begin(), v.end(), f) == v.end()) v.push_back(f);
  std::sort(v.begin(), v.end());
  return v;
}

const TensorEntry& Checkpoint::entry(const std::string& name) {
  auto it = where_.find(name);
  if (it == where_.end()) throw InputError(dir_ + ": missing tensor '" + name + "'");
  SafetensorsFile& s = shard(it->second);
  auto e = s.header().tensors.find(name);
  if (e == s.header().tensors.end())
    throw InputError(s.path() + ": the index places tensor '" + name + "' here but the file does not hold it");
  return e->second;
}

TensorView Checkpoint::view(const std::string& name, bool populate) {
  entry(name);  // validates presence in the shard
  return shard(where_.at(name)).view(name, populate);
}

void Checkpoint::release_pages(const std::string& name, const void* p, uint64_t n) {
  auto w = where_.find(name);
  if (w == where_.end()) return;
  auto s = shards_.find(w->second);
  if (s != shards_.end()) s->second->release_pages(name, p, n);
}

uint64_t Checkpoint::mapped_tensor_bytes() const {
  uint64_t s = 0;
  for (auto& [f, sh] : shards_) s += sh->mapped_tensor_bytes();
  return s;
}

void Checkpoint::validate_all() {
  for (const auto& f : files()) shard(f);
  for (auto& [name, f] : where_) entry(name);
  if (indexed_) {
    for (auto& [f, sh] : shards_)
      for (auto& [name, e] : sh->header().tensors) {
        auto it = where_.find(name);
        if (it == where_.end() || it->second != f)
          throw InputError(sh->path() + ": tensor '" + name + "' is not placed in this file by the index");
      }
  }
}

}  // namespace segpipe
