// A Hugging Face repository id (`Qwen/Qwen3-Omni-30B-A3B-Instruct`) where a checkpoint folder is
// expected, resolved from the local Hugging Face cache as the hub client lays it out; no download.
//   cache:    $HF_HUB_CACHE, else $HF_HOME/hub, else $XDG_CACHE_HOME/huggingface/hub, else
//             ~/.cache/huggingface/hub (the hub client's own order)
//   layout:   <cache>/models--<Org>--<Name>/refs/main holds a commit hash;
//             <cache>/models--<Org>--<Name>/snapshots/<hash>/ is the checkpoint folder (its files
//             are links into ../../blobs, which the readers follow)
// A value that names an existing path is always that path: a folder called `Org/Name` in the
// working directory wins over the cache.
#pragma once
#include <cctype>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "segments/core/errors.h"

namespace segpipe::hf {

// `Org/Name`: two non-empty parts of letters, digits, '-', '_' and '.', neither starting with '.'
// (so no '..', no absolute path, nothing else that reads as a path).
inline bool looks_like_repo_id(const std::string& s) {
  const auto slash = s.find('/');
  if (slash == std::string::npos || s.find('/', slash + 1) != std::string::npos) return false;
  auto part_ok = [](const std::string& p) {
    if (p.empty() || p.size() > 96 || p[0] == '.' || p[0] == '-') return false;
    for (char c : p)
      if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.')) return false;
    return true;
  };
  return part_ok(s.substr(0, slash)) && part_ok(s.substr(slash + 1));
}

// The hub cache folder the environment names (it need not exist).
inline std::filesystem::path hub_cache_dir() {
  auto env = [](const char* k) -> std::string {
    const char* v = std::getenv(k);
    return v && *v ? v : "";
  };
  if (auto v = env("HF_HUB_CACHE"); !v.empty()) return v;
  if (auto v = env("HF_HOME"); !v.empty()) return std::filesystem::path(v) / "hub";
  if (auto v = env("XDG_CACHE_HOME"); !v.empty()) return std::filesystem::path(v) / "huggingface" / "hub";
  return std::filesystem::path(env("HOME")) / ".cache" / "huggingface" / "hub";
}

// The snapshot folder of repository `id` at refs/main; InputError saying what is missing otherwise.
inline std::string cached_snapshot(const std::string& id) {
  namespace fs = std::filesystem;
  const fs::path hub = hub_cache_dir();
  std::string folder = "models--" + id;
  folder.replace(folder.find('/'), 1, "--");
  const fs::path repo = hub / folder;
  auto missing = [&](const std::string& what) {
    return InputError("model '" + id + "': not a folder, and not in the local Hugging Face cache (" + what +
                      "); segpipe does not download: fetch it first, e.g. `huggingface-cli download " + id + "`");
  };
  std::error_code ec;
  if (!fs::is_directory(repo, ec)) throw missing(repo.string() + " does not exist");
  std::ifstream ref(repo / "refs" / "main");
  std::string commit;
  if (!ref || !std::getline(ref, commit)) throw missing((repo / "refs" / "main").string() + " does not exist");
  while (!commit.empty() && (commit.back() == '\r' || commit.back() == ' ')) commit.pop_back();
  // A commit hash, nothing that could lead out of snapshots/.
  bool hex = !commit.empty() && commit.size() <= 64;
  for (char c : commit) hex &= std::isxdigit(static_cast<unsigned char>(c)) != 0;
  if (!hex) throw missing((repo / "refs" / "main").string() + " does not hold a commit hash");
  const fs::path snap = repo / "snapshots" / commit;
  if (!fs::is_directory(snap, ec)) throw missing(snap.string() + " does not exist");
  if (!fs::exists(snap / "config.json", ec)) throw missing((snap / "config.json").string() + " does not exist");
  return snap.string();
}

// A --model (or pipeline `model:`) value: `path` when it exists, else the cached snapshot of `value`
// when that is a repository id, else `path` unchanged (the readers report it missing). `path` is
// `value` resolved where it is read from (a pipeline's folder), `value` as the user wrote it.
inline std::string resolve_model(const std::string& value, const std::string& path) {
  std::error_code ec;
  if (std::filesystem::exists(path, ec) || !looks_like_repo_id(value)) return path;
  return cached_snapshot(value);
}
inline std::string resolve_model(const std::string& value) { return resolve_model(value, value); }

}  // namespace segpipe::hf
