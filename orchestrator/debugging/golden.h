// Golden files (shared/docs/golden-format.md): reference activations from transformers, and the
// comparison of a run against them, boundary by boundary.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "orchestrator/debugging/golden_media.h"
#include "orchestrator/drivers/runner.h"
#include "segments/model/config.h"

namespace segpipe {

struct Golden {
  std::string path;
  std::map<std::string, std::string> metadata;
  std::vector<int32_t> input_ids;
  std::vector<int32_t> generated_ids;  // empty when absent
  bool has_generated = false;
  // Float boundaries by golden name, with their shapes.
  std::map<std::string, std::vector<float>> tensors;
  std::map<std::string, std::vector<int64_t>> shapes;
  std::vector<std::string> unknown;  // names the format does not define (reported, not compared)
  GoldenMedia media;                 // a Qwen3-Omni prompt's audio and images (golden_media.h); empty: text
};

// Loads and checks a golden against the model: format, model_type, dtypes, and that every shape
// fits (T, H, E, V, layer indices). A misfit is an InputError naming the file and tensor.
Golden load_golden(const std::string& path, const ModelConfig& cfg);

struct BoundaryResult {
  std::string name;
  double max_abs = 0, rel_l2 = 0;
  bool passed = true;
  bool bitwise = false;        // identical bits
  std::string note;            // e.g. top-k differences within tolerance
};

// The row of a report whose golden holds no comparable boundary at all (a failure).
inline constexpr const char* kNoBoundary = "(no boundary)";

struct GoldenReport {
  std::string golden;
  std::vector<BoundaryResult> boundaries;
  std::vector<std::string> skipped;   // boundaries the golden does not hold
  std::vector<int32_t> generated;     // our greedy continuation
  bool passed = true;
};

// Errors between two float tensors of equal size.
void compare_floats(const float* ours, const float* ref, size_t n, BoundaryResult& r);

// Runs the golden's prompt through `runner` (prefill with every boundary captured, then cached
// greedy decode) and compares. tolerance: largest relative L2 error accepted.
GoldenReport verify_golden(Runner& runner, const Golden& g, const ModelConfig& cfg, double tolerance);

// Prints the table rows of a report to stdout.
void print_golden_report(const GoldenReport& r, double tolerance);
nlohmann::json golden_report_json(const GoldenReport& r);

}  // namespace segpipe
