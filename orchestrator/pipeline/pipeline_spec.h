// A pipeline YAML file as written (shared/docs/pipeline-yaml.md, version 1), before it is checked
// against a checkpoint. Parsing fills these structs and rejects anything the schema does not allow
// (types, unknown keys, per-kind keys); validate_pipeline() then checks the rules that need the
// model (coverage, bounds, devices) and resolves defaults into a PipelinePlan.
//
// Optional keys stay std::optional here so that emit_pipeline_yaml() prints exactly what was written
// and a parse -> emit -> parse round trip is the identity.
#pragma once
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "segments/core/segment_types.h"

namespace segpipe {

// Where something was written: 1-based line and column (yaml-cpp's Mark is 0-based). 0 = unknown
// (only for specs built in code, e.g. by `segpipe plan`).
struct SourceMark {
  int line = 0;
  int column = 0;
  // Marks are provenance, not content: two specs that say the same thing compare equal wherever
  // they were written (this is what the emit -> parse round trip checks).
  friend bool operator==(const SourceMark&, const SourceMark&) { return true; }
};

// Marks of one YAML mapping: the mapping itself and each key present in it, so that a semantic error
// found later can point at the key at fault ("file:line:column: ...").
struct KeyMarks {
  SourceMark self;                         // the mapping (or its first key)
  std::map<std::string, SourceMark> keys;  // key name -> where that key was written
  // The key's mark, or the mapping's mark when the key was not written (a missing key, a default).
  SourceMark at(const std::string& key) const {
    auto it = keys.find(key);
    return it == keys.end() ? self : it->second;
  }
  friend bool operator==(const KeyMarks&, const KeyMarks&) { return true; }  // provenance, see SourceMark
};

enum class Transport { shm, inproc };         // shm: one process per segment; inproc: one process
enum class ExpertPlacement { local, banks };  // where a layers segment's MoE experts are computed

// An inclusive range [first, last] as written in `layers: [a, b]` or `experts: [e0, e1]`.
struct IndexRange {
  int first = 0;
  int last = 0;
  bool contains(int i) const { return first <= i && i <= last; }
  friend bool operator==(const IndexRange&, const IndexRange&) = default;
};

// Keys that `defaults:` sets and any segment may override; unset = inherit (defaults, then built-in).
struct SegmentSettings {
  std::optional<Device> device;
  std::optional<ComputeDType> dtype;
  std::optional<int> threads;  // CPU threads of the segment process, > 0
  std::optional<std::string> host;  // the name of an entry of `hosts:` (where the segment's process runs)
  friend bool operator==(const SegmentSettings&, const SegmentSettings&) = default;
};

// One entry of `hosts:`: a machine that runs segment processes. The first entry is the machine where
// segpipe itself runs (the orchestrator); the launcher starts one agent on each of the others.
struct HostSpec {
  std::string name;                    // as segments name it; same rule as a segment name
  std::optional<std::string> address;  // how the launcher reaches it (host name or IP); unset = name
                                       // (the first host: localhost)
  KeyMarks marks;
  friend bool operator==(const HostSpec&, const HostSpec&) = default;
};

struct SegmentSpec {
  std::string name;  // unique; [A-Za-z0-9][A-Za-z0-9_.-]*, <= 64 chars
  SegmentKind kind = SegmentKind::layers;
  std::optional<IndexRange> layers;          // layers and experts kinds (required there)
  std::optional<ExpertPlacement> placement;  // layers kind: `experts: local | banks` (unset = local)
  std::optional<IndexRange> experts;         // experts kind: `experts: [e0, e1]` (required there)
  std::optional<int> max_resident_experts;   // layers/experts kinds, > 0; used by a later feature
  SegmentSettings settings;                  // per-segment overrides of `defaults:`
  KeyMarks marks;
  friend bool operator==(const SegmentSpec&, const SegmentSpec&) = default;
};

// `generation:`: defaults for `segpipe generate`; command-line flags win, so every key stays optional.
struct GenerationSpec {
  std::optional<int> max_new_tokens;  // >= 1
  std::optional<double> temperature;  // >= 0; 0 = greedy
  std::optional<int> top_k;           // >= 0; 0 = off
  std::optional<double> top_p;        // (0, 1]
  std::optional<std::uint64_t> seed;
  KeyMarks marks;
  friend bool operator==(const GenerationSpec&, const GenerationSpec&) = default;
};

struct PipelineSpec {
  std::string source;  // file name used in messages ("<string>" if none)
  int version = 1;
  std::string model;                     // as written
  std::string model_dir;                 // `model` resolved against the YAML file's folder
  std::optional<std::string> tokenizer;  // as written; unset = the model folder
  std::string tokenizer_dir;             // resolved; = model_dir when `tokenizer` is unset
  SegmentSettings defaults;
  KeyMarks defaults_marks;
  std::optional<Transport> transport;  // unset = shm
  std::optional<std::vector<HostSpec>> hosts;  // unset = every segment on this machine
  std::optional<GpuKernels> gpu_kernels;  // unset = auto
  std::optional<GpuMemory> gpu_memory;    // unset = auto
  std::optional<bool> restart;         // restart a failed segment; unset = false
  std::optional<int> timeout_ms;       // > 0; a segment silent this long is hung; unset = 10000
  std::vector<SegmentSpec> segments;   // in file order (= data-flow order once validated)
  std::optional<GenerationSpec> generation;
  KeyMarks marks;  // top-level keys
  friend bool operator==(const PipelineSpec& a, const PipelineSpec& b) {
    // `source` is provenance like the marks; everything else is content.
    return a.version == b.version && a.model == b.model && a.model_dir == b.model_dir && a.tokenizer == b.tokenizer &&
           a.tokenizer_dir == b.tokenizer_dir && a.defaults == b.defaults && a.transport == b.transport && a.hosts == b.hosts &&
           a.gpu_kernels == b.gpu_kernels && a.gpu_memory == b.gpu_memory && a.restart == b.restart && a.timeout_ms == b.timeout_ms && a.segments == b.segments &&
           a.generation == b.generation;
  }
};

// Built-in values for keys that neither the segment nor `defaults:` sets.
inline constexpr int kDefaultThreads = 1;
inline constexpr int kDefaultTimeoutMs = 10000;

const char* to_string(Transport transport);
const char* to_string(ExpertPlacement placement);

}  // namespace segpipe
