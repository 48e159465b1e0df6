// Pipeline YAML -> validated plan (shared/docs/pipeline-yaml.md). A pipeline is data before it is
// processes: parse, validate and print it before anything starts.
//
// Every error is a segpipe::InputError (exit 2) whose message is one line
// "file:line:column: message" pointing at the key at fault (type errors point at the bad value).
#pragma once
#include <string>

#include "orchestrator/pipeline/pipeline_plan.h"
#include "orchestrator/pipeline/pipeline_spec.h"
#include "segments/core/errors.h"  // InputError, thrown by everything below

namespace segpipe {

// Pipelines are written by hand and hold a few kilobytes; yaml-cpp needs about 100 bytes of memory
// and a microsecond per byte, so a document larger than this is refused before it is parsed.
constexpr size_t kMaxPipelineBytes = 1 << 20;

// Reads and parses a pipeline file. Relative `model` / `tokenizer` paths resolve against the file's
// folder. Checks the schema only (types, allowed keys, value ranges that need no model).
PipelineSpec parse_pipeline_file(const std::string& path);

// Same, from text: `source` names it in messages, `base_dir` resolves relative paths.
PipelineSpec parse_pipeline_string(const std::string& text, const std::string& source = "<string>",
                                   const std::string& base_dir = ".");

// Checks every rule that needs the checkpoint (coverage, order, bounds, devices) and resolves defaults.
// `cuda_device_count`: the CUDA devices visible to this process (0 without a GPU or CUDA build).
PipelinePlan validate_pipeline(const PipelineSpec& spec, const ModelSummary& model, int cuda_device_count);

// Prints a spec as pipeline YAML; parse_pipeline_string(emit_pipeline_yaml(s)) == s when the same
// base_dir is used. Paths are printed as written (`model`, `tokenizer`), not resolved.
std::string emit_pipeline_yaml(const PipelineSpec& spec);

}  // namespace segpipe
