// Shared by the fuzz targets: run a call and let only segpipe::InputError through (anything else is
// a crash the fuzzer must report), invariant checks that abort, and a private scratch folder.
#pragma once
#include <stdlib.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "segments/core/errors.h"

namespace segpipe::fuzz {

template <typename F>
bool only_input_errors(const char* what, F&& fn) {
  try {
    fn();
    return true;
  } catch (const InputError&) {
    return false;  // bad input, reported the documented way
  } catch (const std::exception& e) {
    std::fprintf(stderr, "fuzz %s: exception other than InputError escaped: %s\n", what, e.what());
    std::abort();
  } catch (...) {
    std::fprintf(stderr, "fuzz %s: non-standard exception escaped\n", what);
    std::abort();
  }
}

// The input as JSON (nlohmann::json or ordered_json), or nothing where it is not JSON: bad input that
// the reader of the real file reports before the parser under test ever sees it.
template <typename Json>
std::optional<Json> parse_json_input(const uint8_t* data, size_t size) {
  try {
    return Json::parse(data, data + size);
  } catch (const nlohmann::json::exception&) {
    return std::nullopt;
  }
}

#define FUZZ_INVARIANT(cond)                                                                   \
  do {                                                                                         \
    if (!(cond)) {                                                                             \
      std::fprintf(stderr, "fuzz invariant violated: %s (%s:%d)\n", #cond, __FILE__, __LINE__); \
      std::abort();                                                                            \
    }                                                                                          \
  } while (0)

// A folder of this process's own, made once, for files the targets write.
inline const std::string& scratch_dir() {
  static const std::string dir = [] {
    // Memory-backed /dev/shm when present: the targets write a file per input.
    const char* base = std::getenv("TMPDIR");
    std::string root = base && *base ? base : (::access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");
    std::string t = root + "/segpipe-fuzz-XXXXXX";
    if (!mkdtemp(t.data())) {
      std::perror("mkdtemp");
      std::abort();
    }
    // Removed whole at exit, whatever the targets wrote in it (files, the shard-index checkpoint).
    static std::string keep = t;
    std::atexit([] {
      std::error_code ec;
      std::filesystem::remove_all(keep, ec);
    });
    return t;
  }();
  return dir;
}

}  // namespace segpipe::fuzz
