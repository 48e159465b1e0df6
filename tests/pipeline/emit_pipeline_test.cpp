// emit_pipeline_yaml: what `segpipe plan` prints must read back as the same pipeline.
#include <gtest/gtest.h>

#include "orchestrator/pipeline/pipeline.h"
#include "tests/pipeline/pipeline_examples.h"

namespace segpipe {
namespace {

PipelineSpec round_trip(const PipelineSpec& spec) {
  return parse_pipeline_string(emit_pipeline_yaml(spec), "emitted.yaml", "/pipes");
}

TEST(EmitPipeline, ExamplesRoundTrip) {
  for (const test::Example& ex : test::valid_examples()) {
    SCOPED_TRACE(ex.name);
    PipelineSpec spec = parse_pipeline_string(ex.yaml, "p.yaml", "/pipes");
    std::string text = emit_pipeline_yaml(spec);
    PipelineSpec again = parse_pipeline_string(text, "emitted.yaml", "/pipes");
    EXPECT_EQ(again, spec) << text;
    EXPECT_EQ(emit_pipeline_yaml(again), text);  // printing is a fixed point
    EXPECT_NO_THROW(validate_pipeline(again, ex.model, 2));
  }
}

TEST(EmitPipeline, ReadableOutput) {
  std::string text = emit_pipeline_yaml(parse_pipeline_string(test::kTinyFull));
  EXPECT_NE(text.find("version: 1\n"), std::string::npos) << text;
  EXPECT_NE(text.find("layers: [2, 3]"), std::string::npos) << text;
  EXPECT_NE(text.find("experts: banks"), std::string::npos) << text;
  EXPECT_NE(text.find("temperature: 0.7\n"), std::string::npos) << text;  // shortest form, not 0.6999...
  EXPECT_NE(text.find("seed: 18446744073709551615\n"), std::string::npos) << text;
  EXPECT_EQ(text.find("transport: shm"), std::string::npos) << "unset keys stay unset";
}

TEST(EmitPipeline, SpecBuiltInCode) {
  // What `segpipe plan` does: build a spec, print it. Values that YAML would read as other types
  // (null, true, numbers, ': ') must be quoted by the printer.
  PipelineSpec spec;
  spec.model = "models/a: b #1";
  spec.tokenizer = "null";
  spec.transport = Transport::inproc;
  spec.restart = false;
  auto segment = [&](const char* name, SegmentKind kind) -> SegmentSpec& {
    spec.segments.emplace_back();
    spec.segments.back().name = name;
    spec.segments.back().kind = kind;
    return spec.segments.back();
  };
  segment("null", SegmentKind::embeddings);
  SegmentSpec& body = segment("123", SegmentKind::layers);
  body.layers = IndexRange{0, 3};
  body.placement = ExpertPlacement::banks;
  SegmentSpec& bank = segment("true", SegmentKind::experts);
  bank.layers = IndexRange{0, 3};
  bank.experts = IndexRange{0, 7};
  bank.max_resident_experts = 2;
  bank.settings = {Device{Device::Type::cuda, 3}, ComputeDType::bfloat16, 7};
  segment("head", SegmentKind::lm_head);
  spec.generation.emplace();
  spec.generation->temperature = 1e-7;
  spec.generation->top_p = 0.1;
  // Resolving paths is the parser's job; a spec built in code says what it expects them to become.
  spec.model_dir = "/pipes/models/a: b #1";
  spec.tokenizer_dir = "/pipes/null";
  PipelineSpec again = round_trip(spec);
  EXPECT_EQ(again, spec);
  EXPECT_NO_THROW(validate_pipeline(again, test::tiny_model(), 4));
}

}  // namespace
}  // namespace segpipe
