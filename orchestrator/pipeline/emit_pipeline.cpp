// PipelineSpec -> pipeline YAML, for `segpipe plan` and for round-trip tests. Prints only the keys the
// spec sets, in the order of shared/docs/pipeline-yaml.md, so that parsing the output gives back the
// same spec.
#include <yaml-cpp/yaml.h>

#include <array>
#include <charconv>

#include "orchestrator/pipeline/pipeline.h"
#include "segments/core/errors.h"

namespace segpipe {

namespace {

// Shortest text that reads back as the same double: "0.7", not yaml-cpp's "0.69999999999999996".
std::string shortest(double v) {
  std::array<char, 32> buf{};
  auto [end, ec] = std::to_chars(buf.data(), buf.data() + buf.size(), v);
  SEGPIPE_ASSERT(ec == std::errc());
  return std::string(buf.data(), end);
}

void emit_range(YAML::Emitter& out, const char* key, const IndexRange& r) {
  out << YAML::Key << key << YAML::Value << YAML::Flow << YAML::BeginSeq << r.first << r.last << YAML::EndSeq;
}

void emit_settings(YAML::Emitter& out, const SegmentSettings& s) {
  if (s.device) out << YAML::Key << "device" << YAML::Value << to_string(*s.device);
  if (s.dtype) out << YAML::Key << "dtype" << YAML::Value << to_string(*s.dtype);
  if (s.threads) out << YAML::Key << "threads" << YAML::Value << *s.threads;
  if (s.host) out << YAML::Key << "host" << YAML::Value << *s.host;
}

void emit_segment(YAML::Emitter& out, const SegmentSpec& s) {
  out << YAML::BeginMap;
  out << YAML::Key << "name" << YAML::Value << s.name;
  out << YAML::Key << "kind" << YAML::Value << to_string(s.kind);
  if (s.layers) emit_range(out, "layers", *s.layers);
  if (s.placement) out << YAML::Key << "experts" << YAML::Value << to_string(*s.placement);
  if (s.experts) emit_range(out, "experts", *s.experts);
  if (s.max_resident_experts) out << YAML::Key << "max_resident_experts" << YAML::Value << *s.max_resident_experts;
  emit_settings(out, s.settings);
  out << YAML::EndMap;
}

}  // namespace

std::string emit_pipeline_yaml(const PipelineSpec& spec) {
  YAML::Emitter out;
  out << YAML::BeginMap;
  out << YAML::Key << "version" << YAML::Value << spec.version;
  out << YAML::Key << "model" << YAML::Value << spec.model;
  if (spec.tokenizer) out << YAML::Key << "tokenizer" << YAML::Value << *spec.tokenizer;
  if (spec.defaults.device || spec.defaults.dtype || spec.defaults.threads || spec.defaults.host) {
    out << YAML::Key << "defaults" << YAML::Value << YAML::BeginMap;
    emit_settings(out, spec.defaults);
    out << YAML::EndMap;
  }
  if (spec.transport) out << YAML::Key << "transport" << YAML::Value << to_string(*spec.transport);
  if (spec.hosts) {
    out << YAML::Key << "hosts" << YAML::Value << YAML::BeginSeq;
    for (const HostSpec& h : *spec.hosts) {
      out << YAML::Flow << YAML::BeginMap << YAML::Key << "name" << YAML::Value << h.name;
      if (h.address) out << YAML::Key << "address" << YAML::Value << *h.address;
      out << YAML::EndMap;
    }
    out << YAML::EndSeq;
  }
  if (spec.gpu_kernels) out << YAML::Key << "gpu_kernels" << YAML::Value << to_string(*spec.gpu_kernels);
  if (spec.gpu_memory) out << YAML::Key << "gpu_memory" << YAML::Value << to_string(*spec.gpu_memory);
  if (spec.restart) out << YAML::Key << "restart" << YAML::Value << (*spec.restart ? "true" : "false");
  if (spec.timeout_ms) out << YAML::Key << "timeout_ms" << YAML::Value << *spec.timeout_ms;
  out << YAML::Key << "segments" << YAML::Value << YAML::BeginSeq;
  for (const SegmentSpec& s : spec.segments) emit_segment(out, s);
  out << YAML::EndSeq;
  if (spec.generation) {
    const GenerationSpec& g = *spec.generation;
    out << YAML::Key << "generation" << YAML::Value << YAML::BeginMap;
    if (g.max_new_tokens) out << YAML::Key << "max_new_tokens" << YAML::Value << *g.max_new_tokens;
    if (g.temperature) out << YAML::Key << "temperature" << YAML::Value << shortest(*g.temperature);
    if (g.top_k) out << YAML::Key << "top_k" << YAML::Value << *g.top_k;
    if (g.top_p) out << YAML::Key << "top_p" << YAML::Value << shortest(*g.top_p);
    if (g.seed) out << YAML::Key << "seed" << YAML::Value << *g.seed;
    out << YAML::EndMap;
  }
  out << YAML::EndMap;
  // The emitter fails only on misuse of its API (unbalanced maps) or text it cannot write; the parser
  // never produces the latter, so either is a bug here.
  SEGPIPE_ASSERT_MSG(out.good(), out.GetLastError().c_str());
  return std::string(out.c_str()) + "\n";
}

}  // namespace segpipe
