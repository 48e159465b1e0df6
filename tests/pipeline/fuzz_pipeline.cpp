// Fuzz target for the pipeline reader: any bytes -> parse -> validate against fixed checkpoints.
// Only InputError may escape parse/validate; anything else (a crash, another exception, an assert)
// is a bug. Whatever parses must also survive emit -> parse unchanged.
//
// Built two ways (tests/pipeline/CMakeLists.txt): with libFuzzer when SEGPIPE_FUZZ is ON, and with
// fuzz_pipeline_replay.cpp's deterministic driver as an ordinary ctest test.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "orchestrator/pipeline/pipeline.h"
#include "tests/pipeline/pipeline_examples.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace segpipe;
  static const ModelSummary kModels[] = {test::doc_model(), test::tiny_model(), test::sparse_model(),
                                         test::dense_model()};
  std::string text(reinterpret_cast<const char*>(data), size);
  PipelineSpec spec;
  try {
    spec = parse_pipeline_string(text, "fuzz.yaml", "/pipes");
  } catch (const InputError&) {
    return 0;
  }
  std::string emitted = emit_pipeline_yaml(spec);
  try {
    if (!(parse_pipeline_string(emitted, "emitted.yaml", "/pipes") == spec)) {
      std::fprintf(stderr, "round trip changed the pipeline:\n%s\n", emitted.c_str());
      std::abort();
    }
  } catch (const InputError& e) {
    std::fprintf(stderr, "emitted pipeline does not parse: %s\n%s\n", e.what(), emitted.c_str());
    std::abort();
  }
  for (const ModelSummary& model : kModels) {
    try {
      PipelinePlan plan = validate_pipeline(spec, model, 2);
      // A valid plan answers every lookup with a real segment or -1.
      for (int l = 0; l < plan.num_layers; ++l) {
        if (plan.layer_owner(l) < 0) std::abort();
        for (int x = 0; x < plan.num_experts; ++x)
          if (plan.expert_owner(l, x) >= static_cast<int>(plan.segments.size())) std::abort();
      }
    } catch (const InputError&) {
    }
  }
  return 0;
}
