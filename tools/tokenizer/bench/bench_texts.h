// Deterministic benchmark texts (a seeded generator, no files needed): English prose, source code and
// Chinese, each of about `bytes` bytes, so every run and every machine measures the same input.
#pragma once
#include <cstddef>
#include <string>

namespace segpipe::bench {

std::string english_text(size_t bytes);
std::string code_text(size_t bytes);
std::string cjk_text(size_t bytes);

}  // namespace segpipe::bench
